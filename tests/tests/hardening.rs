//! Malformed and oversized input through every HTTP route and the WebSocket handlers,
//! on the DynamoDB store (moto_server), in a set of tables of this test's own so that
//! every write anyone makes to them is seen.
//!
//! The cases are generated: random bytes, every element of a valid resource replaced by
//! each value of another JSON type, over-long strings in every field that becomes a
//! DynamoDB key or attribute, and deep nesting. Each case runs in its own task so that
//! a panic is caught and named. Requirements: no answer of 500 or more, no panic, no
//! WebSocket answer other than an `OperationOutcome` frame, and the tables (and the
//! relay's queue) exactly as they were before.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use fhir_ws_core::config::SubscriptionApiConfig;
use fhir_ws_core::http::IdentityConfig;
use fhir_ws_core::ops::SubscriptionService;
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::relay::{Relay, RelayHandler, RelaySecrets};
use fhir_ws_core::revocation::Revoker;
use fhir_ws_core::store::dynamodb::{
    DynamoBindingStore, DynamoCounterStore, DynamoEventStore, DynamoSubscriptionStore, DynamoTokenStore,
    DynamoUpstreamStore,
};
use fhir_ws_tests::websocket::{WsEvent, WsHarness, WsStores};
use fhir_ws_tests::{HttpEvent, RecordingQueue, Stores, TOPIC, dynamodb_client, example_topics};
use serde_json::{Value, json};

const RELAY_SECRET: &str = "hardening-relay-secret-0123456789abcdef";
/// The table logical ids of template.yaml this test reads back.
const TABLES: [&str; 6] =
    ["SubscriptionsTable", "TokensTable", "BindingsTable", "CountersTable", "EventsTable", "UpstreamTable"];

type Harness =
    WsHarness<DynamoSubscriptionStore, DynamoTokenStore, DynamoBindingStore, DynamoCounterStore, DynamoEventStore>;

/// One generated input.
enum Input {
    /// To the `subscription-api` function (as deployed, and with topics and a tenant claim).
    Service(HttpEvent),
    /// To the `subscription-api` function with topics deployed and a tenant claim only.
    TenantService(HttpEvent),
    /// To the `get-ws-binding-token` function.
    Operation(HttpEvent),
    /// To the `relay` function, with the right secret.
    Relay(HttpEvent),
    /// A `$connect`.
    Connect(WsEvent),
    /// A `$default` frame.
    Frame(WsEvent),
}

struct Case {
    label: String,
    input: Input,
}

/// Everything the handlers can write, as sorted text.
async fn snapshot(client: &aws_sdk_dynamodb::Client, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    for table in TABLES {
        let name = format!("{prefix}{table}");
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(&name)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan {name}: {e:?}"));
            items.extend(page.items().iter().map(|item| format!("{:?}", item.iter().collect::<BTreeMap<_, _>>())));
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        items.sort();
        tables.insert(table.to_owned(), items);
    }
    tables
}

/// Every JSON pointer of `value` (the root excluded).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(path.clone());
                pointers(child, path, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let path = format!("{at}/{index}");
                out.push(path.clone());
                pointers(child, path, out);
            }
        }
        _ => {}
    }
}

