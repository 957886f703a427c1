//! SubscriptionTopics deployed with the stack: the example topic in
//! `infra/topics-examples/` checked as R5 by the independent validator, and the
//! Subscription API (R5 and R4 bodies, both stores) refusing with 422 a topic that is not
//! deployed or a filter its topic does not allow.

use chrono::Utc;
use fhir_ws_core::config::SubscriptionApiConfig;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::ops::subscription_api::SubscriptionApi;
use fhir_ws_core::topics::TopicRegistry;
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, assert_outcome, assert_valid_r5, backport_websocket_subscription,
    both_stores, status_and_json, unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

const EXAMPLE: &str = include_str!("../../infra/topics-examples/encounter-complete.json");
const TOPIC: &str = "http://example.org/FHIR/SubscriptionTopic/encounter-complete";

/// The Subscription API's configuration with the example topic deployed.
fn config_with_example_topic() -> SubscriptionApiConfig {
    fhir_ws_tests::api_config(
        fhir_ws_core::http::IdentityConfig::default(),
        TopicRegistry::from_files(&[("encounter-complete.json", EXAMPLE)], FhirVersion::R5).unwrap(),
    )
}

#[test]
fn the_example_topic_is_an_r5_subscription_topic() {
    let topic: Value = serde_json::from_str(EXAMPLE).unwrap();
    assert_valid_r5(&[topic]);
    let registry = TopicRegistry::from_files(&[("encounter-complete.json", EXAMPLE)], FhirVersion::R5).unwrap();
    assert_eq!(registry.topics()[0].url, TOPIC);
    let parameters: Vec<&str> = registry.topics()[0].allowed_filters.iter().map(|f| f.parameter.as_str()).collect();
    assert_eq!(parameters, ["patient", "class"]);
}

async fn subscriptions_checked_against_topics<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let config = config_with_example_topic();
    let api = SubscriptionApi::new(stores.subscriptions.clone(), fhir_ws_tests::no_connections(), &config);
    let owner = unique_principal("alice");
    let create = |path: &str, body: &Value| HttpEvent::new("POST", path, Some(&owner)).json(body).request();

    let mut allowed = websocket_subscription(TOPIC);
    allowed["filterBy"] = json!([{"resourceType": "Encounter", "filterParameter": "patient", "value": "Patient/123"}]);
    let (status, created) = status_and_json(&api.handle(&create("/Subscription", &allowed), Utc::now()).await);
    assert_eq!(status, 201, "{created}");

    let unknown = websocket_subscription("http://example.org/FHIR/SubscriptionTopic/not-deployed");
    let outcome =
        assert_outcome(&api.handle(&create("/Subscription", &unknown), Utc::now()).await, 422, "business-rule");
    assert!(outcome.to_string().contains("not known") && outcome.to_string().contains(TOPIC), "{outcome}");
    let mut status_filter = websocket_subscription(TOPIC);
    status_filter["filterBy"] = json!([{"filterParameter": "status", "value": "finished"}]);
    let refused = api.handle(&create("/Subscription", &status_filter), Utc::now()).await;
    let outcome = assert_outcome(&refused, 422, "business-rule");
    assert!(outcome.to_string().contains("'status'") && outcome.to_string().contains("patient, class"), "{outcome}");

    // What the topic allows beyond equality is accepted (the element-name rules of a
    // deployment without topics would refuse a modifier); values must suit the parameter.
    let mut missing = websocket_subscription(TOPIC);
    missing["filterBy"] = json!([{"filterParameter": "patient", "modifier": "missing", "value": "false"}]);
    assert_eq!(status_and_json(&api.handle(&create("/Subscription", &missing), Utc::now()).await).0, 201);
    missing["filterBy"][0]["value"] = json!("perhaps");
    let outcome =
        assert_outcome(&api.handle(&create("/Subscription", &missing), Utc::now()).await, 422, "business-rule");
    assert!(outcome.to_string().contains("true or false"), "{outcome}");

    // R4 bodies are checked the same way (filters from the IG's filter criteria).
    let mut r4 = backport_websocket_subscription(TOPIC);
    let ig = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    r4["_criteria"] = json!({"extension": [
        {"url": format!("{ig}/backport-filter-criteria"), "valueString": "Encounter?patient=Patient/123"}]});
    assert_eq!(status_and_json(&api.handle(&create("/R4/Subscription", &r4), Utc::now()).await).0, 201);
    r4["_criteria"]["extension"][0]["valueString"] = json!("Encounter?subject=Patient/123");
    assert_outcome(&api.handle(&create("/R4/Subscription", &r4), Utc::now()).await, 422, "business-rule");

    // An update is checked too.
    let id = created["id"].as_str().unwrap();
    let mut changed = created.clone();
    changed["topic"] = json!("http://example.org/FHIR/SubscriptionTopic/elsewhere");
    let update = HttpEvent::new("PUT", &format!("/Subscription/{id}"), Some(&owner)).json(&changed).request();
    assert_outcome(&api.handle(&update, Utc::now()).await, 422, "business-rule");
}
both_stores!(subscriptions_must_name_a_deployed_topic_and_filters_it_allows, subscriptions_checked_against_topics);

