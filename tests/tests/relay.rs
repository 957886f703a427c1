//! The relay: notification Bundles of another FHIR server (R4, R4B and R5 shapes, at the
//! `empty`, `id-only` and `full-resource` levels) posted to the relay handler, queued,
//! and fanned out by the real fan-out to a connection bound to R4, R4B and R5
//! subscriptions here, on both back ends (moto_server for DynamoDB). Each frame is
//! checked by its version's validator. Also: retries delivered once, gaps counted,
//! refusals queue nothing, Bundles straight on the queue (and inside EventBridge events),
//! and the SQS adapter against moto_server's SQS.

use chrono::Utc;
use fhir_ws_client::Status;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::metrics::Metrics;
use fhir_ws_core::relay::{EventQueue, Relay, RelayHandler, RelaySecrets};
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore, UpstreamStore};
use fhir_ws_tests::websocket::{SqsBatch, WsHarness, WsStores};
use fhir_ws_tests::{
    Backend, HttpEvent, RecordingQueue, Stores, TokenBackend, backport_websocket_subscription, relay_stores,
    status_and_json, unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

const SECRET: &str = "relay-test-secret-0123456789abcdef0123";
const UPSTREAM: &str = "https://upstream.example.org/fhir";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Empty,
    IdOnly,
    FullResource,
}

fn patient(number: u64) -> Value {
    json!({"resourceType": "Patient", "id": format!("pat-{number}"), "active": true})
}

/// An upstream `event-notification` as `version`'s servers send it, for upstream
/// subscription `subscription` and event `number`.
fn upstream_bundle(version: FhirVersion, level: Level, subscription: &str, topic: &str, number: u64) -> Value {
    let focus = format!("{UPSTREAM}/Patient/pat-{number}");
    let timestamp = "2026-12-02T09:30:00.1234567+01:00";
    let mut entries = Vec::new();
    let status = match version {
        FhirVersion::R4 => {
            let mut parameters = vec![json!({"name": "subscription", "valueReference": {"reference": subscription}})];
            if level != Level::Empty {
                parameters.push(json!({"name": "topic", "valueCanonical": topic}));
            }
            parameters.push(json!({"name": "status", "valueCode": "active"}));
            parameters.push(json!({"name": "type", "valueCode": "event-notification"}));
            parameters.push(json!({"name": "events-since-subscription-start", "valueString": number.to_string()}));
            let mut parts = vec![
                json!({"name": "event-number", "valueString": number.to_string()}),
                json!({"name": "timestamp", "valueInstant": timestamp}),
            ];
            if level != Level::Empty {
                parts.push(json!({"name": "focus", "valueReference": {"reference": focus}}));
            }
            parameters.push(json!({"name": "notification-event", "part": parts}));
            json!({"resourceType": "Parameters", "parameter": parameters})
        }
        FhirVersion::R4B | FhirVersion::R5 => {
            let mut event = json!({"eventNumber": number.to_string(), "timestamp": timestamp});
            if level != Level::Empty {
                event["focus"] = json!({"reference": focus});
            }
            json!({"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
                   "eventsSinceSubscriptionStart": number.to_string(), "notificationEvent": [event],
                   "subscription": {"reference": subscription}, "topic": topic})
        }
    };
    entries.push(json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": status,
        "request": {"method": "GET", "url": format!("{subscription}/$status")}, "response": {"status": "200"}}));
    if level == Level::FullResource {
        entries.push(json!({"fullUrl": focus, "resource": patient(number),
            "request": {"method": "PUT", "url": format!("Patient/pat-{number}")}, "response": {"status": "200"}}));
    }
    let kind = if version == FhirVersion::R5 { "subscription-notification" } else { "history" };
    json!({"resourceType": "Bundle", "type": kind, "timestamp": timestamp, "entry": entries})
}

