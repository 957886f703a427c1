//! Soak run of the local stack: 1,000 WebSocket clients held for 10 minutes against
//! `fhir-ws serve` (a separate process, embedded store), one event per second, heartbeats
//! on the side. It looks for what only time shows: lost or repeated notifications,
//! latency creeping up, heartbeats falling behind, memory that only grows.
//!
//! Set-up: `SOAK_USERS` users (10) each own two subscriptions, a busy one (the topic every
//! event is sent to) and a quiet one (another topic, `heartbeatPeriod` 10 s), and get one
//! type-level binding token for both; each of the `SOAK_CLIENTS` clients (1,000) opens a
//! connection with its user's token, so it receives every event and a heartbeat about
//! every 10 s. Events go out once a second for `SOAK_SECONDS` (600), each on its own
//! task so a slow delivery never delays the next one.
//!
//! Reports: notifications delivered against expected (events × clients; every client
//! must see event numbers 1..=N exactly once), latency from sending an event to each
//! client receiving it (p50/p99/max, and p99 per minute to show drift), heartbeats per
//! client and the longest gap between two, and the server's RSS when every client is
//! bound, every 10 s in the first two minutes, each minute, and at the end. Fails when a
//! notification is missing or repeated, a client saw an error, a heartbeat came late, or
//! RSS grew by 10 % or more from the end of the first minute (the warm-up: RSS steps up
//! in the first 30 s of deliveries, once, and that step is printed too) to the end.
//!
//! Run: `cargo bench -p fhir-ws-local --bench soak` (`SOAK_SECONDS=60` for a short run).

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark harness: a failed step must stop it loudly")]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fhir_ws_local::client::Api;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::{Server, ms, percentile, setting};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const BUSY_TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/soak-busy";
const QUIET_TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/soak-quiet";
/// The quiet subscriptions' `heartbeatPeriod`.
const HEARTBEAT_PERIOD: u32 = 10;
/// How often the server's heartbeat run comes (`--heartbeat-seconds`).
const HEARTBEAT_RUN_SECONDS: u64 = 5;
/// How long events stay answerable by `$events` (`--event-retention`): shorter than the
/// run, so the event history reaches its steady size instead of growing by design.
const EVENT_RETENTION_SECONDS: u64 = 60;

/// One user's two subscriptions and the token binding both.
struct UserSetup {
    busy: String,
    quiet: String,
    token: String,
    websocket_url: String,
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    /// (event number, focus id's sequence number, arrival).
    events: Vec<(u64, usize, Instant)>,
    heartbeats: Vec<Instant>,
    /// Frames that were neither handshake, heartbeat nor event, or a socket that ended early.
    errors: Vec<String>,
    ready_at: Option<Instant>,
}

