//! Sharded delivery benchmark: one event to 10,000 and 100,000 connections of one
//! subscription, delivered in pages of 1,000 by 1, 2 and 4 fan-out workers side by side
//! (each its own `FanOut`, Management API client and pacer, as Lambda instances are),
//! the later pages handed between them as page references through a queue, posting
//! through the real Management API client to the stand-in in a child process.
//!
//! Run: `cargo bench -p fhir-ws-tests --bench sharded`. The account-wide rate is
//! `MANAGEMENT_API_RATE` (default 24,000 posts/s here) over a `FANOUT_CONCURRENCY` of 4: each
//! worker paces at a quarter of it, so the rate grows with the workers up to the
//! configured one. Prints the time from the event to its last post and posts/s.
//!
//! Then a checked run at 100,000 connections with 4 workers: every queued message is
//! delivered twice (SQS is at least once), every 1,000th connection is gone (410), and
//! every post is counted per connection on its way to the stand-in: each live connection
//! must have been posted to exactly once, and no gone one twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use fhir_ws_core::config::EventsConfig;
use fhir_ws_core::fanout::pages::Paging;
use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::fhir::Subscription;
use fhir_ws_core::metrics::Metrics;
use fhir_ws_core::push::{ManagementApiPusher, PushError, Pusher};
use fhir_ws_core::relay::{EventQueue, QueueError};
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::store::{Binding, BindingStore, StoredSubscription, SubscriptionStore};
use fhir_ws_core::wiring::fanout_pacer;
use serde_json::json;

const CONCURRENCY: u32 = 4;
const PAGE_SIZE: usize = 1000;

/// The events queue between the workers, in process.
#[derive(Debug, Clone, Default)]
struct Queue(Arc<Mutex<VecDeque<String>>>);

impl EventQueue for Queue {
    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        self.0.lock().map_err(|_| QueueError("poisoned".to_owned()))?.extend(bodies.iter().cloned());
        Ok(())
    }
}

impl Queue {
    fn pop(&self) -> Option<String> {
        self.0.lock().ok()?.pop_front()
    }
}

