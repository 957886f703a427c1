//! Sending to bound connections: one place for posting with retries, cleaning up after
//! a 410, and sending status notifications (handshake, heartbeat) to one binding.
//! Used by `$default` (handshakes, replies), the fan-out and the heartbeat; forgetting a
//! connection's bindings (after a 410, and on `$disconnect`) lives here too.

use chrono::{DateTime, Utc};

use crate::access::bindable;
use crate::fhir::NotificationType;
use crate::metrics::Metrics;
use crate::notification::{content_level, frame, status_notification};
use crate::push::{Pacer, PushError, Pusher, RetryPolicy, post_with_retry};
use crate::store::{Binding, BindingStore, CounterStore, StoreError, SubscriptionStore};

/// Deletes every binding of a connection: on `$disconnect`, and when the Management API
/// answers 410 Gone (`$disconnect` is best effort on AWS). Rows missed by both expire by TTL.
pub async fn forget_connection<B: BindingStore>(bindings: &B, connection_id: &str) -> Result<usize, StoreError> {
    let deleted = bindings.delete_bindings(connection_id, None).await?;
    tracing::info!(connection_id, deleted, "forgot connection");
    Ok(deleted)
}

/// What sending needs: the stores it reads and writes, the Management API, and the retry
/// policy. Owned by the `$default` handler, the fan-out and the heartbeat.
#[derive(Debug)]
pub struct Delivery<S, B, C, P> {
    /// Subscriptions, to describe them in status notifications.
    pub subscriptions: S,
    /// Bindings, to record messages and forget gone connections.
    pub bindings: B,
    /// Event counters, for `eventsSinceSubscriptionStart`.
    pub counters: C,
    /// The Management API.
    pub pusher: P,
    /// Retries for throttled or failed posts.
    pub retry: RetryPolicy,
    /// This instance's share of the account's Management API rate, if paced (each
    /// post's first attempt waits for it; retries come after 429s or failures, rarely).
    pub pacer: Option<std::sync::Arc<Pacer>>,
}

impl<S, B, C, P> Delivery<S, B, C, P> {
    /// Sending through `pusher` with the default retry policy.
    pub fn new(subscriptions: S, bindings: B, counters: C, pusher: P) -> Self {
        Self { subscriptions, bindings, counters, pusher, retry: RetryPolicy::default(), pacer: None }
    }
}

impl<S: SubscriptionStore, B: BindingStore, C: CounterStore, P: Pusher> Delivery<S, B, C, P> {
    /// Posts one frame with retries. On 410 Gone the connection's bindings are deleted.
    /// Counts `Delivered`, `Gone`, `Retried` and `Failed` in `metrics`.
    pub async fn post(
        &self,
        callback_url: &str,
        connection_id: &str,
        frame: &[u8],
        metrics: &Metrics,
    ) -> Result<(), PushError> {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        let outcome = post_with_retry(&self.pusher, &self.retry, callback_url, connection_id, frame).await;
        metrics.add("Retried", u64::from(outcome.retries));
        match &outcome.result {
            Ok(()) => metrics.add("Delivered", 1),
            Err(PushError::Gone) => {
                metrics.add("Gone", 1);
                if let Err(error) = forget_connection(&self.bindings, connection_id).await {
                    tracing::error!(connection_id, %error, "could not forget a gone connection");
                }
            }
            Err(error) => {
                metrics.add("Failed", 1);
                tracing::warn!(connection_id, %error, "post failed after retries");
            }
        }
        outcome.result
    }

    /// Sends a `handshake` or `heartbeat` for one binding and records it (clearing a
    /// pending handshake, scheduling the next heartbeat). A binding whose subscription
    /// can no longer be bound gets nothing, and no further heartbeat visits.
    pub async fn send_status(
        &self,
        binding: &Binding,
        kind: NotificationType,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), DeliveryError> {
        let found = self.subscriptions.get(&binding.subscription_id).await?;
        let Ok(subscription) = bindable(&binding.subscription_id, found, &binding.owner, now) else {
            self.bindings
                .record_message(&binding.connection_id, &binding.subscription_id, binding.last_message_at, None)
                .await?;
            return Ok(());
        };
        let counter = self.counters.counter(subscription.id()).await?;
        let bundle = status_notification(kind, &subscription, counter.events, now);
        let frame = frame(&subscription, &bundle, content_level(&subscription))
            .map_err(|e| DeliveryError::Push(PushError::Failed(e.to_string())))?;
        self.post(&binding.callback_url, &binding.connection_id, &frame, metrics).await?;
        let at = now.timestamp();
        self.bindings
            .record_message(&binding.connection_id, &binding.subscription_id, at, binding.heartbeat_due_after(at))
            .await?;
        Ok(())
    }
}

/// Why a delivery step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Reading or writing a store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The post failed (gone, or still throttled/failing after retries).
    #[error(transparent)]
    Push(#[from] PushError),
}
