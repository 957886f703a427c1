//! Load check of the local stack: 1,000 concurrent WebSocket clients (`LOAD_CLIENTS`)
//! bound to one subscription through `fhir-ws serve` (a separate process), 100 events
//! (`LOAD_EVENTS`) sent one after another. Reports delivered count (must be sent ×
//! bound), p50/p99 delivery latency (event sent → frame received) and the server's peak
//! memory.
//!
//! Run: `cargo bench -p fhir-ws-local --bench load` (`LOAD_CLIENTS=10000` for the
//! 10,000-client figure; the bench process then needs that many descriptors too).
//! `LOAD_INTERVAL_MS` paces the events (default 0: each sent as soon as the previous one
//! was accepted, so later events queue behind earlier deliveries).

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark harness: a failed step must stop it loudly")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_ws_local::client::Api;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::{Server, ms, percentile, setting};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/load";

fn main() {
    let (clients, events) = (setting("LOAD_CLIENTS", 1_000), setting("LOAD_EVENTS", 100));
    let interval = Duration::from_millis(setting("LOAD_INTERVAL_MS", 0) as u64);
    let args = ["--token-lifetime", "3600", "--heartbeat-seconds", "3600"].map(str::to_owned);
    let server = Server::start(&args);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (delivered, latencies, bind_time) = runtime.block_on(run(&server.base, clients, events, interval));
    let peak = server.peak_rss_mib();
    drop(server);

    let mut latencies = latencies;
    latencies.sort_unstable();
    let pacing = if interval.is_zero() {
        "one after another".to_owned()
    } else {
        format!("one every {} ms", interval.as_millis())
    };
    println!("local stack load check: {clients} WebSocket clients on one subscription, {events} events sent {pacing}");
    println!("  connect + bind + handshake, all clients: {:.2} s", bind_time.as_secs_f64());
    println!("  delivered: {delivered} of {} expected", clients * events);
    println!(
        "  latency p50: {:.1} ms, p99: {:.1} ms, max: {:.1} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("  server peak RSS: {peak:.1} MiB");
    assert_eq!(delivered, clients * events, "every event reaches every bound client");
}

/// What a notification frame is.
enum Frame {
    Handshake,
    Event(usize),
    Other,
}

/// Tells a frame's kind (and event number) by scanning its text for the status's `type` and
/// `eventNumber` rather than parsing it: the clients share the server's two cores, and
/// parsing every Bundle as JSON made them, not the server, the larger part of what the
/// latency measured. `LOAD_PARSE=1` parses instead, for comparison.
fn scan(text: &str, parse: bool) -> Frame {
    if parse {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let status = &value["entry"][0]["resource"];
        return match status["type"].as_str() {
            Some("handshake") => Frame::Handshake,
            Some("event-notification") => Frame::Event(
                status["notificationEvent"][0]["eventNumber"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
            ),
            _ => Frame::Other,
        };
    }
    if text.contains(r#""type":"handshake""#) {
        return Frame::Handshake;
    }
    if !text.contains(r#""type":"event-notification""#) {
        return Frame::Other;
    }
    let number = text
        .split_once(r#""eventNumber":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .and_then(|(digits, _)| digits.parse().ok())
        .unwrap_or(0);
    Frame::Event(number)
}

async fn run(base: &str, clients_wanted: usize, events: usize, interval: Duration) -> (usize, Vec<Duration>, Duration) {
    let api = Api::new(base, "alice-token");
    let id = api.create_subscription(TOPIC, "id-only", None).await.expect("subscription");
    let token = api.binding_token(&id).await.expect("token");
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; events + 1]));
    let started = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients_wanted);
    let mut clients = Vec::with_capacity(clients_wanted);
    let parse = std::env::var_os("LOAD_PARSE").is_some();
    for _ in 0..clients_wanted {
        let url = token.websocket_url.clone();
        let bind = format!("bind-with-token {}", token.token);
        let ready = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
            socket.send(Message::text(bind)).await.expect("bind");
            let mut received: Vec<(usize, Instant)> = Vec::with_capacity(events);
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                let arrived = Instant::now();
                match scan(text.as_str(), parse) {
                    Frame::Handshake => {
                        let _ = ready.send(()).await;
                    }
                    Frame::Event(number) => {
                        received.push((number, arrived));
                        if received.len() == events {
                            break;
                        }
                    }
                    Frame::Other => {}
                }
            }
            received
        }));
    }
    for _ in 0..clients_wanted {
        ready_rx.recv().await.expect("handshake");
    }
    let bind_time = started.elapsed();
    let sending = Instant::now();
    for n in 1..=events {
        // Paced when asked: event n leaves at (n - 1) intervals after the first.
        let due = sending + interval * u32::try_from(n - 1).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        sent_at.lock().await[n] = Some(Instant::now());
        let event = json!({"topic": TOPIC, "focus": {"resourceType": "Encounter", "id": format!("enc-{n}"), "status": "finished"}});
        api.notify(&event).await.expect("event accepted");
    }
    let sent = sent_at.lock().await.clone();
    let mut delivered = 0;
    let mut latencies = Vec::with_capacity(clients_wanted * events);
    for client in clients {
        let received =
            tokio::time::timeout(Duration::from_secs(60), client).await.expect("all frames").expect("client");
        for (number, arrived) in received {
            if let Some(Some(sent)) = sent.get(number) {
                delivered += 1;
                latencies.push(arrived.duration_since(*sent));
            }
        }
    }
    (delivered, latencies, bind_time)
}
