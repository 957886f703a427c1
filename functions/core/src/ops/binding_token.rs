//! `Subscription/$get-ws-binding-token`, type and instance level, POST and GET.
//!
//! Spec: FHIR 6.0.0 OperationDefinition `Subscription-get-ws-binding-token`
//! (`../shared/spec/`). In: `id` 0..* (type level only; ignored at instance level).
//! Out: `token` 1..1, `expiration` 1..1, `subscription` 0..*, `websocket-url` 1..1.
//! With no ids the token covers every `active` or `requested` websocket subscription of
//! the caller (404 if there are none). GET is accepted as well as POST (`?id=a&id=b` at
//! type level) because R4/R4B backport clients call the operation with GET.
//!
//! The Backport IG's `backport-subscription-get-ws-binding-token` has the same parameters
//! and output in R4 and R4B, so one answer serves every base. Without ids, the token
//! covers the caller's subscriptions of the request's FHIR version; named ids may be of
//! any version, so that one socket can carry R4, R4B and R5 subscriptions together (each
//! frame in its subscription's version).
//!
//! `Subscription/$revoke-ws-binding-token` (this server's own operation, POST at type
//! level, every base): in, `token` 1..1 (valueString), a token issued to the caller; out,
//! `revoked` (valueBoolean, true), `bindings-removed` and `connections-closed`
//! (valueInteger). The token can never bind again; every binding it made is removed, and
//! its connections are told why and closed when nothing is left on them
//! ([`crate::revocation`]). Revoking twice is harmless; an expired token answers
//! `revoked` false (it binds nothing any more); someone else's token answers 403.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt as _, Response};

use crate::access::bindable;
use crate::config::BindingTokenConfig;
use crate::fhir::version::FhirVersion;
use std::sync::Arc;

use crate::fhir::{IssueType, Parameter, Parameters, SubscriptionState, is_valid_id, new_id};
use crate::http::{
    ApiError, IGNORED_QUERY_PARAMETERS, IdentityConfig, fhir_path, fhir_response, json_body, request_version,
};
use crate::revocation::{Removed, Revocation};
use crate::smart::{Grant, Permission};
use crate::store::{SubscriptionStore, TokenRecord, TokenStore};
use crate::token::{DecodeError, KeyRing, TokenClaims, decode, sign};

/// The operation's path segment.
pub const OPERATION: &str = "$get-ws-binding-token";
/// The revocation operation's path segment.
pub const REVOKE_OPERATION: &str = "$revoke-ws-binding-token";
/// Most subscriptions one token may cover; keeps tokens short enough for a query string.
pub const MAX_SUBSCRIPTIONS_PER_TOKEN: usize = 100;

/// The operation with its stores and settings; built once per Lambda instance.
#[derive(Debug)]
pub struct BindingTokenOperation<S, T> {
    subscriptions: S,
    tokens: T,
    keys: KeyRing,
    websocket_url: String,
    token_lifetime: TimeDelta,
    identity: IdentityConfig,
    revocation: Arc<dyn Revocation>,
}

/// Which URL was called.
enum Level {
    Type,
    Instance(String),
    Revoke,
}

impl<S: SubscriptionStore, T: TokenStore> BindingTokenOperation<S, T> {
    /// The operations over these stores, configured by `config`; `revocation` takes
    /// bindings away when a token is revoked.
    pub fn new(subscriptions: S, tokens: T, revocation: Arc<dyn Revocation>, config: &BindingTokenConfig) -> Self {
        Self {
            subscriptions,
            tokens,
            keys: config.keys.clone(),
            websocket_url: config.websocket_url.clone(),
            token_lifetime: config.token_lifetime,
            identity: config.identity.clone(),
            revocation,
        }
    }

    /// Answers one request at time `now`. Never fails: errors become `OperationOutcome`s.
    pub async fn handle(&self, request: &Request, now: DateTime<Utc>) -> Response<Body> {
        match self.respond(request, now).await {
            Ok(parameters) => fhir_response(StatusCode::OK, &parameters),
            Err(error) => error.into_response(),
        }
    }