fn main() {
    let seconds = setting("SOAK_SECONDS", 600);
    let clients = setting("SOAK_CLIENTS", 1_000);
    let users = setting("SOAK_USERS", 10).max(1);
    let mut args: Vec<String> = [
        "--token-lifetime",
        "7200",
        "--heartbeat-seconds",
        &HEARTBEAT_RUN_SECONDS.to_string(),
        "--event-retention",
        &EVENT_RETENTION_SECONDS.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    for user in 0..users {
        args.extend(["--user".to_owned(), format!("soak{user}-token=soak{user}")]);
    }
    let server = Server::start(&args);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(soak(&server, seconds, clients, users));
}

async fn soak(server: &Server, seconds: usize, clients: usize, users: usize) {
    println!(
        "soak: {clients} WebSocket clients ({users} users), 1 event/s for {seconds} s, heartbeat every {HEARTBEAT_PERIOD} s"
    );
    let mut setups = Vec::with_capacity(users);
    for user in 0..users {
        let api = Api::new(&server.base, &format!("soak{user}-token"));
        let busy = api.create_subscription(BUSY_TOPIC, "id-only", None).await.expect("busy subscription");
        let quiet =
            api.create_subscription(QUIET_TOPIC, "id-only", Some(HEARTBEAT_PERIOD)).await.expect("quiet subscription");
        let token = api.binding_token_for(&[&busy, &quiet]).await.expect("token");
        setups.push(Arc::new(UserSetup { busy, quiet, token: token.token, websocket_url: token.websocket_url }));
    }

    let connecting = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let setup = setups[client % users].clone();
        tasks.push(tokio::spawn(run_client(setup, ready_tx.clone(), stop_rx.clone())));
    }
    drop(ready_tx);
    for _ in 0..clients {
        ready_rx.recv().await.expect("every client bound and handshaken");
    }
    println!("  connected, bound, both handshakes: {clients} clients in {:.1} s", connecting.elapsed().as_secs_f64());

    // The server at rest with every client bound: the start of the memory comparison.
    let start_rss = server.rss_mib();
    let mut rss_by_minute = vec![start_rss];
    // Finer in the first two minutes, where the server warms up.
    let mut rss_warming = vec![start_rss];
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; seconds + 1]));
    let failed_sends = Arc::new(Mutex::new(0_usize));
    let api = Api::new(&server.base, "soak0-token");
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let started = Instant::now();
    let mut senders = Vec::with_capacity(seconds);
    for n in 1..=seconds {
        ticks.tick().await;
        let (api, sent_at, failed) = (api.clone(), sent_at.clone(), failed_sends.clone());
        senders.push(tokio::spawn(async move {
            let event = json!({"topic": BUSY_TOPIC, "focus": {"resourceType": "Encounter", "id": format!("soak-{n}"), "status": "finished"}});
            sent_at.lock().expect("sent times")[n] = Some(Instant::now());
            if api.notify(&event).await.is_err() {
                *failed.lock().expect("failures") += 1;
            }
        }));
        if n % 60 == 0 {
            rss_by_minute.push(server.rss_mib());
        }
        if n % 10 == 0 && n <= 120 {
            rss_warming.push(server.rss_mib());
        }
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let sending = started.elapsed();
    // Let the last deliveries land and one more heartbeat run pass, then measure the end.
    tokio::time::sleep(Duration::from_secs(HEARTBEAT_RUN_SECONDS + 2)).await;
    let end_rss = server.rss_mib();
    // After the first minute: every connection has carried events and heartbeats, and the
    // event history has filled its retention window.
    let warm_rss = rss_by_minute.get(1).copied().unwrap_or(end_rss);
    let peak_rss = server.peak_rss_mib();
    let _ = stop_tx.send(true);

    let sent = sent_at.lock().expect("sent times").clone();
    let mut logs = Vec::with_capacity(clients);
    for task in tasks {
        logs.push(tokio::time::timeout(Duration::from_secs(60), task).await.expect("client ends").expect("client"));
    }
    report(&logs, &sent, seconds, sending, *failed_sends.lock().expect("failures"));
    let growth = |from: f64| (end_rss / from - 1.0) * 100.0;
    println!(
        "  server RSS: {start_rss:.1} MiB with every client bound, {warm_rss:.1} MiB after the first minute, \
         {end_rss:.1} MiB at the end: {:+.1} % since the first minute ({:+.1} % since bound), peak {peak_rss:.1} MiB",
        growth(warm_rss),
        growth(start_rss)
    );
    let by_minute: Vec<String> = rss_by_minute.iter().map(|m| format!("{m:.1}")).collect();
    println!("  server RSS each minute (MiB): {}", by_minute.join(", "));
    let warming: Vec<String> = rss_warming.iter().map(|m| format!("{m:.1}")).collect();
    println!("  server RSS every 10 s of the first two minutes (MiB): {}", warming.join(", "));
    assert!(end_rss < warm_rss * 1.10, "RSS grew by 10 % or more after the warm-up");
}

