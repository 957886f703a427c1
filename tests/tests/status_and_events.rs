//! `$status`, `$events`, `metadata` and `Subscription.end` through the `subscription-api`
//! handler, with events numbered and recorded by the real fan-out handler from SQS event
//! JSON; both back ends (moto_server for DynamoDB); every answer checked as FHIR R5 by
//! an independent validator.

use chrono::{DateTime, TimeDelta, Utc};
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore};
use fhir_ws_tests::websocket::{SqsBatch, TEST_FHIR_BASE, WsHarness, WsStores};
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, all_stores, assert_outcome, assert_valid_r5, status_and_json,
    unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

const BASE: &str = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com";

fn topic() -> String {
    format!("http://example.org/fhir/SubscriptionTopic/status-{}", uuid::Uuid::new_v4())
}

fn subscription(topic: &str, content: &str) -> Value {
    let mut resource = websocket_subscription(topic);
    resource["content"] = json!(content);
    resource
}

fn event(topic: &str, n: u32) -> Value {
    json!({"topic": topic, "timestamp": "2026-11-27T06:30:00Z",
           "focus": {"resourceType": "Encounter", "id": format!("enc-{n}"), "status": "in-progress",
                     "meta": {"versionId": n.to_string()}},
           "additionalContext": [{"resourceType": "Patient", "id": "123"}]})
}

/// The SubscriptionStatus resources of a `$status` answer, by subscription id.
fn statuses(bundle: &Value) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let status = e["resource"].clone();
            let id = status["subscription"]["reference"].as_str().unwrap_or_default().replace("Subscription/", "");
            (id, status)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Event numbers of a `$events` answer, in order.
