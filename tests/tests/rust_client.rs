//! The Rust client (`clients/rust`, `fhir-ws-client`) against `fhir-ws serve` with fault
//! injection, the shortest token lifetime and a heartbeat run every second, for R5, R4B
//! and R4 at once: the server drops the socket mid-stream, events are sent while the
//! client is away, a frame is redelivered, heartbeats stop (a half-open socket), and
//! tokens expire after 60 s. In every case each event reaches the app exactly once, in
//! order; events past the server's retention are reported once, and later ones still
//! delivered. Also: events through the relay path, and a refused Subscription.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fhir_ws_client::{Client, Error, FhirVersion, Notification, SubscriptionRequest, Timing, Update};
use fhir_ws_local::gateway::Options;
use fhir_ws_tests::local::LocalStack;
use futures::StreamExt as _;
use serde_json::{Value, json};

/// The shortest token lifetime the operation allows; the stack runs with it.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The shortest event retention (`EVENT_RETENTION_SECONDS`); the stack runs with it.
const RETENTION: Duration = Duration::from_secs(60);
/// Short enough that a silent socket is noticed in seconds (the watchdog: twice this).
const HEARTBEAT_PERIOD: u32 = 3;
const WAIT: Duration = Duration::from_secs(20);

/// What one client handed its app.
#[derive(Default)]
struct Seen {
    notifications: Vec<Notification>,
    errors: Vec<String>,
    disconnects: Vec<String>,
    renewals: usize,
    bound: usize,
}

