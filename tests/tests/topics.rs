//! SubscriptionTopics deployed with the stack: the example topic in
//! `infra/topics-examples/` checked as R5 by the independent validator, and the
//! Subscription API (R5 and R4 bodies, both stores) refusing with 422 a topic that is not
//! deployed or a filter its topic does not allow.

use chrono::Utc;
use fhir_ws_core::config::SubscriptionApiConfig;
use fhir_ws_core::ops::subscription_api::SubscriptionApi;
use fhir_ws_core::topics::TopicRegistry;
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, assert_outcome, assert_valid_r5, backport_websocket_subscription,
    both_stores, status_and_json, unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

const EXAMPLE: &str = include_str!("../../infra/topics-examples/encounter-complete.json");
const TOPIC: &str = "http://example.org/FHIR/SubscriptionTopic/encounter-complete";

#[test]
fn the_example_topic_is_an_r5_subscription_topic() {
    let topic: Value = serde_json::from_str(EXAMPLE).unwrap();
    assert_valid_r5(&[topic]);
    let registry = TopicRegistry::from_files(&[("encounter-complete.json", EXAMPLE)]).unwrap();
    assert_eq!(registry.topics()[0].url, TOPIC);
    let parameters: Vec<&str> = registry.topics()[0].allowed_filters.iter().map(|f| f.parameter.as_str()).collect();
    assert_eq!(parameters, ["patient", "class"]);
}

async fn subscriptions_checked_against_topics<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let config = SubscriptionApiConfig {
        subscriptions_table: "unused".to_owned(),
        counters_table: "unused".to_owned(),
        events_table: "unused".to_owned(),
        websocket_url: fhir_ws_tests::TEST_WEBSOCKET_URL.to_owned(),
        identity: fhir_ws_core::http::IdentityConfig::default(),
        topics: TopicRegistry::from_files(&[("encounter-complete.json", EXAMPLE)]).unwrap(),
    };
    let api = SubscriptionApi::new(stores.subscriptions.clone(), &config);
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
