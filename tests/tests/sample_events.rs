//! The sample events in `infra/events/` (for `sam local invoke` / `cargo lambda invoke`)
//! parse as API Gateway HTTP API events and drive the handlers as documented.

use chrono::Utc;
use fhir_ws_tests::{App, assert_outcome, memory_stores, status_and_json};

fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&json).unwrap_or_else(|e| panic!("{name} is not an HTTP API event: {e}"))
}

#[tokio::test]
async fn sample_events_drive_the_handlers_as_the_readme_says() {
    let app = App::new(memory_stores());
    let now = Utc::now();
    let (status, created) = status_and_json(&app.api.handle(&event("subscription-create.json"), now).await);
    assert_eq!(status, 201, "{created}");
    let (status, found) = status_and_json(&app.api.handle(&event("subscription-search.json"), now).await);
    assert_eq!((status, &found["total"]), (200, &serde_json::json!(1)), "{found}");
    // The R4 sample (route `/{fhirVersion}/Subscription`) creates an R4 subscription, which
    // the R5 search above does not see.
    let (status, r4) = status_and_json(&app.api.handle(&event("subscription-create-r4.json"), now).await);
    assert_eq!((status, &r4["criteria"]), (201, &created["topic"]), "{r4}");
    fhir_ws_tests::assert_valid_r4(&[r4]);
    let (status, token) = status_and_json(&app.operation.handle(&event("get-ws-binding-token-all.json"), now).await);
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["parameter"][2]["valueString"], created["id"]);
    // These name the subscription `example`, which does not exist.
    for name in [
        "get-ws-binding-token-type-post.json",
        "get-ws-binding-token-type-get.json",
        "get-ws-binding-token-instance-post.json",
    ] {
        assert_outcome(&app.operation.handle(&event(name), now).await, 404, "not-found");
    }
    // The revocation sample carries a string that is no token of this server.
    assert_outcome(&app.operation.handle(&event("get-ws-binding-token-revoke.json"), now).await, 400, "invalid");
}

/// The `$status`, `$events` and `metadata` samples drive the `subscription-api` function.
#[tokio::test]
async fn status_events_and_metadata_sample_events_drive_the_handler() {
    use fhir_ws_tests::websocket::WsHarness;
    let ws = WsHarness::new(memory_stores(), fhir_ws_tests::memory_ws_stores()).await;
    let now = Utc::now();
    let created = ws.service.handle(&event("subscription-create.json"), now).await;
    assert_eq!(created.status().as_u16(), 201);
    let (status, found) = status_and_json(&ws.service.handle(&event("subscription-status.json"), now).await);
    assert_eq!((status, &found["total"]), (200, &serde_json::json!(1)), "{found}");
    assert_eq!(found["entry"][0]["resource"]["type"], "query-status");
    // `example` does not exist.
    assert_outcome(&ws.service.handle(&event("subscription-events.json"), now).await, 404, "not-found");
    let (status, statement) = status_and_json(&ws.service.handle(&event("metadata.json"), now).await);
    assert_eq!((status, &statement["resourceType"]), (200, &serde_json::json!("CapabilityStatement")));
}

fn ws_event(name: &str) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let path = format!("{}/../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name} is not a WebSocket event: {e}"))
}

/// The WebSocket samples carry a demo token (not signed by any configured key).
#[tokio::test]
async fn websocket_sample_events_drive_the_handlers() {
    use fhir_ws_tests::websocket::WsHarness;
    let ws = WsHarness::new(memory_stores(), fhir_ws_tests::memory_ws_stores()).await;
    let connect = ws_event("ws-connect.json");
    assert_eq!(connect.request_context.connection_id.as_deref(), Some("L0SM9cOFvHcCIhw="));
    assert_eq!(ws.connect_raw(&connect).await.status_code, 200);
    assert_eq!(ws.connect_raw(&ws_event("ws-connect-with-token.json")).await.status_code, 401);
    assert_eq!(ws.send_raw(&ws_event("ws-default-bind.json")).await.status_code, 200);
    let frames = ws.frames("L0SM9cOFvHcCIhw=");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["issue"][0]["code"], "login");
    assert_eq!(ws.disconnect_raw(&ws_event("ws-disconnect.json")).await.status_code, 200);
}

/// The SQS and EventBridge samples (for `sam local invoke` of fanout and heartbeat)
/// parse as the runtime parses them and drive the handlers.
#[tokio::test]
async fn fanout_and_heartbeat_sample_events_drive_the_handlers() {
    use fhir_ws_tests::websocket::WsHarness;
    let ws = WsHarness::new(memory_stores(), fhir_ws_tests::memory_ws_stores()).await;
    let owner = fhir_ws_tests::unique_principal("alice");
    // The sample's topic and focus, bound on one connection.
    let (_, connection) = ws.subscribe(&owner, &fhir_ws_tests::websocket_subscription(fhir_ws_tests::TOPIC)).await;
    let path = format!("{}/../infra/events/fanout-sqs.json", env!("CARGO_MANIFEST_DIR"));
    let sqs: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("SQS sample");
    let response = ws.fanout.handle_batch(&sqs, Utc::now()).await;
    assert!(response.batch_item_failures.is_empty());
    let delivered = ws.frames(&connection);
    assert_eq!(delivered.last().unwrap()["entry"][0]["resource"]["type"], "event-notification");

    // A `?token=` bind leaves its handshake owed; the schedule's sample, parsed as the
    // runtime parses it and handed to the handler the binary calls, sends it.
    let (id, _) = ws.subscribe(&owner, &fhir_ws_tests::websocket_subscription(fhir_ws_tests::TOPIC)).await;
    let token = ws.token(&owner, std::slice::from_ref(&id)).await;
    let pending = "sample-pending=";
    let connected = ws.connect(fhir_ws_tests::websocket::WsEvent::connect(pending, Some(&token))).await;
    assert_eq!(connected.status_code, 200);
    assert!(ws.frames(pending).is_empty(), "no post before $connect has returned");
    let path = format!("{}/../infra/events/heartbeat-schedule.json", env!("CARGO_MANIFEST_DIR"));
    let schedule: aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("EventBridge sample");
    assert_eq!(schedule.detail_type, "Scheduled Event");
    let metrics = ws.heartbeat.handle(&schedule, Utc::now()).await;
    assert_eq!(metrics.get("HandshakesSent"), 1, "the owed handshake");
    let handshake = ws.frames(pending);
    assert_eq!(handshake.len(), 1, "{handshake:?}");
    assert_eq!(handshake[0]["entry"][0]["resource"]["type"], "handshake");
}

/// The relay samples: a handshake from an upstream server with the sample secret is
/// acknowledged (nothing to queue); the wrong secret is refused.
#[tokio::test]
async fn relay_sample_events_drive_the_handler() {
    use fhir_ws_core::relay::{Relay, RelayHandler, RelaySecrets};
    let queue = fhir_ws_tests::RecordingQueue::default();
    let secrets = RelaySecrets::parse("example-relay-secret-0123456789abcdef").unwrap();
    let relay = Relay::new(fhir_ws_tests::memory_upstream_store(), chrono::TimeDelta::hours(1));
    let handler = RelayHandler::new(relay, queue.clone(), secrets);
    let (status, outcome) = status_and_json(&handler.handle(&event("relay-handshake.json"), Utc::now()).await);
    assert_eq!((status, &outcome["issue"][0]["diagnostics"]), (200, &serde_json::json!("0 event(s) queued")));
    assert_outcome(&handler.handle(&event("relay-wrong-secret.json"), Utc::now()).await, 401, "login");
    assert!(queue.take().is_empty());
}
