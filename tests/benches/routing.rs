//! Routing benchmark: store reads per event, with 1,000, 10,000 and 100,000
//! patient-filtered subscriptions on one topic (`encounter-complete`) and exactly one of
//! them matching the event, with two bound connections.
//!
//! Run: `cargo bench -p fhir-ws-tests --bench routing`. For each size it prints the items
//! the fan-out read for the event (subscriptions and bindings returned, counted by a
//! wrapper around the store: `fhir_ws_tests::counting`) and the read requests it made,
//! next to what reading the whole topic returns: what the fan-out read per event before
//! the routing index (it listed the topic's subscriptions and filtered them in memory).
//! The in-memory store passes the same contract tests as DynamoDB (the index included),
//! so items read are what DynamoDB would read.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::metrics::Metrics;
use fhir_ws_core::push::{PushError, Pusher};
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::store::{Binding, BindingStore, SubscriptionStore};
use fhir_ws_tests::counting::{Counted, Reads, encounter_complete, patient_event, patient_subscription};

/// Accepts every post without a network: this benchmark counts reads, not posts.
#[derive(Debug, Default)]
struct Accepting(std::sync::atomic::AtomicUsize);

impl Pusher for Accepting {
    async fn post(&self, _: &str, _: &str, _: &[u8]) -> Result<(), PushError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    async fn close(&self, _: &str, _: &str) -> Result<(), PushError> {
        Ok(())
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        println!("one event, one matching subscription (two connections), on a topic of N patient-filtered ones");
        println!(
            "{:>12} {:>16} {:>14} {:>22} {:>14}",
            "subscribers", "items read", "read requests", "whole-topic read items", "fan-out ms"
        );
        for size in [1_000_usize, 10_000, 100_000] {
            let store = Arc::new(MemoryStore::new());
            let (topic, topics) = encounter_complete("bench");
            let now = Utc::now();
            for index in 0..size {
                let subscription = patient_subscription((&topic, &topics), "p", index, now);
                store.insert(&subscription).await.expect("insert");
            }
            let matching = patient_subscription((&topic, &topics), "p", size / 2, now);
            let callback = "https://example.execute-api.eu-west-1.amazonaws.com/live";
            let bindings: Vec<Binding> = ["a", "b"]
                .iter()
                .map(|c| {
                    fhir_ws_tests::fanout_binding(&format!("conn-{c}"), matching.id(), callback, now.timestamp() + 600)
                })
                .collect();
            store.put_bindings(&bindings).await.expect("bindings");
            let reads = Arc::new(Reads::default());
            let pusher = Arc::new(Accepting::default());
            let fanout = FanOut::new(
                Counted { inner: store.clone(), reads: reads.clone() },
                Counted { inner: store.clone(), reads: reads.clone() },
                store.clone(),
                EventHistory { store: store.clone(), retention: chrono::TimeDelta::days(7) },
                pusher.clone(),
                "https://fhir.example.org/r5",
            )
            .with_topics(topics, None);
            let event = patient_event(&topic, "p", size / 2, "bench").to_string();
            let started = Instant::now();
            fanout.deliver_message("m-bench", &event, Utc::now(), &Metrics::new("bench")).await.expect("delivered");
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            let (items, requests) = reads.take();
            assert_eq!(pusher.0.load(std::sync::atomic::Ordering::SeqCst), 2, "both connections, nothing else");
            let whole_topic = store.list_by_topic(&topic).await.expect("list").len();
            println!("{size:>12} {items:>16} {requests:>14} {whole_topic:>22} {elapsed_ms:>14.2}");
        }
    });
}
