//! Storage ports: what the handlers need from the tables.
//!
//! One trait per table (subscriptions, tokens, bindings, counters, events), with only the
//! operations the domain uses; the events table also keeps each numbered event's delivery
//! progress, page by page ([`DeliveryProgress`]), and the subscriptions table the routing
//! index ([`SubscriptionStore::list_by_route`]). Two adapters implement them:
//! [`dynamodb`] (production, and tests against a DynamoDB-compatible server) and
//! [`memory::MemoryStore`] (the local stack's embedded default and unit tests). Both pass the same contract tests
//! (`tests/tests/store_contract.rs`).

pub mod dynamodb;
pub mod memory;

use crate::smart::subscription::KeptGrant;
use std::future::Future;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::fhir::version::FhirVersion;
use crate::fhir::{Meta, Subscription, SubscriptionState};
use crate::topics::TOPIC_WIDE;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item exists already, or changed since it was read.
    #[error("the item was changed concurrently or already exists")]
    Conflict,
    /// The store is throttling us; the caller may retry later.
    #[error("the store is throttling requests")]
    Throttled,
    /// The store could not be reached or answered with an error (detail for logs only).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An item could not be read back (detail for logs only).
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

/// A Subscription as stored: the resource plus the server-side facts about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    owner: String,
    version: u64,
    last_updated: DateTime<Utc>,
    resource: Subscription,
    fhir_version: FhirVersion,
    grant: Option<KeptGrant>,
    route: String,
}

impl StoredSubscription {
    /// Wraps `resource` (whose `id` must be set) and stamps `meta.versionId` and
    /// `meta.lastUpdated` so the stored resource always agrees with the record.
    pub fn new(owner: &str, version: u64, last_updated: DateTime<Utc>, mut resource: Subscription) -> Self {
        let meta = resource.meta.get_or_insert_with(Meta::default);
        meta.version_id = Some(version.to_string());
        meta.last_updated = Some(last_updated.to_rfc3339_opts(SecondsFormat::Millis, true));
        Self {
            owner: owner.to_owned(),
            version,
            last_updated,
            resource,
            fhir_version: FhirVersion::R5,
            grant: None,
            route: TOPIC_WIDE.to_owned(),
        }
    }

    /// The same subscription, indexed under `route` of its topic
    /// ([`crate::topics::Topic::route_of`]; [`TOPIC_WIDE`] unless set, which is always
    /// correct: every event of the topic reads that bucket).
    pub fn routed(mut self, route: String) -> Self {
        self.route = route;
        self
    }

    /// The bucket of its topic it is indexed under.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The key of its bucket in the routing index (`topic` newline `route`) and the
    /// epoch second it stays in it until, while it is `active` with a topic; `None`
    /// otherwise (no event reads it then). The end is the index's sort key, so an ended
    /// subscription drops out of the index with nothing written.
    pub fn route_index(&self) -> Option<(String, i64)> {
        let topic = self.resource.topic.as_deref()?;
        if self.status() != SubscriptionState::Active {
            return None;
        }
        let until = self.resource.end_time().map_or(ROUTE_FOREVER, |end| end.timestamp());
        let key = route_index_key(topic, &self.route);
        // A long topic and a long filter value could exceed what an index key may hold;
        // the topic-wide bucket (topic ≤ 1 KiB) is always right, only less selective.
        let key = if key.len() > MAX_ROUTE_KEY_BYTES { route_index_key(topic, TOPIC_WIDE) } else { key };
        Some((key, until))
    }

    /// The same subscription, keeping the SMART grant it was created (or last updated)
    /// under; matching applies it ([`KeptGrant::permits`]).
    pub fn with_grant(mut self, grant: Option<KeptGrant>) -> Self {
        self.grant = grant;
        self
    }

    /// The SMART grant kept with it (`smart` mode), if any.
    pub fn grant(&self) -> Option<&KeptGrant> {
        self.grant.as_ref()
    }

    /// The same subscription, created in (and answered in) FHIR version `fhir_version`.
    pub fn in_fhir_version(mut self, fhir_version: FhirVersion) -> Self {
        self.fhir_version = fhir_version;
        self
    }

    /// The FHIR version the subscription was created in; everything it receives comes in
    /// that version's shape (R5 unless set).
    pub fn fhir_version(&self) -> FhirVersion {
        self.fhir_version
    }

