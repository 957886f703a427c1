//! In-memory store: the local stack's embedded default and the domain's unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{
    Binding, BindingStore, BindingsPage, CounterStore, DeliveryProgress, EventCounter, EventRecord, EventStore,
    PAGE_CLAIM_SECONDS, PageId, PageProgress, REMEMBERED_EVENT_KEYS, StoreError, StoredSubscription, SubscriptionStore,
    TokenRecord, TokenStore, UPSTREAM_CLAIM_SECONDS, UpstreamStore, heartbeat_shard,
};

/// Every table in process memory. Cheap to create; shared through an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    subscriptions: Mutex<BTreeMap<String, StoredSubscription>>,
    /// The routing index, like the table's: (bucket key, subscription id) to the end.
    /// Locked after `subscriptions`, and kept in step with it under that lock.
    routes: Mutex<BTreeMap<(String, String), i64>>,
    tokens: Mutex<HashMap<String, TokenRecord>>,
    /// Keyed by (connection id, subscription id), like the table.
    bindings: Mutex<BTreeMap<(String, String), Binding>>,
    counters: Mutex<HashMap<String, MemoryCounter>>,
    /// Keyed by (subscription id, event number), like the table.
    events: Mutex<BTreeMap<(String, u64), EventRecord>>,
    /// Keyed by (upstream, event number): the claim, and whether confirmed.
    upstream_events: Mutex<HashMap<(String, u64), UpstreamClaim>>,
    /// Keyed by upstream: the highest number reached.
    upstream_progress: Mutex<HashMap<String, u64>>,
    /// Delivery pages: their progress, claim time (0: unclaimed) and expiry.
    pages: Mutex<HashMap<PageId, (PageProgress, i64, i64)>>,
}

/// A counter with the event keys it has numbered.
#[derive(Debug, Default)]
struct MemoryCounter {
    state: EventCounter,
    numbered: HashMap<String, u64>,
}

/// One upstream event claimed by the relay.
#[derive(Debug, Clone, Copy)]
struct UpstreamClaim {
    claimed_at: i64,
    confirmed: bool,
    /// Kept until then, like the table's TTL attribute.
    expires_at: i64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every token, binding, recorded event and upstream claim whose TTL attribute
    /// (`expires_at`) is at or before `now`, as DynamoDB's TTL does for the tables (there
    /// lazily, within days; here whenever the caller sweeps). Without it a long-running
    /// local stack would keep every event it ever numbered. Returns how many items went.
    ///
    /// Readers already treat an expired token, binding or event as gone (each checks
    /// `expires_at` against its clock); an upstream claim past its expiry stops
    /// de-duplicating, as it does on DynamoDB once TTL has deleted it.
    pub fn forget_expired(&self, now: i64) -> usize {
        dropped(&mut *lock(&self.tokens), HashMap::len, |tokens| tokens.retain(|_, t| t.expires_at > now))
            + dropped(&mut *lock(&self.bindings), BTreeMap::len, |bindings| bindings.retain(|_, b| b.expires_at > now))
            + dropped(&mut *lock(&self.events), BTreeMap::len, |events| events.retain(|_, e| e.expires_at > now))
            + dropped(&mut *lock(&self.pages), HashMap::len, |pages| pages.retain(|_, (_, _, until)| *until > now))
            + dropped(&mut *lock(&self.upstream_events), HashMap::len, |claims| {
                claims.retain(|_, c| c.expires_at > now)
            })
    }
}

/// How many entries `retain` took out of `table`.
fn dropped<T>(table: &mut T, len: impl Fn(&T) -> usize, retain: impl FnOnce(&mut T)) -> usize {
    let before = len(table);
    retain(table);
    before - len(table)
}

