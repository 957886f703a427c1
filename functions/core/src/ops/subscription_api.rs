//! The Subscription REST API: create, read, update, delete and search the caller's
//! own Subscriptions.
//!
//! - `POST /Subscription` — server assigns the id. A websocket subscription is `active`
//!   at once, as the spec's websocket flow has it (there is no endpoint to handshake
//!   with); other channel types, which this server stores but does not deliver, stay
//!   `requested`.
//! - `GET /Subscription/{id}`, `PUT /Subscription/{id}` (optional `If-Match: W/"n"`),
//!   `DELETE /Subscription/{id}`.
//! - `GET /Subscription[?status=a,b]` — a `searchset` Bundle of the caller's subscriptions.
//!
//! Someone else's subscription answers exactly like a missing one (404). A client may
//! set `status` to `requested`, `off` or `entered-in-error`, or leave it as it is;
//! `active` and `error` are the server's to set (a websocket subscription set back to
//! `requested` is active again at once). Once `Subscription.end` has passed, every
//! answer shows status `off`.

use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt as _, Response};

use crate::config::SubscriptionApiConfig;
use crate::fhir::{Bundle, BundleEntry, BundleLink, BundleSearch, IssueType, Subscription, SubscriptionState, new_id};
use crate::http::{
    ApiError, FhirPath, IdentityConfig, empty_response, fhir_path, fhir_response, json_body, set_header,
};
use crate::store::{StoredSubscription, SubscriptionStore};

/// The API over a subscriptions store; built once per Lambda instance.
#[derive(Debug)]
pub struct SubscriptionApi<S> {
    subscriptions: S,
    identity: IdentityConfig,
}

impl<S: SubscriptionStore> SubscriptionApi<S> {
    /// The API over `subscriptions`, configured by `config`.
    pub fn new(subscriptions: S, config: &SubscriptionApiConfig) -> Self {
        Self { subscriptions, identity: config.identity.clone() }
    }

    /// Answers one request at time `now`. Never fails: errors become `OperationOutcome`s.
    pub async fn handle(&self, request: &Request, now: DateTime<Utc>) -> Response<Body> {
        self.respond(request, now).await.unwrap_or_else(ApiError::into_response)
    }

    async fn respond(&self, request: &Request, now: DateTime<Utc>) -> Result<Response<Body>, ApiError> {
        let path = fhir_path(request)?;
        let method = request.method().clone();
        match path.rest.as_slice() {
            [] => {
                if method != Method::GET && method != Method::POST {
                    return Err(ApiError::method_not_allowed(method.as_str(), "GET, POST"));
                }
                let owner = self.identity.caller(request)?;
                if method == Method::POST {
                    self.create(request, &path, &owner, now).await
                } else {
                    self.search(request, &path, &owner, now).await
                }
            }
            [id] => {
                if method != Method::GET && method != Method::PUT && method != Method::DELETE {
                    return Err(ApiError::method_not_allowed(method.as_str(), "GET, PUT, DELETE"));
                }
                let owner = self.identity.caller(request)?;
                let current = self.owned(id, &owner).await?;
                match method {
                    Method::GET => Ok(resource_response(StatusCode::OK, &current, now)),
                    Method::PUT => self.update(request, current, now).await,
                    _ => {
                        self.subscriptions.delete(id).await?;
                        Ok(empty_response(StatusCode::NO_CONTENT))
                    }
                }
            }
            _ => Err(ApiError::not_found(format!("no route for {}", request.uri().path()))),
        }
    }

    /// The subscription if it exists and belongs to `owner`; 404 (same answer) otherwise.
    async fn owned(&self, id: &str, owner: &str) -> Result<StoredSubscription, ApiError> {
        super::owned(&self.subscriptions, id, owner).await
    }

    async fn create(
        &self,
        request: &Request,
        path: &FhirPath,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let mut resource = subscription_body(request)?;
        resource.id = Some(new_id());
        resource.status = Some(initial_status(&resource, SubscriptionState::Requested));
        let stored = StoredSubscription::new(owner, 1, now, resource);
        self.subscriptions.insert(&stored).await?;
        let mut response = resource_response(StatusCode::CREATED, &stored, now);
        let location = format!("{}/Subscription/{}/_history/1", path.base, stored.id());
        set_header(&mut response, header::LOCATION, &location);
        Ok(response)
    }

