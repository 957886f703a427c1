//! In-memory store: the local stack's embedded default and the domain's unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{
    Binding, BindingStore, CounterStore, StoreError, StoredSubscription, SubscriptionStore, TokenRecord, TokenStore,
};

/// Every table in process memory. Cheap to create; shared through an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    subscriptions: Mutex<BTreeMap<String, StoredSubscription>>,
    tokens: Mutex<HashMap<String, TokenRecord>>,
    /// Keyed by (connection id, subscription id), like the table.
    bindings: Mutex<BTreeMap<(String, String), Binding>>,
    counters: Mutex<HashMap<String, u64>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Locks a table. A panic while holding the lock cannot leave a half-written entry
/// (every change is one map operation), so a poisoned lock is safe to keep using.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SubscriptionStore for MemoryStore {
    async fn insert(&self, subscription: &StoredSubscription) -> Result<(), StoreError> {
        let mut table = lock(&self.subscriptions);
        if table.contains_key(subscription.id()) {
            return Err(StoreError::Conflict);
        }
        table.insert(subscription.id().to_owned(), subscription.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredSubscription>, StoreError> {
        Ok(lock(&self.subscriptions).get(id).cloned())
    }

    async fn replace(&self, subscription: &StoredSubscription, expected_version: u64) -> Result<(), StoreError> {
        let mut table = lock(&self.subscriptions);
        match table.get_mut(subscription.id()) {
            Some(current) if current.version() == expected_version => {
                *current = subscription.clone();
                Ok(())
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.subscriptions).remove(id).is_some())
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        Ok(lock(&self.subscriptions).values().filter(|s| s.owner() == owner).cloned().collect())
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
        Ok(lock(&self.bindings).values().filter(|b| b.connection_id == connection_id).cloned().collect())
    }

    async fn bindings_of_subscription(&self, subscription_id: &str) -> Result<Vec<Binding>, StoreError> {
        let mut found: Vec<Binding> =
            lock(&self.bindings).values().filter(|b| b.subscription_id == subscription_id).cloned().collect();
        found.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        Ok(found)
    }

    async fn delete_bindings(&self, connection_id: &str, token_id: Option<&str>) -> Result<usize, StoreError> {
        let mut table = lock(&self.bindings);
        let before = table.len();
        table.retain(|_, b| b.connection_id != connection_id || token_id.is_some_and(|t| b.token_id != t));
        Ok(before - table.len())
    }

    async fn record_message(&self, connection_id: &str, subscription_id: &str, at: i64) -> Result<bool, StoreError> {
        let mut table = lock(&self.bindings);
        let key = (connection_id.to_owned(), subscription_id.to_owned());
        Ok(table
            .get_mut(&key)
            .map(|binding| {
                binding.last_message_at = at;
                binding.handshake_pending = false;
            })
            .is_some())
    }
}

impl CounterStore for MemoryStore {
    async fn events_since_start(&self, subscription_id: &str) -> Result<u64, StoreError> {
        Ok(lock(&self.counters).get(subscription_id).copied().unwrap_or(0))
    }

    async fn next_event_number(&self, subscription_id: &str) -> Result<u64, StoreError> {
        let mut table = lock(&self.counters);
        let counter = table.entry(subscription_id.to_owned()).or_insert(0);
        *counter += 1;
        Ok(*counter)
    }
}