    async fn respond(&self, request: &Request, now: DateTime<Utc>) -> Result<Parameters, ApiError> {
        let level = route(request)?;
        let method = request.method();
        if matches!(level, Level::Revoke) && method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str(), "POST"));
        }
        if method != Method::GET && method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str(), "GET, POST"));
        }
        let version = request_version(request)?;
        let owner = self.identity.caller(request)?;
        // Tokens for the caller's subscriptions at type level search them; the rest read one.
        let grant = self
            .identity
            .authorize(request, if matches!(level, Level::Type) { Permission::Search } else { Permission::Read })?;
        let requested_ids = match level {
            Level::Revoke => return self.revoke(request, &owner, now).await,
            Level::Instance(id) => {
                // The body may be empty or a Parameters resource; its ids are ignored
                // at instance level, as the definition says, but it must still be valid.
                if method == Method::POST {
                    body_parameters(request, "id")?;
                }
                vec![id]
            }
            Level::Type if method == Method::POST => ids_from_body(request)?,
            Level::Type => ids_from_query(request)?,
        };
        let subscription_ids = self.bindable_ids(&owner, version, requested_ids, now).await?;
        self.issue(owner, subscription_ids, grant.as_ref(), now).await
    }

    /// Checks each requested id, or picks all usable ones of `version` when none were named.
    async fn bindable_ids(
        &self,
        owner: &str,
        version: FhirVersion,
        requested: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ApiError> {
        if requested.is_empty() {
            let ids: Vec<String> = self
                .subscriptions
                .list_by_owner(owner)
                .await?
                .into_iter()
                .filter(|s| s.fhir_version() == version && s.resource().is_websocket())
                .filter(|s| matches!(s.status_at(now), SubscriptionState::Active | SubscriptionState::Requested))
                .map(|s| s.id().to_owned())
                .collect();
            if ids.is_empty() {
                return Err(ApiError::not_found(format!(
                    "the caller has no active or requested FHIR {} websocket subscriptions",
                    version.path_segment()
                )));
            }
            check_count(ids.len())?;
            return Ok(ids);
        }
        let mut unique: Vec<String> = Vec::with_capacity(requested.len());
        for id in requested {
            if !is_valid_id(&id) {
                return Err(ApiError::invalid(format!("'{id}' is not a valid FHIR id")));
            }
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        check_count(unique.len())?;
        for id in &unique {
            let found = self.subscriptions.get(id).await?;
            bindable(id, found, owner, now)?;
        }
        Ok(unique)
    }

    /// `$revoke-ws-binding-token`: marks the caller's token revoked and takes away what
    /// it bound.
    async fn revoke(&self, request: &Request, owner: &str, now: DateTime<Utc>) -> Result<Parameters, ApiError> {
        let parameters = body_parameters(request, "token")?
            .ok_or_else(|| ApiError::invalid("a Parameters resource with 'token' is required"))?;
        let mut tokens = parameters.named("token");
        let (Some(token), None) = (tokens.next(), tokens.next()) else {
            return Err(ApiError::invalid("exactly one 'token' parameter is required"));
        };
        let token =
            token.string_value("valueString").ok_or_else(|| ApiError::invalid("'token' must carry a valueString"))?;
        let answer = |revoked: bool, removed: Removed| {
            Parameters::default()
                .with(Parameter::json("revoked", "valueBoolean", revoked.into()))
                .with(Parameter::json("bindings-removed", "valueInteger", removed.bindings.into()))
                .with(Parameter::json("connections-closed", "valueInteger", removed.connections_closed.into()))
        };
        self.keys.refresh_for(token).await;
        let claims = match decode(token, &self.keys, now) {
            Ok(claims) => claims,
            // Expired: it binds nothing any more, and its bindings ended with it.
            Err(DecodeError::Expired) => return Ok(answer(false, Removed::default())),
            Err(error) => return Err(ApiError::invalid(format!("'token' is not a token of this server: {error}"))),
        };
        if claims.owner != owner {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                IssueType::Forbidden,
                "only the token's owner may revoke it",
            ));
        }
        if !self.tokens.revoke_token(&claims.token_id).await? {
            return Err(ApiError::not_found("the token was not issued by this server"));
        }
        let removed = self.revocation.token_revoked(&claims.token_id, &claims.subscription_ids).await?;
        Ok(answer(true, removed))
    }

    /// Signs a token, records it with its TTL, and builds the output parameters. In
    /// `smart` mode the token keeps a snapshot of the caller's `grant` (every binding it
    /// makes carries it, and each frame is checked against it) and expires no later than
    /// the access token it was asked for with.
    async fn issue(
        &self,
        owner: String,
        subscription_ids: Vec<String>,
        grant: Option<&Grant>,
        now: DateTime<Utc>,
    ) -> Result<Parameters, ApiError> {
        let lifetime_end = (now + self.token_lifetime).timestamp();
        let access_end = grant.and_then(|g| g.expires_at).unwrap_or(lifetime_end);
        let claims = TokenClaims {
            token_id: new_id(),
            owner,
            subscription_ids,
            issued_at: now.timestamp(),
            expires_at: lifetime_end.min(access_end),
        };
        self.keys.refresh_for_signing().await;
        let token = sign(&claims, &self.keys);
        let record = TokenRecord {
            token_id: claims.token_id.clone(),
            owner: claims.owner.clone(),
            subscription_ids: claims.subscription_ids.clone(),
            // The key that signed this token (the ring may be re-read at any moment).
            key_id: token.split('.').nth(1).unwrap_or_default().to_owned(),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
            revoked: false,
            grant: grant.map(Grant::kept),
        };
        self.tokens.put_token(&record).await?;
        let expiration = claims.expiry().to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut parameters = Parameters::default()
            .with(Parameter::primitive("token", "valueString", token))
            .with(Parameter::primitive("expiration", "valueDateTime", expiration));
        for id in &claims.subscription_ids {
            parameters = parameters.with(Parameter::primitive("subscription", "valueString", id.clone()));
        }
        Ok(parameters.with(Parameter::primitive("websocket-url", "valueUrl", self.websocket_url.clone())))
    }
}

