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

/// The Subscription API's configuration with the example topic deployed.
fn config_with_example_topic() -> SubscriptionApiConfig {
    SubscriptionApiConfig {
        subscriptions_table: "unused".to_owned(),
        counters_table: "unused".to_owned(),
        events_table: "unused".to_owned(),
        websocket_url: fhir_ws_tests::TEST_WEBSOCKET_URL.to_owned(),
        identity: fhir_ws_core::http::IdentityConfig::default(),
        topics: TopicRegistry::from_files(&[("encounter-complete.json", EXAMPLE)]).unwrap(),
    }
}

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
    let config = config_with_example_topic();
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
    let service = SubscriptionService::new(store.clone(), store.clone(), store, &config);
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

    let r5 = ok("/metadata").await;
    let types: Vec<&str> =
        r5["rest"][0]["resource"].as_array().unwrap().iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(types, ["Subscription", "SubscriptionTopic"]);
    assert_valid_r5(&[r5]);
    for version in ["R4", "R4B"] {
        let statement = ok(&format!("/{version}/metadata")).await;
        let extension = &statement["rest"][0]["resource"][0]["extension"][0];
        assert_eq!(extension["url"], fhir_ws_core::ops::capability::TOPIC_CANONICAL_EXTENSION);
        assert_eq!(extension["valueCanonical"], TOPIC);
        if version == "R4" {
            fhir_ws_tests::assert_valid_r4(&[statement]);
        } else {
            fhir_ws_tests::assert_valid_r4b(&[statement]);
        }
    }
}
