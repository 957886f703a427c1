//! The `fanout` and `heartbeat` handlers with SQS and EventBridge event JSON, both back
//! ends (moto_server for DynamoDB), and the recording Management API endpoint.

use chrono::{TimeDelta, Utc};
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore};
use fhir_ws_tests::websocket::{SqsBatch, TEST_FHIR_BASE, WsHarness, WsStores};
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, all_stores, assert_outcome, assert_valid_r5, isolated_stores,
    unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

/// Two topics of this test's own: tests share one DynamoDB server, and a topic's
/// subscriptions from another test would send this test's events to its connections.
fn topics() -> (String, String) {
    let run = uuid::Uuid::new_v4();
    (
        format!("http://example.org/fhir/SubscriptionTopic/encounter-start-{run}"),
        format!("http://example.org/fhir/SubscriptionTopic/lab-result-{run}"),
    )
}

fn subscription(topic: &str, content: &str) -> Value {
    let mut resource = websocket_subscription(topic);
    resource["content"] = json!(content);
    resource
}

fn encounter(id: &str, status: &str) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": status, "subject": {"reference": "Patient/123"}})
}

fn event(topic: &str, focus: Value) -> Value {
    json!({"topic": topic, "focus": focus, "additionalContext": [{"resourceType": "Patient", "id": "123"}],
           "timestamp": "2026-11-27T06:30:00Z"})
}

/// Event notifications among a connection's frames: (event number, focus reference).
fn events(frames: &[Value]) -> Vec<(String, Option<String>)> {
    frames
        .iter()
        .filter(|f| f["entry"][0]["resource"]["type"] == "event-notification")
        .map(|f| {
            let status = &f["entry"][0]["resource"];
            assert_eq!(status["eventsSinceSubscriptionStart"], status["notificationEvent"][0]["eventNumber"]);
            let number = status["notificationEvent"][0]["eventNumber"].as_str().unwrap_or_default().to_owned();
            let focus = status["notificationEvent"][0]["focus"]["reference"].as_str().map(str::to_owned);
            (number, focus)
        })
        .collect()
}

fn event_frames(frames: &[Value]) -> Vec<Value> {
    frames.iter().filter(|f| f["entry"][0]["resource"]["type"] == "event-notification").cloned().collect()
}

async fn three_subscriptions<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, t2) = topics();
    let (t1, t2) = (t1.as_str(), t2.as_str());
    let owner = unique_principal("alice");
    let (full, full_conn) = ws.subscribe(&owner, &subscription(t1, "full-resource")).await;
    let (_, ids_conn) = ws.subscribe(&owner, &subscription(t1, "id-only")).await;
    let (_, empty_conn) = ws.subscribe(&owner, &subscription(t2, "empty")).await;
    // The full-resource subscription is watched by a second connection too.
    let token = ws.token(&owner, std::slice::from_ref(&full)).await;
    let second_conn = ws.bound_connection(&token).await;

    let e1 = format!("{}", uuid::Uuid::new_v4());
    let batch1 = SqsBatch::default()
        .message(&e1, &event(t1, encounter("enc-1", "in-progress")))
        .message(&uuid::Uuid::new_v4().to_string(), &event(t2, encounter("enc-2", "finished")));
    assert_eq!(ws.fan_out(&batch1).await, Vec::<String>::new());
    let batch2 = SqsBatch::default()
        .message(&uuid::Uuid::new_v4().to_string(), &event(t1, encounter("enc-3", "finished")))
        .message(&uuid::Uuid::new_v4().to_string(), &event(t1, encounter("enc-4", "finished")));
    assert_eq!(ws.fan_out(&batch2).await, Vec::<String>::new());
    // SQS redelivers the first message (e.g. after a timeout): it keeps its number, and
    // the connections it reached do not get it again (their pages are finished).
    let redelivered = SqsBatch::default().raw(&e1, &event(t1, encounter("enc-1", "in-progress")).to_string(), 2);
    assert_eq!(ws.fan_out(&redelivered).await, Vec::<String>::new());
    let batch3 = SqsBatch::default().message(&uuid::Uuid::new_v4().to_string(), &event(t1, encounter("enc-5", "x")));
    ws.fan_out(&batch3).await;

    let focus = |id: &str| Some(format!("{TEST_FHIR_BASE}/Encounter/{id}"));
    let numbered = |n: &str, id: &str| (n.to_owned(), focus(id));
    let expected_t1 =
        vec![numbered("1", "enc-1"), numbered("2", "enc-3"), numbered("3", "enc-4"), numbered("4", "enc-5")];
    for connection in [&full_conn, &second_conn, &ids_conn] {
        assert_eq!(events(&ws.frames(connection)), expected_t1, "numbers 1..4 without gaps, each once");
    }
    assert_eq!(events(&ws.frames(&empty_conn)), vec![("1".to_owned(), None)], "empty: no focus");

    // Content levels.
    let full_frame = &event_frames(&ws.frames(&full_conn))[0];
    let entries = full_frame["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 3, "status, focus, additional context");
    assert_eq!(entries[1]["fullUrl"], format!("{TEST_FHIR_BASE}/Encounter/enc-1"));
    assert_eq!(entries[1]["resource"]["status"], "in-progress");
    assert_eq!(entries[2]["resource"]["resourceType"], "Patient");
    let ids_frame = &event_frames(&ws.frames(&ids_conn))[0];
    assert_eq!(ids_frame["entry"].as_array().map(Vec::len), Some(1), "id-only: references only");
    assert_eq!(
        ids_frame["entry"][0]["resource"]["notificationEvent"][0]["additionalContext"][0]["reference"],
        format!("{TEST_FHIR_BASE}/Patient/123")
    );
    let empty_frame = &event_frames(&ws.frames(&empty_conn))[0];
    assert!(empty_frame["entry"][0]["resource"]["notificationEvent"][0].get("additionalContext").is_none());

    let mut all = Vec::new();
    for connection in [&full_conn, &ids_conn, &empty_conn] {
        all.extend(ws.frames(connection));
    }
    assert_valid_r5(&all);
}
all_stores!(three_subscriptions_two_topics_three_content_levels, three_subscriptions);

