//! The fan-out: events from the SQS queue become notification Bundles posted to every
//! connection bound to each matching subscription.
//!
//! Per message: parse ([`event`]); find the active websocket subscriptions of the
//! topic whose filters match ([`filter`]); per subscription, number the event once
//! (idempotently, keyed by `eventId` or the SQS message id, so a redelivery keeps its
//! number), record it under that number in the event history (first record wins, so a
//! redelivery changes nothing there either), build the Bundle for the subscription's
//! content level, and post it to every
//! unexpired binding, at most [`MAX_IN_FLIGHT`] posts at a time. A 410 deletes that
//! connection's bindings; throttled or failing posts are retried with backoff and jitter,
//! and if some still fail the SQS record is reported failed, so SQS redelivers it (and
//! after the queue's `maxReceiveCount`, moves it to the dead-letter queue). An invalid
//! message, which no retry can help, goes straight to the dead-letter queue with its
//! reason ([`dead_letter`]) and is reported handled: SQS does not receive it again.
//! Delivery is at least once: a redelivered event reaches every binding again, with the
//! same event number.
//!
//! Resources are in the event's FHIR version ([`event`]); a subscription in another
//! version gets each of them converted when [`crate::fhir::convert`] converts its type
//! exactly, and otherwise its reference in place of the body (logged, and counted in the
//! metric `CrossVersionDowngraded`). The event history records what the subscriber got, so
//! `$events` replays it the same way.
//!
//! A message may also be an EventBridge event (its `detail` is then read as the message),
//! and its body may be another FHIR server's notification Bundle instead of an event: it
//! is then taken apart exactly as the relay endpoint does ([`crate::relay`]), each of its
//! events claimed in the upstream table, delivered, and confirmed, so an upstream retry is
//! delivered once per number. That needs the upstream table ([`FanOut::with_relay`]).
//!
//! With SubscriptionTopics deployed ([`FanOut::with_topics`]), a message may be a resource
//! change: each topic's triggers decide whether it fires ([`crate::topics::trigger`]), and
//! the subscriptions of every fired topic get it. The filters of a subscription to a
//! deployed topic are FHIR search clauses; those of any other keep the element-name rules
//! of [`filter`].

pub mod dead_letter;
pub mod event;
pub mod filter;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::Digest as _;

use crate::delivery::{Delivery, bounded};
use crate::fhir::convert::convert;
use crate::fhir::version::FhirVersion;
use crate::fhir::{ContentLevel, SubscriptionState};
use crate::metrics::Metrics;
use crate::notification::{EventContent, event_frame, event_record};
use crate::push::{PushError, Pusher, RetryPolicy};
use crate::relay::upstream::read_notification;
use crate::relay::{Relay, RelayError};
use crate::store::UpstreamStore;
use crate::store::{BindingStore, CounterStore, EventStore, StoreError, StoredSubscription, SubscriptionStore};
use crate::topics::{FhirPathCriteria, Routes, TOPIC_WIDE, Topic, TopicRegistry};
use dead_letter::DeadLetterQueue;
use event::{Audience, Event, Subject};

/// Most posts in flight at once per event.
pub const MAX_IN_FLIGHT: usize = 64;

/// Why a message was not (fully) delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanOutError {
    /// The message is not a valid event; retrying cannot help.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some posts still failed after retries.
    #[error("{0} post(s) failed after retries")]
    Undelivered(usize),
}

/// The event history the fan-out writes: where, and for how long records are answered.
#[derive(Debug, Clone)]
pub struct EventHistory<E> {
    /// The events table.
    pub store: E,
    /// How long a record is kept (`EVENT_RETENTION_SECONDS`).
    pub retention: TimeDelta,
}

/// The fan-out with its stores and client; built once per Lambda instance.
#[derive(Debug)]
pub struct FanOut<S, B, C, E, P, U = NoUpstreamTable> {
    delivery: Delivery<S, B, C, P>,
    history: EventHistory<E>,
    fhir_base_url: String,
    relay: Option<Relay<U>>,
    topics: TopicRegistry,
    fhirpath: Option<std::sync::Arc<dyn FhirPathCriteria>>,
    event_version: FhirVersion,
    dead_letters: Option<std::sync::Arc<dyn DeadLetterQueue>>,
}

/// The upstream table of a fan-out that has none: notification Bundles on the queue are
/// then refused as invalid (never reached: the fan-out asks no table it does not have).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpstreamTable;