    async fn update(
        &self,
        request: &Request,
        current: StoredSubscription,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let mut resource = subscription_body(request)?;
        match resource.id.as_deref() {
            Some(id) if id == current.id() => {}
            Some(id) => {
                return Err(ApiError::invalid(format!(
                    "the body's id '{id}' does not match the URL's id '{}'",
                    current.id()
                )));
            }
            None => return Err(ApiError::invalid("the body must carry the resource's id")),
        }
        if let Some(expected) = if_match_version(request)?
            && expected != current.version()
        {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                IssueType::Conflict,
                format!("version {expected} was expected, but the current version is {}", current.version()),
            ));
        }
        let status = next_status(current.status_at(now), resource.status)?;
        resource.status = Some(initial_status(&resource, status));
        let updated = current.next_version(resource, now);
        self.subscriptions.replace(&updated, current.version()).await?;
        Ok(resource_response(StatusCode::OK, &updated, now))
    }

    async fn search(
        &self,
        request: &Request,
        path: &FhirPath,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let query = request.query_string_parameters();
        let mut statuses: Vec<SubscriptionState> = Vec::new();
        for value in query.all("status").unwrap_or_default() {
            for code in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let status = SubscriptionState::from_code(code)
                    .ok_or_else(|| ApiError::invalid(format!("'{code}' is not a Subscription status")))?;
                statuses.push(status);
            }
        }
        let found: Vec<StoredSubscription> = self
            .subscriptions
            .list_by_owner(owner)
            .await?
            .into_iter()
            .filter(|s| statuses.is_empty() || statuses.contains(&s.status_at(now)))
            .collect();
        let mut bundle = Bundle::new("searchset");
        bundle.total = Some(found.len() as u64);
        let mut self_url = format!("{}/Subscription", path.base);
        if !statuses.is_empty() {
            let codes: Vec<&str> = statuses.iter().map(|s| s.code()).collect();
            self_url.push_str(&format!("?status={}", codes.join(",")));
        }
        bundle.link.push(BundleLink { relation: "self".to_owned(), url: self_url });
        for stored in &found {
            bundle.entry.push(BundleEntry {
                full_url: Some(format!("{}/Subscription/{}", path.base, stored.id())),
                resource: Some(serde_json::to_value(stored.resource_at(now)).map_err(|e| ApiError::internal(&e))?),
                search: Some(BundleSearch { mode: "match".to_owned() }),
            });
        }
        Ok(fhir_response(StatusCode::OK, &bundle))
    }
}

/// Reads and validates a Subscription body (required for POST and PUT).
fn subscription_body(request: &Request) -> Result<Subscription, ApiError> {
    let resource: Subscription =
        json_body(request)?.ok_or_else(|| ApiError::invalid("a Subscription resource is required in the body"))?;
    resource.validate().map_err(ApiError::invalid)?;
    for filter in &resource.filter_by {
        crate::fanout::filter::check_supported(filter)
            .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, message))?;
    }
    Ok(resource)
}

/// `requested` means "please start": a websocket subscription needs nothing more, so it
/// is `active` at once. Any other status, or channel, stays as it is.
fn initial_status(resource: &Subscription, status: SubscriptionState) -> SubscriptionState {
    if status == SubscriptionState::Requested && resource.is_websocket() { SubscriptionState::Active } else { status }
}

/// The status an update may leave: the current one, or one the client may choose.
fn next_status(current: SubscriptionState, asked: Option<SubscriptionState>) -> Result<SubscriptionState, ApiError> {
    match asked {
        None => Err(ApiError::invalid("Subscription.status is required")),
        Some(status) if status == current => Ok(status),
        Some(status @ (SubscriptionState::Requested | SubscriptionState::Off | SubscriptionState::EnteredInError)) => {
            Ok(status)
        }
        Some(status) => Err(ApiError::business_rule(format!(
            "status '{}' is set by the server; a client may set requested, off or entered-in-error",
            status.code()
        ))),
    }
}

/// The version named by an `If-Match: W/"n"` header, if there is one.
fn if_match_version(request: &Request) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse().map(Some).map_err(|_| ApiError::invalid(format!("If-Match must be W/\"<version>\", not '{text}'")))
}

/// The resource as seen at `now`, with its `ETag` and `Last-Modified` headers.
fn resource_response(status: StatusCode, stored: &StoredSubscription, now: DateTime<Utc>) -> Response<Body> {
    let mut response = fhir_response(status, &stored.resource_at(now));
    set_header(&mut response, header::ETAG, &format!("W/\"{}\"", stored.version()));
    set_header(
        &mut response,
        header::LAST_MODIFIED,
        &stored.last_updated().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    );
    response
}
