//! In-memory store: the local stack's embedded default and the domain's unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{StoreError, StoredSubscription, SubscriptionStore, TokenRecord, TokenStore};

/// Both tables in process memory. Cheap to create; cloneable through an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    subscriptions: Mutex<BTreeMap<String, StoredSubscription>>,
    tokens: Mutex<HashMap<String, TokenRecord>>,
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
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    async fn replace(
        &self,
        subscription: &StoredSubscription,
        expected_version: u64,
    ) -> Result<(), StoreError> {
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
        Ok(lock(&self.subscriptions)
            .values()
            .filter(|s| s.owner() == owner)
            .cloned()
            .collect())
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
        Ok(lock(&self.tokens)
            .get_mut(token_id)
            .map(|record| record.revoked = true)
            .is_some())
    }
}
