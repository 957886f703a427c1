//! End to end through the local stack (`fhir-ws serve`, started in-process on a random
//! port) with a real WebSocket client and a real HTTP client, once on the embedded store
//! and once against moto_server.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fhir_ws_client::Status;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_local::client::{Api, ClientError, describe_update};
use fhir_ws_local::gateway::Options;
use fhir_ws_tests::ig::R4_STATUS_PROFILE;
use fhir_ws_tests::local::LocalStack as Stack;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use fhir_ws_tests::sockets::{Socket, next_after_handshakes, next_json};

/// The local stack on the embedded store, or on moto_server with `dynamodb`.
async fn start_stack(dynamodb: bool, token_lifetime_seconds: i64) -> Stack {
    start_stack_with(dynamodb, token_lifetime_seconds, None).await
}

async fn start_stack_with(dynamodb: bool, token_lifetime_seconds: i64, public_websocket_url: Option<String>) -> Stack {
    let dynamodb_endpoint = dynamodb.then(|| {
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("AWS_ENDPOINT_URL_DYNAMODB: run through infra/test.sh")
    });
    Stack::start(Options { dynamodb_endpoint, token_lifetime_seconds, public_websocket_url, ..Options::default() })
        .await
}

fn topic() -> String {
    format!("http://example.org/fhir/SubscriptionTopic/e2e-{}", uuid::Uuid::new_v4())
}

fn encounter(id: &str) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "in-progress"})
}

async fn whole_flow(dynamodb: bool) {
    // A short token lifetime so the client's refresh-and-rebind is exercised.
    let stack = start_stack(dynamodb, 60).await;
    let api = Api::new(&stack.base, "alice-token");
    let topic = topic();
    let id = api.create_subscription(&topic, "id-only", None).await.unwrap();
    let token = api.binding_token(&id).await.unwrap();
    assert!(token.websocket_url.starts_with("ws://127.0.0.1:"));
    // metadata needs no bearer token, and names the WebSocket URL clients are given.
    let statement: Value = reqwest::get(format!("{}/metadata", stack.base)).await.unwrap().json().await.unwrap();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["rest"][0]["extension"][0]["valueUri"], token.websocket_url.as_str());
    assert_eq!(statement["implementation"]["url"], stack.base.as_str());
    let (mut socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    socket.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
    let handshake = next_json(&mut socket).await;
    assert_eq!(handshake["entry"][0]["resource"]["type"], "handshake");
    assert_eq!(handshake["entry"][0]["resource"]["subscription"]["reference"], format!("Subscription/{id}"));

    let answer = api.notify(&json!({"topic": topic, "focus": encounter("enc-1")})).await.unwrap();
    assert_eq!(answer["delivered"], true);
    let event = next_after_handshakes(&mut socket).await;
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
    assert_eq!(
        next_after_handshakes(&mut socket).await["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"],
        "2"
    );

    // Unbind: nothing more arrives for this subscription.
    socket.send(Message::text(format!("unbind-with-token {}", fresh.token))).await.unwrap();
    assert_eq!(next_after_handshakes(&mut socket).await["issue"][0]["severity"], "information");
    api.notify(&json!({"topic": topic, "focus": encounter("enc-3")})).await.unwrap();
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_after_handshakes(&mut socket).await, json!("pong"), "no event-notification came before the pong");

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

