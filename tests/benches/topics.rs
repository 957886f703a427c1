//! Topic-engine benchmark: what one resource change costs the fan-out per evaluated topic.
//!
//! Run: `cargo bench -p fhir-ws-tests --bench topics` (release profile). With the example
//! topics of `infra/topics-examples/`, prints the mean time per evaluation of:
//! - a query-only topic (encounter-start: two criteria on `status`),
//! - a topic with query criteria and FHIRPath (encounter-complete, the spec's example),
//! - a subscription's `patient` filter as a search clause,
//! - all the example topics for one change (what the fan-out does per message),
//!
//! and, once, how long the FHIRPath engine takes to start (on first use).

use std::hint::black_box;
use std::time::Instant;

use chrono::Utc;
use fhir_ws_core::fhir::FilterBy;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::topics::{FhirPathCriteria, Interaction, ResourceChange};
use fhir_ws_fhirpath::FhirPath;
use serde_json::{Map, Value, json};

const ROUNDS: u32 = 20_000;

fn encounter(status: &str) -> Option<Map<String, Value>> {
    json!({"resourceType": "Encounter", "id": "e1", "status": status, "class": [{"coding": [{"code": "IMP"}]}],
           "subject": {"reference": "Patient/p1"}, "actualPeriod": {"start": "2026-12-02T08:00:00Z"},
           "participant": [{"actor": {"reference": "Practitioner/dr"}}], "identifier": [{"value": "v1"}]})
    .as_object()
    .cloned()
}

/// Mean microseconds per call of `work` over [`ROUNDS`] calls (after a warm-up).
fn mean_micros(mut work: impl FnMut() -> bool) -> f64 {
    for _ in 0..1_000 {
        black_box(work());
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(work());
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

fn main() {
    let registry = fhir_ws_tests::example_topics();
    let engine = FhirPath::new();
    let started = Instant::now();
    let _ = engine.evaluate("%current.status = 'x'", encounter("a").as_ref(), None);
    let start_up = started.elapsed().as_secs_f64() * 1e3;
    let change = ResourceChange {
        fhir_version: FhirVersion::R5,
        interaction: Interaction::Update,
        previous: encounter("in-progress"),
        current: encounter("completed"),
    };
    let now = Utc::now();
    let topic = |name: &str| registry.get(&format!("http://example.org/FHIR/SubscriptionTopic/{name}")).unwrap();
    let (start, complete) = (topic("encounter-start"), topic("encounter-complete"));
    let query_only = mean_micros(|| start.matches(&change, Some(&engine), now).unwrap_or(false));
    let with_fhirpath = mean_micros(|| complete.matches(&change, Some(&engine), now).unwrap_or(false));
    let filters = [FilterBy {
        filter_parameter: Some("patient".to_owned()),
        value: Some("Patient/p1".to_owned()),
        ..FilterBy::default()
    }];
    let focus = change.current.as_ref();
    let filter = mean_micros(|| complete.filters_match(&filters, focus, FhirVersion::R5, now));
    let all =
        mean_micros(|| registry.fired_by(&change, Some(&engine), now).filter(|(_, f)| *f == Ok(true)).count() == 1);
    println!("topic engine, {ROUNDS} evaluations each (release profile)");
    println!("  FHIRPath engine start-up (first use):          {start_up:>8.2} ms");
    println!("  query-only topic (encounter-start):            {query_only:>8.2} µs per evaluation");
    println!("  query + FHIRPath topic (encounter-complete):   {with_fhirpath:>8.2} µs per evaluation");
    println!("  patient filter as a search clause:             {filter:>8.2} µs per subscription");
    println!("  all {} example topics for one change:           {all:>8.2} µs", registry.topics().len());
}
