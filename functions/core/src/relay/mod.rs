//! The relay: notifications from another FHIR server become events here.
//!
//! An upstream server (AWS HealthLake, HAPI FHIR / Smile CDR, fhir-candle, any Backport IG
//! server) has a rest-hook Subscription per topic whose endpoint is `POST [base]/relay`.
//! Each notification Bundle it sends (R4, R4B or R5; `empty`, `id-only` or
//! `full-resource`: [`upstream`]) is taken apart here:
//!
//! - every notification, handshakes and heartbeats included, is logged and counted as
//!   the upstream subscription having been heard from, with the time kept in the upstream
//!   table;
//! - a jump in the upstream's event numbers (the first event after number `n` is not
//!   `n + 1`, or a heartbeat says more events happened than arrived) is logged as a
//!   warning and counted (metric `UpstreamGap`, the number of events missed);
//! - each event of an `event-notification` becomes one fan-out event
//!   ([`crate::fanout::event`]): the upstream `topic` (or the relay URL's `topic`
//!   parameter, for `empty` notifications that leave it out), the focus and additional
//!   context (the resources when the Bundle carried them, else the references), the
//!   upstream timestamp, `eventId` `upstream-<key>-<number>`, and `fhirVersion`: the
//!   version of the Bundle's shape, which is the version of the resources it carries;
//! - an event already queued (an upstream retry) is not queued again: each upstream
//!   event is claimed in the upstream table before queueing and confirmed after, so it is
//!   delivered once per number here. A claim not confirmed within
//!   [`crate::store::UPSTREAM_CLAIM_SECONDS`] (a relay that died in between) may be taken
//!   again, so nothing is lost.
//!
//! The HTTP handler ([`RelayHandler`]) answers 200 only after the events are durably
//! queued ([`EventQueue`]); 401 for a missing or wrong secret, 400 for anything that is
//! not a notification Bundle, 413 for a body over [`MAX_RELAY_BODY_BYTES`], 503 when the
//! queue or the table fails (upstream servers retry), each an `OperationOutcome`, and in
//! every refusal nothing is queued.

pub mod secret;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod upstream;

use chrono::{DateTime, TimeDelta, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt as _, Response};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

use crate::fhir::Subject;
use crate::fhir::version::FhirVersion;
use crate::fhir::{IssueSeverity, IssueType, OperationOutcome};
use crate::http::{ApiError, fhir_response};
use crate::metrics::Metrics;
use crate::store::{StoreError, UpstreamStore};
pub use secret::RelaySecrets;
use upstream::{UpstreamNotification, read_notification};

/// Largest notification Bundle accepted, in bytes (1 MiB).
pub const MAX_RELAY_BODY_BYTES: usize = 1024 * 1024;
/// Largest queued event (SQS takes 256 KiB per message); a larger one is queued with
/// references in place of its resources.
pub const MAX_QUEUED_EVENT_BYTES: usize = 256 * 1024;
/// The path segment of the relay endpoint.
pub const RELAY: &str = "relay";

/// Why a queue refused events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the events queue failed: {0}")]
pub struct QueueError(pub String);

/// The events queue the fan-out reads (SQS in AWS, the fan-out itself locally).
pub trait EventQueue: Send + Sync {
    /// Queues each body as one message; succeeds only when all are durably queued.
    fn enqueue(&self, bodies: &[String]) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Why a notification was not relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// It is not a notification we can use; retrying cannot help.
    #[error("{0}")]
    Invalid(String),
    /// The upstream table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// One upstream event claimed for delivery here.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    /// The upstream subscription's key in the upstream table.
    pub upstream: String,
    /// The upstream event number.
    pub number: u64,
    /// The fan-out event, as a queue message body.
    pub body: String,
}