impl UpstreamStore for NoUpstreamTable {
    async fn claim_event(&self, _: &str, _: u64, _: i64, _: i64) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("no upstream table".to_owned()))
    }

    async fn confirm_event(&self, _: &str, _: u64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("no upstream table".to_owned()))
    }

    async fn release_event(&self, _: &str, _: u64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("no upstream table".to_owned()))
    }

    async fn heard_from(&self, _: &str, _: &str, _: Option<u64>, _: i64) -> Result<Option<u64>, StoreError> {
        Err(StoreError::Unavailable("no upstream table".to_owned()))
    }
}

impl<S: SubscriptionStore, B: BindingStore, C: CounterStore, E: EventStore, P: Pusher>
    FanOut<S, B, C, E, P, NoUpstreamTable>
{
    /// A fan-out over these stores, recording into `history` and posting through
    /// `pusher`; resource references and `fullUrl`s are made absolute with `fhir_base_url`.
    pub fn new(
        subscriptions: S,
        bindings: B,
        counters: C,
        history: EventHistory<E>,
        pusher: P,
        fhir_base_url: &str,
    ) -> Self {
        Self {
            delivery: Delivery::new(subscriptions, bindings, counters, pusher),
            history,
            fhir_base_url: fhir_base_url.to_owned(),
            relay: None,
            topics: TopicRegistry::default(),
            fhirpath: None,
            event_version: FhirVersion::R5,
            dead_letters: None,
        }
    }

    /// The same fan-out, also taking notification Bundles from other FHIR servers, with
    /// `relay`'s upstream table.
    pub fn with_relay<U: UpstreamStore>(self, relay: Relay<U>) -> FanOut<S, B, C, E, P, U> {
        FanOut {
            delivery: self.delivery,
            history: self.history,
            fhir_base_url: self.fhir_base_url,
            relay: Some(relay),
            topics: self.topics,
            fhirpath: self.fhirpath,
            event_version: self.event_version,
            dead_letters: self.dead_letters,
        }
    }
}

