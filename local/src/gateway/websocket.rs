//! The WebSocket API stand-in: a real WebSocket server whose connects, frames and closes
//! become the `ApiGatewayWebsocketProxyRequest` events API Gateway sends to
//! `$connect`, `$default` and `$disconnect`.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use fhir_ws_core::fhir::{IssueType, OperationOutcome};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};

use super::connections::Entry;
use super::{Backend, Gateway, STAGE};

/// Largest frame accepted; API Gateway refuses messages over 128 KiB.
const MAX_FRAME_BYTES: usize = 128 * 1024;
/// Read and write buffer of each socket.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024;

/// A connection id shaped like API Gateway's (16 characters of base64).
fn new_connection_id() -> String {
    let bytes: Vec<u8> = uuid::Uuid::new_v4().as_bytes()[..11].to_vec();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The event API Gateway would send for `route` on this connection.
fn event(
    gateway_host: &str,
    route: &str,
    connection_id: &str,
    connected_at: i64,
    source_ip: &str,
    extra: Value,
) -> Option<ApiGatewayWebsocketProxyRequest> {
    let now = Utc::now();
    let event_type = match route {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    let mut event = json!({
        "requestContext": {
            "routeKey": route, "eventType": event_type, "messageDirection": "IN",
            "extendedRequestId": uuid::Uuid::new_v4().to_string(), "requestId": uuid::Uuid::new_v4().to_string(),
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(), "requestTimeEpoch": now.timestamp_millis(),
            "stage": STAGE, "connectedAt": connected_at, "connectionId": connection_id,
            "domainName": gateway_host, "apiId": "local", "identity": {"sourceIp": source_ip},
        },
        "isBase64Encoded": false,
    });
    if let (Some(target), Value::Object(fields)) = (event.as_object_mut(), extra) {
        target.extend(fields);
    }
    match serde_json::from_value(event) {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::error!(%error, route, "could not build a WebSocket event");
            None
        }
    }
}

/// `GET /ws[?token=…]`: runs `$connect`; refuses the upgrade with its status, or upgrades.
pub(crate) async fn upgrade<K: Backend>(
    State(gateway): State<Arc<Gateway<K>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Refused before `$connect` runs, so a refused client leaves nothing behind.
    let Ok(slot) = gateway.capacity.clone().try_acquire_owned() else {
        tracing::warn!(open = gateway.connections.len(), "refused connect: connection limit reached");
        let outcome = OperationOutcome::error(IssueType::Transient, "too many open connections; retry later");
        let body = serde_json::to_string(&outcome).unwrap_or_default();
        let headers = [("content-type", "application/fhir+json"), ("retry-after", "5")];
        return (StatusCode::SERVICE_UNAVAILABLE, headers, body).into_response();
    };
    let connection_id = new_connection_id();
    let connected_at = Utc::now().timestamp_millis();
    let source_ip = peer.ip().to_string();
    let mut header_map = Map::new();
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            header_map.insert(name.as_str().to_owned(), json!(value));
        }
    }
    let mut query_map = Map::new();
    for pair in query.as_deref().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        query_map.insert(percent_decode(name), json!(percent_decode(value)));
    }
    let extra = json!({ "headers": header_map, "queryStringParameters": query_map });
    let Some(connect) = event(&gateway.host, "$connect", &connection_id, connected_at, &source_ip, extra) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let answer = gateway.connect.handle(&connect, Utc::now()).await;
    if answer.status_code != 200 {
        let reason = answer.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let status = u16::try_from(answer.status_code).ok().and_then(|s| StatusCode::from_u16(s).ok());
        let status = status.unwrap_or(StatusCode::FORBIDDEN);
        tracing::info!(connection_id, status = status.as_u16(), reason = first_diagnostics(&reason), "refused connect");
        return (status, [("content-type", "application/fhir+json")], Body::from(reason)).into_response();
    }
    // Small per-connection buffers: notification frames are a few KiB, and tungstenite's
    // 128 KiB defaults would cost a quarter of a MiB per idle connection.
    let mut upgrade = upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES);
    if let Some(protocol) = answer.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()) {
        upgrade = upgrade.protocols([protocol.to_owned()]);
    }
    tracing::info!(connection_id, source_ip, "connected");
    upgrade.on_upgrade(move |socket| async move {
        session(gateway, socket, connection_id, connected_at, source_ip).await;
        drop(slot); // the connection's place is free once it has closed
    })
}

/// The `diagnostics` of an OperationOutcome body, for one-line logs.
fn first_diagnostics(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["issue"][0]["diagnostics"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Decodes `%XX` escapes and `+` in a query component.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// One open connection: frames to `$default` in order, then `$disconnect`.
async fn session<K: Backend>(
    gateway: Arc<Gateway<K>>,
    socket: WebSocket,
    id: String,
    connected_at: i64,
    source_ip: String,
) {
    let (mut sink, mut stream) = socket.split();
    let (sender, mut outbox) = tokio::sync::mpsc::unbounded_channel::<Message>();
    gateway.connections.insert(&id, Entry { sender, connected_at, source_ip: source_ip.clone() });
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(frame) = stream.next().await {
        let body = match frame {
            Ok(Message::Text(text)) => json!({ "body": text.as_str(), "isBase64Encoded": false }),
            Ok(Message::Binary(bytes)) => {
                json!({ "body": base64::engine::general_purpose::STANDARD.encode(&bytes), "isBase64Encoded": true })
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => break,
            Err(error) => {
                tracing::info!(connection_id = id, %error, "connection dropped");
                break;
            }
        };
        // A frozen (half-open) connection's frames never reach the API.
        if gateway.connections.is_frozen(&id) {
            continue;
        }
        if let Some(message) = event(&gateway.host, "$default", &id, connected_at, &source_ip, body) {
            gateway.message.handle(&message, Utc::now()).await;
        }
    }
    gateway.connections.remove(&id);
    writer.abort();
    if let Some(disconnect) = event(&gateway.host, "$disconnect", &id, connected_at, &source_ip, json!({})) {
        fhir_ws_core::ws::disconnect(&gateway.bindings, &disconnect).await;
    }
    tracing::info!(connection_id = id, "closed");
}
