//! Test support for the fhir-ws end-to-end tests: real API Gateway HTTP API (payload 2.0)
//! events, the two store back ends, and independent FHIR R5, R4B and R4 validators.
//!
//! The DynamoDB back end needs a DynamoDB-compatible server; `infra/test.sh` starts
//! `moto_server`, creates the tables from `template.yaml` and exports
//! `AWS_ENDPOINT_URL_DYNAMODB`, `SUBSCRIPTIONS_TABLE` and `TOKENS_TABLE`. Tests that need
//! it fail (they do not skip) when it is missing.

pub mod browser;
pub mod counting;
pub mod fuzz;
pub mod ig;
pub mod local;
pub mod management_api;
pub mod sockets;
pub mod websocket;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fhir_ws_core::config::{BindingTokenConfig, SubscriptionApiConfig};
use fhir_ws_core::ops::binding_token::BindingTokenOperation;
use fhir_ws_core::ops::subscription_api::SubscriptionApi;
use fhir_ws_core::store::dynamodb::{
    DynamoBindingStore, DynamoCounterStore, DynamoEventStore, DynamoSubscriptionStore, DynamoTokenStore,
};
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
    Stores { subscriptions: store.clone(), tokens: store }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through infra/test.sh, which starts moto_server and creates the tables"
        )
    })
}

/// The Python interpreter of the project's tools (`FHIR_WS_PYTHON`, set by `infra/test.sh`).
pub fn python() -> String {
    required_env("FHIR_WS_PYTHON")
}

/// A loader of the SDK configuration with the functions' own HTTP client
/// (`fhir_ws_core::aws`); the SDK's default client is not linked.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    fhir_ws_core::aws::sdk_config_loader(&fhir_ws_core::config::ProcessEnv).expect("SDK configuration")
}

/// The SDK configuration from the environment, as the functions load it.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_loader().load().await
}