/// A GET or POST with Alice's bearer token; the status and the JSON answer.
async fn alice(method: reqwest::Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth("alice-token");
    if let Some(body) = body {
        request = request.header("content-type", "application/fhir+json").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The scenario: an R4 client creates a Subscription at the `/R4` base, gets a
/// token and binds over a real WebSocket, and receives its handshake and event
/// notification in R4 shape; R4B and R5 subscriptions on the same socket get theirs in
/// their own shapes. Every resource is checked by its version's validator.
async fn three_versions_on_one_socket(dynamodb: bool) {
    let stack = start_stack(dynamodb, 1800).await;
    let topic = topic();
    let mut ids = Vec::new();
    for version in FhirVersion::ALL {
        let api = Api::new(&stack.base, "alice-token").in_version(version);
        let id = api.create_subscription(&topic, "full-resource", Some(60)).await.unwrap();
        let url = format!("{}/{}/Subscription/{id}", stack.base, version.path_segment());
        let (status, resource) = alice(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{resource}");
        assert_eq!(resource["status"], "active");
        assert_eq!(resource.get("criteria").is_some(), version != FhirVersion::R5, "{resource}");
        fhir_ws_tests::assert_valid_in(version, &[resource]);
        ids.push((version, id));
    }
    // One token for all three, asked for at the R4 base as an R4 client would.
    let ask: Vec<Value> = ids.iter().map(|(_, id)| json!({"name": "id", "valueId": id})).collect();
    let body = json!({"resourceType": "Parameters", "parameter": ask});
    let operation = format!("{}/R4/Subscription/$get-ws-binding-token", stack.base);
    let (status, parameters) = alice(reqwest::Method::POST, &operation, Some(&body)).await;
    assert_eq!(status, 200, "{parameters}");
    let value =
        |name: &str| parameters["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    let (token, url) = (value("token")["valueString"].clone(), value("websocket-url")["valueUrl"].clone());
    fhir_ws_tests::assert_valid_in(FhirVersion::R4, std::slice::from_ref(&parameters));

    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str().unwrap()).await.unwrap();
    socket.send(Message::text(format!("bind-with-token {}", token.as_str().unwrap()))).await.unwrap();
    // Frames until each subscription has had its `kind`: delivery is at least once, so a
    // retried post (the local Management API under load) may repeat a frame.
    let subscriptions: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    async fn until_each(socket: &mut Socket, subscriptions: &[String], kind: &str) -> Vec<Value> {
        let mut frames: Vec<Value> = Vec::new();
        let seen = |frames: &[Value], subscription: &String| {
            frames.iter().filter_map(Status::of_bundle).any(|v| v.subscription == *subscription && v.kind == kind)
        };
        while !subscriptions.iter().all(|s| seen(&frames, s)) {
            frames.push(next_json(socket).await);
        }
        frames
    }
    let handshakes = until_each(&mut socket, &subscriptions, "handshake").await;
    let patient = json!({"resourceType": "Patient", "id": "p-123", "active": true});
    let answer = Api::new(&stack.base, "").notify(&json!({"topic": topic, "focus": patient})).await.unwrap();
    assert_eq!(answer["delivered"], true, "{answer}");
    let events = until_each(&mut socket, &subscriptions, "event-notification").await;

    for (version, id) in &ids {
        let mine = |frames: &[Value], kind: &str| -> Value {
            let found =
                frames.iter().find(|f| Status::of_bundle(f).is_some_and(|v| v.subscription == *id && v.kind == kind));
            found.unwrap_or_else(|| panic!("{version:?}: no {kind} in {frames:#?}")).clone()
        };
        let (handshake, event) = (mine(&handshakes, "handshake"), mine(&events, "event-notification"));
        for frame in [&handshake, &event] {
            assert_eq!(fhir_ws_tests::notification_version(frame), *version, "{frame}");
        }
        let (said_hello, said_event) = (Status::of_bundle(&handshake).unwrap(), Status::of_bundle(&event).unwrap());
        assert_eq!((said_hello.kind.as_str(), said_hello.status.as_deref()), ("handshake", Some("active")));
        assert_eq!(said_event.kind, "event-notification");
        assert_eq!(said_event.events.len(), 1);
        assert_eq!(said_event.events[0].event_number, Some(1));
        assert_eq!(said_event.events[0].focus.as_deref(), Some("http://localhost:8080/fhir/Patient/p-123"));
        assert_eq!(event["entry"][1]["resource"], patient, "full-resource: {event}");
        if *version != FhirVersion::R5 {
            // The IG: request and response on every entry of a history Bundle; the first
            // mimics a $status call.
            for frame in [&handshake, &event] {
                let entries = frame["entry"].as_array().unwrap();
                assert!(entries.iter().all(|e| e["request"]["method"].is_string() && e["response"]["status"] == "200"));
                assert_eq!(entries[0]["request"]["url"], format!("Subscription/{id}/$status"));
            }
        }
        if *version == FhirVersion::R4 {
            let status = &event["entry"][0]["resource"];
            assert_eq!(status["resourceType"], "Parameters");
            assert_eq!(status["meta"]["profile"][0], R4_STATUS_PROFILE);
            let names: Vec<&str> =
                status["parameter"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
            assert_eq!(
                names,
                ["subscription", "topic", "status", "type", "events-since-subscription-start", "notification-event"]
            );
            let parts = &status["parameter"][5]["part"];
            assert_eq!(parts[0], json!({"name": "event-number", "valueString": "1"}));
            assert!(parts[1]["valueInstant"].is_string() && parts[2]["valueReference"].is_object(), "{parts}");
        }
        fhir_ws_tests::assert_valid_in(*version, &[handshake, event]);
    }
    for version in [FhirVersion::R4, FhirVersion::R4B] {
        let url = format!("{}/{}/metadata", stack.base, version.path_segment());
        let statement: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        assert_eq!(statement["fhirVersion"], version.full_version());
        fhir_ws_tests::assert_valid_in(version, &[statement]);
    }
    socket.close(None).await.unwrap();
    stack.stop().await;
}

/// The relay scenario through `fhir-ws serve`: an upstream FHIR server posts
/// its notification Bundles (R4, R4B and R5 shapes) to `/relay`, as `fhir-ws notify
/// --bundle` does, and a real WebSocket bound to an R4 and an R5 subscription here gets
/// each event once, in each subscription's version; a retried post changes nothing.
async fn relayed_through_the_local_stack(dynamodb: bool) {
    let stack = start_stack(dynamodb, 1800).await;
    let topic = topic();
    let mut ids = Vec::new();
    for version in [FhirVersion::R4, FhirVersion::R5] {
        let api = Api::new(&stack.base, "alice-token").in_version(version);
        ids.push((version, api.create_subscription(&topic, "full-resource", None).await.unwrap()));
    }
    let alice = Api::new(&stack.base, "alice-token");
    let token = alice.binding_token(&ids[0].1).await.unwrap();
    let both = Api::new(&stack.base, "alice-token").in_version(FhirVersion::R5);
    let second = both.binding_token(&ids[1].1).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    for bound in [&token, &second] {
        socket.send(Message::text(format!("bind-with-token {}", bound.token))).await.unwrap();
        assert_eq!(Status::of_bundle(&next_json(&mut socket).await).unwrap().kind, "handshake");
    }
    let upstream = Api::new(&stack.base, fhir_ws_local::gateway::LOCAL_RELAY_SECRET);
    let subscription = format!("https://upstream.example.org/fhir/Subscription/{}", uuid::Uuid::new_v4());
    let status = |number: u64| {
        json!({"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
               "eventsSinceSubscriptionStart": number.to_string(), "subscription": {"reference": subscription},
               "topic": topic, "notificationEvent": [{"eventNumber": number.to_string(),
               "focus": {"reference": format!("Encounter/enc-{number}")}}]})
    };
    // Each upstream's Encounter in its own version's shape (R4's `class` is a Coding, R5's a
    // list): each subscriber gets it converted into its own.
    let encounter_entry = |number: u64, version: FhirVersion| {
        let class = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"});
        let mut resource = encounter(&format!("enc-{number}"));
        resource["class"] = if version == FhirVersion::R5 { json!([{"coding": [class]}]) } else { class };
        json!({"fullUrl": format!("https://upstream.example.org/fhir/Encounter/enc-{number}"),
               "resource": resource, "request": {"method": "PUT", "url": "Encounter"},
               "response": {"status": "200"}})
    };
    let r4 = json!({"resourceType": "Bundle", "type": "history", "entry": [
        {"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "topic", "valueCanonical": topic},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": "1"},
            {"name": "notification-event", "part": [{"name": "event-number", "valueString": "1"},
                {"name": "focus", "valueReference": {"reference": "Encounter/enc-1"}}]}]},
         "request": {"method": "GET", "url": "Subscription/x/$status"}, "response": {"status": "200"}},
        encounter_entry(1, FhirVersion::R4)]});
    let r4b = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": status(2)}]});
    let r5 = json!({"resourceType": "Bundle", "type": "subscription-notification",
                    "entry": [{"resource": status(3)}, encounter_entry(3, FhirVersion::R5)]});
    for (bundle, number) in [(&r4, 1), (&r4b, 2), (&r5, 3)] {
        let answer = upstream.relay(bundle, None).await.unwrap();
        assert_eq!(answer["issue"][0]["diagnostics"], "1 event(s) queued", "{number}");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let frame = next_after_handshakes(&mut socket).await;
            let view = Status::of_bundle(&frame).unwrap();
            assert_eq!(view.kind, "event-notification");
            let focus = format!("https://upstream.example.org/fhir/Encounter/enc-{number}");
            assert_eq!(view.events[0].focus.as_deref(), Some(focus.as_str()));
            let with_resource = number != 2;
            assert_eq!(frame["entry"][1]["resource"]["id"].is_string(), with_resource, "{frame}");
            let version = fhir_ws_tests::notification_version(&frame);
            if with_resource {
                let class = &frame["entry"][1]["resource"]["class"];
                assert_eq!(class.is_array(), version == FhirVersion::R5, "the body in {version:?}: {frame}");
            }
            seen.push(version);
        }
        seen.sort_by_key(|v| v.path_segment());
        assert_eq!(seen, [FhirVersion::R4, FhirVersion::R5], "one frame per subscription, in its version");
    }
    // An R4 `empty` notification names no topic and no focus: the relay URL names the topic.
    let empty = json!({"resourceType": "Bundle", "type": "history", "entry": [
        {"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": "4"},
            {"name": "notification-event", "part": [{"name": "event-number", "valueString": "4"}]}]},
         "request": {"method": "GET", "url": "Subscription/x/$status"}, "response": {"status": "200"}}]});
    assert!(upstream.relay(&empty, None).await.is_err(), "no topic anywhere: refused");
    let answer = upstream.relay(&empty, Some(&topic)).await.unwrap();
    assert_eq!(answer["issue"][0]["diagnostics"], "1 event(s) queued");
    for _ in 0..2 {
        let view = Status::of_bundle(&next_after_handshakes(&mut socket).await).unwrap();
        assert_eq!((view.kind.as_str(), view.events[0].focus.as_deref()), ("event-notification", None));
    }
    // The upstream retries the R5 notification: acknowledged, not delivered again.
    let again = upstream.relay(&r5, None).await.unwrap();
    assert_eq!(again["issue"][0]["diagnostics"], "0 event(s) queued");
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_after_handshakes(&mut socket).await, json!("pong"), "nothing came before the pong");
    let refused = Api::new(&stack.base, "wrong-secret").relay(&r5, None).await;
    assert!(matches!(refused, Err(fhir_ws_local::client::ClientError::Refused { status: 401, .. })), "{refused:?}");
    socket.close(None).await.unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn upstream_notifications_are_relayed_by_the_local_stack() {
    relayed_through_the_local_stack(false).await;
}