/// Locks a table. A panic while holding the lock cannot leave a half-written entry
/// (every change is one map operation), so a poisoned lock is safe to keep using.
/// One connection's bindings: the table is keyed by (connection id, subscription id), so
/// they are one range of it, found without visiting the others (a disconnect among
/// 10,000 connections used to scan them all).
fn of_connection<'a>(
    table: &'a BTreeMap<(String, String), Binding>,
    connection_id: &'a str,
) -> impl Iterator<Item = &'a Binding> + 'a {
    table
        .range((connection_id.to_owned(), String::new())..)
        .take_while(move |((connection, _), _)| connection == connection_id)
        .map(|(_, binding)| binding)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    /// Moves `id` in the routing index from where `before` put it to where `after` does.
    fn reindex(&self, id: &str, before: Option<&StoredSubscription>, after: Option<&StoredSubscription>) {
        let mut routes = lock(&self.routes);
        if let Some((key, _)) = before.and_then(StoredSubscription::route_index) {
            routes.remove(&(key, id.to_owned()));
        }
        if let Some((key, until)) = after.and_then(StoredSubscription::route_index) {
            routes.insert((key, id.to_owned()), until);
        }
    }
}

impl SubscriptionStore for MemoryStore {
    async fn insert(&self, subscription: &StoredSubscription) -> Result<(), StoreError> {
        let mut table = lock(&self.subscriptions);
        if table.contains_key(subscription.id()) {
            return Err(StoreError::Conflict);
        }
        table.insert(subscription.id().to_owned(), subscription.clone());
        self.reindex(subscription.id(), None, Some(subscription));
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredSubscription>, StoreError> {
        Ok(lock(&self.subscriptions).get(id).cloned())
    }

    async fn replace(&self, subscription: &StoredSubscription, expected_version: u64) -> Result<(), StoreError> {
        let mut table = lock(&self.subscriptions);
        match table.get_mut(subscription.id()) {
            Some(current) if current.version() == expected_version => {
                let before = std::mem::replace(current, subscription.clone());
                self.reindex(subscription.id(), Some(&before), Some(subscription));
                Ok(())
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut table = lock(&self.subscriptions);
        let removed = table.remove(id);
        self.reindex(id, removed.as_ref(), None);
        Ok(removed.is_some())
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        Ok(lock(&self.subscriptions).values().filter(|s| s.owner() == owner).cloned().collect())
    }

    async fn list_by_topic(&self, topic: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        Ok(lock(&self.subscriptions)
            .values()
            .filter(|s| s.resource().topic.as_deref() == Some(topic))
            .cloned()
            .collect())
    }

    async fn list_by_route(
        &self,
        topic: &str,
        routes: &[String],
        now: i64,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let table = lock(&self.subscriptions);
        let index = lock(&self.routes);
        let mut ids = std::collections::BTreeSet::new();
        for route in routes {
            let key = super::route_index_key(topic, route);
            ids.extend(
                index
                    .range((key.clone(), String::new())..)
                    .take_while(|((bucket, _), _)| *bucket == key)
                    .filter(|(_, until)| **until > now)
                    .map(|((_, id), _)| id.clone()),
            );
        }
        Ok(ids.iter().filter_map(|id| table.get(id)).cloned().collect())
    }
}

impl TokenStore for MemoryStore {
    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        lock(&self.tokens).insert(record.token_id.clone(), record.clone());
        Ok(())
    }

    async fn get_token(&self, token_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(lock(&self.tokens).get(token_id).cloned())
    }

    async fn revoke_token(&self, token_id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.tokens).get_mut(token_id).map(|record| record.revoked = true).is_some())
    }
}

impl BindingStore for MemoryStore {
    async fn put_bindings(&self, bindings: &[Binding]) -> Result<(), StoreError> {
        let mut table = lock(&self.bindings);
        for binding in bindings {
            let key = (binding.connection_id.clone(), binding.subscription_id.clone());
            table.insert(key, binding.clone());
        }
        Ok(())
    }

    async fn bindings_of_connection(&self, connection_id: &str) -> Result<Vec<Binding>, StoreError> {
        Ok(of_connection(&lock(&self.bindings), connection_id).cloned().collect())
    }