fn numbers(bundle: &Value) -> Vec<String> {
    bundle["entry"][0]["resource"]["notificationEvent"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["eventNumber"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn status_operation<
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
    let (alice, bob) = (unique_principal("alice"), unique_principal("bob"));
    let topic = topic();
    let (a, _) = ws.subscribe(&alice, &subscription(&topic, "id-only")).await;
    let b = ws.app.create(&alice, &subscription(&topic, "empty")).await;
    ws.app.set_status(&alice, &b, "off").await;
    let (bobs, _) = ws.subscribe(&bob, &subscription(&topic, "id-only")).await;
    for n in 1..=2 {
        assert!(ws.fan_out(&SqsBatch::default().message(&format!("m{n}"), &event(&topic, n))).await.is_empty());
    }

    // Type level, no ids: every subscription of the caller, none of Bob's.
    let all = ws.service_json(HttpEvent::new("GET", "/Subscription/$status", Some(&alice)), 200).await;
    assert_eq!(all["resourceType"], "Bundle");
    assert_eq!(all["type"], "searchset");
    assert_eq!(all["total"], 2);
    let found = statuses(&all);
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(found.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), expected);
    for (id, status) in &found {
        assert_eq!(status["resourceType"], "SubscriptionStatus");
        assert_eq!(status["type"], "query-status");
        assert_eq!(status["topic"], topic.as_str());
        let (state, count) = if *id == a { ("active", "2") } else { ("off", "0") };
        assert_eq!(status["status"], state, "{status}");
        assert_eq!(status["eventsSinceSubscriptionStart"], count, "{status}");
    }
    assert!(
        all["entry"].as_array().into_iter().flatten().all(
            |e| e["search"]["mode"] == "match" && e["fullUrl"].as_str().is_some_and(|u| u.starts_with("urn:uuid:"))
        )
    );

    // Filters: ids and statuses, repeated or comma-separated, OR-ed; GET and POST.
    let by_status = ws.service_json(HttpEvent::new("GET", "/Subscription/$status?status=off", Some(&alice)), 200).await;
    assert_eq!(statuses(&by_status).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [b.as_str()]);
    let either =
        ws.service_json(HttpEvent::new("GET", "/Subscription/$status?status=off,active", Some(&alice)), 200).await;
    assert_eq!(either["total"], 2);
    let by_id =
        ws.service_json(HttpEvent::new("GET", &format!("/Subscription/$status?id={a}"), Some(&alice)), 200).await;
    assert_eq!(statuses(&by_id).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [a.as_str()]);
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "id", "valueId": a}, {"name": "id", "valueId": b}, {"name": "status", "valueCode": "active"}]});
    let posted = ws.service_json(HttpEvent::new("POST", "/Subscription/$status", Some(&alice)).json(&body), 200).await;
    assert_eq!(statuses(&posted).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [a.as_str()]);

    // Instance level (its id/status inputs are ignored, as the definition says).
    let one = ws
        .service_json(HttpEvent::new("GET", &format!("/Subscription/{b}/$status?status=active"), Some(&alice)), 200)
        .await;
    assert_eq!(statuses(&one).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [b.as_str()]);
    let one_post =
        ws.service_json(HttpEvent::new("POST", &format!("/Subscription/{a}/$status"), Some(&alice)), 200).await;
    assert_eq!(statuses(&one_post)[0].1["eventsSinceSubscriptionStart"], "2");

    // Someone else's subscription is a 404 exactly like a missing one.
    let theirs = ws.service_call(HttpEvent::new("GET", &format!("/Subscription/{bobs}/$status"), Some(&alice))).await;
    let missing = ws.service_call(HttpEvent::new("GET", "/Subscription/no-such-id/$status", Some(&alice))).await;
    let theirs = assert_outcome(&theirs, 404, "not-found");
    let missing = assert_outcome(&missing, 404, "not-found");
    assert_eq!(
        theirs["issue"][0]["diagnostics"].as_str().map(|d| d.replace(&bobs, "X")),
        missing["issue"][0]["diagnostics"].as_str().map(|d| d.replace("no-such-id", "X"))
    );
    let mixed = HttpEvent::new("GET", &format!("/Subscription/$status?id={a}&id={bobs}"), Some(&alice));
    assert_outcome(&ws.service_call(mixed).await, 404, "not-found");

    // Refusals.
    let get = |path: &str| HttpEvent::new("GET", path, Some(&alice));
    assert_outcome(&ws.service_call(get("/Subscription/$status?status=paused")).await, 400, "invalid");
    assert_outcome(&ws.service_call(get("/Subscription/$status?colour=red")).await, 400, "invalid");
    assert_outcome(&ws.service_call(HttpEvent::new("GET", "/Subscription/$status", None)).await, 401, "login");
    assert_outcome(
        &ws.service_call(HttpEvent::new("DELETE", "/Subscription/$status", Some(&alice))).await,
        405,
        "not-supported",
    );
    let not_parameters =
        HttpEvent::new("POST", "/Subscription/$status", Some(&alice)).json(&json!({"resourceType": "Patient"}));
    assert_outcome(&ws.service_call(not_parameters).await, 400, "invalid");
    let many: Vec<String> = (0..101).map(|n| format!("id=s{n}")).collect();
    assert_outcome(
        &ws.service_call(get(&format!("/Subscription/$status?{}", many.join("&")))).await,
        413,
        "too-costly",
    );

    let empty =
        ws.service_json(HttpEvent::new("GET", "/Subscription/$status", Some(&unique_principal("carol"))), 200).await;
    assert_eq!(empty["total"], 0);
    assert_valid_r5(&[all, by_status, either, by_id, posted, one, one_post, empty]);
}
all_stores!(status_answers_query_status_for_the_callers_own_subscriptions, status_operation);

