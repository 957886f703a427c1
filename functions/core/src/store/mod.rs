//! Storage ports: what the handlers need from the subscriptions and tokens tables.
//!
//! One trait per table, with only the operations the domain uses. Two adapters implement
//! them: [`dynamodb::DynamoSubscriptionStore`] and [`dynamodb::DynamoTokenStore`] (production, and tests against a DynamoDB-compatible
//! server) and [`memory::MemoryStore`] (the local stack's embedded default and unit
//! tests). Both pass the same contract tests (`functions/core/tests/store_contract.rs`).

pub mod dynamodb;
pub mod memory;

use std::future::Future;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::fhir::{Meta, Subscription, SubscriptionState};

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
}

impl StoredSubscription {
    /// Wraps `resource` (whose `id` must be set) and stamps `meta.versionId` and
    /// `meta.lastUpdated` so the stored resource always agrees with the record.
    pub fn new(
        owner: &str,
        version: u64,
        last_updated: DateTime<Utc>,
        mut resource: Subscription,
    ) -> Self {
        let meta = resource.meta.get_or_insert_with(Meta::default);
        meta.version_id = Some(version.to_string());
        meta.last_updated = Some(last_updated.to_rfc3339_opts(SecondsFormat::Millis, true));
        Self {
            owner: owner.to_owned(),
            version,
            last_updated,
            resource,
        }
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
}

/// The subscriptions table.
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription; [`StoreError::Conflict`] if the id is taken.
    fn insert(
        &self,
        subscription: &StoredSubscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads one subscription (strongly consistent).
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredSubscription>, StoreError>> + Send;

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
    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send;
}

/// The tokens table.
pub trait TokenStore: Send + Sync {
    /// Writes a newly issued token's row.
    fn put_token(
        &self,
        record: &TokenRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a token's row (strongly consistent). Rows may outlive their expiry
    /// (TTL deletion is lazy): callers check `expires_at` against the clock.
    fn get_token(
        &self,
        token_id: &str,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Marks a token revoked; `true` if it existed.
    fn revoke_token(&self, token_id: &str)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
}

// Handlers own their stores; these let several handlers share one store (as the
// local stack and the tests do) through an `Arc`.
impl<S: SubscriptionStore> SubscriptionStore for std::sync::Arc<S> {
    fn insert(
        &self,
        subscription: &StoredSubscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).insert(subscription)
    }

    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredSubscription>, StoreError>> + Send {
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

    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<StoredSubscription>, StoreError>> + Send {
        (**self).list_by_owner(owner)
    }
}

impl<T: TokenStore> TokenStore for std::sync::Arc<T> {
    fn put_token(
        &self,
        record: &TokenRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_token(record)
    }

    fn get_token(
        &self,
        token_id: &str,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send {
        (**self).get_token(token_id)
    }

    fn revoke_token(
        &self,
        token_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).revoke_token(token_id)
    }
}
