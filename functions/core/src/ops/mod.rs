//! The handlers behind each HTTP API function: request in, response out.
//!
//! Each takes an `http::Request` as `lambda_http` builds it from an API Gateway HTTP API
//! (payload 2.0) event, and the current time, so the Lambda binaries, the local stack
//! and the tests all drive exactly the same code.
//!
//! - [`subscription_api`] — Subscription create, read, update, delete, search.
//! - [`queries`] — `$status` and `$events`.
//! - [`capability`] — `GET [base]/metadata`.
//! - [`topic_discovery`] — `GET [base]/SubscriptionTopic[/{id}]`.
//! - [`binding_token`] — `$get-ws-binding-token` (its own function).
//! - [`SubscriptionService`] — the `subscription-api` function: routes to all but the
//!   token operation.

pub mod binding_token;
pub mod capability;
pub mod queries;
pub mod subscription_api;
pub mod topic_discovery;

use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};

use crate::config::SubscriptionApiConfig;
use crate::fhir::is_valid_id;
use crate::fhir::version::FhirVersion;
use crate::http::ApiError;
use crate::store::{CounterStore, EventStore, StoredSubscription, SubscriptionStore};
use queries::SubscriptionQueries;
use subscription_api::SubscriptionApi;

/// The subscription `id` if it exists, belongs to `owner` and was created in `version`;
/// otherwise 404, the same answer for a missing subscription and for someone else's. Its
/// owner asking at another version's base is told where it lives.
async fn owned<S: SubscriptionStore>(
    subscriptions: &S,
    id: &str,
    owner: &str,
    version: FhirVersion,
) -> Result<StoredSubscription, ApiError> {
    let not_found = || ApiError::not_found(format!("Subscription/{id} is not known"));
    if !is_valid_id(id) {
        return Err(not_found());
    }
    let found = subscriptions.get(id).await?.filter(|s| s.owner() == owner).ok_or_else(not_found)?;
    if found.fhir_version() != version {
        let home = found.fhir_version();
        return Err(ApiError::not_found(format!(
            "Subscription/{id} was created in FHIR {}: it is served at the /{} base, not in FHIR {}",
            home.path_segment(),
            home.path_segment(),
            version.path_segment()
        )));
    }
    Ok(found)
}

/// Which handler of the `subscription-api` function a request path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `…/metadata`.
    Metadata,
    /// `…/$status` or `…/$events`.
    Query,
    /// Anything else under `Subscription`.
    Subscription,
    /// `…/SubscriptionTopic[/{id}]`.
    Topic,
}

impl Route {
    /// Routes by the last path segment (percent-encoded `$` accepted); `metadata` only
    /// outside `Subscription` (so no id can ever shadow it).
    pub fn of(path: &str) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let last = segments.last().map(|s| s.replace("%24", "$")).unwrap_or_default();
        if segments.contains(&topic_discovery::SUBSCRIPTION_TOPIC) && !segments.contains(&"Subscription") {
            return Self::Topic;
        }
        match last.as_str() {
            capability::METADATA if !segments.contains(&"Subscription") => Self::Metadata,
            queries::STATUS | queries::EVENTS => Self::Query,
            _ => Self::Subscription,
        }
    }
}

/// The `subscription-api` function: the Subscription API, `$status`, `$events` and
/// `metadata`; built once per Lambda instance.
#[derive(Debug)]
pub struct SubscriptionService<S, C, E> {
    api: SubscriptionApi<S>,
    queries: SubscriptionQueries<S, C, E>,
    websocket_url: String,
    topics: crate::topics::TopicRegistry,
    identity: crate::http::IdentityConfig,
}

impl<S: SubscriptionStore + Clone, C: CounterStore, E: EventStore> SubscriptionService<S, C, E> {
    /// The service over these stores, configured by `config`; `revocation` takes bindings
    /// away when a subscription ends.
    pub fn new(
        subscriptions: S,
        counters: C,
        events: E,
        revocation: std::sync::Arc<dyn crate::revocation::Revocation>,
        config: &SubscriptionApiConfig,
    ) -> Self {
        Self {
            api: SubscriptionApi::new(subscriptions.clone(), revocation, config),
            queries: SubscriptionQueries::new(subscriptions, counters, events, config.identity.clone()),
            websocket_url: config.websocket_url.clone(),
            topics: config.topics.clone(),
            identity: config.identity.clone(),
        }
    }

    /// Answers one request at time `now`. Never fails: errors become `OperationOutcome`s.
    pub async fn handle(&self, request: &Request, now: DateTime<Utc>) -> Response<Body> {
        match Route::of(request.uri().path()) {
            Route::Metadata => capability::handle(request, &self.websocket_url, &self.topics, self.identity.mode),
            Route::Topic => topic_discovery::handle(request, &self.topics, &self.identity),
            Route::Query => self.queries.handle(request, now).await,
            Route::Subscription => self.api.handle(request, now).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_the_last_segment() {
        assert_eq!(Route::of("/metadata"), Route::Metadata);
        assert_eq!(Route::of("/fhir/metadata/"), Route::Metadata);
        assert_eq!(Route::of("/Subscription/$status"), Route::Query);
        assert_eq!(Route::of("/Subscription/abc/%24events"), Route::Query);
        assert_eq!(Route::of("/Subscription/abc"), Route::Subscription);
        assert_eq!(Route::of("/Subscription"), Route::Subscription);
        assert_eq!(Route::of("/Subscription/metadata"), Route::Subscription, "an id, not the statement");
        assert_eq!(Route::of("/SubscriptionTopic"), Route::Topic);
        assert_eq!(Route::of("/R4/SubscriptionTopic/encounter-complete"), Route::Topic);
    }
}