/// Discovery: R5 clients search and read the deployed topics; R4 and R4B clients find
/// their canonicals in `metadata` (the Backport IG's extension).
#[tokio::test]
async fn deployed_topics_are_discoverable_in_every_version() {
    use fhir_ws_core::ops::SubscriptionService;
    let config = config_with_example_topic();
    let store = std::sync::Arc::new(fhir_ws_core::store::memory::MemoryStore::new());
    let service =
        SubscriptionService::new(store.clone(), store.clone(), store, fhir_ws_tests::no_connections(), &config);
    let alice = unique_principal("alice");
    let get = async |path: &str, who: Option<&str>| {
        service.handle(&HttpEvent::new("GET", path, who).request(), Utc::now()).await
    };
    let ok = async |path: &str| {
        let (status, body) = status_and_json(&get(path, Some(&alice)).await);
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let all = ok("/SubscriptionTopic").await;
    assert_eq!((all["type"].as_str(), all["total"].as_u64()), (Some("searchset"), Some(1)));
    assert_eq!(all["entry"][0]["resource"]["url"], TOPIC);
    assert!(all["entry"][0]["fullUrl"].as_str().is_some_and(|u| u.ends_with("/SubscriptionTopic/encounter-complete")));
    let encoded = TOPIC.replace(':', "%3A").replace('/', "%2F");
    assert_eq!(ok(&format!("/SubscriptionTopic?url={encoded}")).await["total"], 1);
    assert_eq!(ok("/SubscriptionTopic?url=http%3A%2F%2Fexample.org%2Fother").await["total"], 0);
    assert_eq!(ok("/SubscriptionTopic?status=retired").await["total"], 0);
    assert_eq!(ok("/R5/SubscriptionTopic?status=active,draft").await["total"], 1);
    let read = ok("/SubscriptionTopic/encounter-complete").await;
    assert_eq!(read["url"], TOPIC);
    assert_valid_r5(&[all, read]);
    assert_outcome(&get("/SubscriptionTopic/nope", Some(&alice)).await, 404, "not-found");
    assert_outcome(&get("/SubscriptionTopic", None).await, 401, "login");
    let posted =
        service.handle(&HttpEvent::new("POST", "/SubscriptionTopic", Some(&alice)).request(), Utc::now()).await;
    assert_outcome(&posted, 405, "not-supported");
    let r4 = assert_outcome(&get("/R4/SubscriptionTopic", Some(&alice)).await, 404, "not-found");
    assert!(r4.to_string().contains("/R4/metadata"), "{r4}");
    // R4B has the resource (the IG's R4B server statement requires read and search by
    // url and derived-or-self), in R4B's shape: comparators are modifiers there.
    let r4b = ok(&format!("/R4B/SubscriptionTopic?derived-or-self={encoded}")).await;
    assert_eq!(r4b["total"], 1);
    let r4b_topic = &r4b["entry"][0]["resource"];
    assert_eq!(r4b_topic["canFilterBy"][0]["modifier"], json!(["eq"]), "{r4b_topic}");
    assert!(r4b_topic["canFilterBy"][0].get("comparator").is_none());
    assert_eq!(ok("/R4B/SubscriptionTopic?derived-or-self=http%3A%2F%2Fexample.org%2Fother").await["total"], 0);
    let r4b_read = ok("/R4B/SubscriptionTopic/encounter-complete").await;
    fhir_ws_tests::assert_valid_r4b(&[r4b, r4b_read]);

    let r5 = ok("/metadata").await;
    let types: Vec<&str> =
        r5["rest"][0]["resource"].as_array().unwrap().iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(types, ["Subscription", "SubscriptionTopic"]);
    assert_valid_r5(&[r5]);
    for version in ["R4", "R4B"] {
        let statement = ok(&format!("/{version}/metadata")).await;
        let extension = &statement["rest"][0]["resource"][0]["extension"][0];
        assert_eq!(extension["url"], fhir_ws_tests::ig::TOPIC_CANONICAL_EXTENSION);
        assert_eq!(extension["valueCanonical"], TOPIC);
        if version == "R4" {
            fhir_ws_tests::assert_valid_r4(&[statement]);
        } else {
            fhir_ws_tests::assert_valid_r4b(&[statement]);
        }
    }
}

/// The example topics (the spec's encounter-complete, a status transition, a new resource
/// with a code about a patient) against real create, update and delete changes, with the
/// real FHIRPath engine: which topics each change fires.
#[test]
fn example_topics_fire_on_the_changes_they_describe() {
    use fhir_ws_core::topics::{Interaction, ResourceChange};
    let registry = fhir_ws_tests::example_topics();
    let examples: Vec<Value> = registry.topics().iter().map(|t| t.resource.clone()).collect();
    assert_valid_r5(&examples);
    let engine = fhir_ws_fhirpath::FhirPath::new();
    let encounter = |status: &str| {
        json!({"resourceType": "Encounter", "id": "e1", "status": status, "subject": {"reference": "Patient/p1"},
               "actualPeriod": {"start": "2026-12-02T08:00:00Z"}})
    };
    let heart_rate = |code: &str, value: f64, subject: &str| {
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
               "subject": {"reference": subject}, "valueQuantity": {"value": value, "unit": "/min"}})
    };
    let as_map = |v: Value| v.as_object().cloned();
    let change = |interaction, previous: Option<Value>, current: Option<Value>| ResourceChange {
        fhir_version: FhirVersion::R5,
        interaction,
        previous: previous.and_then(as_map),
        current: current.and_then(as_map),
    };
    let rows: Vec<(&str, ResourceChange, &[&str])> = vec![
        (
            "encounter created in progress",
            change(Interaction::Create, None, Some(encounter("in-progress"))),
            &["encounter-start"],
        ),
        (
            "encounter created completed",
            change(Interaction::Create, None, Some(encounter("completed"))),
            &["encounter-complete"],
        ),
        (
            "planned -> in-progress",
            change(Interaction::Update, Some(encounter("planned")), Some(encounter("in-progress"))),
            &["encounter-start"],
        ),
        (
            "in-progress -> completed",
            change(Interaction::Update, Some(encounter("in-progress")), Some(encounter("completed"))),
            &["encounter-complete"],
        ),
        (
            "completed -> completed",
            change(Interaction::Update, Some(encounter("completed")), Some(encounter("completed"))),
            &[],
        ),
        ("encounter deleted", change(Interaction::Delete, Some(encounter("completed")), None), &[]),
        (
            "heart rate for a patient",
            change(Interaction::Create, None, Some(heart_rate("8867-4", 72.0, "Patient/p1"))),
            &["observation-heart-rate"],
        ),
        ("heart rate of zero", change(Interaction::Create, None, Some(heart_rate("8867-4", 0.0, "Patient/p1"))), &[]),
        ("another code", change(Interaction::Create, None, Some(heart_rate("8310-5", 37.0, "Patient/p1"))), &[]),
        ("about a group", change(Interaction::Create, None, Some(heart_rate("8867-4", 72.0, "Group/g1"))), &[]),
        (
            "heart rate updated",
            change(
                Interaction::Update,
                Some(heart_rate("8867-4", 70.0, "Patient/p1")),
                Some(heart_rate("8867-4", 72.0, "Patient/p1")),
            ),
            &[],
        ),
    ];
    for (description, change, expected) in rows {
        let fired: Vec<String> = registry
            .fired_by(&change, Some(&engine), Utc::now())
            .map(|(topic, outcome)| (topic, outcome.unwrap_or_else(|e| panic!("{description}: {} {e}", topic.url))))
            .filter(|(_, fired)| *fired)
            .map(|(topic, _)| topic.url.rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(fired, expected, "{description}");
    }
}