async fn filters<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, _) = topics();
    let t1 = t1.as_str();
    let owner = unique_principal("alice");
    let mut finished = subscription(t1, "id-only");
    finished["filterBy"] = json!([
        {"resourceType": "Encounter", "filterParameter": "status", "value": "finished"},
        {"filterParameter": "subject", "value": "Patient/123"}
    ]);
    let (_, finished_conn) = ws.subscribe(&owner, &finished).await;
    let mut observations = subscription(t1, "id-only");
    observations["filterBy"] =
        json!([{"resourceType": "Observation", "filterParameter": "status", "value": "finished"}]);
    let (_, observation_conn) = ws.subscribe(&owner, &observations).await;

    let mut other_patient = encounter("enc-9", "finished");
    other_patient["subject"] = json!({"reference": "Patient/999"});
    let batch = SqsBatch::default()
        .message("m1", &event(t1, encounter("enc-1", "in-progress")))
        .message("m2", &event(t1, encounter("enc-2", "finished")))
        .message("m3", &event(t1, other_patient));
    assert_eq!(ws.fan_out(&batch).await, Vec::<String>::new());
    let focus = Some(format!("{TEST_FHIR_BASE}/Encounter/enc-2"));
    assert_eq!(
        events(&ws.frames(&finished_conn)),
        vec![("1".to_owned(), focus)],
        "only the matching event, numbered 1"
    );
    assert!(events(&ws.frames(&observation_conn)).is_empty(), "resourceType must agree");

    // Filters the server cannot evaluate are refused when the Subscription is written.
    let mut unsupported = subscription(t1, "id-only");
    unsupported["filterBy"] = json!([{"filterParameter": "period", "comparator": "gt", "value": "2026"}]);
    let response = ws.app.api(HttpEvent::new("POST", "/Subscription", Some(&owner)).json(&unsupported)).await;
    let body = assert_outcome(&response, 400, "not-supported");
    assert!(body["issue"][0]["diagnostics"].as_str().unwrap_or_default().contains("gt"));
}
all_stores!(filters_include_and_exclude_events, filters);

async fn expired_bindings<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, _) = topics();
    let t1 = t1.as_str();
    let owner = unique_principal("alice");
    let (_, connection) = ws.subscribe(&owner, &subscription(t1, "id-only")).await;
    let later = Utc::now() + TimeDelta::minutes(31);
    let batch = SqsBatch::default().message("m1", &event(t1, encounter("enc-1", "finished")));
    assert_eq!(ws.fan_out_at(&batch, later).await, Vec::<String>::new());
    assert!(events(&ws.frames(&connection)).is_empty(), "nothing is pushed on an expired binding");
}
all_stores!(expired_bindings_get_nothing, expired_bindings);

