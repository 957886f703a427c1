//! The Management API stand-in: `POST/GET/DELETE /local/@connections/{id}`, for callers
//! outside the local stack (any SDK client, SigV4-signed; the signature is not checked
//! locally; the stack's own functions post in process through [`super::Connections`]).
//! Unknown or closed connections answer 410 Gone, as API Gateway does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir_ws_core::push::Pusher;
use serde_json::json;

use super::{Backend, Gateway};

fn gone() -> Response {
    (StatusCode::GONE, [("x-amzn-errortype", "GoneException")], r#"{"message":"Gone"}"#).into_response()
}

/// `PostToConnection`: one frame to the connection.
pub(crate) async fn post<K: Backend>(
    State(gateway): State<Arc<Gateway<K>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // The same path as the stack's own posts (text unless it is not UTF-8).
    match Pusher::post(&gateway.connections, "", &id, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => gone(),
    }
}

/// `GetConnection`: when it connected and from where.
pub(crate) async fn get<K: Backend>(State(gateway): State<Arc<Gateway<K>>>, Path(id): Path<String>) -> Response {
    let Some(entry) = gateway.connections.get(&id) else { return gone() };
    let connected_at = chrono::DateTime::from_timestamp_millis(entry.connected_at).unwrap_or_default();
    let body = json!({"connectedAt": connected_at.to_rfc3339(), "identity": {"sourceIp": entry.source_ip}});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// `DeleteConnection`: closes it.
pub(crate) async fn delete<K: Backend>(State(gateway): State<Arc<Gateway<K>>>, Path(id): Path<String>) -> Response {
    let Some(entry) = gateway.connections.get(&id) else { return gone() };
    let _ = entry.sender.send(Message::Close(None));
    StatusCode::NO_CONTENT.into_response()
}
