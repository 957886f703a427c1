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
            .map(|c| Binding {
                connection_id: c.clone(),
                subscription_id: matching.id().to_owned(),
                token_id: "t".to_owned(),
                owner: "owner".to_owned(),
                callback_url: management.endpoint("live"),
                bound_at: now.timestamp(),
                expires_at: now.timestamp() + 600,
                last_message_at: now.timestamp(),
                handshake_pending: false,
                heartbeat_period: None,
                heartbeat_due_at: None,
                grant: None,
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
