//! Store wrappers that count what the fan-out reads: items (subscriptions and bindings
//! returned) and requests. The routing test and the routing bench read them per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fhir_ws_core::store::{Binding, BindingStore, BindingsPage, StoreError, StoredSubscription, SubscriptionStore};

/// What was read since the last [`Reads::take`].
#[derive(Debug, Default)]
pub struct Reads {
    items: AtomicUsize,
    requests: AtomicUsize,
    longest_key: AtomicUsize,
}

impl Reads {
    fn count<T>(&self, items: usize, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.items.fetch_add(items, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// The longest routing-index key looked up so far, in bytes (DynamoDB refuses keys
    /// over 2,048 bytes; moto does not check).
    pub fn longest_key(&self) -> usize {
        self.longest_key.load(Ordering::SeqCst)
    }

    /// (items, requests) read since the last call.
    pub fn take(&self) -> (usize, usize) {
        (self.items.swap(0, Ordering::SeqCst), self.requests.swap(0, Ordering::SeqCst))
    }
}

/// A store whose reads are counted in `reads`.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    /// The store.
    pub inner: S,
    /// The tally, shared by every wrapper of one run.
    pub reads: Arc<Reads>,
}

impl<S: SubscriptionStore> SubscriptionStore for Counted<S> {
    async fn insert(&self, subscription: &StoredSubscription) -> Result<(), StoreError> {
        self.inner.insert(subscription).await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredSubscription>, StoreError> {
        let found = self.inner.get(id).await;
        let items = found.as_ref().map_or(0, |s| usize::from(s.is_some()));
        self.reads.count(items, found)
    }

    async fn replace(&self, subscription: &StoredSubscription, expected_version: u64) -> Result<(), StoreError> {
        self.inner.replace(subscription, expected_version).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        let found = self.inner.list_by_owner(owner).await;
        self.reads.count(found.as_ref().map_or(0, Vec::len), found)
    }

    async fn list_by_topic(&self, topic: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        let found = self.inner.list_by_topic(topic).await;
        self.reads.count(found.as_ref().map_or(0, Vec::len), found)
    }

    async fn list_by_route(
        &self,
        topic: &str,
        routes: &[String],
        now: i64,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        for route in routes {
            let key = fhir_ws_core::store::route_index_key(topic, route).len();
            self.reads.longest_key.fetch_max(key, Ordering::SeqCst);
        }
        let found = self.inner.list_by_route(topic, routes, now).await;
        // One query per bucket.
        self.reads.requests.fetch_add(routes.len().saturating_sub(1), Ordering::SeqCst);
        self.reads.count(found.as_ref().map_or(0, Vec::len), found)
    }
}

impl<B: BindingStore> BindingStore for Counted<B> {
    async fn put_bindings(&self, bindings: &[Binding]) -> Result<(), StoreError> {
        self.inner.put_bindings(bindings).await
    }

    async fn bindings_of_connection(&self, connection_id: &str) -> Result<Vec<Binding>, StoreError> {
        let found = self.inner.bindings_of_connection(connection_id).await;
        self.reads.count(found.as_ref().map_or(0, Vec::len), found)
    }

    async fn bindings_of_subscription(&self, subscription_id: &str) -> Result<Vec<Binding>, StoreError> {
        let found = self.inner.bindings_of_subscription(subscription_id).await;
        self.reads.count(found.as_ref().map_or(0, Vec::len), found)
    }

    async fn bindings_page(
        &self,
        subscription_id: &str,
        after: Option<&str>,
        through: Option<&str>,
        limit: usize,
    ) -> Result<BindingsPage, StoreError> {
        let found = self.inner.bindings_page(subscription_id, after, through, limit).await;
        self.reads.count(found.as_ref().map_or(0, |page| page.bindings.len()), found)
    }

    async fn delete_bindings(&self, connection_id: &str, token_id: Option<&str>) -> Result<usize, StoreError> {
        self.inner.delete_bindings(connection_id, token_id).await
    }

    async fn delete_binding(
        &self,
        connection_id: &str,
        subscription_id: &str,
        token_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.delete_binding(connection_id, subscription_id, token_id).await
    }

    async fn record_message(
        &self,
        connection_id: &str,
        subscription_id: &str,
        at: i64,
        next_heartbeat_due: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.inner.record_message(connection_id, subscription_id, at, next_heartbeat_due).await
    }

    async fn reschedule_heartbeat(
        &self,
        connection_id: &str,
        subscription_id: &str,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        self.inner.reschedule_heartbeat(connection_id, subscription_id, due_at).await
    }

    async fn due_for_heartbeat(&self, shard: u32, now: i64) -> Result<Vec<Binding>, StoreError> {
        let found = self.inner.due_for_heartbeat(shard, now).await;
        self.reads.count(found.as_ref().map_or(0, Vec::len), found)
    }
}

/// The example topic `encounter-complete` (`infra/topics-examples/`, whose `patient`
/// filter routes) under a URL of its own, `{ENCOUNTER_COMPLETE}-{suffix}` (a shared
/// server keeps other runs' subscriptions), loaded for R5 events.
pub fn encounter_complete(suffix: &str) -> (String, fhir_ws_core::topics::TopicRegistry) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/topics-examples/encounter-complete.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{ENCOUNTER_COMPLETE}-{suffix}");
    let text = text.replace(&format!("\"{ENCOUNTER_COMPLETE}\""), &format!("\"{url}\""));
    let registry = fhir_ws_core::topics::TopicRegistry::from_files(
        &[("encounter-complete.json", &text)],
        fhir_ws_core::fhir::version::FhirVersion::R5,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (url, registry)
}

/// The URL of the example topic `encounter-complete`.
pub const ENCOUNTER_COMPLETE: &str = "http://example.org/FHIR/SubscriptionTopic/encounter-complete";

/// Subscription `index` of a population on topic `topic` (of `topics`): active, filtered
/// to patient `Patient/{prefix}-{index}`, routed as the Subscription API routes it.
pub fn patient_subscription(
    (topic, topics): (&str, &fhir_ws_core::topics::TopicRegistry),
    prefix: &str,
    index: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> StoredSubscription {
    let resource: fhir_ws_core::fhir::Subscription = serde_json::from_value(serde_json::json!({
        "resourceType": "Subscription", "id": format!("{prefix}-{index:06}"), "status": "active",
        "topic": topic, "channelType": {"code": "websocket"}, "content": "id-only",
        "filterBy": [{"resourceType": "Encounter", "filterParameter": "patient",
            "value": format!("Patient/{prefix}-{index}")}]}))
    .unwrap_or_else(|e| panic!("{e}"));
    let route = topics.route_of(&resource);
    StoredSubscription::new("owner", 1, now, resource).routed(route)
}

/// An event on `topic` (id `{prefix}-{event}`) for patient `Patient/{prefix}-{index}`.
pub fn patient_event(topic: &str, prefix: &str, index: usize, event: &str) -> serde_json::Value {
    serde_json::json!({"topic": topic, "eventId": format!("{prefix}-{event}"), "focus": {
        "resourceType": "Encounter", "id": format!("{prefix}-e{index}"), "status": "completed",
        "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}]}],
        "subject": {"reference": format!("Patient/{prefix}-{index}")}}})
}
