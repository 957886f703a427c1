//! Fuzz targets for every parser of untrusted input, as plain functions of the input
//! bytes: `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run <target>`), and
//! `tests/tests/fuzz_replay.rs` runs them on stable over the committed corpus and fresh
//! random inputs. A target fails by panicking: on a panic in the code under test, or on
//! an answer that breaks the rule it checks (no 5xx, every error an `OperationOutcome`,
//! what is accepted survives a round trip).

use fhir_ws_core::fhir::version::FhirVersion;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::token::{KeyRing, decode, sign};
use serde_json::Value;

use crate::HttpEvent;

/// A fuzz target: panics when the input finds a fault.
pub type Target = fn(&[u8]);

/// Every target, by the name `fuzz/` and the corpus folders use.
pub const TARGETS: [(&str, Target); 6] = [
    ("token", token),
    ("ws_frame", ws_frame),
    ("http_body", http_body),
    ("relay_body", relay_body),
    ("queue_event", queue_event),
    ("filters", filters),
];

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::parse(crate::TEST_SIGNING_KEYS).unwrap_or_else(|e| panic!("test keys: {e}")))
}

/// Tokens: decoding never panics, and whatever decodes is re-signed to a token that
/// decodes to the same claims.
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(claims) = decode(&text, ring(), now()) {
        let again = decode(&sign(&claims, ring()), ring(), now());
        assert_eq!(again.as_ref(), Ok(&claims), "a decoded token does not survive re-signing");
    }
}

/// WebSocket frames from clients: reading never panics.
pub fn ws_frame(data: &[u8]) {
    let _ = fhir_ws_core::ws::protocol::parse(data);
}

/// The handlers and a runtime to run them on, built once per fuzzing process.
struct Handlers {
    runtime: tokio::runtime::Runtime,
    app: crate::App<Arc<MemoryStore>, Arc<MemoryStore>>,
    /// The `subscription-api` function as deployed: the Subscription API, `$status`,
    /// `$events` and `metadata`, over the same store as `app`.
    service: fhir_ws_core::ops::SubscriptionService<Arc<MemoryStore>, Arc<MemoryStore>, Arc<MemoryStore>>,
    relay: fhir_ws_core::relay::RelayHandler<Arc<MemoryStore>, crate::RecordingQueue>,
    queue: crate::RecordingQueue,
}

const RELAY_SECRET: &str = "fuzz-relay-secret-0123456789abcdef01234";

fn handlers() -> &'static Handlers {
    static HANDLERS: OnceLock<Handlers> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let queue = crate::RecordingQueue::default();
        let relay = fhir_ws_core::relay::RelayHandler::new(
            fhir_ws_core::relay::Relay::new(crate::memory_upstream_store(), chrono::TimeDelta::hours(1)),
            queue.clone(),
            fhir_ws_core::relay::RelaySecrets::parse(RELAY_SECRET).unwrap_or_else(|e| panic!("secret: {e}")),
        );
        let app = crate::App::new(crate::memory_stores());
        let store = app.stores.subscriptions.clone();
        let config = crate::api_config(
            fhir_ws_core::http::IdentityConfig::default(),
            fhir_ws_core::topics::TopicRegistry::default(),
        );
        let service = fhir_ws_core::ops::SubscriptionService::new(
            store.clone(),
            store.clone(),
            store,
            crate::no_connections(),
            &config,
        );
        runtime.block_on(store_instance_subscription(&app));
        Handlers { runtime, app, service, relay, queue }
    })
}

/// The caller of the fuzzed HTTP requests.
const FUZZER: &str = "fuzzer";

/// The subscription the instance routes name, `Subscription/s1` of [`FUZZER`] (the seeds'
/// update bodies carry that id), stored directly since the API assigns ids of its own.
async fn store_instance_subscription(app: &crate::App<Arc<MemoryStore>, Arc<MemoryStore>>) {
    use fhir_ws_core::store::{StoredSubscription, SubscriptionStore as _};
    let mut resource = crate::websocket_subscription(crate::TOPIC);
    resource["id"] = serde_json::json!("s1");
    resource["status"] = serde_json::json!("active");
    let resource = serde_json::from_value(resource).unwrap_or_else(|e| panic!("s1: {e}"));
    let stored = StoredSubscription::new(FUZZER, 1, chrono::Utc::now(), resource);
    app.stores.subscriptions.insert(&stored).await.unwrap_or_else(|e| panic!("s1: {e}"));
}