    /// The next version of this subscription: `resource` (its id is kept) written at `now`,
    /// with the same grant (an update in `smart` mode replaces it with [`Self::with_grant`]).
    /// The route is kept while the topic and filters stay the same, and falls back to
    /// the topic-wide bucket otherwise (the writer sets the new one with [`Self::routed`]).
    pub fn next_version(&self, mut resource: Subscription, now: DateTime<Utc>) -> Self {
        resource.id = self.resource.id.clone();
        let same_filters = resource.topic == self.resource.topic && resource.filter_by == self.resource.filter_by;
        let route = if same_filters { self.route.clone() } else { TOPIC_WIDE.to_owned() };
        Self::new(&self.owner, self.version + 1, now, resource)
            .in_fhir_version(self.fhir_version)
            .with_grant(self.grant.clone())
            .routed(route)
    }

    /// The logical id.
    pub fn id(&self) -> &str {
        self.resource.id.as_deref().unwrap_or_default()
    }

    /// Principal that created it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Version, starting at 1, incremented by every update.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Time of the last write.
    pub fn last_updated(&self) -> DateTime<Utc> {
        self.last_updated
    }

    /// Current status (`requested` when none is recorded).
    pub fn status(&self) -> SubscriptionState {
        self.resource.status.unwrap_or(SubscriptionState::Requested)
    }

    /// The resource with id and meta as stored.
    pub fn resource(&self) -> &Subscription {
        &self.resource
    }

    /// The status clients see at `now`: `off` once `Subscription.end` has passed
    /// (`entered-in-error` stays what it is), else the stored status. Nothing needs to
    /// write the change: every reader asks this.
    pub fn status_at(&self, now: DateTime<Utc>) -> SubscriptionState {
        let status = self.status();
        match self.resource.end_time() {
            Some(end) if end <= now && status != SubscriptionState::EnteredInError => SubscriptionState::Off,
            _ => status,
        }
    }

    /// The resource as clients see it at `now` (its status from [`Self::status_at`]).
    pub fn resource_at(&self, now: DateTime<Utc>) -> Subscription {
        let mut resource = self.resource.clone();
        resource.status = Some(self.status_at(now));
        resource
    }
}

/// Longest routing-index key: DynamoDB's limit for a partition key.
pub const MAX_ROUTE_KEY_BYTES: usize = 2048;

/// The end of time for the routing index: the sort key of subscriptions without an end.
pub const ROUTE_FOREVER: i64 = 253_402_300_799;

/// The routing index's key of bucket `route` of `topic`.
pub fn route_index_key(topic: &str, route: &str) -> String {
    format!("{topic}\n{route}")
}

/// A token's row in the tokens table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Token id (`jti` claim), the table key.
    pub token_id: String,
    /// Principal the token was issued to.
    pub owner: String,
    /// Subscriptions the token binds to.
    pub subscription_ids: Vec<String>,
    /// Key id that signed it.
    pub key_id: String,
    /// Issue time, epoch seconds.
    pub issued_at: i64,
    /// Expiry, epoch seconds; also the table's TTL attribute.
    pub expires_at: i64,
    /// Set when the token was revoked before its expiry.
    pub revoked: bool,
    /// In `smart` mode, the grant presented when the token was issued (scopes and
    /// patient); every binding it makes carries it, and delivery checks each frame
    /// against it.
    pub grant: Option<KeptGrant>,
}

/// One WebSocket connection bound to one subscription (a row of the bindings table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// API Gateway connection id.
    pub connection_id: String,
    /// The bound subscription.
    pub subscription_id: String,
    /// Token that made (or last renewed) this binding; unbinding names it.
    pub token_id: String,
    /// Principal the token was issued to.
    pub owner: String,
    /// Management API endpoint (`https://{domain}/{stage}`) to post to this connection.
    pub callback_url: String,
    /// When the binding was made, epoch seconds.
    pub bound_at: i64,
    /// The token's expiry, epoch seconds; nothing is sent after it. Also the TTL attribute.
    pub expires_at: i64,
    /// When the connection was last sent something for this subscription, epoch seconds.
    pub last_message_at: i64,
    /// A handshake is owed: set when bound, cleared once the handshake was posted.
    pub handshake_pending: bool,
    /// The subscription's `heartbeatPeriod` when bound, in seconds.
    pub heartbeat_period: Option<u32>,
    /// When the heartbeat run should next look at this binding (epoch seconds): now for
    /// a pending handshake, else the last message plus the heartbeat period; `None`
    /// when neither applies (the binding then costs the heartbeat nothing).
    pub heartbeat_due_at: Option<i64>,
    /// In `smart` mode, the grant snapshot of the token that made it: what may reach this
    /// connection (checked on every frame).
    pub grant: Option<KeptGrant>,
}

