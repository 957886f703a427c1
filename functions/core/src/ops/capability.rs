//! `GET [base]/metadata`: the `CapabilityStatement` (R5) stating what this server does.
//!
//! Only what is implemented is listed: the Subscription resource with its interactions
//! and the `status` search parameter, the three Subscription operations with their
//! canonical definitions, and the websocket channel (the `websocket` channel type, and
//! the WebSocket URL in the `capabilitystatement-websocket` extension). No
//! authentication is needed, as FHIR asks of `metadata`.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::http::{ApiError, fhir_response, origin};

/// The path segment.
pub const METADATA: &str = "metadata";
/// When this statement last changed (`CapabilityStatement.date`).
const STATEMENT_DATE: &str = "2026-11-28";
/// The extension (FHIR extensions pack, on `CapabilityStatement.rest`) naming the
/// server's WebSocket endpoint.
pub const WEBSOCKET_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket";

/// Answers `GET [base]/metadata` with the statement for the server at the request's base
/// URL, whose WebSocket API is at `websocket_url`.
pub fn handle(request: &Request, websocket_url: &str) -> Response<Body> {
    if request.method() != Method::GET {
        return ApiError::method_not_allowed(request.method().as_str(), "GET").into_response();
    }
    fhir_response(StatusCode::OK, &statement(&base_url(request), websocket_url))
}

/// The service base: the request URL without its trailing `/metadata`.
fn base_url(request: &Request) -> String {
    let path = request.uri().path().trim_end_matches('/');
    let prefix = path.strip_suffix(METADATA).unwrap_or(path).trim_end_matches('/');
    format!("{}{prefix}", origin(request))
}

/// The statement itself.
pub fn statement(base: &str, websocket_url: &str) -> Value {
    let operation = |name: &str, id: &str, documentation: &str| {
        json!({
            "name": name,
            "definition": format!("http://hl7.org/fhir/OperationDefinition/{id}"),
            "documentation": documentation,
        })
    };
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "fhir-ws",
        "kind": "instance",
        "software": {"name": "fhir-ws", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "fhir-ws: FHIR topic-based Subscriptions over WebSockets",
            "url": base,
        },
        "fhirVersion": "5.0.0",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Topic-based Subscriptions delivered on the websocket channel \
                (channelType http://terminology.hl7.org/CodeSystem/subscription-channel-type#websocket). \
                Clients get a binding token with $get-ws-binding-token, open the WebSocket at the URL in \
                the websocket extension and send bind-with-token <token>.",
            "extension": [{"url": WEBSOCKET_EXTENSION, "valueUri": websocket_url}],
            "security": {
                "description": "Every interaction but metadata needs a bearer token (JWT); a caller sees \
                    only the subscriptions it created.",
            },
            "resource": [{
                "type": "Subscription",
                "documentation": "Websocket subscriptions are active from creation; other channel types \
                    are stored but not delivered by this server.",
                "interaction": [
                    {"code": "read"}, {"code": "update"}, {"code": "delete"},
                    {"code": "create"}, {"code": "search-type"},
                ],
                "versioning": "versioned-update",
                "readHistory": false,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": [{
                    "name": "status",
                    "definition": "http://hl7.org/fhir/SearchParameter/Subscription-status",
                    "type": "token",
                }],
                "operation": [
                    operation("get-ws-binding-token", "Subscription-get-ws-binding-token",
                        "Type and instance level, GET and POST."),
                    operation("status", "Subscription-status", "Type and instance level, GET and POST."),
                    operation("events", "Subscription-events",
                        "Instance level, GET and POST; events are retained for a configured time."),
                ],
            }],
        }],
    })
}