async fn events_operation<
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
    let alice = unique_principal("alice");
    let topic = topic();
    let (full, connection) = ws.subscribe(&alice, &subscription(&topic, "full-resource")).await;
    let (ids_only, _) = ws.subscribe(&alice, &subscription(&topic, "id-only")).await;
    for n in 1..=3 {
        assert!(ws.fan_out(&SqsBatch::default().message(&format!("m{n}"), &event(&topic, n))).await.is_empty());
    }
    // The same event again (an SQS redelivery), and in the same batch as a new one.
    let redelivered = SqsBatch::default().message("m2", &event(&topic, 2)).message("m4", &event(&topic, 4));
    assert!(ws.fan_out(&redelivered).await.is_empty());
    let live: Vec<Value> = ws
        .frames(&connection)
        .into_iter()
        .filter(|f| f["entry"][0]["resource"]["type"] == "event-notification")
        .collect();

    // Defaults: everything retained, the subscription's own content level.
    let path = format!("/Subscription/{full}/$events");
    let all = ws.service_json(HttpEvent::new("GET", &path, Some(&alice)), 200).await;
    assert_eq!(all["type"], "subscription-notification");
    let status = &all["entry"][0]["resource"];
    assert_eq!(status["type"], "query-event");
    assert_eq!(status["status"], "active");
    assert_eq!(status["eventsSinceSubscriptionStart"], "4");
    assert_eq!(status["subscription"]["reference"], format!("Subscription/{full}"));
    assert_eq!(numbers(&all), ["1", "2", "3", "4"], "each number once, the redelivery included");
    assert!(all.get("issues").is_none(), "nothing is missing: {all}");
    // The replay carries what the live notifications carried.
    for (n, event) in status["notificationEvent"].as_array().into_iter().flatten().enumerate() {
        let pushed = live
            .iter()
            .find(|f| f["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"] == event["eventNumber"]);
        let pushed = pushed.unwrap_or_else(|| panic!("event {n} was pushed"));
        assert_eq!(&pushed["entry"][0]["resource"]["notificationEvent"][0], event);
    }
    assert_eq!(status["notificationEvent"][0]["focus"]["reference"], format!("{TEST_FHIR_BASE}/Encounter/enc-1"));
    // full-resource: each version of each resource once (Patient/123 is the same in every event).
    let urls: Vec<&str> =
        all["entry"].as_array().into_iter().flatten().skip(1).filter_map(|e| e["fullUrl"].as_str()).collect();
    assert_eq!(urls.len(), 5, "{urls:?}");
    assert_eq!(urls.iter().filter(|u| u.ends_with("/Patient/123")).count(), 1);
    assert!(all["entry"][1]["resource"]["resourceType"] == "Encounter");
    assert_eq!(all["link"][0]["relation"], "self");
    assert_eq!(all["link"][0]["url"], format!("{BASE}{path}?eventsSinceNumber=1&eventsUntilNumber=4"));

    // A range, inclusive; the content hint can lower the level.
    let range = ws
        .service_json(
            HttpEvent::new(
                "GET",
                &format!("{path}?eventsSinceNumber=2&eventsUntilNumber=3&content=id-only"),
                Some(&alice),
            ),
            200,
        )
        .await;
    assert_eq!(numbers(&range), ["2", "3"]);
    assert_eq!(range["entry"].as_array().map(Vec::len), Some(1), "id-only: no resource entries");
    assert!(range["entry"][0]["resource"]["notificationEvent"][0]["focus"].is_object());
    let empty = ws
        .service_json(HttpEvent::new("GET", &format!("{path}?eventsSinceNumber=4&content=empty"), Some(&alice)), 200)
        .await;
    assert_eq!(numbers(&empty), ["4"]);
    assert!(empty["entry"][0]["resource"]["notificationEvent"][0].get("focus").is_none());
    // POST with Parameters (integer64 values are JSON strings).
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "eventsSinceNumber", "valueInteger64": "3"}, {"name": "eventsUntilNumber", "valueInteger64": "99"}]});
    let posted = ws.service_json(HttpEvent::new("POST", &path, Some(&alice)).json(&body), 200).await;
    assert_eq!(numbers(&posted), ["3", "4"], "until is clamped to the count");
    // …but never raise it: an id-only subscription's history holds no resources.
    let raised = ws
        .service_json(
            HttpEvent::new("GET", &format!("/Subscription/{ids_only}/$events?content=full-resource"), Some(&alice)),
            200,
        )
        .await;
    assert_eq!(numbers(&raised), ["1", "2", "3", "4"]);
    assert_eq!(raised["entry"].as_array().map(Vec::len), Some(1));
    // Past the end: nothing yet, which is a query-status (query-event needs an event).
    let later = ws.service_json(HttpEvent::new("GET", &format!("{path}?eventsSinceNumber=5"), Some(&alice)), 200).await;
    assert_eq!(later["entry"][0]["resource"]["type"], "query-status");
    assert_eq!(numbers(&later), Vec::<String>::new());

    // Refusals: the caller's own subscriptions only (404 like a missing one), valid inputs.
    let bob = unique_principal("bob");
    assert_outcome(&ws.service_call(HttpEvent::new("GET", &path, Some(&bob))).await, 404, "not-found");
    let get = |query: &str| HttpEvent::new("GET", &format!("{path}?{query}"), Some(&alice));
    for (query, code) in [
        ("eventsSinceNumber=3&eventsUntilNumber=2", "invalid"),
        ("eventsSinceNumber=-1", "invalid"),
        ("eventsUntilNumber=many", "invalid"),
        ("content=everything", "invalid"),
        ("since=1", "invalid"),
    ] {
        assert_outcome(&ws.service_call(get(query)).await, 400, code);
    }
    assert_outcome(
        &ws.service_call(HttpEvent::new("GET", "/Subscription/$events", Some(&alice))).await,
        400,
        "invalid",
    );
    assert_outcome(&ws.service_call(HttpEvent::new("PUT", &path, Some(&alice))).await, 405, "not-supported");
    assert_outcome(&ws.service_call(HttpEvent::new("GET", &path, None)).await, 401, "login");
    assert_valid_r5(&[all, range, empty, posted, raised, later]);
}
all_stores!(events_replays_each_number_once_at_the_asked_content_level, events_operation);