/// Longest pause between messages on a connection with heartbeats: API Gateway closes
/// connections idle for 10 minutes, and the heartbeat run comes once a minute, so a
/// longer `heartbeatPeriod` is shortened to this to keep the connection open.
pub const MAX_HEARTBEAT_SECONDS: u32 = 8 * 60;

impl Binding {
    /// When the heartbeat run should next look at this binding after a message at `at`:
    /// its next heartbeat, if heartbeats are wanted, or, for a binding with a SMART grant
    /// snapshot, its expiry if that comes first (it is then told why it stops).
    pub fn heartbeat_due_after(&self, at: i64) -> Option<i64> {
        let heartbeat = self.heartbeat_period.map(|period| at + i64::from(period.min(MAX_HEARTBEAT_SECONDS)));
        let expiry = self.grant.as_ref().map(|_| self.expires_at);
        match (heartbeat, expiry) {
            (Some(heartbeat), Some(expiry)) => Some(heartbeat.min(expiry)),
            (heartbeat, expiry) => heartbeat.or(expiry),
        }
    }
}

/// How many shards the heartbeat index is spread over, so no single index partition
/// takes every binding's writes.
pub const HEARTBEAT_SHARDS: u32 = 16;

/// The heartbeat shard of a connection (a stable hash of its id).
pub fn heartbeat_shard(connection_id: &str) -> u32 {
    // FNV-1a: stable across processes and releases, unlike the std hasher.
    let hash =
        connection_id.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    hash % HEARTBEAT_SHARDS
}

/// A subscription's event counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounter {
    /// Events numbered so far (`eventsSinceSubscriptionStart`).
    pub events: u64,
    /// When the last event was numbered, epoch seconds.
    pub last_event_at: Option<i64>,
}

/// How many recent event keys a counter remembers, so that a redelivered event gets
/// the number it was given the first time. Redeliveries come within minutes (SQS
/// visibility timeout × receive count); the window keeps the DynamoDB counter item small.
pub const REMEMBERED_EVENT_KEYS: u64 = 100;

/// One numbered event of a subscription, kept for `$events` (a row of the events table).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The subscription the event was numbered for.
    pub subscription_id: String,
    /// Its number in that subscription (1 for the first event).
    pub event_number: u64,
    /// When the event happened (FHIR instant, as sent in the notification).
    pub timestamp: String,
    /// Absolute reference to the focus resource.
    pub focus: Option<String>,
    /// Absolute references to the additional context resources.
    pub additional_context: Vec<String>,
    /// The focus and context resources (focus first), in the subscription's FHIR version,
    /// when the subscription wanted `full-resource` and they fit
    /// [`MAX_RECORDED_RESOURCE_BYTES`]; `None` otherwise (replays then carry references
    /// only). A `null` item is a subject the notification carries as a reference only (it
    /// came as one, or it could not be given in the subscription's version).
    pub resources: Option<Vec<Value>>,
    /// When the record stops being answered, epoch seconds; also the table's TTL attribute.
    pub expires_at: i64,
}

/// Largest JSON size of the resources kept with one event (focus plus context). Larger
/// events keep their references only, so an item stays far below DynamoDB's 400 KB.
pub const MAX_RECORDED_RESOURCE_BYTES: usize = 64 * 1024;

