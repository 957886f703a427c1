//! Delivery in pages (`fhir_ws_core::fanout::pages`) on both stores: one event to a
//! subscription with more connections than a page, the later pages going through a
//! queue as page references, against the Management API stand-in. Every page message is
//! delivered twice (SQS is at least once), records reported failed are redelivered as
//! SQS would, some connections are gone (410) and some fail until a redelivery: every
//! live connection gets the event exactly once, and the gone ones are forgotten.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fhir_ws_core::fanout::pages::Paging;
use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::fhir::Subscription;
use fhir_ws_core::push::{ManagementApiPusher, RetryPolicy};
use fhir_ws_core::store::{Binding, BindingStore, CounterStore, EventStore, StoredSubscription};
use fhir_ws_tests::fanout_binding;
use fhir_ws_tests::management_api::ManagementApiStub;
use fhir_ws_tests::websocket::{SqsBatch, WsStores};
use fhir_ws_tests::{Backend, RecordingQueue, Stores, TokenBackend, all_stores};
use serde_json::json;

const CONNECTIONS: usize = 47;
const PAGE_SIZE: usize = 10;

/// The event numbers each connection received, from what the stand-in accepted.
fn received(management: &ManagementApiStub, connections: &[String]) -> BTreeMap<String, Vec<String>> {
    connections
        .iter()
        .map(|connection| {
            let numbers = management
                .delivered_to(connection)
                .iter()
                .map(|post| post.json())
                .filter(|frame| frame["entry"][0]["resource"]["type"] == "event-notification")
                .map(|frame| frame["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"].to_string())
                .collect();
            (connection.clone(), numbers)
        })
        .collect()
}

async fn pages<S: Backend, T: TokenBackend, B: BindingStore + Clone, C: CounterStore + Clone, E: EventStore + Clone>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let management = ManagementApiStub::start().await;
    let endpoint = management.endpoint("live");
    let queue = RecordingQueue::default();
    let aws = fhir_ws_tests::sdk_config().await;
    let retry = RetryPolicy { attempts: 2, base_delay: Duration::from_millis(2), max_delay: Duration::from_millis(5) };
    let fanout = FanOut::new(
        stores.subscriptions.clone(),
        ws_stores.bindings.clone(),
        ws_stores.counters.clone(),
        EventHistory { store: ws_stores.events.clone(), retention: chrono::TimeDelta::hours(1) },
        ManagementApiPusher::new(&aws),
        "https://fhir.example.org/r5",
    )
    .with_retry(retry)
    .with_paging(Paging { page_size: PAGE_SIZE, queue: Some(Arc::new(queue.clone())) });

    // A ward dashboard: one unfiltered subscription, many connections (on a topic of its
    // own: a shared server keeps other runs' subscriptions).
    let id = fhir_ws_core::fhir::new_id();
    let topic = format!("http://example.org/fhir/SubscriptionTopic/ward-{id}");
    let resource: Subscription = serde_json::from_value(json!({
        "resourceType": "Subscription", "id": id, "status": "active", "topic": topic,
        "channelType": {"code": "websocket"}, "content": "id-only"}))
    .unwrap();
    stores.subscriptions.insert(&StoredSubscription::new("owner", 1, Utc::now(), resource)).await.unwrap();
    let expires = Utc::now().timestamp() + 1800;
    let mut connections: Vec<String> = (0..CONNECTIONS).map(|i| format!("{id}-c{i:03}")).collect();
    connections.sort();
    let bindings: Vec<Binding> = connections.iter().map(|c| fanout_binding(c, &id, &endpoint, expires)).collect();
    ws_stores.bindings.put_bindings(&bindings).await.unwrap();
    // Gone on the first page, in the middle and on the last; failing until a redelivery
    // on the first page and on a later one.
    let gone = [&connections[3], &connections[25], &connections[46]];
    for connection in gone {
        management.mark_gone(connection);
    }
    let failing = [&connections[1], &connections[33]];
    for connection in failing {
        management.script(connection, &[500, 500]);
    }

    let event = json!({"topic": topic, "focus": {"reference": "Encounter/e1"}, "eventId": "ward-1"}).to_string();
    let mut failed_records =
        fanout.handle_batch(&SqsBatch::default().raw("m-event", &event, 1).event(), Utc::now()).await;
    assert_eq!(
        failed_records.batch_item_failures.len(),
        1,
        "the first page owes connection {}: reported for redelivery",
        failing[0]
    );
    // Run the queue to the end: each message twice, failed ones again, as SQS would.
    let mut messages: Vec<(String, String)> = vec![("m-event".to_owned(), event.clone())];
    let mut pages = 0;
    for round in 0..50 {
        let (mut batch, mut count) = (SqsBatch::default(), 0);
        let redelivered: Vec<String> =
            failed_records.batch_item_failures.drain(..).map(|f| f.item_identifier).collect();
        for (message_id, body) in &messages {
            if redelivered.contains(message_id) {
                batch = batch.raw(message_id, body, 2);
                count += 1;
            }
        }
        for body in queue.take() {
            pages += 1;
            let message_id = format!("m-page-{round}-{pages}");
            batch = batch.raw(&message_id, &body, 1).raw(&format!("{message_id}-again"), &body, 1);
            count += 2;
            messages.push((message_id.clone(), body.clone()));
            messages.push((format!("{message_id}-again"), body));
        }
        assert!(messages.len() < 4 * CONNECTIONS, "page references keep multiplying");
        if count == 0 {
            break;
        }
        failed_records = fanout.handle_batch(&batch.event(), Utc::now()).await;
    }
    assert_eq!(pages, CONNECTIONS.div_ceil(PAGE_SIZE) - 1, "one reference per later page");

    let received = received(&management, &connections);
    for (connection, numbers) in &received {
        if gone.contains(&connection) {
            assert!(numbers.is_empty(), "{connection} is gone");
            assert!(ws_stores.bindings.bindings_of_connection(connection).await.unwrap().is_empty(), "forgotten");
        } else {
            assert_eq!(numbers, &["\"1\""], "{connection}: the event once, whatever was redelivered");
        }
    }
    // Every message delivered again, later (a late SQS duplicate): nothing more is sent.
    let before = management.posts().len();
    let mut again = SqsBatch::default();
    for (message_id, body) in &messages {
        again = again.raw(message_id, body, 3);
    }
    let response = fanout.handle_batch(&again.event(), Utc::now()).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(management.posts().len(), before, "finished pages owe nothing");
}
all_stores!(every_connection_gets_the_event_once_across_redelivered_pages, pages);