fn kind(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// `template` with one element replaced by a value of another JSON type, for every
/// element and every such value.
fn wrong_types(template: &Value) -> Vec<(String, Value)> {
    let replacements =
        [json!(null), json!(true), json!(7), json!(-1.5), json!("text"), json!([]), json!({}), json!([{"a": 1}])];
    let mut paths = Vec::new();
    pointers(template, String::new(), &mut paths);
    let mut out = Vec::new();
    for path in paths {
        let Some(original) = template.pointer(&path) else { continue };
        for replacement in &replacements {
            if kind(replacement) == kind(original) {
                continue;
            }
            let mut changed = template.clone();
            if let Some(slot) = changed.pointer_mut(&path) {
                *slot = replacement.clone();
            }
            out.push((format!("{path} = {replacement}"), changed));
        }
    }
    out
}

fn random_bytes(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
    let length = rng.usize(0..max);
    (0..length).map(|_| rng.u8(..)).collect()
}

fn deep_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn deep_element(depth: usize) -> String {
    format!(r#"{{"resourceType":"Subscription","topic":{}"x"{}}}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

fn long(length: usize) -> String {
    // Characters that survive URL paths and JSON unescaped, as an attacker would use.
    "abcdefghij".repeat(length / 10 + 1)[..length].to_owned()
}

fn binary_body(event: HttpEvent, bytes: &[u8]) -> HttpEvent {
    use base64::Engine as _;
    event.body("application/fhir+json", &base64::engine::general_purpose::STANDARD.encode(bytes)).base64()
}

/// The status of an HTTP answer; an error answer must be an `OperationOutcome` (a
/// status of 600 marks one that is not).
fn http_status(response: &lambda_http::Response<lambda_http::Body>) -> u16 {
    let status = response.status().as_u16();
    if status >= 400 {
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        if body["resourceType"] != "OperationOutcome" {
            return 600;
        }
    }
    status
}

fn r5_notification(subscription: &str, topic: &str, event_number: &str) -> Value {
    json!({"resourceType": "Bundle", "type": "subscription-notification", "timestamp": "2026-12-02T09:30:00Z",
        "entry": [{"fullUrl": "urn:uuid:0f0a5a1c-7c0e-4f7e-9d11-8f3c1c2d3e4f",
            "resource": {"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
                "eventsSinceSubscriptionStart": event_number,
                "notificationEvent": [{"eventNumber": event_number, "timestamp": "2026-12-02T09:30:00Z",
                    "focus": {"reference": "https://upstream.example.org/fhir/Patient/p1"}}],
                "subscription": {"reference": subscription}, "topic": topic}}]})
}

fn relay_post(body: &Value) -> HttpEvent {
    HttpEvent::new("POST", "/relay", None).json(body).header("authorization", &format!("Bearer {RELAY_SECRET}"))
}

/// The generated cases, given the ids of a seeded subscription (R5 and R4) and a token.
fn cases(owner: &str, r5_id: &str, r4_id: &str, token: &str) -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(20261202);
    let mut cases = Vec::new();
    let mut add = |label: String, input: Input| cases.push(Case { label, input });
    let r5 = fhir_ws_tests::websocket_subscription(TOPIC);
    let mut r5_filtered = r5.clone();
    r5_filtered["filterBy"] = json!([{"resourceType": "Encounter", "filterParameter": "patient",
        "comparator": "eq", "value": "Patient/123"}]);
    let r4 = fhir_ws_tests::backport_websocket_subscription(TOPIC);
    let token_parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "id", "valueId": r5_id}]});
    let status_parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "id", "valueId": r5_id}]});
    let events_parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "eventsSinceNumber", "valueInteger64": "1"}, {"name": "eventsUntilNumber", "valueInteger64": "2"},
        {"name": "content", "valueCode": "id-only"}]});
    let notification = r5_notification("https://upstream.example.org/fhir/Subscription/s1", TOPIC, "1");
    let empty_parameters = json!({"resourceType": "Parameters"});
    let revoke_parameters =
        json!({"resourceType": "Parameters", "parameter": [{"name": "token", "valueString": token}]});
    let json_frame = json!({"type": "bind-with-token", "payload": {"token": token}});

    // Every POST/PUT body route, with the resource it takes.
    let bodies: Vec<(&str, String, &Value, bool)> = vec![
        ("POST", "/Subscription".to_owned(), &r5, true),
        ("POST", "/Subscription".to_owned(), &r5_filtered, true),
        ("PUT", format!("/Subscription/{r5_id}"), &r5, true),
        ("POST", "/R4/Subscription".to_owned(), &r4, true),
        ("POST", "/R4B/Subscription".to_owned(), &r4, true),
        ("PUT", format!("/R4/Subscription/{r4_id}"), &r4, true),
        ("POST", "/Subscription/$get-ws-binding-token".to_owned(), &token_parameters, false),
        ("POST", format!("/Subscription/{r5_id}/$get-ws-binding-token"), &empty_parameters, false),
        ("POST", "/Subscription/$revoke-ws-binding-token".to_owned(), &revoke_parameters, false),
        ("POST", "/Subscription/$status".to_owned(), &status_parameters, true),
        ("POST", format!("/Subscription/{r5_id}/$events"), &events_parameters, true),
    ];
    for (method, path, template, service) in &bodies {
        let route = |event: HttpEvent| if *service { Input::Service(event) } else { Input::Operation(event) };
        for n in 0..12 {
            let bytes = random_bytes(&mut rng, 4096);
            add(
                format!("{method} {path} random bytes #{n}"),
                route(binary_body(HttpEvent::new(method, path, Some(owner)), &bytes)),
            );
        }
        for (what, changed) in wrong_types(template) {
            add(format!("{method} {path} {what}"), route(HttpEvent::new(method, path, Some(owner)).json(&changed)));
        }
        for (what, text) in [("deep array", deep_array(100_000)), ("deep element", deep_element(2_000))] {
            add(
                format!("{method} {path} {what}"),
                route(HttpEvent::new(method, path, Some(owner)).body("application/fhir+json", &text)),
            );
        }
        add(
            format!("{method} {path} 100 KiB body"),
            route(HttpEvent::new(method, path, Some(owner)).body("application/fhir+json", &long(100 * 1024))),
        );
    }

    // Over-long strings in every field that becomes a key or an attribute.
    for length in [2049, 5000, 60_000] {
        let text = long(length);
        let mut topic = r5.clone();
        topic["topic"] = json!(format!("http://example.org/{text}"));
        add(
            format!("R5 topic of {length}"),
            Input::Service(HttpEvent::new("POST", "/Subscription", Some(owner)).json(&topic)),
        );
        let mut criteria = r4.clone();
        criteria["criteria"] = json!(format!("http://example.org/{text}"));
        add(
            format!("R4 criteria of {length}"),
            Input::Service(HttpEvent::new("POST", "/R4/Subscription", Some(owner)).json(&criteria)),
        );
        let mut filter = r5_filtered.clone();
        filter["filterBy"][0]["value"] = json!(text);
        add(
            format!("filter value of {length}"),
            Input::Service(HttpEvent::new("POST", "/Subscription", Some(owner)).json(&filter)),
        );
        let mut parameter = r5_filtered.clone();
        parameter["filterBy"][0]["filterParameter"] = json!(text);
        add(
            format!("filter parameter of {length}"),
            Input::Service(HttpEvent::new("POST", "/Subscription", Some(owner)).json(&parameter)),
        );
        let mut endpoint = r5.clone();
        endpoint["endpoint"] = json!(format!("https://example.org/{text}"));
        add(
            format!("endpoint of {length}"),
            Input::Service(HttpEvent::new("POST", "/Subscription", Some(owner)).json(&endpoint)),
        );
        let mut many_filters = r5.clone();
        many_filters["filterBy"] = json!(
            (0..length / 20).map(|i| json!({"filterParameter": format!("p{i}"), "value": "v"})).collect::<Vec<_>>()
        );
        add(
            format!("{} filters", length / 20),
            Input::Service(HttpEvent::new("POST", "/Subscription", Some(owner)).json(&many_filters)),
        );
        let mut id_in_body = r5.clone();
        id_in_body["id"] = json!(text);
        add(
            format!("PUT body id of {length}"),
            Input::Service(HttpEvent::new("PUT", &format!("/Subscription/{r5_id}"), Some(owner)).json(&id_in_body)),
        );
        // As the caller's identity: the owner attribute and index key.
        add(
            format!("principal of {length}"),
            Input::Service(HttpEvent::new("POST", "/Subscription", Some(&text)).json(&r5)),
        );
        add(
            format!("principal of {length} asks a token"),
            Input::Operation(HttpEvent::new("POST", "/Subscription/$get-ws-binding-token", Some(&text))),
        );
        add(
            format!("tenant of {length}"),
            Input::TenantService(HttpEvent::new("POST", "/Subscription", Some(owner)).claim("tenant", &text).json(&r5)),
        );
        // As an id in the path of every route that takes one.
        for path in [
            format!("/Subscription/{text}"),
            format!("/R4/Subscription/{text}"),
            format!("/Subscription/{text}/$status"),
            format!("/Subscription/{text}/$events"),
            format!("/SubscriptionTopic/{text}"),
            format!("/R4B/SubscriptionTopic/{text}"),
        ] {
            for method in ["GET", "DELETE", "PUT", "POST"] {
                let event = HttpEvent::new(method, &path, Some(owner));
                let event = if method == "PUT" { event.json(&r5) } else { event };
                add(format!("{method} id of {length} ({})", &path[..20]), Input::Service(event));
            }
        }
        add(
            format!("token instance id of {length}"),
            Input::Operation(HttpEvent::new(
                "POST",
                &format!("/Subscription/{text}/$get-ws-binding-token"),
                Some(owner),
            )),
        );
        add(
            format!("token query id of {length}"),
            Input::Operation(HttpEvent::new(
                "GET",
                &format!("/Subscription/$get-ws-binding-token?id={text}"),
                Some(owner),
            )),
        );
        let mut revoke = revoke_parameters.clone();
        revoke["parameter"][0]["valueString"] = json!(text);
        add(
            format!("revoked token of {length}"),
            Input::Operation(
                HttpEvent::new("POST", "/Subscription/$revoke-ws-binding-token", Some(owner)).json(&revoke),
            ),
        );
        let mut ids = token_parameters.clone();
        ids["parameter"][0]["valueId"] = json!(text);
        add(
            format!("token Parameters id of {length}"),
            Input::Operation(HttpEvent::new("POST", "/Subscription/$get-ws-binding-token", Some(owner)).json(&ids)),
        );
        // Search and query parameters.
        for query in [
            format!("/Subscription?topic={text}"),
            format!("/Subscription?url={text}"),
            format!("/Subscription?status={text}"),
            format!("/Subscription?_id={text}"),
            format!("/Subscription/$status?id={text}"),
            format!("/Subscription/{r5_id}/$events?eventsSinceNumber={text}"),
            format!("/SubscriptionTopic?url={text}"),
            format!("/metadata?_format={text}"),
        ] {
            add(
                format!("query of {length} ({})", &query[..20]),
                Input::Service(HttpEvent::new("GET", &query, Some(owner))),
            );
        }
        // The relay: upstream subscription reference, topic and event numbers.
        let reference = format!("https://upstream.example.org/fhir/Subscription/{text}");
        add(
            format!("relay subscription of {length}"),
            Input::Relay(relay_post(&r5_notification(&reference, TOPIC, "1"))),
        );
        add(
            format!("relay topic of {length}"),
            Input::Relay(relay_post(&r5_notification(
                "https://upstream.example.org/fhir/Subscription/s1",
                &format!("http://example.org/{text}"),
                "1",
            ))),
        );
        let mut focus = notification.clone();
        focus["entry"][0]["resource"]["notificationEvent"][0]["focus"]["reference"] = json!(format!("Patient/{text}"));
        add(format!("relay focus of {length}"), Input::Relay(relay_post(&focus)));
        // The WebSocket: connection ids (as API Gateway would never send, but checked),
        // tokens in the query and in frames, and frames of every size.
        add(format!("connection id of {length}"), Input::Connect(WsEvent::connect(&text, Some(token))));
        add(
            format!("frame on connection id of {length}"),
            Input::Frame(WsEvent::message(&text, &format!("bind-with-token {token}"))),
        );
        add(format!("query token of {length}"), Input::Connect(WsEvent::connect("hardening-c1=", Some(&text))));
        add(
            format!("frame token of {length}"),
            Input::Frame(WsEvent::message("hardening-c1=", &format!("bind-with-token {text}"))),
        );
        add(format!("frame of {length}"), Input::Frame(WsEvent::message("hardening-c1=", &text)));
    }
    for n in 0..60 {
        let bytes = random_bytes(&mut rng, 20_000);
        add(format!("binary frame #{n}"), Input::Frame(WsEvent::binary("hardening-c1=", &bytes)));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        add(format!("text frame #{n}"), Input::Frame(WsEvent::message("hardening-c1=", &text)));
    }
    for (what, changed) in wrong_types(&json_frame) {
        add(format!("JSON frame {what}"), Input::Frame(WsEvent::message("hardening-c1=", &changed.to_string())));
    }
    for (what, text) in [
        ("deep array", deep_array(100_000)),
        ("deep frame", format!("{}1{}", r#"{"type":"#.repeat(5000), "}".repeat(5000))),
    ] {
        add(format!("frame {what}"), Input::Frame(WsEvent::message("hardening-c1=", &text)));
    }
    for n in 0..12 {
        let bytes = random_bytes(&mut rng, 4096);
        add(format!("relay random bytes #{n}"), Input::Relay(binary_body(relay_post(&json!({})), &bytes)));
    }
    let handshake_event: Value = serde_json::from_str(include_str!("../../infra/events/relay-handshake.json"))
        .unwrap_or_else(|e| panic!("sample event: {e}"));
    let r4_handshake: Value = serde_json::from_str(handshake_event["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("sample body: {e}"));
    for (template, version) in [(&notification, "R5"), (&r4_handshake, "R4")] {
        for (what, changed) in wrong_types(template) {
            add(format!("relay {version} {what}"), Input::Relay(relay_post(&changed)));
        }
    }
    add(
        "relay deep array".to_owned(),
        Input::Relay(relay_post(&json!({})).body("application/fhir+json", &deep_array(100_000))),
    );
    cases
}

#[tokio::test]
async fn malformed_and_oversized_input_changes_nothing_and_never_fails_the_server() {
    let client = dynamodb_client().await;
    let prefix = format!("hardening-{}-", uuid::Uuid::new_v4().simple());
    fhir_ws_local::tables::ensure_prefixed_tables(&client, &prefix).await.unwrap_or_else(|e| panic!("{e}"));
    let table = |name: &str| format!("{prefix}{name}");
    let stores = Stores {
        subscriptions: DynamoSubscriptionStore::new(client.clone(), table("SubscriptionsTable")),
        tokens: DynamoTokenStore::new(client.clone(), table("TokensTable")),
    };
    let ws_stores = WsStores {
        bindings: DynamoBindingStore::new(client.clone(), table("BindingsTable")),
        counters: DynamoCounterStore::new(client.clone(), table("CountersTable")),
        events: DynamoEventStore::new(client.clone(), table("EventsTable")),
    };
    let ws: Arc<Harness> = Arc::new(WsHarness::new(stores.clone(), ws_stores.clone()).await);
    // The subscription-api function once more, with topics deployed and a tenant claim.
    let with_topics = Arc::new(SubscriptionService::new(
        stores.subscriptions.clone(),
        ws_stores.counters.clone(),
        ws_stores.events.clone(),
        Arc::new(Revoker::new(
            ws_stores.bindings.clone(),
            ManagementApiPusher::new(&fhir_ws_tests::sdk_config().await),
        )),
        &SubscriptionApiConfig {
            max_content: fhir_ws_core::fhir::ContentLevel::FullResource,
            subscriptions_table: table("SubscriptionsTable"),
            counters_table: table("CountersTable"),
            events_table: table("EventsTable"),
            bindings_table: table("BindingsTable"),
            websocket_url: fhir_ws_tests::TEST_WEBSOCKET_URL.to_owned(),
            identity: IdentityConfig { tenant_claim: Some("tenant".to_owned()), ..IdentityConfig::default() },
            topics: example_topics(),
        },
    ));
    let queue = RecordingQueue::default();
    let relay = Arc::new(RelayHandler::new(
        Relay::new(DynamoUpstreamStore::new(client.clone(), table("UpstreamTable")), chrono::TimeDelta::hours(1)),
        queue.clone(),
        RelaySecrets::parse(RELAY_SECRET).unwrap_or_else(|e| panic!("{e}")),
    ));

    // State to aim at: an R5 and an R4 subscription, a token, a bound connection.
    let owner = fhir_ws_tests::unique_principal("hardening");
    let r5_id = ws.app.create(&owner, &fhir_ws_tests::websocket_subscription(TOPIC)).await;
    let r4_response = ws
        .service_json(
            HttpEvent::new("POST", "/R4/Subscription", Some(&owner))
                .json(&fhir_ws_tests::backport_websocket_subscription(TOPIC)),
            201,
        )
        .await;
    let r4_id = r4_response["id"].as_str().unwrap_or_default().to_owned();
    let token = ws.token(&owner, std::slice::from_ref(&r5_id)).await;
    ws.send("hardening-c1=", &format!("bind-with-token {token}")).await;
    assert_eq!(ws.bindings("hardening-c1=").await.len(), 1, "the seeded connection is bound");
    queue.take();
    let before = snapshot(&client, &prefix).await;
    let frames_before = ws.management.posts().len();

    let cases = cases(&owner, &r5_id, &r4_id, &token);
    let total = cases.len();
    let mut failures = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for case in cases {
        let label = case.label.clone();
        let (ws, with_topics, relay) = (ws.clone(), with_topics.clone(), relay.clone());
        let outcome = tokio::spawn(async move {
            let now = Utc::now();
            match case.input {
                Input::Service(event) => {
                    let plain = ws.service.handle(&event.request(), now).await;
                    let tenant = with_topics.handle(&event.claim("tenant", "t1").request(), now).await;
                    let (plain, tenant) = (http_status(&plain), http_status(&tenant));
                    // A write either function took is what matters most: report that one.
                    if plain >= 500 || tenant >= 500 { plain.max(tenant) } else { plain.min(tenant) }
                }
                Input::TenantService(event) => http_status(&with_topics.handle(&event.request(), now).await),
                Input::Operation(event) => http_status(&ws.app.operation_at(event, now).await),
                Input::Relay(event) => http_status(&relay.handle(&event.request(), now).await),
                Input::Connect(event) => ws.connect(event).await.status_code as u16,
                Input::Frame(event) => ws.send_event(event).await.status_code as u16,
            }
        })
        .await;
        match outcome {
            Ok(status) if status < 500 => {
                if status < 300 && std::env::var("HARDENING_SHOW_ACCEPTED").is_ok() {
                    eprintln!("accepted {status}: {label}");
                }
                *statuses.entry(status).or_default() += 1
            }
            Ok(status) => failures.push(format!("{label}: status {status}")),
            Err(e) => failures.push(format!("{label}: {}", if e.is_panic() { "panicked" } else { "cancelled" })),
        }
    }
    assert!(total >= 500, "only {total} cases");
    let after = snapshot(&client, &prefix).await;
    for (table, items) in &before {
        let added: Vec<&String> = after[table].iter().filter(|item| !items.contains(item)).collect();
        let removed: Vec<&String> = items.iter().filter(|item| !after[table].contains(item)).collect();
        if !added.is_empty() || !removed.is_empty() {
            failures.push(format!("{table} changed: added {added:#?}, removed {removed:#?}"));
        }
    }
    let queued = queue.take();
    if !queued.is_empty() {
        failures.push(format!("the relay queued {queued:?}"));
    }
    for post in &ws.management.posts()[frames_before..] {
        if post.json()["resourceType"] != "OperationOutcome" {
            failures.push(format!("a frame other than an error: {}", post.text()));
        }
    }
    assert!(failures.is_empty(), "{} problems with {total} cases:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{total} cases, statuses {statuses:?}");
}
