//! The fan-out: events from the SQS queue become notification Bundles posted to every
//! connection bound to each matching subscription.
//!
//! Per message: parse ([`event`]); find the active websocket subscriptions the event may
//! concern through the routing index ([`crate::topics::route`]: the buckets of the focus's
//! values and the topic-wide one, not the whole topic) and keep those whose filters match
//! ([`filter`]); per subscription, number the event once (idempotently, keyed by
//! `eventId` or the SQS message id, so a redelivery keeps its number), record it under
//! that number in the event history (first record wins, so a redelivery changes nothing
//! there either), build the Bundle for the subscription's content level, and post it to
//! every unexpired binding, page by page ([`pages`]: later pages of a large audience go to
//! other workers through the queue), at most [`MAX_IN_FLIGHT`] posts at a time, paced
//! under the account's Management API rate when configured. A 410 deletes that
//! connection's bindings; throttled or failing posts are retried with backoff and jitter,
//! and if some still fail the SQS record is reported failed, so SQS redelivers it (and
//! after the queue's `maxReceiveCount`, moves it to the dead-letter queue). An invalid
//! message, which no retry can help, goes straight to the dead-letter queue with its
//! reason ([`dead_letter`]) and is reported handled: SQS does not receive it again.
//! Each page records what it still owes, so a redelivered message reaches only the
//! connections whose posts failed, with the same event number.
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
mod frames;
pub mod pages;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::Digest as _;

use crate::concurrency::bounded;
use crate::delivery::Delivery;
use crate::fhir::Subject;
use crate::fhir::SubscriptionState;
use crate::fhir::convert::convert;
use crate::fhir::version::FhirVersion;
use crate::metrics::Metrics;
use crate::push::{PushError, Pusher, RetryPolicy};
use crate::relay::upstream::read_notification;
use crate::relay::{Relay, RelayError};
use crate::store::UpstreamStore;
use crate::store::{
    Binding, BindingStore, CounterStore, EventStore, MAX_ROUTE_KEY_BYTES, PageId, StoreError, StoredSubscription,
    SubscriptionStore, route_index_key,
};
use crate::topics::{FhirPathCriteria, Routes, TOPIC_WIDE, Topic, TopicRegistry};
use dead_letter::DeadLetterQueue;
use event::{Audience, Event};
use frames::{Frames, Setting};
use pages::{PageReference, Paging};

/// Most posts in flight at once per page.
pub const MAX_IN_FLIGHT: usize = 64;

