//! End to end through the local stack (`fhir-ws serve`, started in-process on a random
//! port) with a real WebSocket client and a real HTTP client, once on the embedded store
//! and once against moto_server.

use std::time::Duration;

use fhir_ws_local::client::Api;
use fhir_ws_local::gateway::{Options, serve};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running local stack; stops when dropped.
struct Stack {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Stack {
    async fn start(dynamodb: bool, token_lifetime_seconds: i64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let dynamodb_endpoint = dynamodb.then(|| {
            std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("AWS_ENDPOINT_URL_DYNAMODB: run through infra/test.sh")
        });
        let options = Options { dynamodb_endpoint, token_lifetime_seconds, ..Options::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(listener, options, async {
                let _ = stopped.await;
            })
            .await
            .expect("local stack");
        });
        Self { base, stop: Some(stop), server }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server).await.expect("clean shutdown").unwrap();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame within 10 s");
        match frame.expect("open").expect("frame") {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str()).unwrap_or(Value::String(text.to_string()));
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn topic() -> String {
    format!("http://example.org/fhir/SubscriptionTopic/e2e-{}", uuid::Uuid::new_v4())
}

fn encounter(id: &str) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "in-progress"})
}

async fn whole_flow(dynamodb: bool) {
    // A short token lifetime so the client's refresh-and-rebind is exercised.
    let stack = Stack::start(dynamodb, 60).await;
    let api = Api::new(&stack.base, "alice-token");
    let topic = topic();
    let id = api.create_subscription(&topic, "id-only", None).await.unwrap();
    let token = api.binding_token(&id).await.unwrap();
    assert!(token.websocket_url.starts_with("ws://127.0.0.1:"));
    let (mut socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    socket.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
    let handshake = next_json(&mut socket).await;
    assert_eq!(handshake["entry"][0]["resource"]["type"], "handshake");
    assert_eq!(handshake["entry"][0]["resource"]["subscription"]["reference"], format!("Subscription/{id}"));

    let answer = api.notify(&json!({"topic": topic, "focus": encounter("enc-1")})).await.unwrap();
    assert_eq!(answer["delivered"], true);
    let event = next_json(&mut socket).await;
    let status = &event["entry"][0]["resource"];
    assert_eq!(status["type"], "event-notification");
    assert_eq!(status["notificationEvent"][0]["eventNumber"], "1");
    assert_eq!(status["notificationEvent"][0]["focus"]["reference"], "http://localhost:8080/fhir/Encounter/enc-1");

    // Token refresh: a fresh token, bound on the same connection, renews the binding.
    let fresh = api.binding_token(&id).await.unwrap();
    assert_ne!(fresh.token, token.token);
    socket
        .send(Message::text(json!({"type": "bind-with-token", "payload": {"token": fresh.token}}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["entry"][0]["resource"]["type"], "handshake");
    api.notify(&json!({"topic": topic, "focus": encounter("enc-2")})).await.unwrap();
    assert_eq!(next_json(&mut socket).await["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"], "2");

    // Unbind: nothing more arrives for this subscription.
    socket.send(Message::text(format!("unbind-with-token {}", fresh.token))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["issue"][0]["severity"], "information");
    api.notify(&json!({"topic": topic, "focus": encounter("enc-3")})).await.unwrap();
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_json(&mut socket).await, json!("pong"), "no event-notification came before the pong");

    socket.close(None).await.unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn whole_flow_on_the_embedded_store() {
    whole_flow(false).await;
}

#[tokio::test]
async fn whole_flow_against_moto_server() {
    whole_flow(true).await;
}

#[tokio::test]
async fn the_cli_client_refreshes_its_token_and_keeps_receiving() {
    let stack = Stack::start(false, 60).await;
    let api = Api::new(&stack.base, "bob-token");
    let topic = topic();
    let id = api.create_subscription(&topic, "id-only", None).await.unwrap();
    let (frames, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
    let subscriber = {
        let api = api.clone();
        let id = id.clone();
        tokio::spawn(async move {
            fhir_ws_local::client::subscribe(&api, &id, |frame| drop(frames.send(frame.to_owned()))).await
        })
    };
    let first = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    assert!(fhir_ws_local::client::describe(&first).starts_with("handshake"));
    // A 60 s token is refreshed after 48 s: a second handshake shows the rebind.
    let second = tokio::time::timeout(Duration::from_secs(60), received.recv()).await.unwrap().unwrap();
    assert!(fhir_ws_local::client::describe(&second).starts_with("handshake"), "{second}");
    api.notify(&json!({"topic": topic, "focus": encounter("enc-1")})).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    assert!(fhir_ws_local::client::describe(&event).starts_with("event-notification #1"), "{event}");
    subscriber.abort();
    stack.stop().await;
}

#[tokio::test]
async fn misbehaving_clients_never_disturb_others() {
    let stack = Stack::start(false, 1800).await;
    let api = Api::new(&stack.base, "alice-token");
    let topic = topic();
    let id = api.create_subscription(&topic, "id-only", None).await.unwrap();
    let token = api.binding_token(&id).await.unwrap();
    let (mut steady, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    steady.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
    assert_eq!(next_json(&mut steady).await["entry"][0]["resource"]["type"], "handshake");

    // A bad token at connect is refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(format!("{}?token=forged", token.websocket_url)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    // Garbage frames: each answered with an OperationOutcome; an oversized one closes
    // only that connection.
    let (mut noisy, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    for garbage in ["", "hello", "{\"type\": 42}", "bind-with-token nope"] {
        noisy.send(Message::text(garbage)).await.unwrap();
        assert_eq!(next_json(&mut noisy).await["resourceType"], "OperationOutcome", "{garbage:?}");
    }
    noisy.send(Message::binary(vec![0xff, 0xfe, 0x00])).await.unwrap();
    assert_eq!(next_json(&mut noisy).await["issue"][0]["code"], "structure");
    let _ = noisy.send(Message::text("x".repeat(200 * 1024))).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), noisy.next()).await.unwrap();
    let ended = match &closed {
        None | Some(Err(_)) | Some(Ok(Message::Close(None))) => true,
        Some(Ok(Message::Close(Some(frame)))) => frame_is_size(frame),
        Some(Ok(_)) => false,
    };
    assert!(ended, "an oversized frame closes that connection: {closed:?}");
    // A client killed mid-stream: bound, then its TCP connection just drops.
    let (mut killed, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    killed.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
    next_json(&mut killed).await;
    drop(killed);

    api.notify(&json!({"topic": topic, "focus": encounter("enc-1")})).await.unwrap();
    let event = next_json(&mut steady).await;
    assert_eq!(event["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"], "1");
    steady.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_json(&mut steady).await, json!("pong"));
    stack.stop().await;
}

fn frame_is_size(frame: &tokio_tungstenite::tungstenite::protocol::CloseFrame) -> bool {
    frame.code == CloseCode::Size || frame.code == CloseCode::Protocol || frame.code == CloseCode::Error
}

/// `fhir-ws serve --dynamodb-endpoint` creates the template's tables where they are
/// missing. moto keeps each region apart, so a region no other test uses starts empty.
#[tokio::test]
async fn the_local_stack_creates_the_templates_tables_where_missing() {
    use aws_sdk_dynamodb::types::{KeyType, TimeToLiveStatus};
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run through infra/test.sh");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-southeast-2"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let mut created = fhir_ws_local::tables::ensure_tables(&client).await.unwrap();
    created.sort();
    let existing = client.list_tables().send().await.unwrap().table_names().to_vec();
    for table in ["BindingsTable", "CountersTable", "SubscriptionsTable", "TokensTable"] {
        assert!(existing.iter().any(|t| t == table), "{table} exists");
    }
    // infra/test.sh starts a fresh moto_server, so all four are new here.
    assert_eq!(created, ["BindingsTable", "CountersTable", "SubscriptionsTable", "TokensTable"]);
    let bindings = client.describe_table().table_name("BindingsTable").send().await.unwrap().table.unwrap();
    let indexes: Vec<&str> = bindings.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
    assert!(indexes.contains(&"bySubscription") && indexes.contains(&"byHeartbeatDue"), "{indexes:?}");
    assert_eq!(bindings.key_schema()[0].key_type(), &KeyType::Hash);
    let ttl = client.describe_time_to_live().table_name("BindingsTable").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.time_to_live_status()), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(fhir_ws_local::tables::ensure_tables(&client).await.unwrap(), Vec::<String>::new(), "idempotent");
}
