//! Load check of the local stack: 1,000 concurrent WebSocket clients bound to one
//! subscription through `fhir-ws serve` (a separate process), 100 events sent one after
//! another. Reports delivered count (must be sent × bound), p50/p99 delivery latency
//! (event sent → frame received) and the server's peak memory.
//!
//! Run: `cargo bench -p fhir-ws-local --bench load`.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark harness: a failed step must stop it loudly")]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_ws_local::client::Api;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 1_000;
const EVENTS: usize = 100;
const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/load";

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn main() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_fhir-ws"))
        .args(["serve", "--port", "0", "--token-lifetime", "3600", "--heartbeat-seconds", "3600"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fhir-ws serve");
    let mut banner = String::new();
    let mut output = BufReader::new(server.stdout.take().expect("stdout"));
    output.read_line(&mut banner).expect("banner");
    // Keep draining the server's stdout (banner, metrics lines) so it never blocks.
    std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    let base = banner.trim().rsplit(' ').next().expect("address").to_owned();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (delivered, latencies, bind_time) = runtime.block_on(run(&base));
    let peak = peak_rss_mib(server.id());
    let _ = server.kill();
    let _ = server.wait();

    let mut latencies = latencies;
    latencies.sort_unstable();
    println!("local stack load check: {CLIENTS} WebSocket clients on one subscription, {EVENTS} events");
    println!("  connect + bind + handshake, all clients: {:.2} s", bind_time.as_secs_f64());
    println!("  delivered: {delivered} of {} expected", CLIENTS * EVENTS);
    println!(
        "  latency p50: {:.1} ms, p99: {:.1} ms, max: {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  server peak RSS: {peak:.1} MiB");
    assert_eq!(delivered, CLIENTS * EVENTS, "every event reaches every bound client");
}

async fn run(base: &str) -> (usize, Vec<Duration>, Duration) {
    let api = Api::new(base, "alice-token");
    let id = api.create_subscription(TOPIC, "id-only", None).await.expect("subscription");
    let token = api.binding_token(&id).await.expect("token");
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; EVENTS + 1]));
    let started = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let url = token.websocket_url.clone();
        let bind = format!("bind-with-token {}", token.token);
        let ready = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
            socket.send(Message::text(bind)).await.expect("bind");
            let mut received: Vec<(usize, Instant)> = Vec::with_capacity(EVENTS);
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                let arrived = Instant::now();
                let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let status = &value["entry"][0]["resource"];
                match status["type"].as_str() {
                    Some("handshake") => {
                        let _ = ready.send(()).await;
                    }
                    Some("event-notification") => {
                        let number: usize = status["notificationEvent"][0]["eventNumber"]
                            .as_str()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        received.push((number, arrived));
                        if received.len() == EVENTS {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            received
        }));
    }
    for _ in 0..CLIENTS {
        ready_rx.recv().await.expect("handshake");
    }
    let bind_time = started.elapsed();
    for n in 1..=EVENTS {
        sent_at.lock().await[n] = Some(Instant::now());
        let event = json!({"topic": TOPIC, "focus": {"resourceType": "Encounter", "id": format!("enc-{n}"), "status": "finished"}});
        api.notify(&event).await.expect("event accepted");
    }
    let sent = sent_at.lock().await.clone();
    let mut delivered = 0;
    let mut latencies = Vec::with_capacity(CLIENTS * EVENTS);
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