fn post(bundle: &Value, secret: Option<&str>, topic: Option<&str>) -> HttpEvent {
    let path = match topic {
        Some(topic) => format!("/relay?topic={}", topic.replace(':', "%3A").replace('/', "%2F")),
        None => "/relay".to_owned(),
    };
    let event = HttpEvent::new("POST", &path, None).json(bundle);
    match secret {
        Some(secret) => event.header("authorization", &format!("Bearer {secret}")),
        None => event,
    }
}

fn handler<U: UpstreamStore + Clone>(ledger: U, queue: RecordingQueue) -> RelayHandler<U, RecordingQueue> {
    let secrets = RelaySecrets::parse(SECRET).unwrap();
    RelayHandler::new(Relay::new(ledger, chrono::TimeDelta::hours(1)), queue, secrets)
}

async fn relayed_to_every_version<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
    U: UpstreamStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
    ledger: U,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let topic = format!("http://example.org/fhir/SubscriptionTopic/relayed-{}", uuid::Uuid::new_v4());
    // Here: an R4 full-resource, an R4B id-only and an R5 full-resource subscription.
    let mut ours = Vec::new();
    for (version, content) in [(FhirVersion::R4, "full-resource"), (FhirVersion::R4B, "id-only")] {
        let mut body = backport_websocket_subscription(&topic);
        body["channel"]["_payload"]["extension"][0]["valueCode"] = json!(content);
        let path = format!("/{}/Subscription", version.path_segment());
        let created = ws.service_json(HttpEvent::new("POST", &path, Some(&owner)).json(&body), 201).await;
        ours.push((version, content, created["id"].as_str().unwrap().to_owned()));
    }
    let mut r5 = websocket_subscription(&topic);
    r5["content"] = json!("full-resource");
    ours.push((FhirVersion::R5, "full-resource", ws.app.create(&owner, &r5).await));
    let ids: Vec<String> = ours.iter().map(|(_, _, id)| id.clone()).collect();
    let connection = ws.bound_connection(&ws.token(&owner, &ids).await).await;

    let queue = RecordingQueue::default();
    let relay = handler(ledger.clone(), queue.clone());
    let fanout = ws.fanout_with_relay(Relay::new(ledger, chrono::TimeDelta::hours(1))).await;
    let mut expected_number = 0;
    let mut received: Vec<(FhirVersion, Value)> = Vec::new();
    for upstream_version in FhirVersion::ALL {
        let subscription =
            format!("{UPSTREAM}/Subscription/up-{}-{}", upstream_version.path_segment(), uuid::Uuid::new_v4());
        for (number, level) in [(1, Level::FullResource), (2, Level::IdOnly), (3, Level::Empty)] {
            let bundle = upstream_bundle(upstream_version, level, &subscription, &topic, number);
            // An empty R4 notification names no topic: the relay URL says it.
            let hint = (level == Level::Empty && upstream_version == FhirVersion::R4).then_some(topic.as_str());
            let metrics = Metrics::new("relay");
            let response = relay.answer(&post(&bundle, Some(SECRET), hint).request(), Utc::now(), &metrics).await;
            let (status, outcome) = status_and_json(&response);
            assert_eq!(status, 200, "{upstream_version:?} {level:?}: {outcome}");
            assert_eq!(outcome["issue"][0]["diagnostics"], "1 event(s) queued");
            let bodies = queue.take();
            assert_eq!(bodies.len(), 1);
            let batch = bodies
                .iter()
                .fold(SqsBatch::default(), |batch, body| batch.raw(&uuid::Uuid::new_v4().to_string(), body, 1));
            assert!(fanout.handle_batch(&batch.event(), Utc::now()).await.batch_item_failures.is_empty());
            expected_number += 1;

            let frames = ws.frames(&connection);
            for (version, content, id) in &ours {
                let frame = frames
                    .iter()
                    .rfind(|f| Status::of_bundle(f).is_some_and(|v| v.subscription == *id))
                    .unwrap_or_else(|| panic!("nothing for {version:?}: {frames:#?}"))
                    .clone();
                assert_eq!(fhir_ws_tests::notification_version(&frame), *version);
                let view = Status::of_bundle(&frame).unwrap();
                assert_eq!(view.kind, "event-notification", "{frame}");
                assert_eq!(view.events[0].event_number, Some(expected_number));
                let focus = format!("{UPSTREAM}/Patient/pat-{number}");
                match level {
                    Level::Empty => assert_eq!(view.events[0].focus, None, "nothing to point at"),
                    _ => assert_eq!(view.events[0].focus.as_deref(), Some(focus.as_str()), "the upstream reference"),
                }
                let resource = &frame["entry"][1]["resource"];
                if level == Level::FullResource && *content == "full-resource" {
                    assert_eq!(*resource, patient(number), "{frame}");
                } else {
                    assert!(resource.is_null(), "no resource to send: {frame}");
                }
                received.push((*version, frame));
            }
        }
    }
    for version in FhirVersion::ALL {
        let frames: Vec<Value> = received.iter().filter(|(v, _)| *v == version).map(|(_, f)| f.clone()).collect();
        assert_eq!(frames.len(), 9, "three upstream versions at three levels");
        fhir_ws_tests::assert_valid_in(version, &frames);
    }

    // An upstream retry (the same notification again) is delivered once per number.
    let subscription = format!("{UPSTREAM}/Subscription/retried-{}", uuid::Uuid::new_v4());
    let bundle = upstream_bundle(FhirVersion::R4, Level::IdOnly, &subscription, &topic, 1);
    for expected in ["1 event(s) queued", "0 event(s) queued"] {
        let metrics = Metrics::new("relay");
        let response = relay.answer(&post(&bundle, Some(SECRET), None).request(), Utc::now(), &metrics).await;
        assert_eq!(status_and_json(&response).1["issue"][0]["diagnostics"], expected);
        assert_eq!(metrics.get("UpstreamDuplicate"), u64::from(expected.starts_with('0')));
    }
    assert_eq!(queue.take().len(), 1);

    // Jumps in the upstream's numbers are counted: 1 → 4 misses two; a heartbeat saying
    // 6 after 4 misses two more.
    let metrics = Metrics::new("relay");
    let jump = upstream_bundle(FhirVersion::R4, Level::IdOnly, &subscription, &topic, 4);
    relay.answer(&post(&jump, Some(SECRET), None).request(), Utc::now(), &metrics).await;
    assert_eq!(metrics.get("UpstreamGap"), 2);
    let heartbeat = json!({"resourceType": "Bundle", "type": "subscription-notification", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "status": "active", "type": "heartbeat",
        "eventsSinceSubscriptionStart": "6", "subscription": {"reference": subscription}, "topic": topic}}]});
    let metrics = Metrics::new("relay");
    let response = relay.answer(&post(&heartbeat, Some(SECRET), None).request(), Utc::now(), &metrics).await;
    assert_eq!(status_and_json(&response).0, 200, "heartbeats are acknowledged");
    assert_eq!((metrics.get("UpstreamGap"), metrics.get("UpstreamHeard")), (2, 1));
    assert_eq!(queue.take().len(), 1, "only event 4");
}
relay_stores!(upstream_notifications_of_every_version_and_level_reach_every_version_here, relayed_to_every_version);