fn main() {
    fhir_ws_tests::management_api::serve_if_stub_process();
    let (mut child, endpoint) = fhir_ws_tests::management_api::spawn_stub_process();
    let rate: f64 = std::env::var("MANAGEMENT_API_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(24_000.0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let aws = fhir_ws_tests::sdk_loader()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "bench"))
            .load()
            .await;
        println!(
            "one event, pages of {PAGE_SIZE}; account rate {rate:.0} posts/s over {CONCURRENCY} workers ({:.0} each)",
            rate / f64::from(CONCURRENCY)
        );
        println!("{:>11} {:>8} {:>17} {:>10} {:>7}", "connections", "workers", "to last post (s)", "posts/s", "pages");
        for size in [10_000_usize, 100_000] {
            for workers in [1_usize, 2, 4] {
                let (elapsed, pages) = run(&aws, &endpoint, size, workers, rate, None).await;
                let per_second = size as f64 / elapsed.as_secs_f64();
                println!("{size:>11} {workers:>8} {:>17.2} {per_second:>10.0} {pages:>7}", elapsed.as_secs_f64());
            }
        }
        let checks = Arc::new(Checks::default());
        let (elapsed, pages) = run(&aws, &endpoint, 100_000, 4, rate, Some(checks.clone())).await;
        let posts = checks.posts.lock().expect("posts").clone();
        let gone = (0..100_000_usize).filter(|n| n.is_multiple_of(1000)).count();
        let live_once = (0..100_000_usize).filter(|n| !n.is_multiple_of(1000)).all(|n| posts.get(&connection(n)) == Some(&1));
        let gone_once = (0..100_000_usize).filter(|n| n.is_multiple_of(1000)).all(|n| posts.get(&connection(n)) == Some(&1));
        assert!(live_once && gone_once && posts.len() == 100_000, "a connection was missed or posted to twice");
        println!(
            "checked: 100,000 connections in {:.2} s over {pages} page messages (each delivered twice), {gone} gone (410): \
             every connection posted to exactly once",
            elapsed.as_secs_f64()
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// Connection `n`'s id.
fn connection(n: usize) -> String {
    format!("conn-{n:06}=")
}

/// Posts counted per connection; every 1,000th connection answers 410 (not posted).
#[derive(Debug, Default)]
struct Checks {
    posts: Mutex<HashMap<String, u32>>,
}

/// The Management API client, counting into `checks` when there are some.
#[derive(Debug)]
struct Checking {
    inner: ManagementApiPusher,
    checks: Option<Arc<Checks>>,
}

impl Pusher for Checking {
    async fn post(&self, callback_url: &str, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        if let Some(checks) = &self.checks {
            *checks.posts.lock().expect("posts").entry(connection_id.to_owned()).or_default() += 1;
            let number: usize = connection_id.trim_start_matches("conn-").trim_end_matches('=').parse().unwrap_or(1);
            if number.is_multiple_of(1000) {
                return Err(PushError::Gone);
            }
        }
        self.inner.post(callback_url, connection_id, payload).await
    }

    async fn close(&self, callback_url: &str, connection_id: &str) -> Result<(), PushError> {
        self.inner.close(callback_url, connection_id).await
    }
}

/// One event to `size` connections with `workers` workers; (time to the last post, page
/// messages handled). With `checks`, every message is handled twice and posts are counted.
async fn run(
    aws: &aws_config::SdkConfig,
    endpoint: &str,
    size: usize,
    workers: usize,
    rate: f64,
    checks: Option<Arc<Checks>>,
) -> (Duration, usize) {
    let store = Arc::new(MemoryStore::new());
    let id = fhir_ws_core::fhir::new_id();
    let topic = "http://example.org/fhir/SubscriptionTopic/ward";
    let resource: Subscription = serde_json::from_value(json!({"resourceType": "Subscription", "id": id,
        "status": "active", "topic": topic, "channelType": {"code": "websocket"}, "content": "id-only"}))
    .expect("subscription");
    store.insert(&StoredSubscription::new("bench", 1, Utc::now(), resource)).await.expect("insert");
    let expires = Utc::now().timestamp() + 3600;
    let bindings: Vec<Binding> =
        (0..size).map(|n| fhir_ws_tests::fanout_binding(&connection(n), &id, endpoint, expires)).collect();
    store.put_bindings(&bindings).await.expect("bindings");
    let queue = Queue::default();
    let env = |name: &str| match name {
        "MANAGEMENT_API_RATE" => Some(rate.to_string()),
        "FANOUT_CONCURRENCY" => Some(CONCURRENCY.to_string()),
        _ => None,
    };
    let pacing = EventsConfig::load(&env).expect("events config");
    let fanouts: Vec<_> = (0..workers)
        .map(|_| {
            Arc::new(
                FanOut::new(
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    EventHistory { store: store.clone(), retention: chrono::TimeDelta::days(7) },
                    Checking { inner: ManagementApiPusher::new(aws), checks: checks.clone() },
                    "https://fhir.example.org/r5",
                )
                .with_paging(Paging { page_size: PAGE_SIZE, queue: Some(Arc::new(queue.clone())) })
                .with_pacer(fanout_pacer(&pacing)),
            )
        })
        .collect();
    let event = json!({"topic": topic, "focus": {"reference": "Encounter/e1"}, "eventId": id}).to_string();
    queue.enqueue(&[event]).await.expect("queue the event");
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let twice = checks.is_some();
    for fanout in fanouts {
        let (queue, busy, pages) = (queue.clone(), busy.clone(), pages.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                // Counted busy before taking a message, so no worker stops while another
                // is about to queue the next page.
                busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(body) = queue.pop() else {
                    let others = busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) - 1;
                    if others == 0 && queue.0.lock().map(|q| q.is_empty()).unwrap_or(true) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let metrics = Metrics::new("bench");
                let delivered = fanout.deliver_message("m", &body, Utc::now(), &metrics).await;
                assert!(delivered.is_ok(), "{delivered:?}");
                if twice {
                    let again = fanout.deliver_message("m", &body, Utc::now(), &metrics).await;
                    assert!(again.is_ok(), "{again:?}");
                }
                busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    (started.elapsed(), pages.load(std::sync::atomic::Ordering::SeqCst))
}