/// The key of an upstream subscription in the upstream table (and in event ids): the
/// first 32 hex digits of the SHA-256 of its reference, so any reference fits a key.
pub fn upstream_key(reference: &str) -> String {
    sha2::Sha256::digest(reference.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What the relay and the fan-out share: turning upstream notifications into claimed
/// events, with the upstream table.
#[derive(Debug, Clone)]
pub struct Relay<U> {
    ledger: U,
    /// How long claims are remembered (the event retention: a retry after that is new).
    retention: TimeDelta,
}

impl<U: UpstreamStore> Relay<U> {
    /// A relay keeping its ledger in `ledger` for `retention`.
    pub fn new(ledger: U, retention: TimeDelta) -> Self {
        Self { ledger, retention }
    }

    /// Takes a notification in: records it heard from, counts gaps, and claims each of
    /// its events not claimed before; `topic` stands in for a notification without one.
    pub async fn claim(
        &self,
        notification: &UpstreamNotification,
        topic: Option<&str>,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<Vec<ClaimedEvent>, RelayError> {
        let key = upstream_key(&notification.subscription);
        let is_event = notification.kind == "event-notification";
        let topic = match (&notification.topic, topic) {
            (Some(sent), Some(given)) if sent != given => {
                return Err(RelayError::Invalid(format!(
                    "the notification's topic '{sent}' is not the relay URL's topic '{given}'"
                )));
            }
            (Some(sent), _) => Some(sent.as_str()),
            (None, given) => given,
        };
        let topic = match topic {
            Some(topic) => {
                crate::limits::within("the topic", topic, crate::limits::MAX_TOPIC_BYTES)
                    .map_err(RelayError::Invalid)?;
                topic
            }
            None if is_event => {
                return Err(RelayError::Invalid(
                    "the notification names no topic: add ?topic=<canonical> to the relay URL upstream".to_owned(),
                ));
            }
            None => "",
        };
        let first = notification.events.iter().map(|e| e.number).min();
        let reached = notification.events.iter().map(|e| e.number).max().or(notification.events_since_start);
        let before = self.ledger.heard_from(&key, &notification.subscription, reached, now.timestamp()).await?;
        metrics.add("UpstreamHeard", 1);
        tracing::info!(
            upstream = notification.subscription,
            kind = notification.kind,
            version = notification.version.path_segment(),
            events = notification.events.len(),
            "upstream heard from"
        );
        let missed = match (before, first, notification.events_since_start) {
            // Saturating: event numbers are the upstream's, and may be anything.
            (Some(before), Some(first), _) if first > before.saturating_add(1) => first - before - 1,
            (Some(before), None, Some(count)) if count > before => count - before,
            _ => 0,
        };
        if missed > 0 {
            metrics.add("UpstreamGap", missed);
            tracing::warn!(
                upstream = notification.subscription,
                missed,
                last_heard = before,
                "upstream event numbers jumped: events were lost upstream or are still to come"
            );
        }
        if !is_event {
            return Ok(Vec::new());
        }
        let expires_at = (now + self.retention).timestamp();
        let mut claimed = Vec::new();
        for event in &notification.events {
            let fresh = match self.ledger.claim_event(&key, event.number, now.timestamp(), expires_at).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    // Nothing is queued: free what this call claimed, for the upstream's retry.
                    self.release(&claimed).await;
                    return Err(error.into());
                }
            };
            if !fresh {
                metrics.add("UpstreamDuplicate", 1);
                continue;
            }
            let body = queued_event(topic, &key, notification.version, event);
            claimed.push(ClaimedEvent { upstream: key.clone(), number: event.number, body });
        }
        Ok(claimed)
    }

    /// The claimed events were delivered (or durably queued): never again.
    pub async fn confirm(&self, claimed: &[ClaimedEvent]) -> Result<(), StoreError> {
        for event in claimed {
            self.ledger.confirm_event(&event.upstream, event.number).await?;
        }
        Ok(())
    }

    /// The claimed events could not be delivered: free them for the upstream's retry.
    pub async fn release(&self, claimed: &[ClaimedEvent]) {
        for event in claimed {
            if let Err(error) = self.ledger.release_event(&event.upstream, event.number).await {
                // The claim then lapses after UPSTREAM_CLAIM_SECONDS instead.
                tracing::warn!(%error, upstream = event.upstream, number = event.number, "claim not released");
            }
        }
    }
}

/// A subject as the fan-out event contract writes it.
fn subject_json(subject: &Subject, with_resource: bool) -> Value {
    match subject {
        Subject::Resource(resource) if with_resource => Value::Object(resource.clone()),
        Subject::Entry { full_url, resource } if with_resource => json!({"fullUrl": full_url, "resource": resource}),
        Subject::Entry { full_url, .. } => json!({"reference": full_url}),
        Subject::Resource(resource) => {
            let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
            json!({"reference": format!("{kind}/{id}")})
        }
        Subject::Reference(reference) => json!({"reference": reference}),
    }
}

/// The fan-out event for one upstream event, whose resources are in FHIR `version`, with
/// its resources unless that makes the message larger than [`MAX_QUEUED_EVENT_BYTES`].
fn queued_event(topic: &str, key: &str, version: FhirVersion, event: &upstream::UpstreamEvent) -> String {
    let build = |with_resources: bool| {
        let mut body = Map::new();
        body.insert("topic".to_owned(), json!(topic));
        body.insert("fhirVersion".to_owned(), json!(version.path_segment()));
        if let Some(focus) = &event.focus {
            body.insert("focus".to_owned(), subject_json(focus, with_resources));
        }
        if !event.additional_context.is_empty() {
            let context: Vec<Value> =
                event.additional_context.iter().map(|s| subject_json(s, with_resources)).collect();
            body.insert("additionalContext".to_owned(), Value::Array(context));
        }
        // A timestamp the fan-out could not read would send the whole event to the
        // dead-letter queue; without it the fan-out uses the time it reads the event.
        if let Some(timestamp) = event.timestamp.as_deref().filter(|t| DateTime::parse_from_rfc3339(t).is_ok()) {
            body.insert("timestamp".to_owned(), json!(timestamp));
        }
        body.insert("eventId".to_owned(), json!(format!("upstream-{key}-{}", event.number)));
        Value::Object(body).to_string()
    };
    let full = build(true);
    if full.len() <= MAX_QUEUED_EVENT_BYTES { full } else { build(false) }
}

/// The relay endpoint: `POST [base]/relay[?topic=<canonical>]`, as the `relay` function.
#[derive(Debug)]
pub struct RelayHandler<U, Q> {
    relay: Relay<U>,
    queue: Q,
    secrets: RelaySecrets,
}

impl<U: UpstreamStore, Q: EventQueue> RelayHandler<U, Q> {
    /// The endpoint over this ledger and queue, accepting `secrets`.
    pub fn new(relay: Relay<U>, queue: Q, secrets: RelaySecrets) -> Self {
        Self { relay, queue, secrets }
    }

    /// Answers one request at `now`. Never fails: errors become `OperationOutcome`s.
    /// Emits one metrics line per request.
    pub async fn handle(&self, request: &Request, now: DateTime<Utc>) -> Response<Body> {
        let metrics = Metrics::new("relay");
        for name in ["UpstreamHeard", "UpstreamGap", "UpstreamDuplicate", "Queued", "Refused"] {
            metrics.add(name, 0);
        }
        let response = self.answer(request, now, &metrics).await;
        metrics.emit(now);
        response
    }

    /// [`Self::handle`], counting into `metrics` (which it does not emit).
    pub async fn answer(&self, request: &Request, now: DateTime<Utc>, metrics: &Metrics) -> Response<Body> {
        match self.respond(request, now, metrics).await {
            Ok(queued) => {
                metrics.add("Queued", queued as u64);
                let outcome = OperationOutcome::single(
                    IssueSeverity::Information,
                    IssueType::Informational,
                    format!("{queued} event(s) queued"),
                );
                fhir_response(StatusCode::OK, &outcome)
            }
            Err(error) => {
                metrics.add("Refused", 1);
                error.into_response()
            }
        }
    }

    async fn respond(&self, request: &Request, now: DateTime<Utc>, metrics: &Metrics) -> Result<usize, ApiError> {
        if request.method() != Method::POST {
            return Err(ApiError::method_not_allowed(request.method().as_str(), "POST"));
        }
        self.secrets.check(request).await?;
        let bytes: &[u8] = request.body().as_ref();
        if bytes.len() > MAX_RELAY_BODY_BYTES {
            return Err(ApiError::too_large(format!(
                "the notification is {} bytes; the limit is {MAX_RELAY_BODY_BYTES}",
                bytes.len()
            )));
        }
        let bundle: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::structure(format!("the body is not valid JSON: {e}")))?;
        crate::fhir::structure::check(&bundle)
            .map_err(|message| ApiError::structure(format!("the body is not valid FHIR JSON: {message}")))?;
        let notification = read_notification(&bundle).map_err(ApiError::invalid)?;
        let query = request.query_string_parameters();
        let claimed =
            self.relay.claim(&notification, query.first("topic"), now, metrics).await.map_err(|e| match e {
                RelayError::Invalid(message) => ApiError::invalid(message),
                RelayError::Store(error) => ApiError::from(error),
                RelayError::Queue(error) => ApiError::unavailable(error.to_string()),
            })?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let bodies: Vec<String> = claimed.iter().map(|c| c.body.clone()).collect();
        if let Err(error) = self.queue.enqueue(&bodies).await {
            tracing::warn!(%error, "relayed events not queued; the upstream will retry");
            self.relay.release(&claimed).await;
            return Err(ApiError::unavailable("the events could not be queued; retry later"));
        }
        self.relay.confirm(&claimed).await?;
        Ok(claimed.len())
    }
}