/// An SDK client for the DynamoDB-compatible server named by `AWS_ENDPOINT_URL_DYNAMODB`.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    required_env("AWS_ENDPOINT_URL_DYNAMODB");
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// The DynamoDB back end, on the tables `infra/test.sh` created.
pub async fn dynamodb_stores() -> Stores<DynamoSubscriptionStore, DynamoTokenStore> {
    let client = dynamodb_client().await;
    Stores {
        subscriptions: DynamoSubscriptionStore::new(client.clone(), required_env("SUBSCRIPTIONS_TABLE")),
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

/// The bindings, counters and events tables in memory.
pub fn memory_ws_stores() -> websocket::WsStores<Arc<MemoryStore>, Arc<MemoryStore>, Arc<MemoryStore>> {
    let store = Arc::new(MemoryStore::new());
    websocket::WsStores { bindings: store.clone(), counters: store.clone(), events: store }
}

/// The bindings, counters and events tables `infra/test.sh` created in moto_server.
pub async fn dynamodb_ws_stores() -> websocket::WsStores<DynamoBindingStore, DynamoCounterStore, DynamoEventStore> {
    let client = dynamodb_client().await;
    websocket::WsStores {
        bindings: DynamoBindingStore::new(client.clone(), required_env("BINDINGS_TABLE")),
        counters: DynamoCounterStore::new(client.clone(), required_env("COUNTERS_TABLE")),
        events: DynamoEventStore::new(client, required_env("EVENTS_TABLE")),
    }
}

/// Every table of the template in a DynamoDB Region of their own on moto_server (moto keeps
/// Regions apart), created where missing: for tests whose runs visit every row of a table
/// (the heartbeat run, at times far ahead), which on the shared tables would reach other
/// tests' connections, and be reached by theirs.
pub async fn dynamodb_stores_in(
    region: &'static str,
) -> (
    Stores<DynamoSubscriptionStore, DynamoTokenStore>,
    websocket::WsStores<DynamoBindingStore, DynamoCounterStore, DynamoEventStore>,
) {
    let config = sdk_loader()
        .region(aws_config::Region::new(region))
        .endpoint_url(required_env("AWS_ENDPOINT_URL_DYNAMODB"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    fhir_ws_local::tables::ensure_tables(&client).await.expect("the template's tables");
    let stores = Stores {
        subscriptions: DynamoSubscriptionStore::new(client.clone(), "SubscriptionsTable"),
        tokens: DynamoTokenStore::new(client.clone(), "TokensTable"),
    };
    let ws = websocket::WsStores {
        bindings: DynamoBindingStore::new(client.clone(), "BindingsTable"),
        counters: DynamoCounterStore::new(client.clone(), "CountersTable"),
        events: DynamoEventStore::new(client, "EventsTable"),
    };
    (stores, ws)
}

/// Like [`all_stores!`], with the DynamoDB run on tables of its own in `region`
/// ([`dynamodb_stores_in`]): `isolated_stores!(name, body_fn, "eu-north-1")`.
#[macro_export]
macro_rules! isolated_stores {
    ($name:ident, $body:ident, $region:literal) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$body($crate::memory_stores(), $crate::memory_ws_stores()).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                let (stores, ws_stores) = $crate::dynamodb_stores_in($region).await;
                super::$body(stores, ws_stores).await;
            }
        }
    };
}

/// A binding of `connection` to `subscription` that posts through `callback_url` until
/// `expires_at` (bound half an hour before): no heartbeat, no handshake owed, no grant. For
/// the fan-out's tests and benchmarks, which put bindings straight into the store.
pub fn fanout_binding(
    connection: &str,
    subscription: &str,
    callback_url: &str,
    expires_at: i64,
) -> fhir_ws_core::store::Binding {
    fhir_ws_core::store::Binding {
        connection_id: connection.to_owned(),
        subscription_id: subscription.to_owned(),
        token_id: "t".to_owned(),
        owner: "owner".to_owned(),
        callback_url: callback_url.to_owned(),
        bound_at: expires_at - 1800,
        expires_at,
        last_message_at: expires_at - 1800,
        handshake_pending: false,
        heartbeat_period: None,
        heartbeat_due_at: None,
        grant: None,
    }
}

/// The `subscription-api` function's configuration in the tests: `identity`, `topics`,
/// everything sent up to `full-resource`, [`TEST_WEBSOCKET_URL`]; the handlers get their
/// stores directly, so the table names are not used.
pub fn api_config(
    identity: fhir_ws_core::http::IdentityConfig,
    topics: fhir_ws_core::topics::TopicRegistry,
) -> SubscriptionApiConfig {
    SubscriptionApiConfig {
        max_content: fhir_ws_core::fhir::ContentLevel::FullResource,
        subscriptions_table: "unused".to_owned(),
        counters_table: "unused".to_owned(),
        events_table: "unused".to_owned(),
        bindings_table: "unused".to_owned(),
        websocket_url: TEST_WEBSOCKET_URL.to_owned(),
        identity,
        topics,
    }
}

/// An events queue for the relay that keeps what it is given (or refuses everything).
#[derive(Debug, Clone, Default)]
pub struct RecordingQueue {
    bodies: Arc<std::sync::Mutex<Vec<String>>>,
    refuse: bool,
}

impl RecordingQueue {
    /// A queue that refuses every message.
    pub fn refusing() -> Self {
        Self { refuse: true, ..Self::default() }
    }

    /// The bodies queued since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.bodies.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl fhir_ws_core::relay::EventQueue for RecordingQueue {
    async fn enqueue(&self, bodies: &[String]) -> Result<(), fhir_ws_core::relay::QueueError> {
        if self.refuse {
            return Err(fhir_ws_core::relay::QueueError("refused by the test".to_owned()));
        }
        self.bodies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(bodies.iter().cloned());
        Ok(())
    }
}

/// The upstream table (the relay's ledger) in memory.
pub fn memory_upstream_store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

/// The upstream table `infra/test.sh` created in moto_server.
pub async fn dynamodb_upstream_store() -> fhir_ws_core::store::dynamodb::DynamoUpstreamStore {
    fhir_ws_core::store::dynamodb::DynamoUpstreamStore::new(dynamodb_client().await, required_env("UPSTREAM_TABLE"))
}

/// Runs an async test body once per back end with every table, the upstream table
/// included: `relay_stores!(name, body_fn)` defines `name::memory` and `name::dynamodb`.
#[macro_export]
macro_rules! relay_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$body($crate::memory_stores(), $crate::memory_ws_stores(), $crate::memory_upstream_store())
                    .await;
            }

            #[tokio::test]
            async fn dynamodb() {
                super::$body(
                    $crate::dynamodb_stores().await,
                    $crate::dynamodb_ws_stores().await,
                    $crate::dynamodb_upstream_store().await,
                )
                .await;
            }
        }
    };
}