/// The status of an answer; panics on a 5xx or an error that is not an `OperationOutcome`.
fn check_answer(route: &str, response: &lambda_http::Response<lambda_http::Body>) {
    let status = response.status().as_u16();
    assert!(status < 500, "{route}: status {status}");
    if status >= 400 {
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        assert_eq!(body["resourceType"], "OperationOutcome", "{route}: error {status} without an OperationOutcome");
    }
}

/// Bodies of every HTTP route that takes one (the first byte picks the route; the instance
/// routes name the caller's subscription `s1`, which exists from the start).
pub fn http_body(data: &[u8]) {
    let _ = http_answer(data);
}

/// What [`http_body`] does, returning the route it picked and the answer's status (`None`
/// for an empty input), so a test can see which requests got past the lookup.
pub fn http_answer(data: &[u8]) -> Option<(&'static str, u16)> {
    let routes: [(&str, &str, bool); 9] = [
        ("POST", "/Subscription", true),
        ("POST", "/R4/Subscription", true),
        ("POST", "/R4B/Subscription", true),
        ("PUT", "/Subscription/s1", true),
        ("POST", "/Subscription/$status", true),
        ("POST", "/Subscription/s1/$events", true),
        ("POST", "/Subscription/$get-ws-binding-token", false),
        ("POST", "/Subscription/s1/$get-ws-binding-token", false),
        ("POST", "/Subscription/$revoke-ws-binding-token", false),
    ];
    let (selector, body) = data.split_first()?;
    let (method, path, subscription_api) = routes[usize::from(*selector) % routes.len()];
    let text = String::from_utf8_lossy(body);
    let event = HttpEvent::new(method, path, Some(FUZZER)).body("application/fhir+json", &text);
    let handlers = handlers();
    let response = handlers.runtime.block_on(async {
        if subscription_api {
            handlers.service.handle(&event.request(), Utc::now()).await
        } else {
            handlers.app.operation(event).await
        }
    });
    check_answer(path, &response);
    Some((path, response.status().as_u16()))
}

/// Bodies posted to the relay (with its secret): no 5xx, and nothing queued unless 200.
pub fn relay_body(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let event = HttpEvent::new("POST", "/relay", None)
        .body("application/fhir+json", &text)
        .header("authorization", &format!("Bearer {RELAY_SECRET}"));
    let handlers = handlers();
    let response = handlers.runtime.block_on(handlers.relay.handle(&event.request(), now()));
    check_answer("/relay", &response);
    let queued = handlers.queue.take();
    assert!(response.status().as_u16() == 200 || queued.is_empty(), "a refused notification queued events");
}

/// Messages on the events queue: the fan-out's event contract, and the notification
/// Bundles it relays; reading never panics.
pub fn queue_event(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = fhir_ws_core::fanout::event::parse(&text, now(), FhirVersion::R4);
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        let _ = fhir_ws_core::relay::upstream::read_notification(&value);
    }
}

/// Filters and criteria: `Type?name:modifier=value&…` as topics and R4 clients write
/// them, and single `filterBy` clauses, in every FHIR version; reading never panics, and what reads is
/// evaluated against a resource without panicking.
pub fn filters(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let resource = serde_json::json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "subject": {"reference": "Patient/p1"}, "period": {"start": "2026-01-01T00:00:00Z"}});
    let resource = resource.as_object().cloned().unwrap_or_default();
    let (name, value) = text.split_once('=').unwrap_or((&text, ""));
    for version in FhirVersion::ALL {
        if let Ok(criteria) = fhir_ws_core::search::criteria::Criteria::parse(&text, "Encounter", version) {
            let _ = criteria.matches(&resource, now());
        }
        if let Ok(clause) = fhir_ws_core::search::criteria::Clause::parse(name, value, "Encounter", version) {
            let _ = clause.matches(&resource, now());
        }
    }
    let _ = fhir_ws_core::fhir::backport::subscription::parse_filter_criteria(&text);
}
