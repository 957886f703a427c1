//! The Subscription REST API: create, read, update, delete and search the caller's
//! own Subscriptions.
//!
//! - `POST /Subscription` — server assigns the id. A websocket subscription is `active`
//!   at once, as the spec's websocket flow has it (there is no endpoint to handshake
//!   with); other channel types, which this server stores but does not deliver, stay
//!   `requested`.
//! - `GET /Subscription/{id}`, `PUT /Subscription/{id}` (optional `If-Match: W/"n"`),
//!   `DELETE /Subscription/{id}`.
//! - `GET /Subscription[?status=a,b][&topic=…][&url=…]` — a `searchset` Bundle of the
//!   caller's subscriptions: `status` (token, values OR-ed), `topic` (the topic canonical,
//!   `criteria` in R4/R4B) and `url` (the channel endpoint), both uri parameters matched
//!   exactly, as the Backport IG's CapabilityStatements ask. Other parameters are ignored
//!   and left out of the `self` link, which shows what was applied.
//!
//! Every request speaks one FHIR version ([`crate::http::request_version`]): R5 at the
//! unversioned or `/R5` base, R4 and R4B (Backport IG profile, read and written by
//! [`crate::fhir::backport`]) at `/R4` and `/R4B`. A subscription keeps the version it was
//! created in, and is read, updated, deleted and found only at that version's base.
//!
//! With SubscriptionTopics deployed ([`crate::topics`]), a Subscription to a topic not
//! among them, or with a `filterBy` its topic does not allow, is refused with 422.
//!
//! Deleting a subscription, or setting it to `off` or `entered-in-error`, removes its
//! bindings and tells (or closes) their connections ([`crate::revocation`]).
//!
//! Someone else's subscription answers exactly like a missing one (404). A client may
//! set `status` to `requested`, `off` or `entered-in-error`, or leave it as it is;
//! `active` and `error` are the server's to set (a websocket subscription set back to
//! `requested` is active again at once). Once `Subscription.end` has passed, every
//! answer shows status `off`.

use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt as _, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::config::SubscriptionApiConfig;
use crate::fhir::backport::{read_subscription, render_subscription};
use crate::fhir::version::FhirVersion;
use crate::fhir::{Bundle, BundleEntry, BundleLink, BundleSearch, IssueType, Subscription, SubscriptionState, new_id};
use crate::http::{
    ApiError, FhirPath, IdentityConfig, empty_response, fhir_path, fhir_response, json_body, request_version,
    set_header,
};
use std::sync::Arc;

use crate::fhir::ContentLevel;
use crate::revocation::{Reason, Revocation};
use crate::smart::subscription::{KeptGrant, admit};
use crate::smart::{Grant, Permission};
use crate::store::{StoredSubscription, SubscriptionStore};
use crate::topics::TopicRegistry;

/// The API over a subscriptions store; built once per Lambda instance.
#[derive(Debug)]
pub struct SubscriptionApi<S> {
    subscriptions: S,
    identity: IdentityConfig,
    topics: TopicRegistry,
    revocation: Arc<dyn Revocation>,
    max_content: ContentLevel,
}

impl<S: SubscriptionStore> SubscriptionApi<S> {
    /// The API over `subscriptions`, configured by `config`; `revocation` takes bindings
    /// away when a subscription is deleted or ends.
    pub fn new(subscriptions: S, revocation: Arc<dyn Revocation>, config: &SubscriptionApiConfig) -> Self {
        Self {
            subscriptions,
            identity: config.identity.clone(),
            topics: config.topics.clone(),
            revocation,
            max_content: config.max_content,
        }
    }

    /// Answers one request at time `now`. Never fails: errors become `OperationOutcome`s.
    pub async fn handle(&self, request: &Request, now: DateTime<Utc>) -> Response<Body> {
        self.respond(request, now).await.unwrap_or_else(ApiError::into_response)
    }