fn check_count(count: usize) -> Result<(), ApiError> {
    if count > MAX_SUBSCRIPTIONS_PER_TOKEN {
        return Err(ApiError::too_large(format!(
            "a token can cover at most {MAX_SUBSCRIPTIONS_PER_TOKEN} subscriptions; {count} were asked for"
        )));
    }
    Ok(())
}

fn route(request: &Request) -> Result<Level, ApiError> {
    let path = fhir_path(request)?;
    match path.rest.as_slice() {
        [operation] if operation == OPERATION => Ok(Level::Type),
        [operation] if operation == REVOKE_OPERATION => Ok(Level::Revoke),
        [id, operation] if operation == OPERATION => Ok(Level::Instance(id.clone())),
        _ => Err(ApiError::not_found(format!("no route for {}", request.uri().path()))),
    }
}

/// The body as `Parameters` (or `None` when empty), whose parameters must all be called
/// `name` (the one input each operation takes).
fn body_parameters(request: &Request, name: &str) -> Result<Option<Parameters>, ApiError> {
    let parameters: Option<Parameters> = json_body(request)?;
    if let Some(parameters) = &parameters {
        if parameters.resource_type != "Parameters" {
            return Err(ApiError::invalid(format!(
                "the body must be a Parameters resource, not {}",
                parameters.resource_type
            )));
        }
        if let Some(unknown) = parameters.parameter.iter().find(|p| p.name != name) {
            return Err(ApiError::invalid(format!(
                "unknown parameter '{}'; this operation takes only '{name}'",
                unknown.name
            )));
        }
    }
    Ok(parameters)
}

fn ids_from_body(request: &Request) -> Result<Vec<String>, ApiError> {
    let Some(parameters) = body_parameters(request, "id")? else {
        return Ok(Vec::new());
    };
    parameters
        .named("id")
        .map(|p| {
            p.string_value("valueId")
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid("each 'id' parameter must carry a valueId"))
        })
        .collect()
}

fn ids_from_query(request: &Request) -> Result<Vec<String>, ApiError> {
    let query = request.query_string_parameters();
    let mut ids = Vec::new();
    for (name, _) in query.iter() {
        if name != "id" && !IGNORED_QUERY_PARAMETERS.contains(&name) {
            return Err(ApiError::invalid(format!("unknown parameter '{name}'; this operation takes only 'id'")));
        }
    }
    for value in query.all("id").unwrap_or_default() {
        ids.push(value.to_owned());
    }
    Ok(ids)
}