/// Most subscriptions one event is delivered to at once.
pub const SUBSCRIPTIONS_IN_FLIGHT: usize = 8;

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
    /// Another worker is delivering this page right now.
    #[error("the page is being delivered by another worker")]
    PageBusy,
    /// A page reference could not be queued.
    #[error(transparent)]
    Queue(#[from] crate::relay::QueueError),
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
    paging: Paging,
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
            paging: Paging::default(),
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
            paging: self.paging,
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

    /// Delivers to large audiences in pages of `paging.page_size` bindings, references to
    /// later pages going to `paging.queue` ([`pages`]).
    pub fn with_paging(mut self, paging: Paging) -> Self {
        self.paging = paging;
        self
    }

    /// Paces posts with `pacer` (this instance's share of the account's Management API
    /// rate).
    pub fn with_pacer(mut self, pacer: Option<std::sync::Arc<crate::push::Pacer>>) -> Self {
        self.delivery.pacer = pacer;
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
            "PagesQueued",
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
        if let Some(page) = PageReference::read(body) {
            let (reference, event_body) = page.map_err(invalid)?;
            return self.deliver_page_reference(&reference, &event_body, now, metrics).await.map_err(
                |error| match error {
                    FanOutError::Invalid(reason) => invalid(reason),
                    other => other,
                },
            );
        }
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
        self.deliver(&event, &key, body, now, metrics).await
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
                    self.deliver(&event, &key, &claim.body, now, metrics).await
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

    /// Delivers one event (read from message `body`, numbered under `key`) to every
    /// matching subscription's bindings.
    pub async fn deliver(
        &self,
        event: &Event,
        key: &str,
        body: &str,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        if matches!(event.audience, Audience::Change(_)) && self.topics.is_empty() {
            metrics.add("Invalid", 1);
            return Err(FanOutError::Invalid(
                "a resource change, but no SubscriptionTopics are deployed to evaluate it".to_owned(),
            ));
        }
        let matching = self.matching(event, now, metrics).await?;
        // Several subscriptions at once: each waits on a few store round trips, and an
        // event for a thousand dashboards must not take a thousand times that.
        let mut deliveries = Vec::with_capacity(matching.len());
        for subscription in &matching {
            deliveries.push(self.deliver_to(subscription, event, (key, body), now, metrics));
        }
        let mut undelivered = 0;
        for delivered in bounded(deliveries, SUBSCRIPTIONS_IN_FLIGHT).await {
            undelivered += delivered?;
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
            Routes::Buckets(mut buckets) => {
                // No subscription is indexed under a key too long for the index (it goes
                // topic-wide instead), and the store would refuse to look one up.
                buckets.retain(|bucket| route_index_key(url, bucket).len() <= MAX_ROUTE_KEY_BYTES);
                self.delivery.subscriptions.list_by_route(url, &buckets, now.timestamp()).await
            }
            Routes::WholeTopic => self.delivery.subscriptions.list_by_topic(url).await,
        }
    }

    /// Numbers the event for one subscription, records it in the history and posts it to
    /// its bindings, page by page ([`pages`]); returns how many posts failed after retries.
    async fn deliver_to(
        &self,
        subscription: &StoredSubscription,
        event: &Event,
        (key, body): (&str, &str),
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<usize, FanOutError> {
        let number = self.delivery.counters.number_event(subscription.id(), key, now.timestamp()).await?;
        let mut frames = Frames::build(subscription, event, number, self.setting(now), now, metrics)?;
        // Recorded before posting, so `$events` knows every number a client may have seen.
        self.history.store.record_event(&frames.history_record()).await?;
        if frames.downgraded {
            metrics.add("OversizeDowngraded", 1);
        }
        self.deliver_pages(&mut frames, (event, body), None, now, metrics).await
    }

    fn setting(&self, now: DateTime<Utc>) -> Setting<'_> {
        Setting {
            topics: &self.topics,
            fhir_base_url: &self.fhir_base_url,
            expires_at: (now + self.history.retention).timestamp(),
        }
    }

    /// Delivers a later page of an event, from its page reference.
    async fn deliver_page_reference(
        &self,
        reference: &PageReference,
        body: &str,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        let mut event = event::parse(body, now, self.event_version).map_err(FanOutError::Invalid)?;
        event.timestamp = reference.time().map_err(FanOutError::Invalid)?;
        // Nothing more goes to a subscription that has ended (or gone) since.
        let Some(subscription) = self.delivery.subscriptions.get(&reference.subscription).await? else {
            return Ok(());
        };
        if subscription.status_at(now) != SubscriptionState::Active {
            return Ok(());
        }
        let mut frames = Frames::build(&subscription, &event, reference.event_number, self.setting(now), now, metrics)?;
        match self.deliver_pages(&mut frames, (&event, body), Some(reference.after.clone()), now, metrics).await? {
            0 => Ok(()),
            undelivered => Err(FanOutError::Undelivered(undelivered)),
        }
    }

    /// Posts the event to the pages of its subscription's bindings from the one after
    /// `after`: each page claimed, the next one queued (or, without a queue, delivered
    /// here after this one), and what it still owes recorded. Returns how many posts
    /// failed after retries.
    async fn deliver_pages(
        &self,
        frames: &mut Frames<'_>,
        (event, body): (&Event, &str),
        mut after: Option<String>,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<usize, FanOutError> {
        let subscription = frames.record.subscription_id.clone();
        // Whether later pages go through the queue; asked only when there is a later page
        // (it reads the body), which a small audience never has.
        let mut queued_cache: Option<bool> = None;
        let mut queued =
            || *queued_cache.get_or_insert_with(|| self.paging.queue.is_some() && PageReference::fits(body));
        let mut undelivered = 0;
        loop {
            let page =
                PageId { subscription_id: subscription.clone(), event_number: frames.record.event_number, after };
            let progress = match self.history.store.claim_page(&page, now.timestamp(), frames.record.expires_at).await {
                Err(StoreError::Conflict) => return Err(FanOutError::PageBusy),
                other => other?,
            };
            let (bindings, next) = match progress {
                // Posted to once: only what it still owes. Its next page was queued before
                // it was posted to; delivered here, it is visited again.
                Some(progress) if progress.finished => {
                    let next = progress.next.filter(|_| !queued());
                    (self.owed(&subscription, &progress.owed).await?, next)
                }
                progress => {
                    // A page taken over reads up to where it was recorded to end.
                    let recorded = progress.and_then(|p| p.next);
                    let limit = if recorded.is_some() { usize::MAX } else { self.paging.page_size.max(1) };
                    let read = self
                        .delivery
                        .bindings
                        .bindings_page(&subscription, page.after.as_deref(), recorded.as_deref(), limit)
                        .await?;
                    if let (None, Some(next)) = (&recorded, &read.next) {
                        self.history.store.set_page_next(&page, next).await?;
                    }
                    (read.bindings, recorded.or(read.next))
                }
            };
            let queue_next = next.is_some() && queued();
            if let (true, Some(next)) = (queue_next, &next) {
                self.queue_page(&subscription, frames, (event, body), next, metrics).await?;
            }
            frames.prepare(&bindings, now, metrics)?;
            let failed = self.post_page(&bindings, frames, now, metrics).await;
            self.history.store.finish_page(&page, &failed).await?;
            undelivered += failed.len();
            match next {
                Some(next) if !queue_next => after = Some(next),
                _ => return Ok(undelivered),
            }
        }
    }

    /// Queues the page after connection `next` for another worker.
    async fn queue_page(
        &self,
        subscription: &str,
        frames: &Frames<'_>,
        (event, body): (&Event, &str),
        next: &str,
        metrics: &Metrics,
    ) -> Result<(), FanOutError> {
        let Some(queue) = &self.paging.queue else { return Ok(()) };
        let reference = PageReference::new(subscription, frames.record.event_number, next, event.timestamp);
        let message =
            reference.message(body).ok_or_else(|| FanOutError::Invalid("event body is not JSON".to_owned()))?;
        queue.enqueue_page(&message).await?;
        metrics.add("PagesQueued", 1);
        Ok(())
    }

    /// The bindings of `subscription` on the connections in `owed`.
    async fn owed(&self, subscription: &str, owed: &[String]) -> Result<Vec<Binding>, StoreError> {
        let mut bindings = Vec::with_capacity(owed.len());
        for connection in owed {
            let found = self.delivery.bindings.bindings_of_connection(connection).await?;
            bindings.extend(found.into_iter().filter(|b| b.subscription_id == subscription));
        }
        Ok(bindings)
    }

    /// Posts each binding its frame (none after its expiry, none its grant withholds), at
    /// most [`MAX_IN_FLIGHT`] at a time; returns the connections whose posts failed after
    /// retries (a gone connection is forgotten, not owed).
    async fn post_page(
        &self,
        bindings: &[Binding],
        frames: &Frames<'_>,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Vec<String> {
        let delivery = &self.delivery;
        // Futures built in a plain loop (no combinator closures) keep the whole future
        // `Send` for callers that spawn it.
        let mut posts = Vec::with_capacity(bindings.len());
        for binding in bindings {
            if let Some(frame) = frames.for_binding(binding)
                && binding.expires_at > now.timestamp()
            {
                posts.push(async move {
                    let result = delivery.post(&binding.callback_url, &binding.connection_id, frame, metrics).await;
                    (binding.connection_id.as_str(), result)
                });
            }
        }
        let results: Vec<(&str, Result<(), PushError>)> = bounded(posts, MAX_IN_FLIGHT).await;
        let mut failed: Vec<String> = results
            .into_iter()
            .filter(|(_, result)| matches!(result, Err(PushError::Throttled | PushError::Failed(_))))
            .map(|(connection, _)| connection.to_owned())
            .collect();
        failed.sort();
        failed
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