    async fn bindings_of_subscription(&self, subscription_id: &str) -> Result<Vec<Binding>, StoreError> {
        // The table is ordered by connection id first, so these come in that order already.
        Ok(lock(&self.bindings).values().filter(|b| b.subscription_id == subscription_id).cloned().collect())
    }

    async fn bindings_page(
        &self,
        subscription_id: &str,
        after: Option<&str>,
        through: Option<&str>,
        limit: usize,
    ) -> Result<BindingsPage, StoreError> {
        let table = lock(&self.bindings);
        let mut bindings: Vec<Binding> = table
            .values()
            .filter(|b| b.subscription_id == subscription_id)
            .filter(|b| after.is_none_or(|after| b.connection_id.as_str() > after))
            .filter(|b| through.is_none_or(|through| b.connection_id.as_str() <= through))
            .cloned()
            .collect();
        bindings.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        let more = bindings.len() > limit;
        bindings.truncate(limit);
        let next = more.then(|| bindings.last().map(|b| b.connection_id.clone())).flatten();
        Ok(BindingsPage { bindings, next })
    }

    async fn delete_bindings(&self, connection_id: &str, token_id: Option<&str>) -> Result<usize, StoreError> {
        let mut table = lock(&self.bindings);
        let doomed: Vec<(String, String)> = of_connection(&table, connection_id)
            .filter(|b| token_id.is_none_or(|t| b.token_id == t))
            .map(|b| (b.connection_id.clone(), b.subscription_id.clone()))
            .collect();
        for key in &doomed {
            table.remove(key);
        }
        Ok(doomed.len())
    }

    async fn delete_binding(
        &self,
        connection_id: &str,
        subscription_id: &str,
        token_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut table = lock(&self.bindings);
        let key = (connection_id.to_owned(), subscription_id.to_owned());
        let made_by_token = table.get(&key).is_some_and(|b| token_id.is_none_or(|t| b.token_id == t));
        Ok(made_by_token && table.remove(&key).is_some())
    }

    async fn record_message(
        &self,
        connection_id: &str,
        subscription_id: &str,
        at: i64,
        next_heartbeat_due: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut table = lock(&self.bindings);
        let key = (connection_id.to_owned(), subscription_id.to_owned());
        Ok(table
            .get_mut(&key)
            .map(|binding| {
                binding.last_message_at = at;
                binding.handshake_pending = false;
                binding.heartbeat_due_at = next_heartbeat_due;
            })
            .is_some())
    }

    async fn reschedule_heartbeat(
        &self,
        connection_id: &str,
        subscription_id: &str,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        let mut table = lock(&self.bindings);
        let key = (connection_id.to_owned(), subscription_id.to_owned());
        Ok(table.get_mut(&key).map(|binding| binding.heartbeat_due_at = Some(due_at)).is_some())
    }

    async fn due_for_heartbeat(&self, shard: u32, now: i64) -> Result<Vec<Binding>, StoreError> {
        Ok(lock(&self.bindings)
            .values()
            .filter(|b| b.heartbeat_due_at.is_some_and(|due| due <= now) && heartbeat_shard(&b.connection_id) == shard)
            .cloned()
            .collect())
    }
}

impl CounterStore for MemoryStore {
    async fn counter(&self, subscription_id: &str) -> Result<EventCounter, StoreError> {
        Ok(lock(&self.counters).get(subscription_id).map(|c| c.state).unwrap_or_default())
    }

    async fn number_event(&self, subscription_id: &str, event_key: &str, at: i64) -> Result<u64, StoreError> {
        let mut table = lock(&self.counters);
        let counter = table.entry(subscription_id.to_owned()).or_default();
        if let Some(number) = counter.numbered.get(event_key) {
            return Ok(*number);
        }
        counter.state.events += 1;
        counter.state.last_event_at = Some(at);
        let number = counter.state.events;
        counter.numbered.insert(event_key.to_owned(), number);
        // Forget keys older than the remembered window, as the DynamoDB adapter does.
        let oldest_kept = number.saturating_sub(REMEMBERED_EVENT_KEYS);
        counter.numbered.retain(|_, n| *n > oldest_kept);
        Ok(number)
    }
}