#[tokio::test]
async fn upstream_notifications_are_relayed_by_the_local_stack_against_moto_server() {
    relayed_through_the_local_stack(true).await;
}

#[tokio::test]
async fn r4_r4b_and_r5_clients_share_one_socket_on_the_embedded_store() {
    three_versions_on_one_socket(false).await;
}

#[tokio::test]
async fn r4_r4b_and_r5_clients_share_one_socket_against_moto_server() {
    three_versions_on_one_socket(true).await;
}

#[tokio::test]
async fn the_cli_client_refreshes_its_token_and_keeps_receiving() {
    let stack = start_stack(false, 60).await;
    let api = Api::new(&stack.base, "bob-token");
    let topic = topic();
    let id = api.create_subscription(&topic, "id-only", None).await.unwrap();
    let (subscriber, mut lines) = cli_subscriber(&api, &id, None);
    let first = next_line(&mut lines, 10).await;
    assert!(first.starts_with("handshake"), "{first}");
    // A 60 s token is refreshed after 48 s: a second handshake shows the rebind.
    let second = next_line(&mut lines, 60).await;
    assert!(second.starts_with("handshake"), "{second}");
    api.notify(&json!({"topic": topic, "focus": encounter("enc-1")})).await.unwrap();
    let event = next_line(&mut lines, 10).await;
    assert!(event.starts_with("event-notification #1"), "{event}");
    subscriber.abort();
    stack.stop().await;
}