/// Runs an async test body once per back end with all four tables:
/// `all_stores!(name, body_fn)` defines `name::memory` and `name::dynamodb`.
#[macro_export]
macro_rules! all_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$body($crate::memory_stores(), $crate::memory_ws_stores()).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                super::$body($crate::dynamodb_stores().await, $crate::dynamodb_ws_stores().await).await;
            }
        }
    };
}

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
        let mut event: Value = serde_json::from_str(BASE_EVENT).unwrap_or_else(|e| panic!("base event: {e}"));
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        event["rawPath"] = json!(path);
        event["rawQueryString"] = json!(query);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        let (route, parameters) = route_of(path);
        event["routeKey"] = json!(format!("{method} {route}"));
        event["requestContext"]["routeKey"] = event["routeKey"].clone();
        if !parameters.is_empty() {
            event["pathParameters"] = Value::Object(parameters);
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
        let object = event.as_object_mut().unwrap_or_else(|| panic!("event is an object"));
        object.remove("body");
        if let Some(headers) = object.get_mut("headers").and_then(Value::as_object_mut) {
            headers.remove("content-type");
            headers.remove("content-length");
        }
        let mut built = Self(event);
        match principal {
            Some(sub) => built.0["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub),
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

    /// Marks the body as base64-encoded, as API Gateway does for binary payloads.
    pub fn base64(mut self) -> Self {
        self.0["isBase64Encoded"] = json!(true);
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
        lambda_http::request::from_str(&self.to_json()).unwrap_or_else(|e| panic!("event does not parse: {e}"))
    }
}

/// The route key's path template and the path parameters the template's route for
/// `path` binds (a leading segment before `Subscription`/`metadata` is `{fhirVersion}`).
fn route_of(path: &str) -> (String, serde_json::Map<String, Value>) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut parameters = serde_json::Map::new();
    let rest = match segments.split_first() {
        Some((first, rest))
            if !["Subscription", "SubscriptionTopic", "metadata"].contains(first) && !rest.is_empty() =>
        {
            parameters.insert("fhirVersion".to_owned(), json!(first));
            rest
        }
        _ => segments.as_slice(),
    };
    let prefix = if parameters.is_empty() { "" } else { "/{fhirVersion}" };
    let template = match rest {
        ["Subscription", id] if !id.starts_with('$') => "/Subscription/{id}".to_owned(),
        ["Subscription", _, op] => format!("/Subscription/{{id}}/{op}"),
        ["SubscriptionTopic", _] => "/SubscriptionTopic/{id}".to_owned(),
        _ => format!("/{}", rest.join("/")),
    };
    if let ["Subscription" | "SubscriptionTopic", id] | ["Subscription", id, _] = rest
        && !id.starts_with('$')
    {
        parameters.insert("id".to_owned(), json!(id));
    }
    (format!("{prefix}{template}"), parameters)
}

/// A response's status and parsed JSON body (`Value::Null` when empty).
pub fn status_and_json(response: &Response<Body>) -> (u16, Value) {
    let bytes: &[u8] = response.body().as_ref();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("response body is not JSON ({e}): {bytes:?}"))
    };
    (response.status().as_u16(), json)
}

