//! The web console at `/`: one page (HTML, CSS and JavaScript compiled into the binary, no
//! build step, nothing fetched from elsewhere) that drives this stack as a browser app
//! would: the HTTP API for subscriptions, `$status`, `$events` and binding tokens, the
//! WebSocket API through the JavaScript client (`clients/js`, served as
//! `/console/fhir-ws-client.js`), and `POST /local/events` for test events.
//!
//! A Content-Security-Policy keeps the page to this stack: scripts, styles and fetches
//! from this origin only, WebSockets only to the URL the binding-token operation hands out.
//! `GET /console/users` lists the local bearer tokens so the page can offer a choice of
//! user; they are the authorizer stand-in's static development tokens, never real ones.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_ws_core::fhir::{IssueType, OperationOutcome};
use serde_json::json;

use super::{Backend, Gateway};

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");
/// The JavaScript client the page imports: the package in `clients/js`, as published.
const CLIENT: &str = include_str!("../../../clients/js/src/index.js");

/// The page's security policy, for a WebSocket API at `websocket_url`.
pub(crate) fn content_security_policy(websocket_url: &str) -> String {
    // Scheme and authority: the socket's path and query (the token) vary.
    let origin = websocket_url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {origin}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn page(content_type: &'static str, body: &'static str, policy: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_SECURITY_POLICY, policy.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the console page.
pub(crate) async fn index<K: Backend>(State(gateway): State<Arc<Gateway<K>>>) -> Response {
    page("text/html; charset=utf-8", INDEX, &gateway.console_policy)
}

/// `GET /console/{file}`: the page's script and style sheet.
pub(crate) async fn asset<K: Backend>(State(gateway): State<Arc<Gateway<K>>>, Path(file): Path<String>) -> Response {
    match file.as_str() {
        "console.js" => page("text/javascript; charset=utf-8", SCRIPT, &gateway.console_policy),
        "console.css" => page("text/css; charset=utf-8", STYLE, &gateway.console_policy),
        "fhir-ws-client.js" => page("text/javascript; charset=utf-8", CLIENT, &gateway.console_policy),
        _ => {
            let outcome = OperationOutcome::error(IssueType::NotFound, format!("no console file {file}"));
            let body = serde_json::to_string(&outcome).unwrap_or_default();
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/fhir+json")], body).into_response()
        }
    }
}

/// `GET /console/users`: the local users, their bearer tokens, scopes and launch patients,
/// by name.
pub(crate) async fn users<K: Backend>(State(gateway): State<Arc<Gateway<K>>>) -> Response {
    let users: Vec<_> = gateway
        .users
        .by_principal()
        .into_iter()
        .map(|(principal, token, user)| {
            json!({"principal": principal, "token": token, "scope": user.scope, "patient": user.patient})
        })
        .collect();
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json!(users).to_string())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_sockets_to_the_websocket_api_only() {
        let policy = content_security_policy("ws://127.0.0.1:8080/ws");
        assert!(policy.contains("connect-src 'self' ws://127.0.0.1:8080;"), "{policy}");
        assert!(policy.starts_with("default-src 'none';"));
        let public = content_security_policy("wss://abc.ngrok.app/ws?x=1");
        assert!(public.contains("connect-src 'self' wss://abc.ngrok.app;"), "{public}");
    }
}