struct Followed {
    topic: String,
    id: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Followed {
    fn numbers(&self) -> Vec<u64> {
        self.seen.lock().unwrap().notifications.iter().map(|n| n.event_number).collect()
    }

    async fn until(&self, what: &str, wait: Duration, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + wait;
        while !done(&self.seen.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; got {:?}",
                self.topic,
                self.numbers()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Exactly 1..=count, each once and in order, with the focus each was sent with.
    fn assert_exactly_once_in_order(&self, count: u64, case: &str) {
        let seen = self.seen.lock().unwrap();
        let numbers: Vec<u64> = seen.notifications.iter().map(|n| n.event_number).collect();
        assert_eq!(numbers, (1..=count).collect::<Vec<_>>(), "{case}: each event once, in order");
        for n in &seen.notifications {
            assert_eq!(n.subscription, self.id, "{case}");
            assert_eq!(n.kind, if n.replayed { "query-event" } else { "event-notification" }, "{case}");
            let focus = n.focus.as_deref().unwrap_or_default();
            assert!(focus.ends_with(&format!("Encounter/enc-{}", n.event_number)), "{case}: focus {focus}");
        }
        assert!(seen.errors.is_empty(), "{case}: {:?}", seen.errors);
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Stack {
    local: LocalStack,
    http: reqwest::Client,
}

impl Stack {
    fn base(&self, version: FhirVersion) -> String {
        match version {
            FhirVersion::R5 => self.local.base.clone(),
            FhirVersion::R4B => format!("{}/R4B", self.local.base),
            FhirVersion::R4 => format!("{}/R4", self.local.base),
        }
    }

    async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> Value {
        let mut request = self.http.post(format!("{}{path}", self.local.base)).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path} answered {status}: {answer}");
        answer
    }

    async fn send_event(&self, topic: &str, n: u64) {
        let focus = json!({"resourceType": "Encounter", "id": format!("enc-{n}"), "status": "in-progress",
            "subject": {"reference": "Patient/123"}});
        self.post("/local/events", json!({"topic": topic, "focus": focus}), None).await;
    }

    /// A client of a new subscription to a topic of its own, bound.
    async fn follow(&self, version: FhirVersion, case: &str, timing: Timing) -> Followed {
        let topic = format!("http://example.org/topics/client-test/{case}/{version:?}/{}", uuid::Uuid::new_v4());
        let request =
            SubscriptionRequest { heartbeat_period: Some(HEARTBEAT_PERIOD), ..SubscriptionRequest::new(&topic) };
        let mut builder = Client::builder(self.base(version))
            .access_token(|| async { Ok::<_, Error>("alice-token".to_owned()) })
            .create(request)
            .timing(timing);
        // One of the three reads its version from the server's CapabilityStatement.
        if version != FhirVersion::R4B {
            builder = builder.fhir_version(version);
        }
        let mut updates = builder.subscribe().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (created, id) = tokio::sync::oneshot::channel();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut created = Some(created);
            while let Some(update) = updates.next().await {
                let mut seen = record.lock().unwrap();
                match update {
                    Ok(Update::Notification(n)) => seen.notifications.push(n),
                    Ok(Update::Created { subscription }) => {
                        if let Some(created) = created.take() {
                            let _ = created.send(subscription);
                        }
                    }
                    Ok(Update::Bound { .. }) => seen.bound += 1,
                    Ok(Update::Renewed { .. }) => seen.renewals += 1,
                    Ok(Update::Disconnected { reason }) => seen.disconnects.push(reason),
                    Ok(_) => {}
                    Err(error) => seen.errors.push(error.to_string()),
                }
            }
        });
        let id = tokio::time::timeout(WAIT, id).await.expect("created in time").expect("created");
        let followed = Followed { topic, id, seen, task };
        followed.until("the first binding", WAIT, |s| s.bound == 1).await;
        followed
    }
}

type Case<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

async fn server_drops_the_socket(stack: &Stack, version: FhirVersion) {
    let run = stack.follow(version, "drop", Timing::default()).await;
    stack.send_event(&run.topic, 1).await;
    stack.send_event(&run.topic, 2).await;
    run.until("events 1 and 2", WAIT, |s| s.notifications.len() == 2).await;
    assert_eq!(stack.local.fault("drop", &run.id).await, 1);
    run.until("a new binding", WAIT, |s| s.bound == 2).await;
    stack.send_event(&run.topic, 3).await;
    run.until("event 3", WAIT, |s| s.notifications.len() == 3).await;
    let reason = run.seen.lock().unwrap().disconnects[0].clone();
    assert!(reason.contains("1001"), "API Gateway's going-away close: {reason}");
    run.assert_exactly_once_in_order(3, &format!("{version:?} drop"));
}

async fn events_while_disconnected(stack: &Stack, version: FhirVersion) {
    // Two seconds' backoff at least, so the events surely land while it is away.
    let timing = Timing { initial_delay: Duration::from_secs(4), ..Timing::default() };
    let run = stack.follow(version, "away", timing).await;
    stack.send_event(&run.topic, 1).await;
    run.until("event 1", WAIT, |s| s.notifications.len() == 1).await;
    assert_eq!(stack.local.fault("drop", &run.id).await, 1);
    run.until("the drop", WAIT, |s| s.disconnects.len() == 1).await;
    for n in 2..=4 {
        stack.send_event(&run.topic, n).await;
    }
    run.until("events 2-4", WAIT, |s| s.notifications.len() == 4).await;
    stack.send_event(&run.topic, 5).await;
    run.until("event 5", WAIT, |s| s.notifications.len() == 5).await;
    run.assert_exactly_once_in_order(5, &format!("{version:?} away"));
    let replayed: Vec<bool> = run.seen.lock().unwrap().notifications.iter().map(|n| n.replayed).collect();
    assert_eq!(replayed, [false, true, true, true, false], "2-4 came from $events, 5 live");
}

async fn a_redelivered_event(stack: &Stack, version: FhirVersion) {
    let run = stack.follow(version, "redelivery", Timing::default()).await;
    stack.send_event(&run.topic, 1).await;
    run.until("event 1", WAIT, |s| s.notifications.len() == 1).await;
    assert_eq!(stack.local.fault("repeat", &run.id).await, 1, "the server sent event 1 again");
    stack.send_event(&run.topic, 2).await;
    run.until("event 2", WAIT, |s| s.notifications.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.assert_exactly_once_in_order(2, &format!("{version:?} redelivery"));
}

async fn heartbeats_stop(stack: &Stack, version: FhirVersion) {
    let run = stack.follow(version, "silent", Timing::default()).await;
    stack.send_event(&run.topic, 1).await;
    run.until("event 1", WAIT, |s| s.notifications.len() == 1).await;
    assert_eq!(stack.local.fault("freeze", &run.id).await, 1);
    stack.send_event(&run.topic, 2).await;
    stack.send_event(&run.topic, 3).await;
    // Nothing arrives on the frozen socket; the watchdog gives up on it after 2 × 3 s.
    let wait = WAIT + Duration::from_secs(2 * u64::from(HEARTBEAT_PERIOD));
    run.until("events 2 and 3", wait, |s| s.notifications.len() == 3).await;
    let reason = run.seen.lock().unwrap().disconnects[0].clone();
    assert!(reason.contains("heartbeats stopped"), "closed by the watchdog: {reason}");
    run.assert_exactly_once_in_order(3, &format!("{version:?} silent"));
}

async fn tokens_of_the_shortest_lifetime(stack: &Stack, version: FhirVersion) {
    let run = stack.follow(version, "renewal", Timing::default()).await;
    let bound_at = Instant::now();
    stack.send_event(&run.topic, 1).await;
    run.until("event 1", WAIT, |s| s.notifications.len() == 1).await;
    run.until("a renewal", TOKEN_LIFETIME, |s| s.renewals >= 1).await;
    // Past the first token's end: only the renewed binding can carry event 2.
    tokio::time::sleep((bound_at + TOKEN_LIFETIME + Duration::from_secs(2)).saturating_duration_since(Instant::now()))
        .await;
    stack.send_event(&run.topic, 2).await;
    run.until("event 2", WAIT, |s| s.notifications.len() == 2).await;
    run.assert_exactly_once_in_order(2, &format!("{version:?} renewal"));
    let seen = run.seen.lock().unwrap();
    assert!(!seen.notifications[1].replayed, "event 2 arrived live");
    assert!(seen.disconnects.is_empty(), "the socket stayed up: {:?}", seen.disconnects);
}

async fn events_past_retention(stack: &Stack, version: FhirVersion) {
    let first = stack.follow(version, "retention", Timing::default()).await;
    stack.send_event(&first.topic, 1).await;
    stack.send_event(&first.topic, 2).await;
    first.until("events 1 and 2", WAIT, |s| s.notifications.len() == 2).await;
    let sent_at = Instant::now();
    first.task.abort();
    // The app comes back, resuming after event 0, when 1 and 2 are gone.
    tokio::time::sleep((sent_at + RETENTION + Duration::from_secs(2)).saturating_duration_since(Instant::now())).await;
    stack.send_event(&first.topic, 3).await;
    let mut updates = Client::builder(stack.base(version))
        .bearer("alice-token")
        .subscriptions([first.id.clone()])
        .since(first.id.clone(), 0)
        .subscribe()
        .unwrap()
        .notifications();
    let next = async |updates: &mut (dyn futures::Stream<Item = Result<Notification, Error>> + Unpin)| {
        tokio::time::timeout(WAIT, updates.next()).await.expect("in time").expect("open")
    };
    match next(&mut updates).await {
        Err(Error::EventsUnavailable { subscription, since, until, outcome }) => {
            assert_eq!((subscription.as_str(), since, until), (first.id.as_str(), 1, 2), "{version:?}");
            assert_eq!(outcome.unwrap()["resourceType"], "OperationOutcome", "the server's warning is carried");
        }
        other => panic!("{version:?}: expected the lost events reported first, got {other:?}"),
    }
    let third = next(&mut updates).await.unwrap();
    assert_eq!((third.event_number, third.replayed), (3, true), "{version:?}");
}

async fn relayed_events(stack: &Stack) {
    let run = stack.follow(FhirVersion::R4, "relay", Timing::default()).await;
    let upstream = "https://upstream.example.org/fhir";
    for n in 1..=2u64 {
        let bundle = json!({"resourceType": "Bundle", "type": "history", "entry": [{
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": {"resourceType": "Parameters", "parameter": [
                {"name": "subscription", "valueReference": {"reference": format!("{upstream}/Subscription/up-{}", run.id)}},
                {"name": "topic", "valueCanonical": run.topic},
                {"name": "status", "valueCode": "active"},
                {"name": "type", "valueCode": "event-notification"},
                {"name": "events-since-subscription-start", "valueString": n.to_string()},
                {"name": "notification-event", "part": [
                    {"name": "event-number", "valueString": n.to_string()},
                    {"name": "timestamp", "valueInstant": chrono::Utc::now().to_rfc3339()},
                    {"name": "focus", "valueReference": {"reference": format!("{upstream}/Encounter/enc-{n}")}}]}]},
            "request": {"method": "GET", "url": format!("{upstream}/Subscription/up-{}/$status", run.id)},
            "response": {"status": "200"}}]});
        stack.post("/relay", bundle, Some(fhir_ws_local::gateway::LOCAL_RELAY_SECRET)).await;
    }
    run.until("events 1 and 2", WAIT, |s| s.notifications.len() == 2).await;
    run.assert_exactly_once_in_order(2, "R4 relay");
}

#[tokio::test]
async fn the_rust_client_delivers_each_event_once_in_order_through_faults() {
    let local = LocalStack::start(Options {
        fault_injection: true,
        token_lifetime_seconds: TOKEN_LIFETIME.as_secs() as i64,
        event_retention_seconds: RETENTION.as_secs() as i64,
        heartbeat_every: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let stack = Stack { local, http: reqwest::Client::new() };
    let mut cases: Vec<Case<'_>> = Vec::new();
    for version in [FhirVersion::R5, FhirVersion::R4B, FhirVersion::R4] {
        cases.push(Box::pin(server_drops_the_socket(&stack, version)));
        cases.push(Box::pin(events_while_disconnected(&stack, version)));
        cases.push(Box::pin(a_redelivered_event(&stack, version)));
        cases.push(Box::pin(heartbeats_stop(&stack, version)));
        cases.push(Box::pin(tokens_of_the_shortest_lifetime(&stack, version)));
        cases.push(Box::pin(events_past_retention(&stack, version)));
    }
    cases.push(Box::pin(relayed_events(&stack)));
    futures::future::join_all(cases).await;

    // A Subscription the server refuses ends the stream with the error and its outcome.
    let mut refused = Client::builder(&stack.local.base)
        .bearer("alice-token")
        .subscriptions(["no-such-subscription"])
        .subscribe()
        .unwrap()
        .notifications();
    let error = tokio::time::timeout(WAIT, refused.next()).await.unwrap().unwrap().unwrap_err();
    assert!(error.is_fatal(), "{error}");
    assert!(matches!(error, Error::Http { status: 404, .. }), "{error}");
    assert_eq!(error.outcome().unwrap()["resourceType"], "OperationOutcome");
    assert!(tokio::time::timeout(WAIT, refused.next()).await.unwrap().is_none(), "the stream ends");
    stack.local.stop().await;
}
