//! `Subscription/$get-ws-binding-token` through the Lambda handler entry point, with
//! API Gateway HTTP API (payload 2.0) events, on both back ends.

use chrono::{DateTime, Utc};
use fhir_ws_core::token::verify::verify;
use fhir_ws_tests::{
    App, Backend, HttpEvent, Stores, TEST_SIGNING_KEYS, TEST_WEBSOCKET_URL, TokenBackend, assert_outcome,
    assert_valid_r5, binding_token_config, both_stores, header, output_values, rest_hook_subscription, status_and_json,
    unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

const TYPE_LEVEL: &str = "/Subscription/$get-ws-binding-token";
const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/encounter-start";

fn instance_level(id: &str) -> String {
    format!("/Subscription/{id}/$get-ws-binding-token")
}

fn ids_body(ids: &[&str]) -> Value {
    let parameter: Vec<Value> = ids.iter().map(|id| json!({"name": "id", "valueId": id})).collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// Checks a successful answer: the four outputs in the spec's types, the token verifies
/// for exactly `expected` subscriptions, its row carries the TTL, and fhir.resources
/// accepts the Parameters as R5.
async fn assert_token_for<S: Backend, T: TokenBackend>(
    app: &App<S, T>,
    response: &lambda_http::Response<lambda_http::Body>,
    owner: &str,
    expected: &[&str],
) -> String {
    let (status, body) = status_and_json(response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(response, "content-type").as_deref(), Some("application/fhir+json; charset=utf-8"));
    assert_eq!(body["resourceType"], "Parameters");
    let token = output_values(&body, "token");
    assert_eq!(token.len(), 1, "{body}");
    let token = token[0]["valueString"].as_str().unwrap_or_else(|| panic!("token is a valueString: {body}")).to_owned();
    let expiration = output_values(&body, "expiration");
    assert_eq!(expiration.len(), 1);
    let expiration = expiration[0]["valueDateTime"].as_str().unwrap_or_else(|| panic!("valueDateTime: {body}"));
    let expiry = DateTime::parse_from_rfc3339(expiration).unwrap_or_else(|e| panic!("{expiration}: {e}"));
    assert!(expiration.ends_with('Z') || expiration.contains('+'), "has a time zone: {expiration}");
    let lifetime = expiry.with_timezone(&Utc) - Utc::now();
    assert!((29..=30).contains(&lifetime.num_minutes()), "default lifetime is 30 minutes: {lifetime}");
    let subscriptions: Vec<Value> = output_values(&body, "subscription");
    let expected_values: Vec<Value> = expected.iter().map(|id| json!({"valueString": id})).collect();
    assert_eq!(subscriptions, expected_values);
    assert_eq!(output_values(&body, "websocket-url"), vec![json!({"valueUrl": TEST_WEBSOCKET_URL})]);
    let names: Vec<&str> =
        body["parameter"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names.first(), Some(&"token"));
    assert_eq!(names.last(), Some(&"websocket-url"));

    let verified = verify(&token, &app.config.keys, Utc::now(), &app.stores.tokens, &app.stores.subscriptions)
        .await
        .unwrap_or_else(|e| panic!("the issued token must verify: {e}"));
    assert_eq!(verified.claims.owner, owner);
    assert_eq!(verified.claims.subscription_ids, expected);
    let record = app.stores.tokens.get_token(&verified.claims.token_id).await.unwrap_or_else(|e| panic!("{e}"));
    let record = record.unwrap_or_else(|| panic!("token row written"));
    assert_eq!(record.expires_at, expiry.timestamp(), "TTL attribute = expiration, epoch seconds");
    assert_valid_r5(&[body]);
    token
}

async fn type_level_post_with_no_ids<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let mut usable = vec![
        app.create(&alice, &websocket_subscription(TOPIC)).await,
        app.create(&alice, &websocket_subscription(TOPIC)).await,
    ];
    let active = app.create(&alice, &websocket_subscription(TOPIC)).await;
    usable.push(active.clone());
    let off = app.create(&alice, &websocket_subscription(TOPIC)).await;
    app.set_status(&alice, &off, "off").await;
    app.create(&alice, &rest_hook_subscription(TOPIC)).await;
    app.create(&unique_principal("bob"), &websocket_subscription(TOPIC)).await;
    usable.sort();
    let expected: Vec<&str> = usable.iter().map(String::as_str).collect();

    let empty_parameters = json!({"resourceType": "Parameters"});
    let response = app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).json(&empty_parameters)).await;
    assert_token_for(&app, &response, &alice, &expected).await;
    // An empty body means the same as a Parameters resource with no ids.
    let response = app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&alice))).await;
    assert_token_for(&app, &response, &alice, &expected).await;
}
both_stores!(type_level_post_without_ids_covers_every_usable_websocket_subscription, type_level_post_with_no_ids);

