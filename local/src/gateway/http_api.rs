//! The HTTP API stand-in: each request becomes the API Gateway HTTP API (payload 2.0)
//! event the deployed API would send, with the authorizer's claims when the bearer token
//! is known, and goes to the function the template routes it to.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use fhir_ws_core::fhir::{IssueType, OperationOutcome};
use fhir_ws_core::http::VERSION_PATH_PARAMETER;
use fhir_ws_core::ops::binding_token::{OPERATION, REVOKE_OPERATION};
use fhir_ws_core::ops::capability::METADATA;
use fhir_ws_core::ops::queries::{EVENTS, STATUS};
use fhir_ws_core::ops::topic_discovery::SUBSCRIPTION_TOPIC;
use fhir_ws_core::relay::{RELAY, RelayHandler};
use serde_json::{Map, Value, json};

use super::{Backend, Gateway, MAX_REQUEST_BYTES};

/// Which function a path belongs to.
enum Function {
    SubscriptionApi,
    BindingToken,
    Relay,
}

/// Where the template routes a request: the function, the route key's path template and
/// the path parameters it binds.
struct Route {
    function: Function,
    template: String,
    parameters: Map<String, Value>,
}

/// Routes like the template: `…/$get-ws-binding-token` and `…/$revoke-ws-binding-token`
/// to the operations' function; `/metadata`,
/// `$status`, `$events` and the rest of `/Subscription…` to the Subscription API
/// function; each also under a leading `/{fhirVersion}` segment (the function checks it).
/// `GET /SubscriptionTopic[/{id}]` goes to the Subscription API function too, and
/// `POST /relay` to the relay function.
fn route(path: &str) -> Option<Route> {
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let mut parameters = Map::new();
    let (prefix, rest) = match segments.split_first() {
        Some((first, rest))
            if first != "Subscription" && first != SUBSCRIPTION_TOPIC && first != METADATA && !rest.is_empty() =>
        {
            parameters.insert(VERSION_PATH_PARAMETER.to_owned(), json!(first));
            (format!("/{{{VERSION_PATH_PARAMETER}}}"), rest)
        }
        _ => (String::new(), segments.as_slice()),
    };
    let (function, template, id) = match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["Subscription", op] if *op == OPERATION || *op == REVOKE_OPERATION => {
            (Function::BindingToken, format!("/Subscription/{op}"), None)
        }
        ["Subscription", id, op] if *op == OPERATION => {
            (Function::BindingToken, format!("/Subscription/{{id}}/{OPERATION}"), Some(*id))
        }
        [metadata] if *metadata == METADATA => (Function::SubscriptionApi, format!("/{METADATA}"), None),
        ["Subscription", op] if *op == STATUS => (Function::SubscriptionApi, format!("/Subscription/{STATUS}"), None),
        ["Subscription", id, op] if *op == STATUS || *op == EVENTS => {
            (Function::SubscriptionApi, format!("/Subscription/{{id}}/{op}"), Some(*id))
        }
        ["Subscription"] => (Function::SubscriptionApi, "/Subscription".to_owned(), None),
        ["Subscription", id] => (Function::SubscriptionApi, "/Subscription/{id}".to_owned(), Some(*id)),
        [relay] if *relay == RELAY && prefix.is_empty() => (Function::Relay, format!("/{RELAY}"), None),
        [topics] if *topics == SUBSCRIPTION_TOPIC => {
            (Function::SubscriptionApi, format!("/{SUBSCRIPTION_TOPIC}"), None)
        }
        [topics, id] if *topics == SUBSCRIPTION_TOPIC => {
            (Function::SubscriptionApi, format!("/{SUBSCRIPTION_TOPIC}/{{id}}"), Some(*id))
        }
        _ => return None,
    };
    if let Some(id) = id {
        parameters.insert("id".to_owned(), json!(id));
    }
    Some(Route { function, template: format!("{prefix}{template}"), parameters })
}

fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn outcome(status: StatusCode, code: IssueType, message: &str) -> Response {
    let body = serde_json::to_string(&OperationOutcome::error(code, message)).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/fhir+json")], body).into_response()
}

/// Answers one HTTP API request.
pub(crate) async fn handle<K: Backend>(
    State(gateway): State<Arc<Gateway<K>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(Route { function, template: route_path, parameters }) = route(&path) else {
        return outcome(StatusCode::NOT_FOUND, IssueType::NotFound, &format!("no route for {path}"));
    };
    let Ok(bytes) = to_bytes(body, MAX_REQUEST_BYTES).await else {
        return outcome(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooCostly, "the request body is too large");
    };
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let user = gateway.users.user(authorization);
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), json!(value));
        }
    }
    headers.insert("host".to_owned(), json!(gateway.host));
    headers.insert("x-forwarded-proto".to_owned(), json!("http"));
    let now = Utc::now();
    let method = parts.method.as_str();
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {route_path}"),
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": gateway.host,
            "domainPrefix": "local",
            "http": {
                "method": method, "path": path, "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": format!("{method} {route_path}"),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if let Some(user) = user {
        event["requestContext"]["authorizer"] = json!({"jwt": {"claims": user.claims(), "scopes": null}});
    }
    if !parameters.is_empty() {
        event["pathParameters"] = Value::Object(parameters);
    }
    if !bytes.is_empty() {
        match std::str::from_utf8(&bytes) {
            Ok(text) => event["body"] = Value::String(text.to_owned()),
            Err(_) => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, path, "request could not be expressed as an API Gateway event");
            return outcome(StatusCode::BAD_REQUEST, IssueType::Invalid, "the request could not be read");
        }
    };
    let response = match function {
        Function::SubscriptionApi => gateway.api.handle(&request, now).await,
        Function::BindingToken => gateway.operation.handle(&request, now).await,
        Function::Relay => {
            let queue = super::events::FanOutQueue(&gateway);
            let relay = RelayHandler::new(gateway.relay.clone(), queue, gateway.relay_secrets.clone());
            relay.handle(&request, now).await
        }
    };
    tracing::info!(
        method,
        path,
        status = response.status().as_u16(),
        principal = user.map_or("(none: unknown or missing bearer token)", |u| u.sub.as_str()),
        "http"
    );
    let (parts, body) = response.into_parts();
    let mut answer = Response::new(Body::from(body.to_vec()));
    *answer.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            answer.headers_mut().insert(name.clone(), value);
        }
    }
    answer
}
