//! The SQS stand-in (`POST /local/events`: one event, delivered as a one-record SQS
//! batch to the fan-out) and the heartbeat schedule.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::{Backend, Gateway};

/// Delivers one event as the SQS event source mapping would: 202 when every post went
/// out, 502 when the fan-out reported the record failed (SQS would redeliver it).
pub(crate) async fn publish<K: Backend>(State(gateway): State<Arc<Gateway<K>>>, body: Bytes) -> Response {
    let message_id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let batch = json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": format!("local-{message_id}"),
        "body": String::from_utf8_lossy(&body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now.timestamp_millis().to_string()},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:local:000000000000:fhir-ws-events",
        "awsRegion": "local",
    }]});
    let Ok(batch) = serde_json::from_value(batch) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let response = gateway.fanout.handle_batch(&batch, now).await;
    let delivered = response.batch_item_failures.is_empty();
    tracing::info!(message_id, delivered, "event");
    let status = if delivered { StatusCode::ACCEPTED } else { StatusCode::BAD_GATEWAY };
    let body = json!({ "messageId": message_id, "delivered": delivered });
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

/// Runs the heartbeat every `every` until `stopped` turns true.
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
            }
            _ = stopped.changed() => return,
        }
    }
}