async fn type_level_post_with_ids<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.create(&alice, &websocket_subscription(TOPIC)).await);
    }
    let one = [ids[2].as_str()];
    let response = app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).json(&ids_body(&one))).await;
    assert_token_for(&app, &response, &alice, &one).await;

    let three = [ids[3].as_str(), ids[0].as_str(), ids[1].as_str()];
    let response = app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).json(&ids_body(&three))).await;
    assert_token_for(&app, &response, &alice, &three).await;

    // A repeated id is bound once.
    let repeated = [ids[0].as_str(), ids[0].as_str()];
    let response = app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).json(&ids_body(&repeated))).await;
    assert_token_for(&app, &response, &alice, &[ids[0].as_str()]).await;
}
both_stores!(type_level_post_with_one_and_three_ids, type_level_post_with_ids);

async fn type_level_get<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let a = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let b = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let response = app.operation(HttpEvent::new("GET", &format!("{TYPE_LEVEL}?id={b}&id={a}"), Some(&alice))).await;
    assert_token_for(&app, &response, &alice, &[&b, &a]).await;
    let response = app.operation(HttpEvent::new("GET", TYPE_LEVEL, Some(&alice))).await;
    let mut both = [a.as_str(), b.as_str()];
    both.sort();
    assert_token_for(&app, &response, &alice, &both).await;
}
both_stores!(type_level_get_with_repeated_id_parameters, type_level_get);

async fn instance_level_calls<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let id = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let other = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let path = instance_level(&id);

    let response = app.operation(HttpEvent::new("POST", &path, Some(&alice))).await;
    assert_token_for(&app, &response, &alice, &[&id]).await;
    // At instance level the id parameter is ignored, as the definition says.
    let response = app.operation(HttpEvent::new("POST", &path, Some(&alice)).json(&ids_body(&[&other]))).await;
    assert_token_for(&app, &response, &alice, &[&id]).await;
    let response = app.operation(HttpEvent::new("GET", &path, Some(&alice))).await;
    assert_token_for(&app, &response, &alice, &[&id]).await;
    let response = app.operation(HttpEvent::new("GET", &format!("{path}?id={other}"), Some(&alice))).await;
    assert_token_for(&app, &response, &alice, &[&id]).await;
    // Clients that percent-encode the `$` reach the same operation.
    let encoded = format!("/Subscription/{id}/%24get-ws-binding-token");
    let response = app.operation(HttpEvent::new("GET", &encoded, Some(&alice))).await;
    assert_token_for(&app, &response, &alice, &[&id]).await;
}
both_stores!(instance_level_post_and_get, instance_level_calls);