async fn post_failures<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, _) = topics();
    let t1 = t1.as_str();
    let owner = unique_principal("alice");
    let (id, gone) = ws.subscribe(&owner, &subscription(t1, "id-only")).await;
    let token = ws.token(&owner, std::slice::from_ref(&id)).await;
    let (throttled, broken) = (ws.bound_connection(&token).await, ws.bound_connection(&token).await);

    ws.management.mark_gone(&gone);
    ws.management.script(&throttled, &[429, 429]);
    ws.management.script(&broken, &[500; 4]); // every attempt of the first delivery
    let batch = SqsBatch::default().message("m-1", &event(t1, encounter("enc-1", "finished")));
    assert_eq!(ws.fan_out(&batch).await, vec!["m-1".to_owned()], "a persistent 500 reports the record failed");

    assert!(ws.ws_stores.bindings.bindings_of_connection(&gone).await.unwrap().is_empty(), "410 cleans up");
    // Handshakes are at least once (a post retried under load may repeat one): only the
    // event's attempts count here.
    let attempts: Vec<u16> = ws
        .management
        .posts_to(&throttled)
        .iter()
        .filter(|p| p.json()["entry"][0]["resource"]["type"] != "handshake")
        .map(|p| p.status)
        .collect();
    assert_eq!(attempts, vec![429, 429, 200], "retried after 429s");
    assert_eq!(events(&ws.frames(&throttled)).len(), 1, "delivered once");
    assert!(events(&ws.frames(&broken)).is_empty());

    // SQS redelivers; the endpoint has recovered: the same event number arrives.
    let redelivered = SqsBatch::default().raw("m-1", &event(t1, encounter("enc-1", "finished")).to_string(), 2);
    assert_eq!(ws.fan_out(&redelivered).await, Vec::<String>::new());
    let focus = Some(format!("{TEST_FHIR_BASE}/Encounter/enc-1"));
    assert_eq!(events(&ws.frames(&broken)), vec![("1".to_owned(), focus)]);
}
all_stores!(gone_throttled_and_failing_connections, post_failures);

async fn oversize<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, _) = topics();
    let t1 = t1.as_str();
    let owner = unique_principal("alice");
    let (_, connection) = ws.subscribe(&owner, &subscription(t1, "full-resource")).await;
    let mut big = encounter("enc-big", "finished");
    big["text"] = json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(200 * 1024))});
    let batch = SqsBatch::default()
        .message("m1", &event(t1, big))
        .message("m2", &event(t1, encounter("enc-small", "finished")));
    assert_eq!(ws.fan_out(&batch).await, Vec::<String>::new());
    let frames = event_frames(&ws.frames(&connection));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0]["entry"].as_array().map(Vec::len), Some(1), "sent id-only");
    assert_eq!(
        frames[0]["entry"][0]["resource"]["notificationEvent"][0]["focus"]["reference"],
        format!("{TEST_FHIR_BASE}/Encounter/enc-big")
    );
    assert_eq!(frames[1]["entry"].as_array().map(Vec::len), Some(3), "small ones stay full-resource");
    assert!(ws.management.posts_to(&connection).iter().all(|p| p.body.len() <= 128 * 1024));
}
all_stores!(oversize_full_resource_events_arrive_id_only, oversize);

async fn invalid_messages<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, _) = topics();
    let t1 = t1.as_str();
    let owner = unique_principal("alice");
    let (id, connection) = ws.subscribe(&owner, &subscription(t1, "id-only")).await;
    let batch = SqsBatch::default()
        .raw("bad-json", "{not json", 1)
        .raw("bad-focus", &json!({"topic": t1, "focus": {"reference": "not a reference"}}).to_string(), 1)
        // Without a focus is valid (an upstream `empty` notification): delivered, no filters here.
        .raw("no-focus", &json!({"topic": t1}).to_string(), 1)
        .message("good", &event(t1, encounter("enc-1", "finished")))
        .message(
            "direct",
            &json!({"subscription": format!("Subscription/{id}"), "focus": encounter("enc-2", "finished")}),
        );
    let mut failed = ws.fan_out(&batch).await;
    failed.sort();
    assert_eq!(
        failed,
        vec!["bad-focus".to_owned(), "bad-json".to_owned()],
        "invalid ones reported, the rest delivered"
    );
    assert_eq!(events(&ws.frames(&connection)).len(), 3);
}
all_stores!(invalid_messages_are_reported_without_failing_the_batch, invalid_messages);

