//! WebSocket test support: API Gateway WebSocket events built from the samples in
//! `infra/events/`, and a harness wiring the three WebSocket handlers to a back end and
//! to the Management API stub, as the template wires the Lambdas.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chrono::{DateTime, Utc};
use fhir_ws_core::config::WebSocketConfig;
use fhir_ws_core::ops::SubscriptionService;
use std::time::Duration;

use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::heartbeat::Heartbeat;
use fhir_ws_core::push::{ManagementApiPusher, RetryPolicy};
use fhir_ws_core::revocation::{Revocation, Revoker};
use fhir_ws_core::store::{Binding, BindingStore, CounterStore, EventStore};
use fhir_ws_core::ws::{Binder, ConnectHandler, MessageHandler, disconnect};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::management_api::ManagementApiStub;
use crate::{App, Backend, HttpEvent, Stores, TEST_SIGNING_KEYS, TokenBackend, output_values, status_and_json};

const CONNECT: &str = include_str!("../../infra/events/ws-connect.json");
const MESSAGE: &str = include_str!("../../infra/events/ws-default-bind.json");
const DISCONNECT: &str = include_str!("../../infra/events/ws-disconnect.json");
const SQS: &str = include_str!("../../infra/events/fanout-sqs.json");

/// Builder for SQS batches as the event source mapping delivers them to `fanout`.
#[derive(Debug, Clone)]
pub struct SqsBatch(Value);

impl Default for SqsBatch {
    fn default() -> Self {
        let mut batch: Value = serde_json::from_str(SQS).expect("sample SQS event");
        batch["Records"] = json!([]);
        Self(batch)
    }
}

impl SqsBatch {
    /// Adds a record with this message id and body (receive count 1).
    pub fn message(self, message_id: &str, body: &Value) -> Self {
        self.raw(message_id, &body.to_string(), 1)
    }

    /// Adds a record with any body text and receive count.
    pub fn raw(mut self, message_id: &str, body: &str, receive_count: u32) -> Self {
        let sample: Value = serde_json::from_str(SQS).expect("sample SQS event");
        let mut record = sample["Records"][0].clone();
        record["messageId"] = json!(message_id);
        record["body"] = json!(body);
        record["attributes"]["ApproximateReceiveCount"] = json!(receive_count.to_string());
        if let Some(records) = self.0["Records"].as_array_mut() {
            records.push(record);
        }
        self
    }

    /// The event as the Lambda runtime deserializes it.
    pub fn event(&self) -> aws_lambda_events::sqs::SqsEvent {
        serde_json::from_value(self.0.clone()).expect("an SQS event")
    }
}

/// The bindings, counters and events tables of one back end.
#[derive(Clone)]
pub struct WsStores<B, C, E> {
    /// The bindings table.
    pub bindings: B,
    /// The counters table.
    pub counters: C,
    /// The event history table.
    pub events: E,
}

/// Builder for API Gateway WebSocket events.
#[derive(Debug, Clone)]
pub struct WsEvent(Value);

impl WsEvent {
    fn from_sample(sample: &str, connection_id: &str) -> Self {
        let mut event: Value = serde_json::from_str(sample).expect("sample event");
        event["requestContext"]["connectionId"] = json!(connection_id);
        Self(event)
    }

    /// `$connect`, with `?token=` when given.
    pub fn connect(connection_id: &str, token: Option<&str>) -> Self {
        let mut event = Self::from_sample(CONNECT, connection_id);
        if let Some(token) = token {
            event.0["queryStringParameters"] = json!({ "token": token });
            event.0["multiValueQueryStringParameters"] = json!({ "token": [token] });
        }
        event
    }

    /// `$default` carrying a text frame.
    pub fn message(connection_id: &str, text: &str) -> Self {
        let mut event = Self::from_sample(MESSAGE, connection_id);
        event.0["body"] = json!(text);
        event.0["isBase64Encoded"] = json!(false);
        event
    }