async fn refusals_queue_nothing<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
    U: UpstreamStore + Clone,
>(
    _stores: Stores<S, T>,
    _ws_stores: WsStores<B, C, E>,
    ledger: U,
) {
    let queue = RecordingQueue::default();
    let relay = handler(ledger.clone(), queue.clone());
    let topic = "http://example.org/fhir/SubscriptionTopic/refused";
    let subscription = format!("{UPSTREAM}/Subscription/refused-{}", uuid::Uuid::new_v4());
    let good = upstream_bundle(FhirVersion::R5, Level::IdOnly, &subscription, topic, 1);
    let call = async |event: HttpEvent| {
        let response = relay.handle(&event.request(), Utc::now()).await;
        let (status, outcome) = status_and_json(&response);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        (status, outcome["issue"][0]["code"].as_str().unwrap_or_default().to_owned())
    };
    let mut searchset = good.clone();
    searchset["type"] = json!("searchset");
    let mut no_topic = upstream_bundle(FhirVersion::R4, Level::Empty, &subscription, topic, 1);
    no_topic["type"] = json!("history");
    let oversized = json!({"resourceType": "Bundle", "type": "history", "padding": "x".repeat(1024 * 1024)});
    let cases = [
        (post(&good, Some("wrong-secret-0123456789abcdef0123456789"), None), (401, "login")),
        (post(&good, None, None), (401, "login")),
        (HttpEvent::new("POST", "/relay", None).header("authorization", "Bearer x").json(&good), (401, "login")),
        (post(&json!({"resourceType": "Patient", "id": "p"}), Some(SECRET), None), (400, "invalid")),
        (post(&searchset, Some(SECRET), None), (400, "invalid")),
        (post(&no_topic, Some(SECRET), None), (400, "invalid")),
        (post(&good, Some(SECRET), Some("http://example.org/another-topic")), (400, "invalid")),
        (
            HttpEvent::new("POST", "/relay", None)
                .header("authorization", &format!("Bearer {SECRET}"))
                .body("application/fhir+json", "{not json"),
            (400, "structure"),
        ),
        (post(&oversized, Some(SECRET), None), (413, "too-costly")),
        (
            HttpEvent::new("GET", "/relay", None).header("authorization", &format!("Bearer {SECRET}")),
            (405, "not-supported"),
        ),
    ];
    for (event, (status, code)) in cases {
        assert_eq!(call(event).await, (status, code.to_owned()));
        assert!(queue.take().is_empty(), "nothing queued");
    }
    // Upstream numbers are the upstream's: the largest there is, then a smaller one, is no panic.
    let huge_subscription = format!("{UPSTREAM}/Subscription/huge-{}", uuid::Uuid::new_v4());
    for number in [u64::MAX, 3] {
        let bundle = upstream_bundle(FhirVersion::R5, Level::IdOnly, &huge_subscription, topic, number);
        assert_eq!(call(post(&bundle, Some(SECRET), None)).await.0, 200, "{number}");
    }
    assert_eq!(queue.take().len(), 2);
    // A queue that fails: 503, and the claim is released so the upstream's retry goes through.
    let failing = handler(ledger.clone(), RecordingQueue::refusing());
    let response = failing.handle(&post(&good, Some(SECRET), None).request(), Utc::now()).await;
    assert_eq!(status_and_json(&response).0, 503);
    let response = relay.handle(&post(&good, Some(SECRET), None).request(), Utc::now()).await;
    assert_eq!(status_and_json(&response).1["issue"][0]["diagnostics"], "1 event(s) queued");
    assert_eq!(queue.take().len(), 1);
}
relay_stores!(bad_secrets_and_bad_bundles_are_refused_and_queue_nothing, refusals_queue_nothing);