async fn refusals<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let bob = unique_principal("bob");
    let ws = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let hook = app.create(&alice, &rest_hook_subscription(TOPIC)).await;
    let off = app.create(&alice, &websocket_subscription(TOPIC)).await;
    app.set_status(&alice, &off, "off").await;
    let errored = app.create(&alice, &websocket_subscription(TOPIC)).await;
    app.set_status(&alice, &errored, "entered-in-error").await;
    let bobs = app.create(&bob, &websocket_subscription(TOPIC)).await;
    let post = |ids: &[&str]| HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).json(&ids_body(ids));

    // Someone else's subscription answers exactly like a missing one.
    let foreign = assert_outcome(&app.operation(post(&[&bobs])).await, 404, "not-found");
    app.api(HttpEvent::new("DELETE", &format!("/Subscription/{bobs}"), Some(&bob))).await;
    let missing = assert_outcome(&app.operation(post(&[&bobs])).await, 404, "not-found");
    assert_eq!(foreign, missing, "same body for someone else's and a missing subscription");
    assert_outcome(&app.operation(HttpEvent::new("GET", &instance_level(&bobs), Some(&alice))).await, 404, "not-found");
    // One bad id fails the whole request.
    assert_outcome(&app.operation(post(&[&ws, &bobs])).await, 404, "not-found");

    assert_outcome(&app.operation(post(&[&hook])).await, 422, "business-rule");
    assert_outcome(
        &app.operation(HttpEvent::new("POST", &instance_level(&hook), Some(&alice))).await,
        422,
        "business-rule",
    );
    let body = assert_outcome(&app.operation(post(&[&off])).await, 422, "business-rule");
    assert!(body["issue"][0]["diagnostics"].as_str().unwrap_or_default().contains("off"), "{body}");
    assert_outcome(&app.operation(post(&[&errored])).await, 422, "business-rule");

    let raw =
        |content_type: &str, body: &str| HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).body(content_type, body);
    assert_outcome(&app.operation(raw("application/fhir+json", "{\"resourceType\": ")).await, 400, "structure");
    assert_outcome(&app.operation(raw("application/fhir+json", "[1, 2]")).await, 400, "invalid");
    assert_outcome(&app.operation(raw("application/fhir+json", r#"{"resourceType":"Patient"}"#)).await, 400, "invalid");
    let wrong_type = json!({"resourceType": "Parameters", "parameter": [{"name": "id", "valueString": ws}]});
    assert_outcome(&app.operation(raw("application/fhir+json", &wrong_type.to_string())).await, 400, "invalid");
    let unknown = json!({"resourceType": "Parameters", "parameter": [{"name": "lifetime", "valueInteger": 5}]});
    assert_outcome(&app.operation(raw("application/fhir+json", &unknown.to_string())).await, 400, "invalid");
    assert_outcome(&app.operation(post(&["not/an id"])).await, 400, "invalid");
    assert_outcome(
        &app.operation(HttpEvent::new("GET", &format!("{TYPE_LEVEL}?count=3"), Some(&alice))).await,
        400,
        "invalid",
    );
    // The same JSON under a type that is not FHIR JSON.
    assert_outcome(&app.operation(raw("text/plain", &ids_body(&[&ws]).to_string())).await, 415, "not-supported");
    assert_outcome(&app.operation(raw("application/xml", "<Parameters/>")).await, 415, "not-supported");
    let huge = format!("{{\"resourceType\":\"Parameters\",\"id\":\"{}\"}}", "x".repeat(64 * 1024));
    assert_outcome(&app.operation(raw("application/fhir+json", &huge)).await, 413, "too-costly");

    assert_outcome(
        &app.operation(HttpEvent::new("POST", TYPE_LEVEL, None).json(&ids_body(&[&ws]))).await,
        401,
        "login",
    );
    assert_outcome(&app.operation(HttpEvent::new("GET", &instance_level(&ws), None)).await, 401, "login");

    for method in ["PUT", "DELETE", "PATCH"] {
        let response = app.operation(HttpEvent::new(method, TYPE_LEVEL, Some(&alice))).await;
        assert_outcome(&response, 405, "not-supported");
        assert_eq!(header(&response, "allow").as_deref(), Some("GET, POST"));
        assert_outcome(
            &app.operation(HttpEvent::new(method, &instance_level(&ws), Some(&alice))).await,
            405,
            "not-supported",
        );
    }

    // No ids and nothing usable.
    let carol = unique_principal("carol");
    app.create(&carol, &rest_hook_subscription(TOPIC)).await;
    assert_outcome(&app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&carol))).await, 404, "not-found");

    // Every refusal body is a valid OperationOutcome.
    assert_valid_r5(&[foreign, body]);
}
both_stores!(every_refusal_has_its_status_and_an_operation_outcome, refusals);

async fn tokens_per_request_are_capped<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let ids: Vec<String> = (0..101).map(|n| format!("id-{n}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let response = app.operation(HttpEvent::new("POST", TYPE_LEVEL, Some(&alice)).json(&ids_body(&refs))).await;
    assert_outcome(&response, 413, "too-costly");
}
both_stores!(at_most_one_hundred_subscriptions_per_token, tokens_per_request_are_capped);

async fn tenant_claim_scopes_owners<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::with_config(stores, binding_token_config(TEST_SIGNING_KEYS, Some("tenant")));
    let alice = unique_principal("alice");
    let in_tenant =
        |tenant: &str, method: &str, path: &str| HttpEvent::new(method, path, Some(&alice)).claim("tenant", tenant);
    let created = app.api(in_tenant("north", "POST", "/Subscription").json(&websocket_subscription(TOPIC))).await;
    let (_, created) = status_and_json(&created);
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let path = instance_level(&id);
    assert_eq!(app.operation(in_tenant("north", "POST", &path)).await.status().as_u16(), 200);
    // The same `sub` in another tenant is another principal.
    assert_outcome(&app.operation(in_tenant("south", "POST", &path)).await, 404, "not-found");
    // A configured tenant claim that is missing means no identity.
    assert_outcome(&app.operation(HttpEvent::new("POST", &path, Some(&alice))).await, 401, "login");
}
both_stores!(tenant_claim_makes_owners_tenant_scoped, tenant_claim_scopes_owners);