    /// `$default` carrying a binary frame (API Gateway base64-encodes it).
    pub fn binary(connection_id: &str, bytes: &[u8]) -> Self {
        use base64::Engine as _;
        let mut event = Self::from_sample(MESSAGE, connection_id);
        event.0["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        event.0["isBase64Encoded"] = json!(true);
        event
    }

    /// `$disconnect`.
    pub fn disconnect(connection_id: &str) -> Self {
        Self::from_sample(DISCONNECT, connection_id)
    }

    /// Sets a header (e.g. `Sec-WebSocket-Protocol`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.0["headers"][name] = json!(value);
        self.0["multiValueHeaders"][name] = json!([value]);
        self
    }

    /// The event as the Lambda runtime deserializes it.
    pub fn event(&self) -> ApiGatewayWebsocketProxyRequest {
        serde_json::from_value(self.0.clone()).expect("a WebSocket event")
    }
}

/// The WebSocket handlers, the HTTP handlers and the Management API stub over one back end.
pub struct WsHarness<S, T, B, C, E> {
    /// The HTTP handlers (to create subscriptions and get tokens).
    pub app: App<S, T>,
    /// The `subscription-api` function whole: the Subscription API, `$status`, `$events`
    /// and `metadata`.
    pub service: SubscriptionService<S, C, E>,
    /// The bindings, counters and events tables.
    pub ws_stores: WsStores<B, C, E>,
    /// The Management API stand-in.
    pub management: ManagementApiStub,
    connect: ConnectHandler<S, T, B>,
    message: MessageHandler<S, T, B, C, ManagementApiPusher>,
    /// The fan-out, as the `fanout` Lambda wires it (fast retries for tests).
    pub fanout: FanOut<S, B, C, E, ManagementApiPusher>,
    /// The heartbeat, as the `heartbeat` Lambda wires it.
    pub heartbeat: Heartbeat<S, B, C, ManagementApiPusher>,
}

/// How long the harness's fan-out keeps events.
pub const TEST_EVENT_RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The FHIR server base URL the harness's fan-out uses.
pub const TEST_FHIR_BASE: &str = "https://fhir.example.org/r5";

/// Subprotocols the harness's `$connect` accepts.
pub const TEST_SUBPROTOCOLS: &str = "fhir-notifications.v1";