/// Filters of deployed topics are FHIR search clauses (here with the comparators the
/// topics allow).
#[test]
fn filters_of_deployed_topics_are_search_clauses() {
    use fhir_ws_core::fhir::FilterBy;
    let registry = fhir_ws_tests::example_topics();
    let start = registry.get("http://example.org/FHIR/SubscriptionTopic/encounter-start").unwrap();
    let rate = registry.get("http://example.org/FHIR/SubscriptionTopic/observation-heart-rate").unwrap();
    let filter = |parameter: &str, comparator: Option<&str>, modifier: Option<&str>, value: &str| FilterBy {
        filter_parameter: Some(parameter.to_owned()),
        comparator: comparator.map(str::to_owned),
        modifier: modifier.map(str::to_owned),
        value: Some(value.to_owned()),
        ..FilterBy::default()
    };
    let encounter = json!({"resourceType": "Encounter", "id": "e1", "status": "in-progress",
        "subject": {"reference": "https://fhir.example.org/Patient/p1"}, "actualPeriod": {"start": "2026-12-02T08:00:00Z"}});
    let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 130, "unit": "/min"}});
    let rows = [
        (start, &encounter, vec![filter("patient", None, None, "Patient/p1")], true),
        (start, &encounter, vec![filter("patient", None, None, "p1")], true),
        (start, &encounter, vec![filter("patient", None, None, "Patient/p2")], false),
        (start, &encounter, vec![filter("date", Some("ge"), None, "2026-12-02")], true),
        (start, &encounter, vec![filter("date", Some("lt"), None, "2026-12-01")], false),
        (
            start,
            &encounter,
            vec![filter("patient", None, None, "Patient/p1"), filter("date", Some("lt"), None, "2026-12-01")],
            false,
        ),
        // A period without an end is still going on: it reaches past any later date.
        (start, &encounter, vec![filter("date", Some("gt"), None, "2027")], true),
        (rate, &observation, vec![filter("value-quantity", Some("gt"), None, "120")], true),
        (rate, &observation, vec![filter("value-quantity", Some("lt"), None, "120")], false),
        (rate, &observation, vec![filter("patient", None, Some("missing"), "false")], true),
        (rate, &observation, vec![filter("patient", None, Some("missing"), "true")], false),
    ];
    for (topic, focus, filters, expected) in rows {
        let matched = topic.filters_match(&filters, focus.as_object(), FhirVersion::R5, Utc::now());
        assert_eq!(matched, expected, "{} {filters:?}", topic.url);
    }
    assert!(
        start.filters_match(&[], None, FhirVersion::R5, Utc::now()),
        "no filters: delivered even without the resource"
    );
    assert!(
        !start.filters_match(&[filter("patient", None, None, "p1")], None, FhirVersion::R5, Utc::now()),
        "cannot check: not delivered"
    );
}