/// A response header as text.
pub fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Asserts the response is an error with this status and an `OperationOutcome` body
/// with this issue code; returns the body.
pub fn assert_outcome(response: &Response<Body>, status: u16, code: &str) -> Value {
    let (actual, body) = status_and_json(response);
    assert_eq!(actual, status, "unexpected status; body {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
    assert_eq!(body["issue"][0]["severity"], "error", "{body}");
    assert_eq!(header(response, "content-type").as_deref(), Some("application/fhir+json; charset=utf-8"));
    body
}

/// Validates resources with `fhir.resources` (R5 models) through `infra/fhir_validate.py`,
/// using the interpreter named by `FHIR_WS_PYTHON` (set by `infra/test.sh`).
pub fn assert_valid_r5(resources: &[Value]) {
    validate("FHIR_WS_PYTHON", "R5", resources);
}

/// Validates resources with the R4B models of `fhir.resources` 8.x (`FHIR_WS_PYTHON`).
pub fn assert_valid_r4b(resources: &[Value]) {
    validate("FHIR_WS_PYTHON", "R4B", resources);
}

/// Validates resources with the R4 (4.0.1) models of `fhir.resources` 6.1.0, from their
/// own virtualenv (`FHIR_WS_PYTHON_R4`, set by `infra/test.sh`).
pub fn assert_valid_r4(resources: &[Value]) {
    validate("FHIR_WS_PYTHON_R4", "R4", resources);
}

/// Validates resources with the independent validator of `version`.
pub fn assert_valid_in(version: fhir_ws_core::fhir::version::FhirVersion, resources: &[Value]) {
    use fhir_ws_core::fhir::version::FhirVersion;
    match version {
        FhirVersion::R4 => assert_valid_r4(resources),
        FhirVersion::R4B => assert_valid_r4b(resources),
        FhirVersion::R5 => assert_valid_r5(resources),
    }
}

/// The FHIR version of a notification Bundle, by its shape and the Backport IG's
/// profiles (panics on anything else).
pub fn notification_version(frame: &Value) -> fhir_ws_core::fhir::version::FhirVersion {
    use crate::ig::{R4_NOTIFICATION_PROFILE, R4B_NOTIFICATION_PROFILE};
    use fhir_ws_core::fhir::version::FhirVersion;
    let status = frame["entry"][0]["resource"]["resourceType"].as_str();
    match (frame["type"].as_str(), frame["meta"]["profile"][0].as_str(), status) {
        (Some("subscription-notification"), _, Some("SubscriptionStatus")) => FhirVersion::R5,
        (Some("history"), Some(R4_NOTIFICATION_PROFILE), Some("Parameters")) => FhirVersion::R4,
        (Some("history"), Some(R4B_NOTIFICATION_PROFILE), Some("SubscriptionStatus")) => FhirVersion::R4B,
        _ => panic!("not a notification of any version: {frame}"),
    }
}

fn validate(python_variable: &str, version: &str, resources: &[Value]) {
    let python = required_env(python_variable);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/fhir_validate.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(["--fhir-version", version])
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
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("validator failed to run: {e}"));
    assert!(
        output.status.success(),
        "fhir.resources refused the output as FHIR {version}:\n{}\n{input}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The topic the tests' subscriptions use.
pub const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/encounter-start";

/// Signing keys the tests configure (`keyid:secret`, first signs).
pub const TEST_SIGNING_KEYS: &str = "test-2026:test-secret-0123456789abcdef0123456789";
/// The `websocket-url` the tests configure.
pub const TEST_WEBSOCKET_URL: &str = "wss://ws.example.org/live";

/// The operation's configuration as the template would set it, with `keys` and an
/// optional tenant claim.
pub fn binding_token_config(keys: &str, tenant_claim: Option<&str>) -> BindingTokenConfig {
    let env = move |name: &str| match name {
        "TENANT_CLAIM" => tenant_claim.map(str::to_owned),
        "SUBSCRIPTIONS_TABLE" => Some("subscriptions".to_owned()),
        "TOKENS_TABLE" => Some("tokens".to_owned()),
        "BINDINGS_TABLE" => Some("bindings".to_owned()),
        "WEBSOCKET_URL" => Some(TEST_WEBSOCKET_URL.to_owned()),
        "TOKEN_SIGNING_KEYS" => Some(keys.to_owned()),
        _ => None,
    };
    BindingTokenConfig::load(&env).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Both HTTP functions over one back end, as deployed.
pub struct App<S, T> {
    /// The back end.
    pub stores: Stores<S, T>,
    /// The `subscription-api` handler.
    pub api: SubscriptionApi<S>,
    /// The `get-ws-binding-token` handler.
    pub operation: BindingTokenOperation<S, T>,
    /// The keys the operation signs with.
    pub config: BindingTokenConfig,
}

impl<S: Backend, T: TokenBackend> App<S, T> {
    /// Both handlers over `stores`, signing with [`TEST_SIGNING_KEYS`].
    pub fn new(stores: Stores<S, T>) -> Self {
        Self::with_config(stores, binding_token_config(TEST_SIGNING_KEYS, None))
    }

    /// Both handlers over `stores`, configured by `config`, with no WebSocket connections
    /// to take bindings away from.
    pub fn with_config(stores: Stores<S, T>, config: BindingTokenConfig) -> Self {
        Self::with_revocation(stores, config, no_connections())
    }

    /// Both handlers over `stores`, configured by `config`, removing bindings with `revocation`.
    pub fn with_revocation(
        stores: Stores<S, T>,
        config: BindingTokenConfig,
        revocation: Arc<dyn fhir_ws_core::revocation::Revocation>,
    ) -> Self {
        let api_config = api_config(config.identity.clone(), fhir_ws_core::topics::TopicRegistry::default());
        Self {
            api: SubscriptionApi::new(stores.subscriptions.clone(), revocation.clone(), &api_config),
            operation: BindingTokenOperation::new(
                stores.subscriptions.clone(),
                stores.tokens.clone(),
                revocation,
                &config,
            ),
            stores,
            config,
        }
    }

    /// Sends an event to the Subscription API.
    pub async fn api(&self, event: HttpEvent) -> Response<Body> {
        self.api.handle(&event.request(), Utc::now()).await
    }

    /// Sends an event to the operation, at time `now`.
    pub async fn operation_at(&self, event: HttpEvent, now: DateTime<Utc>) -> Response<Body> {
        self.operation.handle(&event.request(), now).await
    }

    /// Sends an event to the operation, now.
    pub async fn operation(&self, event: HttpEvent) -> Response<Body> {
        self.operation_at(event, Utc::now()).await
    }

    /// Creates a subscription through the API as `owner`; returns its id.
    pub async fn create(&self, owner: &str, resource: &Value) -> String {
        let response = self.api(HttpEvent::new("POST", "/Subscription", Some(owner)).json(resource)).await;
        let (status, body) = status_and_json(&response);
        assert_eq!(status, 201, "create failed: {body}");
        body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_owned()
    }

    /// Sets a subscription's status through the API (read, then update).
    pub async fn set_status(&self, owner: &str, id: &str, status: &str) {
        let path = format!("/Subscription/{id}");
        let (_, mut resource) = status_and_json(&self.api(HttpEvent::new("GET", &path, Some(owner))).await);
        resource["status"] = json!(status);
        let response = self.api(HttpEvent::new("PUT", &path, Some(owner)).json(&resource)).await;
        assert_eq!(response.status().as_u16(), 200, "{:?}", status_and_json(&response));
    }
}

/// Revocation for tests of the HTTP functions alone: an empty bindings table (there are
/// no WebSocket connections), so nothing is ever posted or closed.
pub fn no_connections() -> Arc<dyn fhir_ws_core::revocation::Revocation> {
    let unused_endpoint_config = aws_config::SdkConfig::builder().build();
    Arc::new(fhir_ws_core::revocation::Revoker::new(
        Arc::new(MemoryStore::new()),
        fhir_ws_core::push::ManagementApiPusher::new(&unused_endpoint_config),
    ))
}

/// A valid R5 websocket Subscription as a client would POST it.
pub fn websocket_subscription(topic: &str) -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "topic": topic,
        "channelType": {
            "system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type",
            "code": "websocket"
        },
        "content": "id-only",
        "heartbeatPeriod": 60
    })
}