impl<S: Backend, T: TokenBackend, B: BindingStore + Clone + 'static, C: CounterStore + Clone, E: EventStore + Clone>
    WsHarness<S, T, B, C, E>
{
    /// Wires everything; the functions are configured with the stub's endpoint for stage `live`.
    pub async fn new(stores: Stores<S, T>, ws_stores: WsStores<B, C, E>) -> Self {
        let management = ManagementApiStub::start().await;
        let endpoint = management.endpoint("live");
        let env = |name: &str| match name {
            "SUBSCRIPTIONS_TABLE" | "TOKENS_TABLE" | "BINDINGS_TABLE" => Some("unused-by-these-tests".to_owned()),
            "TOKEN_SIGNING_KEYS" => Some(TEST_SIGNING_KEYS.to_owned()),
            "WEBSOCKET_MANAGEMENT_ENDPOINT" => Some(endpoint.clone()),
            "WEBSOCKET_SUBPROTOCOLS" => Some(TEST_SUBPROTOCOLS.to_owned()),
            _ => None,
        };
        let config = WebSocketConfig::load(&env).expect("websocket config");
        let binder = || {
            Binder::new(
                stores.subscriptions.clone(),
                stores.tokens.clone(),
                ws_stores.bindings.clone(),
                config.keys.clone(),
            )
        };
        let aws = crate::sdk_config().await;
        let connect = ConnectHandler::new(binder(), config.management_endpoint.clone(), config.subprotocols.clone())
            .with_allowed_origins(config.allowed_origins.clone());
        let message = MessageHandler::new(
            binder(),
            ws_stores.counters.clone(),
            ManagementApiPusher::new(&aws),
            config.management_endpoint.clone(),
        );
        let retry =
            RetryPolicy { attempts: 4, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) };
        let fanout = FanOut::new(
            stores.subscriptions.clone(),
            ws_stores.bindings.clone(),
            ws_stores.counters.clone(),
            EventHistory { store: ws_stores.events.clone(), retention: TEST_EVENT_RETENTION },
            ManagementApiPusher::new(&aws),
            TEST_FHIR_BASE,
        )
        .with_retry(retry);
        let service_config = crate::api_config(
            fhir_ws_core::http::IdentityConfig::default(),
            fhir_ws_core::topics::TopicRegistry::default(),
        );
        let revocation: Arc<dyn Revocation> =
            Arc::new(Revoker::new(ws_stores.bindings.clone(), ManagementApiPusher::new(&aws)));
        let service = SubscriptionService::new(
            stores.subscriptions.clone(),
            ws_stores.counters.clone(),
            ws_stores.events.clone(),
            revocation.clone(),
            &service_config,
        );
        let heartbeat = Heartbeat::new(
            stores.subscriptions.clone(),
            ws_stores.bindings.clone(),
            ws_stores.counters.clone(),
            ManagementApiPusher::new(&aws),
        );
        let app = App::with_revocation(stores, crate::binding_token_config(TEST_SIGNING_KEYS, None), revocation);
        Self { app, service, ws_stores, management, connect, message, fanout, heartbeat }
    }

    /// Creates `count` websocket subscriptions for `owner` and gets one token for all of them.
    pub async fn subscriptions_and_token(&self, owner: &str, count: usize) -> (Vec<String>, String) {
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(self.app.create(owner, &crate::websocket_subscription(crate::TOPIC)).await);
        }
        let token = self.token(owner, &ids).await;
        (ids, token)
    }

    /// A token for these subscriptions of `owner`, issued now.
    pub async fn token(&self, owner: &str, ids: &[String]) -> String {
        self.token_at(owner, ids, Utc::now()).await
    }

    /// A token for these subscriptions of `owner`, issued at `now`.
    pub async fn token_at(&self, owner: &str, ids: &[String], now: DateTime<Utc>) -> String {
        let query: Vec<String> = ids.iter().map(|id| format!("id={id}")).collect();
        let path = format!("/Subscription/$get-ws-binding-token?{}", query.join("&"));
        let response = self.app.operation_at(HttpEvent::new("GET", &path, Some(owner)), now).await;
        let (status, body) = status_and_json(&response);
        assert_eq!(status, 200, "{body}");
        output_values(&body, "token")[0]["valueString"].as_str().expect("token").to_owned()
    }

    /// Sends `$connect` now.
    pub async fn connect(&self, event: WsEvent) -> ApiGatewayProxyResponse {
        self.connect_at(event, Utc::now()).await
    }

    /// Sends `$connect` at `now`.
    pub async fn connect_at(&self, event: WsEvent, now: DateTime<Utc>) -> ApiGatewayProxyResponse {
        self.connect.handle(&event.event(), now).await
    }

    /// Sends a text frame on a connection.
    pub async fn send(&self, connection_id: &str, text: &str) -> ApiGatewayProxyResponse {
        self.message.handle(&WsEvent::message(connection_id, text).event(), Utc::now()).await
    }

    /// Sends any `$default` event.
    pub async fn send_event(&self, event: WsEvent) -> ApiGatewayProxyResponse {
        self.message.handle(&event.event(), Utc::now()).await
    }

    /// Runs the fan-out on a batch at `now`; returns the ids of records reported failed.
    pub async fn fan_out_at(&self, batch: &SqsBatch, now: DateTime<Utc>) -> Vec<String> {
        let response = self.fanout.handle_batch(&batch.event(), now).await;
        response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    /// Runs the fan-out on a batch now.
    pub async fn fan_out(&self, batch: &SqsBatch) -> Vec<String> {
        self.fan_out_at(batch, Utc::now()).await
    }

    /// Binds a new connection with `token` through `$default` (handshakes sent); returns its
    /// id. Asserts the bind worked (answered 200, a handshake posted to the connection), so
    /// a test that then expects nothing to arrive cannot pass on a failed bind.
    pub async fn bound_connection(&self, token: &str) -> String {
        let connection = format!("{}=", &uuid::Uuid::new_v4().simple().to_string()[..15]);
        let answer = self.send(&connection, &format!("bind-with-token {token}")).await;
        assert_eq!(answer.status_code, 200, "bind answered {answer:?}");
        let frames = self.management.delivered_to(&connection);
        assert!(
            frames.iter().any(|frame| frame.text().contains("\"handshake\"")),
            "no handshake after the bind: {:?}",
            frames.iter().map(|f| f.text()).collect::<Vec<_>>()
        );
        connection
    }

    /// Creates a subscription from `resource` for `owner`, gets a token and binds a new
    /// connection; returns (subscription id, connection id).
    pub async fn subscribe(&self, owner: &str, resource: &Value) -> (String, String) {
        let id = self.app.create(owner, resource).await;
        let token = self.token(owner, std::slice::from_ref(&id)).await;
        (id, self.bound_connection(&token).await)
    }

    /// Sends an HTTP API event to the `subscription-api` function (Subscription API,
    /// `$status`, `$events`, `metadata`), now.
    pub async fn service_call(&self, event: HttpEvent) -> lambda_http::Response<lambda_http::Body> {
        self.service.handle(&event.request(), Utc::now()).await
    }

    /// [`Self::service_call`], asserting the answer's status; its JSON body.
    pub async fn service_json(&self, event: HttpEvent, expected_status: u16) -> Value {
        let (status, body) = status_and_json(&self.service_call(event).await);
        assert_eq!(status, expected_status, "{body}");
        body
    }

    /// A fan-out over the harness's stores and Management API stub that also takes other
    /// FHIR servers' notification Bundles, with `relay`'s upstream table.
    pub async fn fanout_with_relay<U: fhir_ws_core::store::UpstreamStore>(
        &self,
        relay: fhir_ws_core::relay::Relay<U>,
    ) -> FanOut<S, B, C, E, ManagementApiPusher, U> {
        let aws = crate::sdk_config().await;
        let retry =
            RetryPolicy { attempts: 4, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) };
        FanOut::new(
            self.app.stores.subscriptions.clone(),
            self.ws_stores.bindings.clone(),
            self.ws_stores.counters.clone(),
            EventHistory { store: self.ws_stores.events.clone(), retention: TEST_EVENT_RETENTION },
            ManagementApiPusher::new(&aws),
            TEST_FHIR_BASE,
        )
        .with_retry(retry)
        .with_relay(relay)
    }

    /// Sends `$disconnect`.
    pub async fn disconnect(&self, connection_id: &str) -> ApiGatewayProxyResponse {
        self.disconnect_raw(&WsEvent::disconnect(connection_id).event()).await
    }

    /// Sends a ready-made `$connect` event, now.
    pub async fn connect_raw(&self, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        self.connect.handle(event, Utc::now()).await
    }

    /// Sends a ready-made `$default` event, now.
    pub async fn send_raw(&self, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        self.message.handle(event, Utc::now()).await
    }

    /// Sends a ready-made `$disconnect` event.
    pub async fn disconnect_raw(&self, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        disconnect(&self.ws_stores.bindings, event).await
    }

    /// The connection's bindings.
    pub async fn bindings(&self, connection_id: &str) -> Vec<Binding> {
        self.ws_stores.bindings.bindings_of_connection(connection_id).await.expect("bindings")
    }

    /// The frames posted to a connection, as JSON (text frames become JSON strings).
    pub fn frames(&self, connection_id: &str) -> Vec<Value> {
        self.management
            .delivered_to(connection_id)
            .iter()
            .map(|p| match p.json() {
                Value::Null => Value::String(p.text()),
                json => json,
            })
            .collect()
    }
}
