//! The routing index at work (`fhir_ws_core::topics::route`), on both stores: one event
//! for one patient, among more and more patient-filtered subscriptions on one topic,
//! reads the same few items whatever the number of subscribers, and reaches exactly
//! the matching subscription's connection. The bench `routing` runs the same to 100,000.

use std::sync::Arc;

use chrono::Utc;
use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::store::{Binding, BindingStore, CounterStore, EventStore};
use fhir_ws_tests::counting::{Counted, Reads, encounter_complete, patient_event, patient_subscription};
use fhir_ws_tests::management_api::ManagementApiStub;
use fhir_ws_tests::websocket::{SqsBatch, WsStores};
use fhir_ws_tests::{Backend, Stores, TokenBackend, all_stores};

async fn reads_per_event<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let management = ManagementApiStub::start().await;
    // Each run has a topic of its own (a shared server keeps other runs' subscriptions).
    let prefix = fhir_ws_core::fhir::new_id();
    let (topic, topics) = encounter_complete(&prefix);
    let reads = Arc::new(Reads::default());
    let aws = fhir_ws_tests::sdk_config().await;
    let fanout = FanOut::new(
        Counted { inner: stores.subscriptions.clone(), reads: reads.clone() },
        Counted { inner: ws_stores.bindings.clone(), reads: reads.clone() },
        ws_stores.counters.clone(),
        EventHistory { store: ws_stores.events.clone(), retention: chrono::TimeDelta::hours(1) },
        ManagementApiPusher::new(&aws),
        "https://fhir.example.org/r5",
    )
    .with_topics(topics.clone(), None);
    // Grow the population and compare.
    let now = Utc::now();
    let mut figures = Vec::new();
    let mut population = 0;
    for size in [50, 400] {
        for index in population..size {
            stores.subscriptions.insert(&patient_subscription((&topic, &topics), &prefix, index, now)).await.unwrap();
        }
        population = size;
        // The patient the event is about has two connections.
        let matching = patient_subscription((&topic, &topics), &prefix, 7, now);
        let connections = [format!("{prefix}-{size}-a"), format!("{prefix}-{size}-b")];
        let bindings: Vec<Binding> = connections
            .iter()
            .map(|c| {
                fhir_ws_tests::fanout_binding(c, matching.id(), &management.endpoint("live"), now.timestamp() + 600)
            })
            .collect();
        ws_stores.bindings.put_bindings(&bindings).await.unwrap();
        reads.take();
        let batch =
            SqsBatch::default().message(&format!("m-{size}"), &patient_event(&topic, &prefix, 7, &size.to_string()));
        let failed = fanout.handle_batch(&batch.event(), Utc::now()).await.batch_item_failures;
        assert!(failed.is_empty(), "{failed:?}");
        let (items, requests) = reads.take();
        // One match and the bindings of its connections: nothing else was read.
        let bindings_read = 2 * figures.len() + 2;
        assert_eq!(items, 1 + bindings_read, "{size} subscribers: {items} items read");
        figures.push((size, items, requests));
        for connection in &connections {
            assert_eq!(management.delivered_to(connection).len(), 1, "{connection} got the event");
        }
        let whole_topic = stores.subscriptions.list_by_topic(&topic).await.unwrap().len();
        assert_eq!(whole_topic, size, "what reading the whole topic (before routing) would have read");
    }
    // The same requests at every size: the work is the match's, not the topic's.
    assert_eq!(figures[0].2, figures[1].2, "{figures:?}");
}
all_stores!(an_event_reads_its_matches_not_its_topic, reads_per_event);