impl<S: SubscriptionStore, B: BindingStore, C: CounterStore, E: EventStore, P: Pusher, U: UpstreamStore>
    FanOut<S, B, C, E, P, U>
{
    /// Evaluates resource changes against `topics`, with `fhirpath` for their
    /// `fhirPathCriteria` (without one, triggers that have FHIRPath never fire).
    pub fn with_topics(
        mut self,
        topics: TopicRegistry,
        fhirpath: Option<std::sync::Arc<dyn FhirPathCriteria>>,
    ) -> Self {
        self.topics = topics;
        self.fhirpath = fhirpath;
        self
    }

    /// Reads the resources of events that name no version as FHIR `version` (default R5;
    /// `EVENT_FHIR_VERSION`).
    pub fn with_event_version(mut self, version: FhirVersion) -> Self {
        self.event_version = version;
        self
    }

    /// Sends invalid messages to `queue` (the events queue's dead-letter queue) with their
    /// reason and reports them handled; without one they are reported failed, and SQS's
    /// redrive policy moves them after its receive count.
    pub fn with_dead_letters(mut self, queue: Option<std::sync::Arc<dyn DeadLetterQueue>>) -> Self {
        self.dead_letters = queue;
        self
    }

    /// Uses `retry` instead of the default policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.delivery.retry = retry;
        self
    }

    /// Handles an SQS batch; failed records are reported so SQS redelivers only them.
    /// Emits one EMF metrics line per batch.
    pub async fn handle_batch(&self, batch: &SqsEvent, now: DateTime<Utc>) -> SqsBatchResponse {
        let metrics = Metrics::new("fanout");
        for name in [
            "Delivered",
            "Gone",
            "Retried",
            "Failed",
            "OversizeDowngraded",
            "CrossVersionDowngraded",
            "GrantWithheld",
            "Invalid",
            "DeadLettered",
            "TopicError",
        ] {
            metrics.add(name, 0);
        }
        let mut response = SqsBatchResponse::default();
        for record in &batch.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            let delivered = match self.handle_record(record, now, &metrics).await {
                Err(FanOutError::Invalid(reason)) => self.dead_letter(record, &reason, &metrics).await,
                other => other,
            };
            if let Err(error) = delivered {
                tracing::warn!(message_id, %error, "event not delivered; reported for redelivery");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        metrics.emit(now);
        response
    }

    /// Puts an invalid message into the dead-letter queue with its reason; `Ok` means it
    /// is handled (no queue, or the queue failed: the error, for SQS to redeliver it).
    async fn dead_letter(&self, record: &SqsMessage, reason: &str, metrics: &Metrics) -> Result<(), FanOutError> {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let Some(queue) = &self.dead_letters else {
            return Err(FanOutError::Invalid(reason.to_owned()));
        };
        let body = record.body.as_deref().unwrap_or_default();
        match queue.dead_letter(body, message_id, reason).await {
            Ok(()) => {
                metrics.add("DeadLettered", 1);
                tracing::warn!(message_id, reason, "invalid event moved to the dead-letter queue");
                Ok(())
            }
            Err(error) => {
                tracing::error!(message_id, reason, %error, "invalid event not dead-lettered; left for redelivery");
                Err(FanOutError::Invalid(reason.to_owned()))
            }
        }
    }

    /// Delivers one message body (an event, an EventBridge event around one, or another
    /// server's notification Bundle) as the queue's record `message_id`; `Invalid` says
    /// why it can never be delivered. The local stack's `/local/events` answers with this.
    pub async fn deliver_message(
        &self,
        message_id: &str,
        body: &str,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        let mut record = SqsMessage::default();
        record.message_id = Some(message_id.to_owned());
        record.body = Some(body.to_owned());
        self.handle_record(&record, now, metrics).await
    }

    async fn handle_record(
        &self,
        record: &SqsMessage,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        let raw = record.body.as_deref().unwrap_or_default();
        let unwrapped = unwrap_eventbridge(raw);
        let body = unwrapped.as_deref().unwrap_or(raw);
        let invalid = |reason: String| {
            metrics.add("Invalid", 1);
            FanOutError::Invalid(reason)
        };
        if let Some(bundle) = notification_bundle(body) {
            return self.deliver_notification(&bundle, now, metrics).await.map_err(|error| match error {
                FanOutError::Invalid(reason) => invalid(reason),
                other => other,
            });
        }
        let event = event::parse(body, now, self.event_version).map_err(invalid)?;
        // Producer id first; else the SQS message id; else (never seen) the body's hash.
        let key = match (&event.event_id, &record.message_id) {
            (Some(id), _) => format!("e:{id}"),
            (None, Some(id)) => format!("m:{id}"),
            (None, None) => {
                let digest = sha2::Sha256::digest(body.as_bytes());
                format!("h:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
        };
        self.deliver(&event, &key, now, metrics).await
    }

    /// Delivers another FHIR server's notification Bundle: each of its events not
    /// delivered before, claimed, delivered and confirmed one by one.
    async fn deliver_notification(
        &self,
        bundle: &serde_json::Value,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        let Some(relay) = &self.relay else {
            return Err(FanOutError::Invalid("a notification Bundle, but no upstream table is configured".to_owned()));
        };
        let notification = read_notification(bundle).map_err(FanOutError::Invalid)?;
        let claimed = relay.claim(&notification, None, now, metrics).await.map_err(|error| match error {
            RelayError::Invalid(reason) => FanOutError::Invalid(reason),
            RelayError::Store(error) => FanOutError::Store(error),
            RelayError::Queue(error) => FanOutError::Invalid(error.to_string()),
        })?;
        for (index, claim) in claimed.iter().enumerate() {
            let delivered = match event::parse(&claim.body, now, self.event_version) {
                Ok(event) => {
                    let key = format!("e:{}", event.event_id.as_deref().unwrap_or_default());
                    self.deliver(&event, &key, now, metrics).await
                }
                Err(reason) => Err(FanOutError::Invalid(reason)),
            };
            if let Err(error) = delivered {
                // What was not delivered is freed for the redelivery of this message.
                relay.release(&claimed[index..]).await;
                return Err(error);
            }
            relay.confirm(std::slice::from_ref(claim)).await?;
        }
        Ok(())
    }

    /// Delivers one event to every matching subscription's bindings.
    pub async fn deliver(
        &self,
        event: &Event,
        key: &str,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        if matches!(event.audience, Audience::Change(_)) && self.topics.is_empty() {
            metrics.add("Invalid", 1);
            return Err(FanOutError::Invalid(
                "a resource change, but no SubscriptionTopics are deployed to evaluate it".to_owned(),
            ));
        }
        let mut undelivered = 0;
        for subscription in self.matching(event, now, metrics).await? {
            undelivered += self.deliver_to(&subscription, event, key, now, metrics).await?;
        }
        if undelivered > 0 {
            return Err(FanOutError::Undelivered(undelivered));
        }
        Ok(())
    }

    async fn matching(
        &self,
        event: &Event,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let candidates = match &event.audience {
            Audience::Topic(topic) => self.candidates(topic, event, now).await?,
            Audience::Subscription(id) => self.delivery.subscriptions.get(id).await?.into_iter().collect(),
            Audience::Change(change) => {
                let mut candidates = Vec::new();
                for (topic, fired) in self.topics.fired_by(change, self.fhirpath.as_deref(), now) {
                    match fired {
                        Ok(true) => candidates.extend(self.candidates(&topic.url, event, now).await?),
                        Ok(false) => {}
                        Err(error) => {
                            metrics.add("TopicError", 1);
                            tracing::warn!(topic = topic.url, %error, "topic not evaluated for this change");
                        }
                    }
                }
                candidates
            }
        };
        let focus = event.focus.as_ref().and_then(Subject::resource);
        let focus_type = event.focus.as_ref().and_then(Subject::resource_type);
        Ok(candidates
            .into_iter()
            .filter(|s| s.resource().is_websocket() && s.status_at(now) == SubscriptionState::Active)
            // A SMART grant kept with the subscription decides first, so its event numbers
            // count only what its subscriber may see.
            .filter(|s| {
                s.grant().is_none_or(|grant| {
                    let level = crate::notification::content_level(s);
                    grant.permits(focus, focus_type.as_deref(), level, event.fhir_version, now)
                })
            })
            .filter(|s| {
                let filters = &s.resource().filter_by;
                match s.resource().topic.as_deref().and_then(|url| self.topics.get(url)) {
                    Some(topic) => Topic::filters_match(topic, filters, focus, event.fhir_version, now),
                    None => filter::matches_all(filters, focus),
                }
            })
            .collect())
    }

    /// The subscriptions of topic `url` that `event` may concern: those in the routing
    /// buckets of its focus and the topic-wide bucket ([`crate::topics::route`]), or, for
    /// a focus the topic's routes do not cover, all of them. Filters decide after.
    async fn candidates(
        &self,
        url: &str,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let focus = event.focus.as_ref().and_then(Subject::resource);
        let routes = match self.topics.get(url) {
            Some(topic) => topic.routes_for(focus, event.fhir_version),
            None => Routes::Buckets(vec![TOPIC_WIDE.to_owned()]),
        };
        match routes {
            Routes::Buckets(buckets) => self.delivery.subscriptions.list_by_route(url, &buckets, now.timestamp()).await,
            Routes::WholeTopic => self.delivery.subscriptions.list_by_topic(url).await,
        }
    }

    /// Numbers the event for one subscription, records it in the history and posts it to
    /// its bindings; returns how many posts failed after retries.
    async fn deliver_to(
        &self,
        subscription: &StoredSubscription,
        event: &Event,
        key: &str,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<usize, FanOutError> {
        let number = self.delivery.counters.number_event(subscription.id(), key, now.timestamp()).await?;
        let topic = subscription.resource().topic.as_deref().and_then(|url| self.topics.get(url));
        let focus = event.focus.as_ref().and_then(Subject::resource);
        let shaped = topic.and_then(|topic| topic.shaped_context(focus, &event.additional_context, event.fhir_version));
        let context = shaped.as_deref().unwrap_or(&event.additional_context);
        // Bodies are sent only at full-resource: only then are they given in the
        // subscriber's version (or left out).
        let keep_resources = crate::notification::content_level(subscription) == ContentLevel::FullResource;
        let (to, from) = (subscription.fhir_version(), event.fhir_version);
        let for_subscriber = |subject: &Subject| {
            if keep_resources { in_version(subject, from, to, subscription.id(), metrics) } else { subject.clone() }
        };
        let focus = event.focus.as_ref().map(for_subscriber);
        let context: Vec<Subject> = context.iter().map(for_subscriber).collect();
        let content = EventContent {
            focus: focus.as_ref(),
            additional_context: &context,
            timestamp: event.timestamp,
            fhir_base_url: &self.fhir_base_url,
        };
        let expires_at = (now + self.history.retention).timestamp();
        let record = event_record(subscription.id(), number, content, expires_at);
        // Recorded before posting, so `$events` knows every number a client may have seen.
        self.history.store.record_event(&record.for_history(keep_resources)).await?;
        let (frame, downgraded) =
            event_frame(subscription, &record, now).map_err(|e| FanOutError::Invalid(e.to_string()))?;
        if downgraded {
            metrics.add("OversizeDowngraded", 1);
        }
        let bindings = self.delivery.bindings.bindings_of_subscription(subscription.id()).await?;
        // A binding made in `smart` mode carries its token's grant: each distinct grant
        // gets the frame it allows (none when the focus is not allowed; context it does
        // not allow left out), checked in the version the resources are now in.
        let shown = if keep_resources { to } else { from };
        let mut grants: Vec<(Option<&crate::smart::subscription::KeptGrant>, Option<Vec<u8>>)> =
            vec![(None, Some(frame))];
        for grant in bindings.iter().filter_map(|b| b.grant.as_ref()) {
            if grants.iter().any(|(known, _)| *known == Some(grant)) {
                continue;
            }
            let allowed = |subject: &Subject| {
                let level = crate::notification::content_level(subscription);
                grant.permits(subject.resource(), subject.resource_type().as_deref(), level, shown, now)
            };
            let frame = match &focus {
                Some(focus) if !allowed(focus) => {
                    metrics.add("GrantWithheld", 1);
                    None
                }
                _ => {
                    let keep: Vec<bool> = context.iter().map(allowed).collect();
                    let narrowed = record.without_context(&keep);
                    Some(event_frame(subscription, &narrowed, now).map_err(|e| FanOutError::Invalid(e.to_string()))?.0)
                }
            };
            grants.push((Some(grant), frame));
        }
        let delivery = &self.delivery;
        // Futures built in a plain loop (no combinator closures) keep the whole future
        // `Send` for callers that spawn it.
        let mut posts = Vec::with_capacity(bindings.len());
        for binding in &bindings {
            let frame = grants.iter().find(|(grant, _)| *grant == binding.grant.as_ref()).and_then(|(_, f)| f.as_ref());
            if let Some(frame) = frame
                && binding.expires_at > now.timestamp()
            {
                posts.push(delivery.post(&binding.callback_url, &binding.connection_id, frame, metrics));
            }
        }
        let results: Vec<Result<(), PushError>> = bounded(posts, MAX_IN_FLIGHT).await;
        Ok(results.iter().filter(|r| matches!(r, Err(PushError::Throttled | PushError::Failed(_)))).count())
    }
}

/// A subject as a subscription in FHIR `to` receives it: the resource (written in `from`)
/// converted, or its reference when it cannot be converted exactly (logged and counted).
fn in_version(subject: &Subject, from: FhirVersion, to: FhirVersion, subscription: &str, metrics: &Metrics) -> Subject {
    let Some(resource) = subject.resource() else { return subject.clone() };
    match convert(resource, from, to) {
        Ok(converted) => match subject {
            Subject::Entry { full_url, .. } => Subject::Entry { full_url: full_url.clone(), resource: converted },
            _ => Subject::Resource(converted),
        },
        Err(reason) => {
            metrics.add("CrossVersionDowngraded", 1);
            tracing::info!(
                subscription,
                from = from.path_segment(),
                to = to.path_segment(),
                reason,
                "resource sent as a reference: the subscriber's FHIR version cannot take its body"
            );
            match subject {
                Subject::Entry { full_url, .. } => Subject::Reference(full_url.clone()),
                _ => {
                    let kind = resource.get("resourceType").and_then(serde_json::Value::as_str).unwrap_or_default();
                    let id = resource.get("id").and_then(serde_json::Value::as_str).unwrap_or_default();
                    Subject::Reference(format!("{kind}/{id}"))
                }
            }
        }
    }
}

/// The `detail` of an EventBridge event (as an EventBridge rule puts it on the queue), as
/// JSON text; `None` when the body is not one.
fn unwrap_eventbridge(body: &str) -> Option<String> {
    if !body.contains("\"detail-type\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let object = value.as_object()?;
    if !object.contains_key("detail-type") || !object.contains_key("source") {
        return None;
    }
    object.get("detail").filter(|d| d.is_object()).map(serde_json::Value::to_string)
}

/// The body as a FHIR Bundle, when it is one (another server's notification).
fn notification_bundle(body: &str) -> Option<serde_json::Value> {
    if !body.contains("\"Bundle\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    (value.get("resourceType").and_then(serde_json::Value::as_str) == Some("Bundle")).then_some(value)
}