async fn heartbeats<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (t1, t2) = topics();
    let (t1, t2) = (t1.as_str(), t2.as_str());
    let owner = unique_principal("alice");
    let (_, beating) = ws.subscribe(&owner, &subscription(t2, "id-only")).await; // heartbeatPeriod 60
    let mut quiet = subscription(t2, "id-only");
    quiet.as_object_mut().map(|o| o.remove("heartbeatPeriod"));
    let (_, silent) = ws.subscribe(&owner, &quiet).await;
    let (_, busy) = ws.subscribe(&owner, &subscription(t1, "id-only")).await;
    // A connect-time bind whose client never sends a frame: its handshake is owed.
    let (owed_ids, owed_token) = ws.subscriptions_and_token(&owner, 1).await;
    let owed = "owed-connection=".to_owned();
    ws.connect(fhir_ws_tests::websocket::WsEvent::connect(&owed, Some(&owed_token))).await;
    let heartbeats_to = |connection: &str| {
        ws.frames(connection)
            .iter()
            .filter(|f| f["entry"][0]["resource"]["type"] == "heartbeat")
            .cloned()
            .collect::<Vec<_>>()
    };

    let now = Utc::now();
    ws.heartbeat.run(now + TimeDelta::seconds(30)).await;
    assert!(heartbeats_to(&beating).is_empty(), "not due yet");
    let handshakes: Vec<Value> =
        ws.frames(&owed).into_iter().filter(|f| f["entry"][0]["resource"]["type"] == "handshake").collect();
    assert_eq!(handshakes.len(), 1, "the owed handshake is sent by the heartbeat run");
    assert_eq!(
        handshakes[0]["entry"][0]["resource"]["subscription"]["reference"],
        format!("Subscription/{}", owed_ids[0])
    );

    // An event 50 s in stands in for the busy subscription's heartbeat at 61 s.
    ws.fan_out_at(
        &SqsBatch::default().message("e1", &event(t1, encounter("enc-1", "finished"))),
        now + TimeDelta::seconds(50),
    )
    .await;
    let metrics = ws.heartbeat.run(now + TimeDelta::seconds(61)).await;
    let beat = heartbeats_to(&beating);
    assert_eq!(beat.len(), 1, "due after 60 s");
    assert_eq!(beat[0]["entry"][0]["resource"]["eventsSinceSubscriptionStart"], "0");
    assert!(heartbeats_to(&silent).is_empty(), "no heartbeatPeriod, no heartbeat");
    assert!(heartbeats_to(&busy).is_empty(), "an event within the period counts");
    assert!(metrics.get("HeartbeatsSkipped") >= 1);
    assert!(heartbeats_to(&owed).is_empty());
    // Not again until the next period; then again.
    ws.heartbeat.run(now + TimeDelta::seconds(90)).await;
    assert_eq!(heartbeats_to(&beating).len(), 1);
    ws.heartbeat.run(now + TimeDelta::seconds(125)).await;
    assert_eq!(heartbeats_to(&beating).len(), 2);
    assert_eq!(heartbeats_to(&busy).len(), 1, "due again 60 s after the event");
    assert_valid_r5(&heartbeats_to(&beating));

    // Past the token's expiry, bindings are removed instead of beaten.
    ws.heartbeat.run(now + TimeDelta::minutes(31)).await;
    assert!(ws.ws_stores.bindings.bindings_of_connection(&beating).await.unwrap().is_empty());
    assert_eq!(heartbeats_to(&beating).len(), 2);
}
// The heartbeat runs below visit every due row up to 31 minutes ahead: on tables of
// their own, so they neither reach other tests' connections nor get reached by theirs.
isolated_stores!(heartbeat_sends_only_where_due, heartbeats, "eu-north-1");

/// A binding made in SMART mode is due when its grant snapshot expires, and is then told
/// why its notifications stop, in a last `OperationOutcome` frame, before it goes.
async fn expiring_grants<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (_, topic) = topics();
    let owner = unique_principal("smart-app");
    let mut quiet = subscription(&topic, "id-only");
    quiet.as_object_mut().map(|o| o.remove("heartbeatPeriod"));
    let (_, connection) = ws.subscribe(&owner, &quiet).await;
    let now = Utc::now();
    let mut binding = ws.ws_stores.bindings.bindings_of_connection(&connection).await.unwrap().remove(0);
    binding.grant = Some(fhir_ws_core::smart::subscription::KeptGrant {
        scopes: vec!["patient/*.rs".to_owned()],
        patient: Some("123".to_owned()),
    });
    binding.expires_at = now.timestamp() + 60;
    binding.handshake_pending = false;
    binding.heartbeat_due_at = binding.heartbeat_due_after(now.timestamp());
    assert_eq!(binding.heartbeat_due_at, Some(binding.expires_at), "no heartbeats wanted, but the expiry is due");
    ws.ws_stores.bindings.put_bindings(std::slice::from_ref(&binding)).await.unwrap();
    let before = ws.frames(&connection).len();
    ws.heartbeat.run(now + TimeDelta::seconds(30)).await;
    assert_eq!(ws.frames(&connection).len(), before, "not expired yet");
    ws.heartbeat.run(now + TimeDelta::seconds(61)).await;
    let frames = ws.frames(&connection);
    let last = frames.last().unwrap();
    assert_eq!(last["resourceType"], "OperationOutcome", "{last}");
    assert!(last["issue"][0]["diagnostics"].as_str().is_some_and(|d| d.contains("has expired")), "{last}");
    assert!(ws.ws_stores.bindings.bindings_of_connection(&connection).await.unwrap().is_empty());
}
isolated_stores!(an_expiring_grant_snapshot_is_told_and_dropped, expiring_grants, "eu-south-1");