    async fn respond(&self, request: &Request, now: DateTime<Utc>) -> Result<Response<Body>, ApiError> {
        let path = fhir_path(request)?;
        let version = request_version(request)?;
        let method = request.method().clone();
        match path.rest.as_slice() {
            [] => {
                if method != Method::GET && method != Method::POST {
                    return Err(ApiError::method_not_allowed(method.as_str(), "GET, POST"));
                }
                let owner = self.identity.caller(request)?;
                if method == Method::POST {
                    let grant = self.identity.authorize(request, Permission::Create)?;
                    self.create(request, &path, version, (&owner, grant.as_ref()), now).await
                } else {
                    self.identity.authorize(request, Permission::Search)?;
                    self.search(request, &path, version, &owner, now).await
                }
            }
            [id] => {
                if method != Method::GET && method != Method::PUT && method != Method::DELETE {
                    return Err(ApiError::method_not_allowed(method.as_str(), "GET, PUT, DELETE"));
                }
                let owner = self.identity.caller(request)?;
                let needed = match method {
                    Method::GET => Permission::Read,
                    Method::PUT => Permission::Update,
                    _ => Permission::Delete,
                };
                let grant = self.identity.authorize(request, needed)?;
                let current = self.owned(id, &owner, version).await?;
                match method {
                    Method::GET => resource_response(StatusCode::OK, &current, now),
                    Method::PUT => self.update(request, current, grant.as_ref(), now).await,
                    _ => {
                        self.subscriptions.delete(id).await?;
                        self.take_bindings_away(id, Reason::SubscriptionDeleted(id.clone())).await;
                        Ok(empty_response(StatusCode::NO_CONTENT))
                    }
                }
            }
            _ => Err(ApiError::not_found(format!("no route for {}", request.uri().path()))),
        }
    }

    /// The subscription if it exists and belongs to `owner`; 404 (same answer) otherwise.
    async fn owned(&self, id: &str, owner: &str, version: FhirVersion) -> Result<StoredSubscription, ApiError> {
        super::owned(&self.subscriptions, id, owner, version).await
    }

    async fn create(
        &self,
        request: &Request,
        path: &FhirPath,
        version: FhirVersion,
        (owner, grant): (&str, Option<&Grant>),
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let mut resource = subscription_body(request, version)?;
        self.check_topic(&resource)?;
        let kept = self.admit(&resource, grant)?;
        resource.id = Some(new_id());
        resource.status = Some(initial_status(&resource, SubscriptionState::Requested));
        let route = self.topics.route_of(&resource);
        let stored =
            StoredSubscription::new(owner, 1, now, resource).in_fhir_version(version).with_grant(kept).routed(route);
        self.subscriptions.insert(&stored).await?;
        let mut response = resource_response(StatusCode::CREATED, &stored, now)?;
        let location = format!("{}/Subscription/{}/_history/1", path.base, stored.id());
        set_header(&mut response, header::LOCATION, &location);
        Ok(response)
    }

    /// With topics deployed, the topic must be one of them and allow the filters (422);
    /// without, filters must be the element-name equality this server then evaluates (400).
    /// The deployment's content cap (422), and in `smart` mode what the caller's grant
    /// allows (403, [`crate::smart::subscription::admit`]); the grant to keep with it.
    fn admit(&self, resource: &Subscription, grant: Option<&Grant>) -> Result<Option<KeptGrant>, ApiError> {
        let level = resource.content.unwrap_or(ContentLevel::IdOnly);
        if level > self.max_content {
            return Err(ApiError::business_rule(format!(
                "this server sends at most '{}' notifications (MaxNotificationContent); ask for that or less",
                self.max_content.code()
            )));
        }
        grant.map(|grant| admit(grant, resource, &self.topics).map_err(ApiError::forbidden)).transpose()
    }

    fn check_topic(&self, resource: &Subscription) -> Result<(), ApiError> {
        if !self.topics.is_empty() {
            return self.topics.check(resource).map_err(ApiError::business_rule);
        }
        for filter in &resource.filter_by {
            crate::fanout::filter::check_supported(filter)
                .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, IssueType::NotSupported, message))?;
        }
        Ok(())
    }

    async fn update(
        &self,
        request: &Request,
        current: StoredSubscription,
        grant: Option<&Grant>,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let mut resource = subscription_body(request, current.fhir_version())?;
        self.check_topic(&resource)?;
        let kept = self.admit(&resource, grant)?;
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
        let before = current.status_at(now);
        let status = next_status(before, resource.status)?;
        resource.status = Some(initial_status(&resource, status));
        let route = self.topics.route_of(&resource);
        let mut updated = current.next_version(resource, now).routed(route);
        if grant.is_some() {
            updated = updated.with_grant(kept);
        }
        self.subscriptions.replace(&updated, current.version()).await?;
        let ended = matches!(status, SubscriptionState::Off | SubscriptionState::EnteredInError);
        if ended && status != before {
            let code =
                serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            self.take_bindings_away(updated.id(), Reason::SubscriptionEnded(updated.id().to_owned(), code)).await;
        }
        resource_response(StatusCode::OK, &updated, now)
    }

    /// Removes the bindings of a subscription that ended. The change itself is already
    /// stored, so a failure here is logged, not answered: nothing is delivered to an
    /// ended subscription anyway, and its bindings expire with their tokens.
    async fn take_bindings_away(&self, id: &str, reason: Reason) {
        if let Err(error) = self.revocation.subscription_ended(id, reason).await {
            tracing::warn!(%error, subscription = id, "bindings of an ended subscription not removed");
        }
    }

    async fn search(
        &self,
        request: &Request,
        path: &FhirPath,
        version: FhirVersion,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, ApiError> {
        let criteria = SearchCriteria::read(request)?;
        let found: Vec<StoredSubscription> = self
            .subscriptions
            .list_by_owner(owner)
            .await?
            .into_iter()
            .filter(|s| s.fhir_version() == version && criteria.matches(s, now))
            .collect();
        let mut bundle = Bundle::new("searchset");
        bundle.total = Some(found.len() as u64);
        bundle.link.push(BundleLink { relation: "self".to_owned(), url: criteria.self_url(&path.base) });
        for stored in &found {
            let resource =
                render_subscription(version, &stored.resource_at(now)).map_err(|e| ApiError::internal(&e))?;
            bundle.entry.push(BundleEntry {
                full_url: Some(format!("{}/Subscription/{}", path.base, stored.id())),
                resource: Some(resource),
                search: Some(BundleSearch { mode: "match".to_owned() }),
            });
        }
        Ok(fhir_response(StatusCode::OK, &bundle))
    }
}

