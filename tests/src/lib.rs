//! Test support for the fhir-ws end-to-end tests: real API Gateway HTTP API (payload 2.0)
//! events, the two store back ends, and an independent FHIR R5 validator.
//!
//! The DynamoDB back end needs a DynamoDB-compatible server; `infra/test.sh` starts
//! `moto_server`, creates the tables from `template.yaml` and exports
//! `AWS_ENDPOINT_URL_DYNAMODB`, `SUBSCRIPTIONS_TABLE` and `TOKENS_TABLE`. Tests that need
//! it fail (they do not skip) when it is missing.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use fhir_ws_core::store::dynamodb::{DynamoSubscriptionStore, DynamoTokenStore};
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::store::{SubscriptionStore, TokenStore};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

/// A real HTTP API event captured in the shape API Gateway sends (also used for
/// `sam local invoke` / `cargo lambda invoke`).
const BASE_EVENT: &str = include_str!("../../infra/events/get-ws-binding-token-type-post.json");

/// Both tables of one back end.
#[derive(Clone)]
pub struct Stores<S, T> {
    /// The subscriptions table.
    pub subscriptions: S,
    /// The tokens table.
    pub tokens: T,
}

/// The embedded in-memory back end (one store serving both tables).
pub fn memory_stores() -> Stores<Arc<MemoryStore>, Arc<MemoryStore>> {
    let store = Arc::new(MemoryStore::new());
    Stores {
        subscriptions: store.clone(),
        tokens: store,
    }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through infra/test.sh, which starts moto_server and creates the tables")
    })
}

/// An SDK client for the DynamoDB-compatible server named by `AWS_ENDPOINT_URL_DYNAMODB`.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    required_env("AWS_ENDPOINT_URL_DYNAMODB");
    let config = aws_config::load_from_env().await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// The DynamoDB back end, on the tables `infra/test.sh` created.
pub async fn dynamodb_stores() -> Stores<DynamoSubscriptionStore, DynamoTokenStore> {
    let client = dynamodb_client().await;
    Stores {
        subscriptions: DynamoSubscriptionStore::new(
            client.clone(),
            required_env("SUBSCRIPTIONS_TABLE"),
        ),
        tokens: DynamoTokenStore::new(client, required_env("TOKENS_TABLE")),
    }
}

/// Name of the tokens table the DynamoDB back end uses.
pub fn tokens_table() -> String {
    required_env("TOKENS_TABLE")
}

/// Marker for back ends the generic tests accept.
pub trait Backend: SubscriptionStore + Clone + 'static {}
impl<S: SubscriptionStore + Clone + 'static> Backend for S {}
/// Marker for token back ends the generic tests accept.
pub trait TokenBackend: TokenStore + Clone + 'static {}
impl<T: TokenStore + Clone + 'static> TokenBackend for T {}

/// Runs an async test body once per back end: `both_stores!(name, body_fn)` defines
/// `name::memory` and `name::dynamodb`.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$body($crate::memory_stores()).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                super::$body($crate::dynamodb_stores().await).await;
            }
        }
    };
}

/// A unique principal, so tests sharing one DynamoDB server never see each other's data.
pub fn unique_principal(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4())
}

/// Builder for an API Gateway HTTP API (payload 2.0) event with a JWT authorizer.
#[derive(Debug, Clone)]
pub struct HttpEvent(Value);

