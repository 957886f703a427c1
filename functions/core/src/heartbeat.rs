//! The heartbeat run (every minute, on an EventBridge schedule): heartbeats where due,
//! handshakes still owed from `$connect` binds, and, for bindings made in SMART mode, a
//! last `OperationOutcome` frame when their grant snapshot expires.
//!
//! **Read pattern.** Bindings carry `heartbeatDueAt` only while something is due for
//! them: a pending handshake (due at once), or the next heartbeat (last message +
//! `heartbeatPeriod`, at most 8 minutes so API Gateway's 10-minute idle timeout never
//! closes a connection that asked for heartbeats). A sparse index keyed by
//! (`dueShard`, `heartbeatDueAt`) holds only those rows, spread over
//! [`HEARTBEAT_SHARDS`] shards; a run queries each shard for `heartbeatDueAt <= now`.
//! It reads only the bindings that are due — never the whole table — plus one counter
//! per subscription involved. With 100,000 bindings all asking for a 60-second
//! heartbeat and no events, a run reads about 100,000 index items (~1 KB each, ≈ 12,500
//! read units with eventually consistent reads) and writes as many updates: the same
//! order as the posts it must make anyway. Bindings without heartbeats cost nothing
//! once their handshake is sent; subscriptions with recent events skip their heartbeat
//! (one counter read) and only move the due time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::concurrency::bounded;
use crate::delivery::{Delivery, DeliveryError};
use crate::fhir::{IssueSeverity, IssueType, NotificationType, OperationOutcome};
use crate::metrics::Metrics;
use crate::push::Pusher;
use crate::store::{
    Binding, BindingStore, CounterStore, EventCounter, HEARTBEAT_SHARDS, StoreError, SubscriptionStore,
};

/// Most bindings handled at once.
const MAX_IN_FLIGHT: usize = 64;

/// The heartbeat with its stores and client; built once per Lambda instance.
#[derive(Debug)]
pub struct Heartbeat<S, B, C, P> {
    delivery: Delivery<S, B, C, P>,
}

impl<S: SubscriptionStore, B: BindingStore, C: CounterStore, P: Pusher> Heartbeat<S, B, C, P> {
    /// A heartbeat over these stores, posting through `pusher`.
    pub fn new(subscriptions: S, bindings: B, counters: C, pusher: P) -> Self {
        Self { delivery: Delivery::new(subscriptions, bindings, counters, pusher) }
    }

    /// Handles one invocation by the schedule, as the `heartbeat` function receives it: a
    /// run at `now` (the schedule's own `time` is when it fired, which a retried or late
    /// invocation has long passed). Returns the run's metrics.
    pub async fn handle(
        &self,
        event: &aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Metrics {
        tracing::debug!(event = event.id.as_deref().unwrap_or_default(), fired = ?event.time, "heartbeat run");
        self.run(now).await
    }

    /// One run at `now`. Returns (and emits) its metrics; a failed shard is logged and
    /// left for the next run.
    pub async fn run(&self, now: DateTime<Utc>) -> Metrics {
        let metrics = Metrics::new("heartbeat");
        for name in
            ["HeartbeatsSent", "HandshakesSent", "HeartbeatsSkipped", "ExpiredRemoved", "Delivered", "Gone", "Failed"]
        {
            metrics.add(name, 0);
        }
        for shard in 0..HEARTBEAT_SHARDS {
            if let Err(error) = self.run_shard(shard, now, &metrics).await {
                tracing::error!(shard, %error, "heartbeat shard failed; the next run retries it");
            }
        }
        metrics.emit(now);
        metrics
    }

    async fn run_shard(&self, shard: u32, now: DateTime<Utc>, metrics: &Metrics) -> Result<(), StoreError> {
        let due = self.delivery.bindings.due_for_heartbeat(shard, now.timestamp()).await?;
        let mut counters: HashMap<&str, EventCounter> = HashMap::new();
        for binding in due.iter().filter(|b| b.heartbeat_period.is_some() && !b.handshake_pending) {
            if !counters.contains_key(binding.subscription_id.as_str()) {
                counters
                    .insert(&binding.subscription_id, self.delivery.counters.counter(&binding.subscription_id).await?);
            }
        }
        let counters = &counters;
        let mut visits = Vec::with_capacity(due.len());
        for binding in &due {
            visits.push(self.visit(binding, counters.get(binding.subscription_id.as_str()).copied(), now, metrics));
        }
        let results: Vec<Result<(), DeliveryError>> = bounded(visits, MAX_IN_FLIGHT).await;
        for error in results.into_iter().filter_map(Result::err) {
            tracing::warn!(shard, %error, "heartbeat step failed; it stays due");
        }
        Ok(())
    }

    /// Does what one due binding needs.
    async fn visit(
        &self,
        binding: &Binding,
        counter: Option<EventCounter>,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<(), DeliveryError> {
        let delivery = &self.delivery;
        if binding.expires_at <= now.timestamp() {
            // Nothing is sent on an expired binding; its rows (one token, one expiry) go.
            self.delivery.bindings.delete_bindings(&binding.connection_id, Some(&binding.token_id)).await?;
            metrics.add("ExpiredRemoved", 1);
            // A binding with a SMART grant snapshot is told why its notifications stop (the
            // access token it was granted under has expired, or its binding token has).
            if binding.grant.is_some() {
                let outcome = OperationOutcome::single(
                    IssueSeverity::Warning,
                    IssueType::Security,
                    format!(
                        "the grant this connection was bound to Subscription/{} under has expired: ask for a new \
                         binding token and bind again",
                        binding.subscription_id
                    ),
                );
                let frame = serde_json::to_vec(&outcome).unwrap_or_default();
                if let Err(error) = delivery.post(&binding.callback_url, &binding.connection_id, &frame, metrics).await
                {
                    tracing::info!(%error, connection_id = binding.connection_id, "the expiry frame was not delivered");
                }
            }
            return Ok(());
        }
        if binding.handshake_pending {
            delivery.send_status(binding, NotificationType::Handshake, now, metrics).await?;
            metrics.add("HandshakesSent", 1);
            return Ok(());
        }
        // An event sent within the period stands in for the heartbeat.
        let next_after_event = counter.and_then(|c| c.last_event_at).and_then(|at| binding.heartbeat_due_after(at));
        match next_after_event {
            Some(next) if next > now.timestamp() => {
                self.delivery
                    .bindings
                    .reschedule_heartbeat(&binding.connection_id, &binding.subscription_id, next)
                    .await?;
                metrics.add("HeartbeatsSkipped", 1);
            }
            _ if binding.heartbeat_period.is_some() => {
                delivery.send_status(binding, NotificationType::Heartbeat, now, metrics).await?;
                metrics.add("HeartbeatsSent", 1);
            }
            _ => {
                // Nothing due after all: take it out of the index.
                let (connection, subscription) = (&binding.connection_id, &binding.subscription_id);
                self.delivery.bindings.record_message(connection, subscription, binding.last_message_at, None).await?;
            }
        }
        Ok(())
    }
}