/// The search parameters applied: each list is OR-ed, the lists are AND-ed.
#[derive(Debug, Default)]
struct SearchCriteria {
    statuses: Vec<SubscriptionState>,
    topics: Vec<String>,
    urls: Vec<String>,
}

impl SearchCriteria {
    fn read(request: &Request) -> Result<Self, ApiError> {
        let query = request.query_string_parameters();
        let mut criteria = Self::default();
        for (name, _) in query.iter() {
            if let Some((parameter, modifier)) = name.split_once(':')
                && ["status", "topic", "url"].contains(&parameter)
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::NotSupported,
                    format!("the modifier ':{modifier}' is not supported on '{parameter}'"),
                ));
            }
        }
        let values = |name: &str| -> Vec<String> {
            query
                .all(name)
                .unwrap_or_default()
                .iter()
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for code in values("status") {
            let status = SubscriptionState::from_code(&code)
                .ok_or_else(|| ApiError::invalid(format!("'{code}' is not a Subscription status")))?;
            criteria.statuses.push(status);
        }
        criteria.topics = values("topic");
        criteria.urls = values("url");
        Ok(criteria)
    }

    fn matches(&self, stored: &StoredSubscription, now: DateTime<Utc>) -> bool {
        let resource = stored.resource();
        let any =
            |wanted: &[String], value: Option<&String>| wanted.is_empty() || value.is_some_and(|v| wanted.contains(v));
        (self.statuses.is_empty() || self.statuses.contains(&stored.status_at(now)))
            && any(&self.topics, resource.topic.as_ref())
            && any(&self.urls, resource.endpoint.as_ref())
    }

    /// The search as applied, for the `self` link.
    fn self_url(&self, base: &str) -> String {
        let mut applied: Vec<String> = Vec::new();
        if !self.statuses.is_empty() {
            let codes: Vec<&str> = self.statuses.iter().map(|s| s.code()).collect();
            applied.push(format!("status={}", codes.join(",")));
        }
        for (name, values) in [("topic", &self.topics), ("url", &self.urls)] {
            if !values.is_empty() {
                let encoded: Vec<String> =
                    values.iter().map(|v| utf8_percent_encode(v, QUERY_VALUE).to_string()).collect();
                applied.push(format!("{name}={}", encoded.join(",")));
            }
        }
        let query = if applied.is_empty() { String::new() } else { format!("?{}", applied.join("&")) };
        format!("{base}/Subscription{query}")
    }
}

/// What a search value must escape in the `self` link.
const QUERY_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'&').add(b'=').add(b'#').add(b'%').add(b'+').add(b',');

/// Reads and validates a Subscription body in `version`'s shape (required for POST and PUT).
fn subscription_body(request: &Request, version: FhirVersion) -> Result<Subscription, ApiError> {
    let body: serde_json::Value =
        json_body(request)?.ok_or_else(|| ApiError::invalid("a Subscription resource is required in the body"))?;
    let resource = read_subscription(version, body).map_err(ApiError::invalid)?;
    resource.validate().map_err(ApiError::invalid)?;
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

/// The resource as seen at `now`, in its FHIR version, with its `ETag` and
/// `Last-Modified` headers.
fn resource_response(
    status: StatusCode,
    stored: &StoredSubscription,
    now: DateTime<Utc>,
) -> Result<Response<Body>, ApiError> {
    let resource =
        render_subscription(stored.fhir_version(), &stored.resource_at(now)).map_err(|e| ApiError::internal(&e))?;
    let mut response = fhir_response(status, &resource);
    set_header(&mut response, header::ETAG, &format!("W/\"{}\"", stored.version()));
    set_header(
        &mut response,
        header::LAST_MODIFIED,
        &stored.last_updated().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    );
    Ok(response)
}