/// The Subscription API routes what it writes: a created subscription (R5 and R4 bodies)
/// goes into its filter's bucket, an update that changes the filters moves it, and one
/// that turns it `off` takes it out of the index.
async fn the_api_routes_what_it_writes<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    use fhir_ws_core::ops::subscription_api::SubscriptionApi;
    use fhir_ws_tests::{HttpEvent, backport_websocket_subscription, status_and_json, unique_principal};
    use serde_json::json;

    let (topic, topics) = encounter_complete(&fhir_ws_core::fhir::new_id());
    let config = fhir_ws_tests::api_config(fhir_ws_core::http::IdentityConfig::default(), topics);
    let api = SubscriptionApi::new(stores.subscriptions.clone(), fhir_ws_tests::no_connections(), &config);
    let owner = unique_principal("alice");
    let send = |method: &str, path: &str, body: &serde_json::Value| {
        HttpEvent::new(method, path, Some(&owner)).json(body).request()
    };
    let route_of = |id: String| {
        let subscriptions = stores.subscriptions.clone();
        async move {
            let stored = subscriptions.get(&id).await.unwrap().unwrap();
            (stored.route().to_owned(), stored.route_index().is_some())
        }
    };

    let mut r5 = fhir_ws_tests::websocket_subscription(&topic);
    r5["filterBy"] = json!([{"resourceType": "Encounter", "filterParameter": "patient", "value": "Patient/123"}]);
    let (status, created) = status_and_json(&api.handle(&send("POST", "/Subscription", &r5), Utc::now()).await);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(route_of(id.clone()).await, ("patient=123".to_owned(), true), "active and indexed");

    let mut r4 = backport_websocket_subscription(&topic);
    let ig = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    r4["_criteria"] = json!({"extension": [
        {"url": format!("{ig}/backport-filter-criteria"), "valueString": "Encounter?patient=https://ehr.example/fhir/Patient/77"}]});
    let (status, created_r4) = status_and_json(&api.handle(&send("POST", "/R4/Subscription", &r4), Utc::now()).await);
    assert_eq!(status, 201, "{created_r4}");
    assert_eq!(route_of(created_r4["id"].as_str().unwrap().to_owned()).await.0, "patient=77");

    // The filters change: the bucket follows.
    let mut changed = created.clone();
    changed["filterBy"] =
        json!([{"filterParameter": "class", "value": "http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP"}]);
    let (status, body) =
        status_and_json(&api.handle(&send("PUT", &format!("/Subscription/{id}"), &changed), Utc::now()).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(route_of(id.clone()).await, ("class=IMP".to_owned(), true));
    // Turned off: kept, but out of the index.
    let mut off = body.clone();
    off["status"] = json!("off");
    let (status, body) =
        status_and_json(&api.handle(&send("PUT", &format!("/Subscription/{id}"), &off), Utc::now()).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(route_of(id).await, ("class=IMP".to_owned(), false));
}
fhir_ws_tests::both_stores!(the_subscription_api_routes_creates_and_updates, the_api_routes_what_it_writes);

/// A topic URL and a filter value so long that their bucket would not fit an index key:
/// the subscription goes topic-wide and is still found, and the event's lookup of that
/// bucket is not sent to the store (which would refuse it).
async fn overlong_routes<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    use serde_json::json;
    let management = ManagementApiStub::start().await;
    let id = fhir_ws_core::fhir::new_id();
    // The longest topic URL accepted (1 KiB) and the longest filter value (1 KiB).
    let suffix =
        format!("{id}-{}", "t".repeat(1024 - fhir_ws_tests::counting::ENCOUNTER_COMPLETE.len() - 2 - id.len()));
    let (topic, topics) = encounter_complete(&suffix);
    assert_eq!(topic.len(), 1024);
    let code = format!("{id}{}", "c".repeat(1020 - id.len()));
    let reads = Arc::new(Reads::default());
    let fanout = FanOut::new(
        Counted { inner: stores.subscriptions.clone(), reads: reads.clone() },
        ws_stores.bindings.clone(),
        ws_stores.counters.clone(),
        EventHistory { store: ws_stores.events.clone(), retention: chrono::TimeDelta::hours(1) },
        ManagementApiPusher::new(&fhir_ws_tests::sdk_config().await),
        "https://fhir.example.org/r5",
    )
    .with_topics(topics.clone(), None);
    let resource: fhir_ws_core::fhir::Subscription = serde_json::from_value(json!({
        "resourceType": "Subscription", "id": id, "status": "active", "topic": topic,
        "channelType": {"code": "websocket"}, "content": "id-only",
        "filterBy": [{"filterParameter": "class", "value": code}]}))
    .unwrap();
    let route = topics.route_of(&resource);
    assert_eq!(route, format!("class={code}"));
    let now = Utc::now();
    let subscription = fhir_ws_core::store::StoredSubscription::new("owner", 1, now, resource).routed(route);
    let (indexed_under, _) = subscription.route_index().unwrap();
    assert_eq!(indexed_under, fhir_ws_core::store::route_index_key(&topic, "*"), "too long: topic-wide");
    stores.subscriptions.insert(&subscription).await.unwrap();
    let connection = format!("{id}-conn");
    let binding = fhir_ws_tests::fanout_binding(&connection, &id, &management.endpoint("live"), now.timestamp() + 600);
    ws_stores.bindings.put_bindings(&[binding]).await.unwrap();
    let event = json!({"topic": topic, "focus": {"resourceType": "Encounter", "id": "e1", "status": "completed",
        "class": [{"coding": [{"code": code}]}], "subject": {"reference": "Patient/1"}}});
    let failed = fanout.handle_batch(&SqsBatch::default().message("m-long", &event).event(), now).await;
    assert!(failed.batch_item_failures.is_empty(), "{:?}", failed.batch_item_failures);
    assert_eq!(management.delivered_to(&connection).len(), 1, "found in the topic-wide bucket");
    let longest = reads.longest_key();
    assert!(longest > 1024 && longest <= fhir_ws_core::store::MAX_ROUTE_KEY_BYTES, "looked up {longest} bytes");
}
all_stores!(routes_too_long_for_an_index_key_go_topic_wide, overlong_routes);