/// Opens one connection with `setup`'s token, binds, and logs what arrives until `stop`.
async fn run_client(
    setup: Arc<UserSetup>,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let (mut socket, _) = tokio_tungstenite::connect_async(setup.websocket_url.as_str()).await.expect("connect");
    socket.send(Message::text(format!("bind-with-token {}", setup.token))).await.expect("bind");
    let mut handshakes = 0;
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = stop.changed() => break,
        };
        let Some(Ok(frame)) = frame else {
            log.errors.push("the connection ended before the run did".to_owned());
            break;
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => {
                log.errors.push(format!("unexpected frame {other:?}"));
                continue;
            }
        };
        let arrived = Instant::now();
        let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        let status = &value["entry"][0]["resource"];
        let subscription = status["subscription"]["reference"].as_str().unwrap_or_default();
        let is = |id: &str| subscription.ends_with(&format!("Subscription/{id}"));
        match status["type"].as_str() {
            Some("handshake") => {
                handshakes += 1;
                if handshakes == 2 {
                    log.ready_at = Some(arrived);
                    let _ = ready.send(()).await;
                }
            }
            Some("heartbeat") if is(&setup.quiet) => log.heartbeats.push(arrived),
            Some("event-notification") if is(&setup.busy) => {
                let event = &status["notificationEvent"][0];
                let number = event["eventNumber"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
                let sequence = event["focus"]["reference"]
                    .as_str()
                    .and_then(|r| r.rsplit_once("soak-"))
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0);
                log.events.push((number, sequence, arrived));
            }
            _ => log.errors.push(text.as_str().chars().take(300).collect()),
        }
    }
    let _ = socket.close(None).await;
    log
}

fn report(logs: &[ClientLog], sent: &[Option<Instant>], events: usize, sending: Duration, failed_sends: usize) {
    let expected = logs.len() * events;
    let delivered: usize = logs.iter().map(|log| log.events.len()).sum();
    let complete = logs
        .iter()
        .filter(|log| {
            let numbers: BTreeSet<u64> = log.events.iter().map(|(number, _, _)| *number).collect();
            log.events.len() == events && numbers.len() == events && numbers.iter().copied().eq(1..=events as u64)
        })
        .count();
    let mut latencies = Vec::with_capacity(delivered);
    let mut by_minute: Vec<Vec<Duration>> = vec![Vec::new(); events.div_ceil(60)];
    for (_, sequence, arrived) in logs.iter().flat_map(|log| &log.events) {
        if let Some(Some(at)) = sent.get(*sequence) {
            let latency = arrived.saturating_duration_since(*at);
            latencies.push(latency);
            by_minute[(sequence - 1) / 60].push(latency);
        }
    }
    latencies.sort_unstable();
    let errors: usize = logs.iter().map(|log| log.errors.len()).sum();
    println!("  events sent: {events} in {:.1} s ({failed_sends} refused)", sending.as_secs_f64());
    println!(
        "  delivered: {delivered} of {expected} expected; clients with exactly events 1..={events}: {complete} of {}",
        logs.len()
    );
    println!(
        "  latency (sent → received) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    let drift: Vec<String> = by_minute
        .iter_mut()
        .map(|minute| {
            minute.sort_unstable();
            format!("{:.1}", ms(percentile(minute, 0.99)))
        })
        .collect();
    println!("  p99 each minute (ms): {}", drift.join(", "));
    let counts: Vec<usize> = logs.iter().map(|log| log.heartbeats.len()).collect();
    let longest_gap = logs
        .iter()
        .flat_map(|log| {
            let first = log.ready_at.into_iter().chain(log.heartbeats.iter().copied());
            first.clone().zip(first.skip(1)).map(|(a, b)| b.saturating_duration_since(a))
        })
        .max()
        .unwrap_or_default();
    println!(
        "  heartbeats per client: {}..{} (period {HEARTBEAT_PERIOD} s, runs every {HEARTBEAT_RUN_SECONDS} s); longest gap {:.1} s",
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
        longest_gap.as_secs_f64()
    );
    println!("  client errors (unexpected frames, early closes): {errors}");
    if let Some(first) = logs.iter().flat_map(|log| &log.errors).next() {
        println!("    first: {first}");
    }
    assert_eq!(failed_sends, 0, "every event accepted");
    assert_eq!(delivered, expected, "every event reaches every client");
    assert_eq!(complete, logs.len(), "each client sees each event number once");
    assert_eq!(errors, 0, "no client saw an error");
    let allowed_gap = Duration::from_secs(u64::from(HEARTBEAT_PERIOD) + HEARTBEAT_RUN_SECONDS + 2);
    assert!(longest_gap <= allowed_gap, "heartbeats kept to their period (+ one heartbeat run)");
}