async fn bundles_on_the_queue<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
    U: UpstreamStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
    ledger: U,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let topic = format!("http://example.org/fhir/SubscriptionTopic/queued-{}", uuid::Uuid::new_v4());
    let (id, connection) = ws.subscribe(&owner, &websocket_subscription(&topic)).await;
    let fanout = ws.fanout_with_relay(Relay::new(ledger, chrono::TimeDelta::hours(1))).await;
    let subscription = format!("{UPSTREAM}/Subscription/queued-{}", uuid::Uuid::new_v4());
    let direct = upstream_bundle(FhirVersion::R4, Level::FullResource, &subscription, &topic, 1);
    let bridged = json!({"version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "FHIR notification",
        "source": "upstream.fhir", "account": "000000000000", "time": "2026-12-02T08:30:00Z", "region": "eu-west-1",
        "resources": [], "detail": upstream_bundle(FhirVersion::R5, Level::IdOnly, &subscription, &topic, 2)});
    for (message, body) in [("direct", &direct), ("bridged", &bridged), ("direct-again", &direct)] {
        let batch = SqsBatch::default().message(message, body);
        assert!(fanout.handle_batch(&batch.event(), Utc::now()).await.batch_item_failures.is_empty(), "{message}");
    }
    let frames = ws.frames(&connection);
    let events: Vec<Status> = frames
        .iter()
        .filter_map(Status::of_bundle)
        .filter(|v| v.kind == "event-notification" && v.subscription == id)
        .collect();
    let foci: Vec<Option<String>> = events.iter().map(|v| v.events[0].focus.clone()).collect();
    assert_eq!(
        foci,
        [Some(format!("{UPSTREAM}/Patient/pat-1")), Some(format!("{UPSTREAM}/Patient/pat-2"))],
        "each upstream event once, the repeated message not again: {frames:#?}"
    );
    // Without an upstream table the fan-out cannot tell repeats: the Bundle is refused.
    let plain = ws.fan_out(&SqsBatch::default().message("no-table", &direct)).await;
    assert_eq!(plain, ["no-table"], "reported failed (it ends in the dead-letter queue)");
}
relay_stores!(notification_bundles_straight_on_the_queue_are_relayed_too, bundles_on_the_queue);