/// Runs the CLI's subscriber on `id` in a task; every line it would print comes out of
/// the channel.
fn cli_subscriber(
    api: &Api,
    id: &str,
    seen_up_to: Option<u64>,
) -> (tokio::task::JoinHandle<Result<(), fhir_ws_local::client::ClientError>>, UnboundedReceiver<String>) {
    let (sender, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let api = api.clone();
    let id = id.to_owned();
    let task = tokio::spawn(async move {
        fhir_ws_local::client::subscribe(&api, &id, seen_up_to, |received| {
            for line in describe_update(received) {
                let _ = sender.send(line);
            }
        })
        .await
    });
    (task, lines)
}

async fn next_line(lines: &mut UnboundedReceiver<String>, seconds: u64) -> String {
    tokio::time::timeout(Duration::from_secs(seconds), lines.recv()).await.expect("a line in time").expect("open")
}

/// A TCP proxy in front of the stack's WebSocket API that can cut every connection and
/// refuse new ones, as a network outage would.
struct Proxy {
    address: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    /// Connections refused while down.
    refused: Arc<std::sync::atomic::AtomicUsize>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::watch::channel(0);
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Self { address, up: Arc::new(AtomicBool::new(true)), refused, cut, task: tokio::spawn(async {}) }, listener)
    }

    /// Forwards what `listener` accepts to `target`.
    fn forward(&mut self, listener: TcpListener, target: std::net::SocketAddr) {
        let up = self.up.clone();
        let refused = self.refused.clone();
        let cut = self.cut.clone();
        self.task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    continue; // dropped: the connection is refused
                }
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The scenario: the CLI client's connection is killed, events are sent while it
/// is away, and after it reconnects it prints every missed event exactly once, in order
/// (fetched with `$events`), then goes on with live ones.
async fn missed_events_are_replayed_after_a_reconnect(dynamodb: bool, version: FhirVersion) {
    let (mut proxy, proxy_listener) = Proxy::start().await;
    let stack = start_stack_with(dynamodb, 1800, Some(format!("ws://{}/ws", proxy.address))).await;
    proxy.forward(proxy_listener, stack.base.trim_start_matches("http://").parse().unwrap());
    let api = Api::new(&stack.base, "alice-token").in_version(version);
    let topic = topic();
    let id = api.create_subscription(&topic, "id-only", None).await.unwrap();
    let (subscriber, mut lines) = cli_subscriber(&api, &id, None);
    let mut printed = vec![next_line(&mut lines, 10).await];
    assert!(printed[0].starts_with("handshake"), "{printed:?}");
    let notify = async |n: u32| api.notify(&json!({"topic": topic, "focus": encounter(&format!("enc-{n}"))})).await;
    notify(1).await.unwrap();
    printed.push(next_line(&mut lines, 10).await);

    proxy.down();
    let lost = next_line(&mut lines, 10).await;
    assert!(lost.starts_with("connection lost"), "{lost}");
    for n in 2..=4 {
        assert_eq!(notify(n).await.unwrap()["delivered"], true);
    }
    // The client tries to reconnect, and fails at least once, while the events wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.refused.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the client never tried to reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.up();
    // The handshake, then the three missed events, replayed.
    loop {
        let line = next_line(&mut lines, 20).await;
        if line.starts_with("connection lost") {
            continue; // failed attempts while the proxy was down
        }
        printed.push(line);
        if printed.len() == 6 {
            break;
        }
    }
    notify(5).await.unwrap();
    printed.push(next_line(&mut lines, 10).await);
    // Nothing else arrives: no repeats.
    assert!(tokio::time::timeout(Duration::from_millis(500), lines.recv()).await.is_err(), "{printed:?}");

    let events: Vec<&String> = printed.iter().filter(|l| l.starts_with("event-notification")).collect();
    let numbers: Vec<&str> = events.iter().map(|l| l.split(['#', ' ']).nth(2).unwrap_or_default()).collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5"], "{printed:#?}");
    for (line, n) in events.iter().zip(1..) {
        assert!(line.contains(&format!("/Encounter/enc-{n}")), "{line}");
        assert_eq!(line.ends_with("(replayed)"), (2..=4).contains(&n), "{line}");
    }
    assert!(printed[2].starts_with("handshake") && printed[2].contains("events so far: 4"), "{printed:#?}");
    subscriber.abort();

    // `fhir-ws status` reads $status through the local HTTP API, in the client's version.
    let one = Status::of_bundle(&api.status(Some(&id)).await.unwrap()).unwrap();
    assert_eq!((one.events_since_subscription_start, one.status.as_deref()), (Some(5), Some("active")));
    assert!(api.status(None).await.unwrap()["total"].as_u64().is_some_and(|n| n >= 1));
    let bob = Api::new(&stack.base, "bob-token").in_version(version);
    assert!(bob.status(Some(&id)).await.is_err(), "not Bob's");

    // A new run resuming after event 3 (`subscribe --since 3`) prints 4 and 5 first.
    let (resumed, mut lines) = cli_subscriber(&api, &id, Some(3));
    assert!(next_line(&mut lines, 10).await.starts_with("handshake"));
    for n in 4..=5 {
        let line = next_line(&mut lines, 10).await;
        assert!(line.starts_with(&format!("event-notification #{n} ")) && line.ends_with("(replayed)"), "{line}");
    }
    resumed.abort();
    stack.stop().await;
}

#[tokio::test]
async fn the_cli_client_replays_missed_events_after_a_reconnect_on_the_embedded_store() {
    missed_events_are_replayed_after_a_reconnect(false, FhirVersion::R5).await;
}

#[tokio::test]
async fn the_cli_client_replays_missed_r4_events_after_a_reconnect() {
    missed_events_are_replayed_after_a_reconnect(false, FhirVersion::R4).await;
}

#[tokio::test]
async fn the_cli_client_replays_missed_events_after_a_reconnect_against_moto_server() {
    missed_events_are_replayed_after_a_reconnect(true, FhirVersion::R5).await;
}

#[tokio::test]
async fn misbehaving_clients_never_disturb_others() {
    let stack = start_stack(false, 1800).await;
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
    let config = fhir_ws_tests::sdk_loader()
        .region(aws_config::Region::new("ap-southeast-2"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let mut created = fhir_ws_local::tables::ensure_tables(&client).await.unwrap();
    created.sort();
    let existing = client.list_tables().send().await.unwrap().table_names().to_vec();
    let tables =
        ["BindingsTable", "CountersTable", "EventsTable", "SubscriptionsTable", "TokensTable", "UpstreamTable"];
    for table in tables {
        assert!(existing.iter().any(|t| t == table), "{table} exists");
    }
    // infra/test.sh starts a fresh moto_server, so all of them are new here.
    assert_eq!(created, tables);
    let bindings = client.describe_table().table_name("BindingsTable").send().await.unwrap().table.unwrap();
    let indexes: Vec<&str> = bindings.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
    assert!(indexes.contains(&"bySubscription") && indexes.contains(&"byHeartbeatDue"), "{indexes:?}");
    assert_eq!(bindings.key_schema()[0].key_type(), &KeyType::Hash);
    let ttl = client.describe_time_to_live().table_name("BindingsTable").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.time_to_live_status()), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(fhir_ws_local::tables::ensure_tables(&client).await.unwrap(), Vec::<String>::new(), "idempotent");
}

const ENCOUNTER_COMPLETE: &str = "http://example.org/FHIR/SubscriptionTopic/encounter-complete";

fn patient_encounter(status: &str, patient: &str) -> Value {
    json!({"resourceType": "Encounter", "id": "enc-7", "status": status, "class": [{"coding": [{"code": "IMP"}]}],
           "subject": {"reference": patient}})
}

async fn topic_engine_flow(dynamodb: bool) {
    let dynamodb_endpoint = dynamodb.then(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap());
    let stack = Stack::start(Options {
        dynamodb_endpoint,
        topics: Some(fhir_ws_tests::example_topics()),
        ..Options::default()
    })
    .await;
    let api = Api::new(&stack.base, "alice-token");
    // Patient ids of this run, so a shared DynamoDB table's older subscriptions never match.
    let (mine, theirs) =
        (format!("p-{}", uuid::Uuid::new_v4().simple()), format!("q-{}", uuid::Uuid::new_v4().simple()));
    let matching = api
        .create_filtered_subscription(
            ENCOUNTER_COMPLETE,
            "full-resource",
            None,
            &[format!("Encounter?patient=Patient/{mine}")],
        )
        .await
        .unwrap();
    let other = api
        .create_filtered_subscription(
            ENCOUNTER_COMPLETE,
            "id-only",
            None,
            &[format!("Encounter?patient=Patient/{theirs}")],
        )
        .await
        .unwrap();
    // A topic the server does not have, and a filter its topic does not allow, are refused.
    let refused = api.create_subscription("http://example.org/unknown-topic", "empty", None).await;
    assert!(matches!(refused, Err(ClientError::Refused { status: 422, .. })), "{refused:?}");
    let refused = api
        .create_filtered_subscription(ENCOUNTER_COMPLETE, "empty", None, &["Encounter?status=completed".to_owned()])
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { status: 422, message }) if message.contains("status")),
        "{refused:?}"
    );

    let mut sockets = Vec::new();
    for id in [&matching, &other] {
        let token = api.binding_token(id).await.unwrap();
        let (mut socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
        socket.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
        assert_eq!(next_json(&mut socket).await["entry"][0]["resource"]["type"], "handshake");
        sockets.push(socket);
    }
    let patient = format!("Patient/{mine}");
    let change = |interaction: &str, previous: Option<Value>, current: Value| {
        let mut event = json!({"interaction": interaction, "resource": current});
        if let Some(previous) = previous {
            event["previous"] = previous;
        }
        event
    };
    // Not a completion: in-progress to in-progress, and an Encounter already completed.
    api.notify(&change(
        "update",
        Some(patient_encounter("planned", &patient)),
        patient_encounter("in-progress", &patient),
    ))
    .await
    .unwrap();
    api.notify(&change(
        "update",
        Some(patient_encounter("completed", &patient)),
        patient_encounter("completed", &patient),
    ))
    .await
    .unwrap();
    // The completion, with context: the topic's notificationShape (`Encounter:patient`)
    // takes the patient and leaves the practitioner out.
    let mut completion =
        change("update", Some(patient_encounter("in-progress", &patient)), patient_encounter("completed", &patient));
    completion["additionalContext"] = json!([{"resourceType": "Patient", "id": mine, "active": true},
        {"resourceType": "Practitioner", "id": "dr-1"}]);
    api.notify(&completion).await.unwrap();
    let event = next_after_handshakes(&mut sockets[0]).await;
    let status = &event["entry"][0]["resource"];
    assert_eq!(status["type"], "event-notification", "{event}");
    assert_eq!(status["notificationEvent"][0]["eventNumber"], "1", "the non-completions were not numbered");
    assert_eq!(status["topic"], ENCOUNTER_COMPLETE);
    assert_eq!(event["entry"][1]["resource"]["status"], "completed", "full-resource carries the new version");
    let kinds: Vec<&str> =
        event["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["resourceType"].as_str()).collect();
    assert_eq!(kinds, ["SubscriptionStatus", "Encounter", "Patient"], "{event}");
    assert_eq!(
        status["notificationEvent"][0]["additionalContext"][0]["reference"],
        format!("http://localhost:8080/fhir/Patient/{mine}")
    );
    fhir_ws_tests::assert_valid_in(FhirVersion::R5, std::slice::from_ref(&event));
    // The other patient's subscriber got nothing: its next frame answers our ping.
    sockets[1].send(Message::text("ping")).await.unwrap();
    assert_eq!(next_after_handshakes(&mut sockets[1]).await, json!("pong"), "no notification for another patient");
    for mut socket in sockets {
        socket.close(None).await.unwrap();
    }
    stack.stop().await;
}

#[tokio::test]
async fn resource_changes_notify_the_subscriber_whose_patient_filter_matches() {
    topic_engine_flow(false).await;
}

#[tokio::test]
async fn resource_changes_notify_the_subscriber_whose_patient_filter_matches_against_moto_server() {
    topic_engine_flow(true).await;
}

/// After a revocation-style frame, the server closes the socket: the next message is a
/// Close frame, or the stream ends.
async fn expect_closed(socket: &mut Socket) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("closed within 10 s");
        match next {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

/// A new id-only subscription of `api`'s caller, its token, and a socket bound with it
/// that has had its handshake.
async fn bound_socket(api: &Api) -> (String, fhir_ws_local::client::BindingToken, Socket) {
    let id = api.create_subscription(&topic(), "id-only", None).await.unwrap();
    let token = api.binding_token(&id).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
    socket.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["entry"][0]["resource"]["type"], "handshake");
    (id, token, socket)
}

/// Revoking a token, and deleting a subscription, reach a real socket: its last frame
/// says why, then the server closes it; the revoked token is refused at the upgrade.
async fn revocations_reach_real_sockets(dynamodb: bool) {
    let stack = start_stack(dynamodb, 600).await;
    let api = Api::new(&stack.base, "alice-token");
    let (id, token, mut socket) = bound_socket(&api).await;

    let parameters =
        json!({"resourceType": "Parameters", "parameter": [{"name": "token", "valueString": token.token}]});
    let url = format!("{}/Subscription/$revoke-ws-binding-token", stack.base);
    let (status, answer) = alice(reqwest::Method::POST, &url, Some(&parameters)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["parameter"][0], json!({"name": "revoked", "valueBoolean": true}));
    let last = next_after_handshakes(&mut socket).await;
    assert_eq!((&last["resourceType"], &last["issue"][0]["code"]), (&json!("OperationOutcome"), &json!("security")));
    expect_closed(&mut socket).await;
    let refused = tokio_tungstenite::connect_async(format!("{}?token={}", token.websocket_url, token.token)).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401),
        "{refused:?}"
    );

    let fresh = api.binding_token(&id).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(fresh.websocket_url.as_str()).await.unwrap();
    socket.send(Message::text(format!("bind-with-token {}", fresh.token))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["entry"][0]["resource"]["type"], "handshake");
    let (status, _) = alice(reqwest::Method::DELETE, &format!("{}/Subscription/{id}", stack.base), None).await;
    assert_eq!(status, 204);
    let last = next_after_handshakes(&mut socket).await;
    assert_eq!(last["issue"][0]["code"], "deleted", "{last}");
    expect_closed(&mut socket).await;
    stack.stop().await;
}