/// The subscriptions table.
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription; [`StoreError::Conflict`] if the id is taken.
    fn insert(&self, subscription: &StoredSubscription) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads one subscription (strongly consistent).
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<StoredSubscription>, StoreError>> + Send;

    /// Replaces a subscription if its stored version is still `expected_version`;
    /// otherwise (or if it is gone) [`StoreError::Conflict`].
    fn replace(
        &self,
        subscription: &StoredSubscription,
        expected_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a subscription; `true` if there was one.
    fn delete(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every subscription of one owner, ordered by id.
    fn list_by_owner(&self, owner: &str) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send;

    /// Every subscription to one topic, ordered by id (a secondary index: eventually consistent).
    fn list_by_topic(&self, topic: &str) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send;

    /// The `active` subscriptions of `topic` indexed under any of `routes` whose end is
    /// after `now` (epoch seconds), ordered by id (a sparse secondary index: eventually
    /// consistent; only those subscriptions are read).
    fn list_by_route(
        &self,
        topic: &str,
        routes: &[String],
        now: i64,
    ) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send;
}

/// The tokens table.
pub trait TokenStore: Send + Sync {
    /// Writes a newly issued token's row.
    fn put_token(&self, record: &TokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a token's row (strongly consistent). Rows may outlive their expiry
    /// (TTL deletion is lazy): callers check `expires_at` against the clock.
    fn get_token(&self, token_id: &str) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Marks a token revoked; `true` if it existed.
    fn revoke_token(&self, token_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The bindings table: one row per (connection, subscription).
pub trait BindingStore: Send + Sync {
    /// Writes bindings, replacing rows for the same (connection, subscription).
    fn put_bindings(&self, bindings: &[Binding]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every binding of one connection (strongly consistent), ordered by subscription id.
    fn bindings_of_connection(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send;

    /// Every binding of one subscription, across connections (a secondary index:
    /// eventually consistent).
    fn bindings_of_subscription(
        &self,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send;

    /// One page of a subscription's bindings, ordered by connection id: those after
    /// connection `after` (from the first when `None`), and with `through`, up to and
    /// including that connection; at most `limit`. `next` is the last connection id
    /// when more follow. A secondary index: eventually consistent.
    fn bindings_page(
        &self,
        subscription_id: &str,
        after: Option<&str>,
        through: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<BindingsPage, StoreError>> + Send;

    /// Deletes a connection's bindings; with `token_id`, only those that token made.
    /// Returns how many were deleted.
    fn delete_bindings(
        &self,
        connection_id: &str,
        token_id: Option<&str>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Deletes one binding; with `token_id`, only if that token made it (a rebind with
    /// another token survives). Returns whether one was deleted.
    fn delete_binding(
        &self,
        connection_id: &str,
        subscription_id: &str,
        token_id: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that the connection was sent something for the subscription at `at`
    /// (epoch seconds): clears a pending handshake and sets the next heartbeat time
    /// (`None`: no heartbeat). A binding deleted meanwhile stays deleted; returns
    /// whether it still existed.
    fn record_message(
        &self,
        connection_id: &str,
        subscription_id: &str,
        at: i64,
        next_heartbeat_due: Option<i64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves a binding's next heartbeat time; returns whether the binding still existed.
    fn reschedule_heartbeat(
        &self,
        connection_id: &str,
        subscription_id: &str,
        due_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The bindings of one heartbeat shard whose heartbeat time is at or before `now`
    /// (a sparse secondary index: only due rows are read).
    fn due_for_heartbeat(&self, shard: u32, now: i64) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send;
}

/// One page of a subscription's bindings ([`BindingStore::bindings_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingsPage {
    /// The bindings, ordered by connection id.
    pub bindings: Vec<Binding>,
    /// Where the next page starts after, when there may be one.
    pub next: Option<String>,
}

/// One page of one event's delivery to one subscription: its bindings after connection
/// `after` (from the first when `None`), for the event numbered `event_number`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageId {
    /// The subscription.
    pub subscription_id: String,
    /// The event's number in it.
    pub event_number: u64,
    /// The connection id the page starts after.
    pub after: Option<String>,
}

/// How far the delivery of one page got ([`DeliveryProgress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageProgress {
    /// Where the page ends and the next starts after, once recorded.
    pub next: Option<String>,
    /// Whether its bindings were read and posted to once.
    pub finished: bool,
    /// The connections still owed the event after that (their posts failed).
    pub owed: Vec<String>,
}

/// How long a claimed page stays claimed without being finished (its worker crashed or
/// timed out): after this, a redelivery of its message may take it over. Longer than the
/// fan-out's timeout, shorter than the queue's visibility timeout.
pub const PAGE_CLAIM_SECONDS: i64 = 60;

/// The delivery progress of each page of each numbered event, so that a redelivered
/// page reaches only the connections it still owes (kept with the event history).
pub trait DeliveryProgress: Send + Sync {
    /// Claims `page` at `now` (epoch seconds): its progress so far (`None` the first
    /// time), or [`StoreError::Conflict`] while another worker holds it (claimed within
    /// [`PAGE_CLAIM_SECONDS`], not finished since). The record is kept until `expires_at`.
    fn claim_page(
        &self,
        page: &PageId,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<Option<PageProgress>, StoreError>> + Send;

    /// Records where `page` ends, so a redelivery reads the same connections.
    fn set_page_next(&self, page: &PageId, next: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks `page` posted to once, still owing `owed`, and releases the claim.
    fn finish_page(&self, page: &PageId, owed: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<D: DeliveryProgress> DeliveryProgress for std::sync::Arc<D> {
    fn claim_page(
        &self,
        page: &PageId,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<Option<PageProgress>, StoreError>> + Send {
        (**self).claim_page(page, now, expires_at)
    }

    fn set_page_next(&self, page: &PageId, next: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_page_next(page, next)
    }

    fn finish_page(&self, page: &PageId, owed: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).finish_page(page, owed)
    }
}

/// The counters table: events numbered per subscription.
pub trait CounterStore: Send + Sync {
    /// The subscription's counter (zero when it has had no events).
    fn counter(&self, subscription_id: &str) -> impl Future<Output = Result<EventCounter, StoreError>> + Send;

    /// Numbers an event for the subscription, atomically: the first call for `event_key`
    /// counts one more event and returns its number (1 for the first event); a repeat
    /// call with the same key (a redelivery) returns the same number and counts nothing.
    /// Keys are remembered for the last [`REMEMBERED_EVENT_KEYS`] events.
    fn number_event(
        &self,
        subscription_id: &str,
        event_key: &str,
        at: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The events table: what each subscription's numbered events were, for `$events`, and
/// how far the delivery of each of them got ([`DeliveryProgress`], rows of their own).
pub trait EventStore: DeliveryProgress + Send + Sync {
    /// Records an event under its number. Idempotent: if the number is already recorded
    /// (an SQS redelivery), the first record stays and nothing changes.
    fn record_event(&self, record: &EventRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The recorded events of a subscription numbered `since..=until`, ascending, at most
    /// `limit` of them, leaving out records whose `expires_at` is at or before `now`
    /// (TTL deletes lazily, so expiry is checked against the clock).
    fn events(
        &self,
        subscription_id: &str,
        since: u64,
        until: u64,
        limit: usize,
        now: i64,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;
}

/// How long an upstream event claimed for queueing stays claimed without being confirmed
/// (its relay crashed or timed out in between): after this, a retry from upstream may
/// claim and queue it, so the event is not lost.
pub const UPSTREAM_CLAIM_SECONDS: i64 = 60;

/// The upstream table: which events of upstream servers' subscriptions were queued here
/// (so an upstream retry is delivered once per number), and how far each upstream
/// subscription has got (so a jump in its numbers shows). `upstream` is a key the relay
/// derives from the upstream subscription's reference.
pub trait UpstreamStore: Send + Sync {
    /// Claims event `number` of `upstream` for queueing at `now` (epoch seconds): `true`
    /// when it was neither confirmed before nor claimed within the last
    /// [`UPSTREAM_CLAIM_SECONDS`]. The record is kept until `expires_at`.
    fn claim_event(
        &self,
        upstream: &str,
        number: u64,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks a claimed event as queued: it is never claimed again.
    fn confirm_event(&self, upstream: &str, number: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a claim up (queueing failed), so the upstream's retry can claim it at once.
    fn release_event(&self, upstream: &str, number: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that `upstream` (whose reference is `reference`) was heard from at `now`,
    /// having reached event number `reached` when the notification says; returns the
    /// highest number it had reached before (`None` the first time).
    fn heard_from(
        &self,
        upstream: &str,
        reference: &str,
        reached: Option<u64>,
        now: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

// Handlers own their stores; these let several handlers share one store (as the
// local stack and the tests do) through an `Arc`.
impl<S: SubscriptionStore> SubscriptionStore for std::sync::Arc<S> {
    fn insert(&self, subscription: &StoredSubscription) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).insert(subscription)
    }

    fn get(&self, id: &str) -> impl Future<Output = Result<Option<StoredSubscription>, StoreError>> + Send {
        (**self).get(id)
    }

    fn replace(
        &self,
        subscription: &StoredSubscription,
        expected_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).replace(subscription, expected_version)
    }

    fn delete(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).delete(id)
    }

    fn list_by_owner(&self, owner: &str) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send {
        (**self).list_by_owner(owner)
    }

    fn list_by_topic(&self, topic: &str) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send {
        (**self).list_by_topic(topic)
    }

    fn list_by_route(
        &self,
        topic: &str,
        routes: &[String],
        now: i64,
    ) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send {
        (**self).list_by_route(topic, routes, now)
    }
}

impl<B: BindingStore> BindingStore for std::sync::Arc<B> {
    fn put_bindings(&self, bindings: &[Binding]) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_bindings(bindings)
    }

    fn bindings_of_connection(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send {
        (**self).bindings_of_connection(connection_id)
    }

    fn bindings_of_subscription(
        &self,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send {
        (**self).bindings_of_subscription(subscription_id)
    }

    fn bindings_page(
        &self,
        subscription_id: &str,
        after: Option<&str>,
        through: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<BindingsPage, StoreError>> + Send {
        (**self).bindings_page(subscription_id, after, through, limit)
    }

    fn delete_bindings(
        &self,
        connection_id: &str,
        token_id: Option<&str>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        (**self).delete_bindings(connection_id, token_id)
    }

    fn delete_binding(
        &self,
        connection_id: &str,
        subscription_id: &str,
        token_id: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).delete_binding(connection_id, subscription_id, token_id)
    }

    fn record_message(
        &self,
        connection_id: &str,
        subscription_id: &str,
        at: i64,
        next_heartbeat_due: Option<i64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).record_message(connection_id, subscription_id, at, next_heartbeat_due)
    }

    fn reschedule_heartbeat(
        &self,
        connection_id: &str,
        subscription_id: &str,
        due_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).reschedule_heartbeat(connection_id, subscription_id, due_at)
    }

    fn due_for_heartbeat(&self, shard: u32, now: i64) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send {
        (**self).due_for_heartbeat(shard, now)
    }
}

impl<C: CounterStore> CounterStore for std::sync::Arc<C> {
    fn counter(&self, subscription_id: &str) -> impl Future<Output = Result<EventCounter, StoreError>> + Send {
        (**self).counter(subscription_id)
    }

    fn number_event(
        &self,
        subscription_id: &str,
        event_key: &str,
        at: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).number_event(subscription_id, event_key, at)
    }
}

impl<T: TokenStore> TokenStore for std::sync::Arc<T> {
    fn put_token(&self, record: &TokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_token(record)
    }

    fn get_token(&self, token_id: &str) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send {
        (**self).get_token(token_id)
    }

    fn revoke_token(&self, token_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).revoke_token(token_id)
    }
}

impl<E: EventStore> EventStore for std::sync::Arc<E> {
    fn record_event(&self, record: &EventRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record_event(record)
    }

    fn events(
        &self,
        subscription_id: &str,
        since: u64,
        until: u64,
        limit: usize,
        now: i64,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send {
        (**self).events(subscription_id, since, until, limit, now)
    }
}

impl<U: UpstreamStore> UpstreamStore for std::sync::Arc<U> {
    fn claim_event(
        &self,
        upstream: &str,
        number: u64,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).claim_event(upstream, number, now, expires_at)
    }

    fn confirm_event(&self, upstream: &str, number: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).confirm_event(upstream, number)
    }

    fn release_event(&self, upstream: &str, number: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release_event(upstream, number)
    }

    fn heard_from(
        &self,
        upstream: &str,
        reference: &str,
        reached: Option<u64>,
        now: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        (**self).heard_from(upstream, reference, reached, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_too_long_for_an_index_key_falls_back_to_the_topic_wide_bucket() {
        let topic = format!("https://example.org/{}", "t".repeat(crate::limits::MAX_TOPIC_BYTES - 20));
        let resource: Subscription = serde_json::from_value(serde_json::json!({
            "resourceType": "Subscription", "id": "s1", "status": "active", "topic": topic,
            "channelType": {"code": "websocket"}}))
        .unwrap_or_else(|e| panic!("{e}"));
        let stored = StoredSubscription::new("owner", 1, DateTime::<Utc>::UNIX_EPOCH, resource);
        let long = stored.clone().routed(format!("patient={}", "1".repeat(crate::limits::MAX_FILTER_VALUE_BYTES)));
        let (key, _) = long.route_index().unwrap_or_default();
        assert_eq!(key, route_index_key(&topic, TOPIC_WIDE));
        let short = stored.routed("patient=1".to_owned());
        assert_eq!(short.route_index().map(|(key, _)| key), Some(route_index_key(&topic, "patient=1")));
    }
}
