//! The SQS stand-in (`POST /local/events`: one event, delivered as a one-record SQS
//! batch to the fan-out) and the heartbeat schedule, which also stands in for DynamoDB's
//! TTL on the embedded store.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fhir_ws_core::fanout::FanOutError;
use fhir_ws_core::fhir::{IssueSeverity, IssueType, OperationOutcome};
use fhir_ws_core::metrics::Metrics;
use fhir_ws_core::relay::{EventQueue, QueueError};
use serde_json::json;

use super::{Backend, Gateway};

/// One message as the SQS event source mapping hands it to the fan-out.
fn sqs_batch(message_id: &str, body: &str, now: DateTime<Utc>) -> Option<SqsEvent> {
    let batch = json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": format!("local-{message_id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now.timestamp_millis().to_string()},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:local:000000000000:fhir-ws-events",
        "awsRegion": "local",
    }]});
    serde_json::from_value(batch).ok()
}

/// Delivers one message through the fan-out; whether it was delivered.
async fn deliver<K: Backend>(gateway: &Gateway<K>, message_id: &str, body: &str) -> bool {
    let now = Utc::now();
    let Some(batch) = sqs_batch(message_id, body, now) else { return false };
    gateway.fanout.handle_batch(&batch, now).await.batch_item_failures.is_empty()
}

/// Delivers one event as the SQS event source mapping would: 202 when every post went
/// out; 400 with an `OperationOutcome` saying what is wrong when it is not a valid event
/// (on AWS it would go to the dead-letter queue with that reason); 502 when delivery
/// failed in a way SQS would redeliver.
pub(crate) async fn publish<K: Backend>(State(gateway): State<Arc<Gateway<K>>>, body: Bytes) -> Response {
    let message_id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let metrics = Metrics::new("fanout");
    let text = String::from_utf8_lossy(&body);
    let result = gateway.fanout.deliver_message(&message_id, &text, now, &metrics).await;
    metrics.emit(now);
    tracing::info!(message_id, delivered = result.is_ok(), "event");
    match result {
        Ok(()) => {
            let body = json!({ "messageId": message_id, "delivered": true });
            (StatusCode::ACCEPTED, [("content-type", "application/json")], body.to_string()).into_response()
        }
        Err(FanOutError::Invalid(reason)) => {
            let outcome = OperationOutcome::single(IssueSeverity::Error, IssueType::Invalid, reason);
            let body = serde_json::to_string(&outcome).unwrap_or_default();
            (StatusCode::BAD_REQUEST, [("content-type", "application/fhir+json")], body).into_response()
        }
        Err(error) => {
            tracing::warn!(message_id, %error, "event not delivered");
            let body = json!({ "messageId": message_id, "delivered": false });
            (StatusCode::BAD_GATEWAY, [("content-type", "application/json")], body.to_string()).into_response()
        }
    }
}

/// The relay's events queue, locally: each message goes straight through the fan-out
/// (a message the fan-out reports failed fails the queueing, as SQS would not have
/// taken it; the relay then answers 503 and the upstream retries).
pub(crate) struct FanOutQueue<'a, K: Backend>(pub(crate) &'a Gateway<K>);

impl<K: Backend> EventQueue for FanOutQueue<'_, K> {
    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        for body in bodies {
            let message_id = uuid::Uuid::new_v4().to_string();
            if !deliver(self.0, &message_id, body).await {
                return Err(QueueError(format!("the fan-out reported message {message_id} failed")));
            }
        }
        Ok(())
    }
}

/// Runs the heartbeat every `every` until `stopped` turns true, and after each run
/// deletes what has expired from a store without TTL.
pub(crate) async fn heartbeat_schedule<K: Backend>(
    gateway: Arc<Gateway<K>>,
    every: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await; // the first tick is immediate; the schedule starts one period in
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                gateway.heartbeat.run(Utc::now()).await;
                let expired = K::forget_expired(&gateway, Utc::now().timestamp());
                tracing::debug!(expired, "expired items deleted");
            }
            _ = stopped.changed() => return,
        }
    }
}