/// A valid R4/R4B websocket Subscription (Backport IG profile) as a client would POST it
/// to the `/R4` or `/R4B` base: `full-resource`, heartbeat every 60 s.
pub fn backport_websocket_subscription(topic: &str) -> Value {
    let ig = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Encounters of the ward",
        "criteria": topic,
        "channel": {
            "extension": [{"url": format!("{ig}/backport-heartbeat-period"), "valueUnsignedInt": 60}],
            "type": "websocket",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{ig}/backport-payload-content"), "valueCode": "full-resource"}]}
        }
    })
}

/// A valid R5 rest-hook Subscription (the websocket one on another channel).
pub fn rest_hook_subscription(topic: &str) -> Value {
    let mut resource = websocket_subscription(topic);
    resource["channelType"]["code"] = json!("rest-hook");
    resource["endpoint"] = json!("https://client.example.org/hook");
    resource["contentType"] = json!("application/fhir+json");
    resource
}

/// The values of every output parameter called `name`.
pub fn output_values(parameters: &Value, name: &str) -> Vec<Value> {
    parameters["parameter"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|p| p["name"] == name)
                .map(|p| {
                    let object = p.as_object().cloned().unwrap_or_default();
                    object
                        .into_iter()
                        .find(|(k, _)| k.starts_with("value"))
                        .map(|(k, v)| json!({ k: v }))
                        .unwrap_or(Value::Null)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every example topic of `infra/topics-examples/`, read as one deployment for R5 events.
pub fn example_topics() -> fhir_ws_core::topics::TopicRegistry {
    example_topics_for(fhir_ws_core::fhir::version::FhirVersion::R5)
}

/// Every example topic of `infra/topics-examples/`, read as one deployment for events in
/// FHIR `version`.
pub fn example_topics_for(version: fhir_ws_core::fhir::version::FhirVersion) -> fhir_ws_core::topics::TopicRegistry {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/topics-examples");
    fhir_ws_core::topics::TopicRegistry::from_folder(&folder, version).unwrap()
}