#[tokio::test]
async fn revocations_reach_real_sockets_on_the_embedded_store() {
    revocations_reach_real_sockets(false).await;
}

#[tokio::test]
async fn revocations_reach_real_sockets_against_moto_server() {
    revocations_reach_real_sockets(true).await;
}

/// Past `max_connections`, an upgrade is refused with 503 and an OperationOutcome before
/// `$connect` runs; a closed connection frees its place.
#[tokio::test]
async fn upgrades_past_the_connection_limit_get_503() {
    let stack = Stack::start(Options { max_connections: 2, ..Options::default() }).await;
    let url = format!("{}/ws", stack.base.replacen("http://", "ws://", 1));
    let (first, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let (_second, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let refused = tokio_tungstenite::connect_async(url.as_str()).await.map(|_| ()).unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else { panic!("{refused:?}") };
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "transient");

    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            reopened = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a closed connection frees its place");
    stack.stop().await;
}

/// The local stack's own functions post in process, but its HTTP Management API still
/// serves outside callers: the SDK client (SigV4-signed) posts to a real socket, closes
/// it, and gets Gone afterwards and for unknown ids.
#[tokio::test]
async fn the_http_management_api_serves_outside_callers() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use fhir_ws_core::push::{ManagementApiPusher, PushError, Pusher as _};

    let stack = start_stack(true, 1800).await;
    let (id, _, mut socket) = bound_socket(&Api::new(&stack.base, "alice-token")).await;

    // The connection id, as an operator would find it: in the bindings table.
    let aws =
        fhir_ws_tests::sdk_loader().endpoint_url(std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap()).load().await;
    let rows = aws_sdk_dynamodb::Client::new(&aws)
        .query()
        .table_name("BindingsTable")
        .index_name("bySubscription")
        .key_condition_expression("subscriptionId = :id")
        .expression_attribute_values(":id", AttributeValue::S(id.clone()))
        .send()
        .await
        .unwrap();
    let connection = rows.items()[0]["connectionId"].as_s().unwrap().clone();

    let outside = ManagementApiPusher::new(&aws);
    let endpoint = format!("{}/local", stack.base);
    outside.post(&endpoint, &connection, b"{\"from\":\"outside\"}").await.unwrap();
    assert_eq!(next_json(&mut socket).await, json!({"from": "outside"}));
    outside.close(&endpoint, &connection).await.unwrap();
    expect_closed(&mut socket).await;
    // The stack forgets the connection once its socket task has seen the close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while outside.post(&endpoint, &connection, b"late").await != Err(PushError::Gone) {
        assert!(std::time::Instant::now() < deadline, "a closed connection still takes posts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outside.post(&endpoint, "unknown-connection=", b"x").await, Err(PushError::Gone));
    stack.stop().await;
}
