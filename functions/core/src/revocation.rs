//! Taking bindings away before their token expires: when the owner revokes a token, and
//! when a subscription is deleted or set to `off` or `entered-in-error`.
//!
//! Each affected binding is deleted; then each affected connection is told why in an
//! `OperationOutcome` frame. A connection left with no binding gets that frame as its last
//! (severity `error`) and is closed (`DeleteConnection`); one that still has bindings
//! keeps them and gets the frame as a `warning`. Frames and closes are best effort: the
//! bindings are gone either way, so nothing more is delivered for them.
//!
//! A bind racing a revocation is caught by the binder, which re-reads the token after
//! writing its bindings ([`crate::ws::Binder::bind`]); and the fan-out delivers only to
//! subscriptions that are `active` when the event comes ([`crate::fanout`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::fhir::{IssueSeverity, IssueType, OperationOutcome};
use crate::push::{PushError, Pusher};
use crate::store::{Binding, BindingStore, StoreError};

/// Why bindings are taken away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The owner revoked the token that made them.
    TokenRevoked,
    /// The subscription was deleted.
    SubscriptionDeleted(String),
    /// The subscription's status became `off` or `entered-in-error` (the code).
    SubscriptionEnded(String, String),
}

impl Reason {
    fn outcome(&self, connection_closed: bool) -> OperationOutcome {
        let severity = if connection_closed { IssueSeverity::Error } else { IssueSeverity::Warning };
        let (code, what) = match self {
            Self::TokenRevoked => (IssueType::Security, "the binding token was revoked by its owner".to_owned()),
            Self::SubscriptionDeleted(id) => (IssueType::Deleted, format!("Subscription/{id} was deleted")),
            Self::SubscriptionEnded(id, status) => {
                (IssueType::BusinessRule, format!("Subscription/{id} is now {status}"))
            }
        };
        let consequence = if connection_closed {
            "; this connection has nothing left to receive and is closed"
        } else {
            "; its notifications stop, the connection's other subscriptions continue"
        };
        OperationOutcome::single(severity, code, format!("{what}{consequence}"))
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Bindings deleted.
    pub bindings: usize,
    /// Connections closed because nothing was left bound on them.
    pub connections_closed: usize,
}

/// Deletes bindings and tells (and if need be closes) their connections.
#[derive(Clone)]
pub struct Revoker<B, P> {
    bindings: B,
    pusher: P,
}

impl<B, P> std::fmt::Debug for Revoker<B, P> {
    // The stores and clients have nothing worth printing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revoker")
    }
}

impl<B: BindingStore, P: Pusher> Revoker<B, P> {
    /// A revoker over the bindings table and the Management API.
    pub fn new(bindings: B, pusher: P) -> Self {
        Self { bindings, pusher }
    }

    /// The bindings of `subscription_id`; with `token_id`, only those that token made.
    pub async fn bindings_of(&self, subscription_id: &str, token_id: Option<&str>) -> Result<Vec<Binding>, StoreError> {
        let all = self.bindings.bindings_of_subscription(subscription_id).await?;
        Ok(all.into_iter().filter(|b| token_id.is_none_or(|t| b.token_id == t)).collect())
    }

    /// Removes `affected` (deleting each only if its token still made it) and tells their
    /// connections why.
    pub async fn remove(&self, affected: Vec<Binding>, reason: &Reason) -> Result<Removed, StoreError> {
        let mut by_connection: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
        for binding in affected {
            by_connection.entry(binding.connection_id.clone()).or_default().push(binding);
        }
        let mut removed = Removed::default();
        for (connection_id, bindings) in by_connection {
            let mut deleted_any = false;
            for binding in &bindings {
                let token = Some(binding.token_id.as_str());
                if self.bindings.delete_binding(&connection_id, &binding.subscription_id, token).await? {
                    removed.bindings += 1;
                    deleted_any = true;
                }
            }
            if !deleted_any {
                continue;
            }
            let left = self.bindings.bindings_of_connection(&connection_id).await?;
            let close = left.is_empty();
            let callback_url = bindings.first().map(|b| b.callback_url.as_str()).unwrap_or_default();
            let frame = serde_json::to_vec(&reason.outcome(close)).unwrap_or_default();
            let told = self.pusher.post(callback_url, &connection_id, &frame).await;
            if close {
                match self.pusher.close(callback_url, &connection_id).await {
                    Ok(()) => removed.connections_closed += 1,
                    Err(PushError::Gone) => {}
                    Err(error) => tracing::warn!(%error, connection_id, "could not close the connection"),
                }
            }
            if let Err(error) = told {
                tracing::info!(%error, connection_id, "the revocation frame was not delivered");
            }
        }
        tracing::info!(?reason, bindings = removed.bindings, closed = removed.connections_closed, "bindings revoked");
        Ok(removed)
    }

    /// Removes every binding of a subscription that ended (deleted, off, entered-in-error).
    pub async fn subscription_ended(&self, subscription_id: &str, reason: &Reason) -> Result<Removed, StoreError> {
        let affected = self.bindings_of(subscription_id, None).await?;
        self.remove(affected, reason).await
    }
}

/// A boxed future, so that [`Revocation`] can be held as a trait object by the
/// Subscription API (which would otherwise need the binding and push types as
/// parameters everywhere it is named).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the HTTP functions need: bindings taken away when a subscription ends or a
/// token is revoked.
pub trait Revocation: Send + Sync + std::fmt::Debug {
    /// Removes every binding of `subscription_id`, telling their connections `reason`.
    fn subscription_ended<'a>(
        &'a self,
        subscription_id: &'a str,
        reason: Reason,
    ) -> BoxFuture<'a, Result<Removed, StoreError>>;

    /// Removes every binding the token `token_id` made on `subscription_ids`.
    fn token_revoked<'a>(
        &'a self,
        token_id: &'a str,
        subscription_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Removed, StoreError>>;
}

impl<B: BindingStore, P: Pusher> Revocation for Revoker<B, P> {
    fn subscription_ended<'a>(
        &'a self,
        subscription_id: &'a str,
        reason: Reason,
    ) -> BoxFuture<'a, Result<Removed, StoreError>> {
        Box::pin(async move { Revoker::subscription_ended(self, subscription_id, &reason).await })
    }

    fn token_revoked<'a>(
        &'a self,
        token_id: &'a str,
        subscription_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Removed, StoreError>> {
        Box::pin(async move {
            let mut affected = Vec::new();
            for id in subscription_ids {
                affected.extend(self.bindings_of(id, Some(token_id)).await?);
            }
            self.remove(affected, &Reason::TokenRevoked).await
        })
    }
}