/// Pages follow `maxCount`; numbers past retention are skipped and named in `Bundle.issues`.
async fn events_paging_and_retention<
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
    let alice = unique_principal("alice");
    let topic = topic();
    let mut resource = subscription(&topic, "id-only");
    resource["maxCount"] = json!(2);
    let (id, _) = ws.subscribe(&alice, &resource).await;
    // Events 1 and 2 happened two hours ago: the harness keeps events for one hour.
    let two_hours_ago = Utc::now() - TimeDelta::hours(2);
    for n in 1..=5 {
        let at: DateTime<Utc> = if n <= 2 { two_hours_ago } else { Utc::now() };
        assert!(ws.fan_out_at(&SqsBatch::default().message(&format!("m{n}"), &event(&topic, n)), at).await.is_empty());
    }
    let path = format!("/Subscription/{id}/$events");
    let first = ws.service_json(HttpEvent::new("GET", &path, Some(&alice)), 200).await;
    assert_eq!(numbers(&first), ["3", "4"], "maxCount 2 events per answer");
    assert_eq!(first["entry"][0]["resource"]["eventsSinceSubscriptionStart"], "5");
    let warning = &first["issues"];
    assert_eq!(warning["resourceType"], "OperationOutcome");
    assert_eq!(warning["issue"][0]["severity"], "warning");
    assert!(warning["issue"][0]["diagnostics"].as_str().is_some_and(|d| d.contains("events 1–2")), "{warning}");
    let next = first["link"].as_array().into_iter().flatten().find(|l| l["relation"] == "next").cloned();
    let next = next.unwrap_or_else(|| panic!("a next link: {first}"));
    assert_eq!(next["url"], format!("{BASE}{path}?eventsSinceNumber=5&eventsUntilNumber=5"));
    let query = next["url"].as_str().unwrap_or_default().split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
    let second = ws.service_json(HttpEvent::new("GET", &format!("{path}?{query}"), Some(&alice)), 200).await;
    assert_eq!(numbers(&second), ["5"]);
    assert!(second["link"].as_array().into_iter().flatten().all(|l| l["relation"] != "next"));
    assert!(second.get("issues").is_none());
    // Only expired numbers asked for: nothing to answer, and the warning says why.
    let gone = ws.service_json(HttpEvent::new("GET", &format!("{path}?eventsUntilNumber=2"), Some(&alice)), 200).await;
    assert_eq!(gone["entry"][0]["resource"]["type"], "query-status");
    assert!(gone["issues"]["issue"][0]["diagnostics"].as_str().is_some_and(|d| d.contains("1–2")), "{gone}");
    assert_valid_r5(&[first, second, gone]);
}
all_stores!(events_pages_by_max_count_and_reports_what_is_no_longer_retained, events_paging_and_retention);