impl DeliveryProgress for MemoryStore {
    async fn claim_page(&self, page: &PageId, now: i64, expires_at: i64) -> Result<Option<PageProgress>, StoreError> {
        let mut pages = lock(&self.pages);
        match pages.get_mut(page) {
            None => {
                pages.insert(page.clone(), (PageProgress::default(), now, expires_at));
                Ok(None)
            }
            Some((_, claimed_at, _)) if *claimed_at > now - PAGE_CLAIM_SECONDS => Err(StoreError::Conflict),
            Some((progress, claimed_at, _)) => {
                *claimed_at = now;
                Ok(Some(progress.clone()))
            }
        }
    }

    async fn set_page_next(&self, page: &PageId, next: &str) -> Result<(), StoreError> {
        if let Some((progress, _, _)) = lock(&self.pages).get_mut(page) {
            progress.next = Some(next.to_owned());
        }
        Ok(())
    }

    async fn finish_page(&self, page: &PageId, owed: &[String]) -> Result<(), StoreError> {
        if let Some((progress, claimed_at, _)) = lock(&self.pages).get_mut(page) {
            progress.finished = true;
            progress.owed = owed.to_vec();
            *claimed_at = 0;
        }
        Ok(())
    }
}

impl EventStore for MemoryStore {
    async fn record_event(&self, record: &EventRecord) -> Result<(), StoreError> {
        let key = (record.subscription_id.clone(), record.event_number);
        lock(&self.events).entry(key).or_insert_with(|| record.clone());
        Ok(())
    }

    async fn events(
        &self,
        subscription_id: &str,
        since: u64,
        until: u64,
        limit: usize,
        now: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if since > until {
            return Ok(Vec::new());
        }
        let from = (subscription_id.to_owned(), since);
        let to = (subscription_id.to_owned(), until);
        Ok(lock(&self.events)
            .range(from..=to)
            .map(|(_, r)| r)
            .filter(|r| r.expires_at > now)
            .take(limit)
            .cloned()
            .collect())
    }
}

impl UpstreamStore for MemoryStore {
    async fn claim_event(&self, upstream: &str, number: u64, now: i64, expires_at: i64) -> Result<bool, StoreError> {
        let mut table = lock(&self.upstream_events);
        let key = (upstream.to_owned(), number);
        match table.get(&key) {
            Some(claim) if claim.confirmed || claim.claimed_at >= now - UPSTREAM_CLAIM_SECONDS => Ok(false),
            _ => {
                table.insert(key, UpstreamClaim { claimed_at: now, confirmed: false, expires_at });
                Ok(true)
            }
        }
    }

    async fn confirm_event(&self, upstream: &str, number: u64) -> Result<(), StoreError> {
        if let Some(claim) = lock(&self.upstream_events).get_mut(&(upstream.to_owned(), number)) {
            claim.confirmed = true;
        }
        Ok(())
    }

    async fn release_event(&self, upstream: &str, number: u64) -> Result<(), StoreError> {
        let mut table = lock(&self.upstream_events);
        let key = (upstream.to_owned(), number);
        if table.get(&key).is_some_and(|claim| !claim.confirmed) {
            table.remove(&key);
        }
        Ok(())
    }

    async fn heard_from(
        &self,
        upstream: &str,
        _reference: &str,
        reached: Option<u64>,
        _now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut table = lock(&self.upstream_progress);
        let before = table.get(upstream).copied();
        if let Some(reached) = reached
            && before.is_none_or(|b| reached > b)
        {
            table.insert(upstream.to_owned(), reached);
        }
        Ok(before)
    }
}