/// The SQS adapter against moto_server's SQS: every body arrives, in batches of ten.
#[tokio::test]
async fn the_sqs_queue_adapter_sends_every_message() {
    use fhir_ws_core::relay::sqs::SqsEventQueue;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run through infra/test.sh");
    let config = fhir_ws_tests::sdk_loader().endpoint_url(endpoint).load().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = format!("relay-test-{}", uuid::Uuid::new_v4().simple());
    let url = client.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let bodies: Vec<String> = (0..23).map(|n| json!({"n": n}).to_string()).collect();
    SqsEventQueue::new(client.clone(), &url).enqueue(&bodies).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..10 {
        let output = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
        received.extend(output.messages.unwrap_or_default().into_iter().filter_map(|m| m.body));
        if received.len() == bodies.len() {
            break;
        }
    }
    received.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(received, expected);
    let missing = SqsEventQueue::new(client, format!("{url}-missing")).enqueue(&bodies[..1]).await;
    assert!(missing.is_err(), "a queue that is not there fails the call");
}

/// Filters here need the focus resource: an upstream `full-resource` event is checked
/// against them; an `id-only` one (a reference) matches only subscriptions without
/// filters, never one whose filter cannot be checked.
async fn filters_need_the_resource<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
    U: UpstreamStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
    ledger: U,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let topic = format!("http://example.org/fhir/SubscriptionTopic/filtered-{}", uuid::Uuid::new_v4());
    let mut filtered = websocket_subscription(&topic);
    filtered["filterBy"] = json!([{"resourceType": "Patient", "filterParameter": "active", "value": "true"}]);
    let (filtered_id, filtered_connection) = ws.subscribe(&owner, &filtered).await;
    let (_, open_connection) = ws.subscribe(&owner, &websocket_subscription(&topic)).await;
    let fanout = ws.fanout_with_relay(Relay::new(ledger, chrono::TimeDelta::hours(1))).await;
    let subscription = format!("{UPSTREAM}/Subscription/filtered-{}", uuid::Uuid::new_v4());
    for (number, level) in [(1, Level::FullResource), (2, Level::IdOnly)] {
        let bundle = upstream_bundle(FhirVersion::R5, level, &subscription, &topic, number);
        let batch = SqsBatch::default().message(&format!("m{number}"), &bundle);
        assert!(fanout.handle_batch(&batch.event(), Utc::now()).await.batch_item_failures.is_empty());
    }
    let numbers = |connection: &str| -> Vec<Option<String>> {
        ws.frames(connection)
            .iter()
            .filter_map(Status::of_bundle)
            .filter(|v| v.kind == "event-notification")
            .map(|v| v.events[0].focus.clone())
            .collect()
    };
    let focus = |n: u64| Some(format!("{UPSTREAM}/Patient/pat-{n}"));
    assert_eq!(numbers(&filtered_connection), [focus(1)], "Subscription/{filtered_id}: active=true was checked");
    assert_eq!(numbers(&open_connection), [focus(1), focus(2)], "no filters: both");
}
relay_stores!(filters_here_are_checked_only_when_the_resource_came, filters_need_the_resource);