/// After `Subscription.end` the subscription is `off`: no events, no binds, `$status` says so.
async fn end_turns_subscriptions_off<
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
    let alice = unique_principal("alice");
    let topic = topic();
    // Everything "before" runs on the real clock, far from the end (a slow store under CI
    // load cannot reach it); everything "after" is handed a time past the end. The end is
    // within the tokens' 30 minutes, so a late bind is refused for the end, not for expiry.
    let end = Utc::now() + TimeDelta::minutes(10);
    let mut resource = subscription(&topic, "id-only");
    resource["end"] = json!(end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let (id, connection) = ws.subscribe(&alice, &resource).await;
    assert!(ws.fan_out(&SqsBatch::default().message("before", &event(&topic, 1))).await.is_empty());
    let after = end + TimeDelta::seconds(1);
    assert!(ws.fan_out_at(&SqsBatch::default().message("after", &event(&topic, 2)), after).await.is_empty());
    let numbered: Vec<Value> = ws
        .frames(&connection)
        .into_iter()
        .filter(|f| f["entry"][0]["resource"]["type"] == "event-notification")
        .collect();
    assert_eq!(numbered.len(), 1, "only the event before the end: {numbered:?}");

    let status_at = |now: DateTime<Utc>| {
        let event = HttpEvent::new("GET", &format!("/Subscription/{id}/$status"), Some(&alice));
        let service = &ws.service;
        async move { status_and_json(&service.handle(&event.request(), now).await).1 }
    };
    let before = status_at(Utc::now()).await;
    assert_eq!(before["entry"][0]["resource"]["status"], "active");
    let later = status_at(after).await;
    assert_eq!(later["entry"][0]["resource"]["status"], "off");
    assert_eq!(later["entry"][0]["resource"]["eventsSinceSubscriptionStart"], "1");
    let read =
        ws.service.handle(&HttpEvent::new("GET", &format!("/Subscription/{id}"), Some(&alice)).request(), after).await;
    assert_eq!(status_and_json(&read).1["status"], "off");
    // No token can be had for it any more, and no bind is accepted.
    let query = format!("/Subscription/{id}/$get-ws-binding-token");
    let refused = ws.app.operation_at(HttpEvent::new("POST", &query, Some(&alice)), after).await;
    assert_outcome(&refused, 422, "business-rule");
    let token = ws.token(&alice, std::slice::from_ref(&id)).await;
    let connect =
        ws.connect_at(fhir_ws_tests::websocket::WsEvent::connect("late-connection=", Some(&token)), after).await;
    assert_eq!(connect.status_code, 403, "a genuine token for an ended subscription");
    assert_valid_r5(&[later]);
}
all_stores!(subscriptions_are_off_after_their_end, end_turns_subscriptions_off);

/// `GET /metadata` needs no authentication and states what the server does.
async fn metadata<
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
    let statement = ws.service_json(HttpEvent::new("GET", "/metadata", None), 200).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "5.0.0");
    assert_eq!(statement["kind"], "instance");
    assert_eq!(statement["implementation"]["url"], BASE);
    let rest = &statement["rest"][0];
    assert_eq!(rest["mode"], "server");
    assert_eq!(rest["extension"][0]["url"], "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket");
    assert_eq!(rest["extension"][0]["valueUri"], fhir_ws_tests::TEST_WEBSOCKET_URL);
    let resource = &rest["resource"][0];
    assert_eq!(resource["type"], "Subscription");
    let interactions: Vec<&str> =
        resource["interaction"].as_array().into_iter().flatten().filter_map(|i| i["code"].as_str()).collect();
    assert_eq!(interactions, ["read", "update", "delete", "create", "search-type"]);
    let operations: Vec<(&str, &str)> = resource["operation"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| Some((o["name"].as_str()?, o["definition"].as_str()?)))
        .collect();
    assert_eq!(
        operations,
        [
            ("get-ws-binding-token", "http://hl7.org/fhir/OperationDefinition/Subscription-get-ws-binding-token"),
            ("status", "http://hl7.org/fhir/OperationDefinition/Subscription-status"),
            ("events", "http://hl7.org/fhir/OperationDefinition/Subscription-events"),
            (
                "revoke-ws-binding-token",
                "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/OperationDefinition/Subscription-revoke-ws-binding-token"
            ),
        ]
    );
    assert_eq!(resource["searchParam"][0]["name"], "status");
    assert_outcome(&ws.service_call(HttpEvent::new("POST", "/metadata", None)).await, 405, "not-supported");
    assert_valid_r5(&[statement]);
}
all_stores!(metadata_is_a_capability_statement_without_authentication, metadata);