impl HttpEvent {
    /// `method` on `path_and_query` (e.g. `/Subscription?status=active`), called by `principal`.
    pub fn new(method: &str, path_and_query: &str, principal: Option<&str>) -> Self {
        let mut event: Value =
            serde_json::from_str(BASE_EVENT).unwrap_or_else(|e| panic!("base event: {e}"));
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        event["rawPath"] = json!(path);
        event["rawQueryString"] = json!(query);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        let route = route_template(path);
        event["routeKey"] = json!(format!("{method} {route}"));
        event["requestContext"]["routeKey"] = event["routeKey"].clone();
        if let Some(id) = path_id(path) {
            event["pathParameters"] = json!({ "id": id });
        }
        if !query.is_empty() {
            // API Gateway joins repeated keys with commas here; lambda_http reads rawQueryString.
            let mut params = serde_json::Map::new();
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let joined = match params.get(k).and_then(Value::as_str) {
                    Some(previous) => format!("{previous},{v}"),
                    None => v.to_owned(),
                };
                params.insert(k.to_owned(), json!(joined));
            }
            event["queryStringParameters"] = Value::Object(params);
        }
        let object = event
            .as_object_mut()
            .unwrap_or_else(|| panic!("event is an object"));
        object.remove("body");
        if let Some(headers) = object.get_mut("headers").and_then(Value::as_object_mut) {
            headers.remove("content-type");
            headers.remove("content-length");
        }
        let mut built = Self(event);
        match principal {
            Some(sub) => {
                built.0["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub)
            }
            None => {
                if let Some(context) = built.0["requestContext"].as_object_mut() {
                    context.remove("authorizer");
                }
                if let Some(headers) = built.0["headers"].as_object_mut() {
                    headers.remove("authorization");
                }
            }
        }
        built
    }

    /// Adds a body with a content type.
    pub fn body(mut self, content_type: &str, body: &str) -> Self {
        self.0["headers"]["content-type"] = json!(content_type);
        self.0["headers"]["content-length"] = json!(body.len().to_string());
        self.0["body"] = json!(body);
        self.0["isBase64Encoded"] = json!(false);
        self
    }

    /// Adds a FHIR JSON body.
    pub fn json(self, body: &Value) -> Self {
        self.body("application/fhir+json", &body.to_string())
    }

    /// Sets a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.0["headers"][name] = json!(value);
        self
    }

    /// Sets a JWT claim.
    pub fn claim(mut self, name: &str, value: &str) -> Self {
        self.0["requestContext"]["authorizer"]["jwt"]["claims"][name] = json!(value);
        self
    }

    /// The event as JSON.
    pub fn to_json(&self) -> String {
        self.0.to_string()
    }

    /// The request `lambda_http` hands the handler for this event.
    pub fn request(&self) -> Request {
        lambda_http::request::from_str(&self.to_json())
            .unwrap_or_else(|e| panic!("event does not parse: {e}"))
    }
}

fn route_template(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["Subscription", id] if !id.starts_with('$') => "/Subscription/{id}".to_owned(),
        ["Subscription", _, op] => format!("/Subscription/{{id}}/{op}"),
        _ => path.to_owned(),
    }
}

fn path_id(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["Subscription", id] | ["Subscription", id, _] if !id.starts_with('$') => {
            Some((*id).to_owned())
        }
        _ => None,
    }
}

/// A response's status and parsed JSON body (`Value::Null` when empty).
pub fn status_and_json(response: &Response<Body>) -> (u16, Value) {
    let bytes: &[u8] = response.body().as_ref();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {bytes:?}"))
    };
    (response.status().as_u16(), json)
}

/// A response header as text.
pub fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Asserts the response is an error with this status and an `OperationOutcome` body
/// with this issue code; returns the body.
pub fn assert_outcome(response: &Response<Body>, status: u16, code: &str) -> Value {
    let (actual, body) = status_and_json(response);
    assert_eq!(actual, status, "unexpected status; body {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
    assert_eq!(body["issue"][0]["severity"], "error", "{body}");
    assert_eq!(
        header(response, "content-type").as_deref(),
        Some("application/fhir+json; charset=utf-8")
    );
    body
}

/// Validates resources with `fhir.resources` (R5 models) through `infra/fhir_validate.py`,
/// using the interpreter named by `FHIR_WS_PYTHON` (set by `infra/test.sh`).
pub fn assert_valid_r5(resources: &[Value]) {
    let python = required_env("FHIR_WS_PYTHON");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/fhir_validate.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the FHIR validator: {e}"));
    let input: String = resources.iter().map(|r| format!("{r}\n")).collect();
    child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("cannot feed the validator: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("validator failed to run: {e}"));
    assert!(
        output.status.success(),
        "fhir.resources refused the output:\n{}\n{input}",
        String::from_utf8_lossy(&output.stderr)
    );
}
