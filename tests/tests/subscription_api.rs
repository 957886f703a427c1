//! The Subscription REST API through the Lambda handler entry point, with API Gateway
//! HTTP API (payload 2.0) events, on both back ends.

use fhir_ws_tests::{
    App, Backend, HttpEvent, Stores, TokenBackend, assert_outcome, assert_valid_r5, both_stores, header,
    rest_hook_subscription, status_and_json, unique_principal, websocket_subscription,
};
use serde_json::json;

const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/encounter-start";
const BASE: &str = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com";

async fn create_read_update_delete<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let mut sent = websocket_subscription(TOPIC);
    sent["status"] = json!("off"); // the server decides: new websocket subscriptions are active at once
    sent["id"] = json!("client-chosen"); // the server assigns ids
    sent["name"] = json!("ward 4 encounters");
    sent["_topic"] = json!({"extension": [{"url": "http://example.org/note", "valueString": "kept"}]});

    let response = app.api(HttpEvent::new("POST", "/Subscription", Some(&alice)).json(&sent)).await;
    let (status, created) = status_and_json(&response);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(id, "client-chosen");
    assert_eq!(header(&response, "location"), Some(format!("{BASE}/Subscription/{id}/_history/1")));
    assert_eq!(header(&response, "etag").as_deref(), Some("W/\"1\""));
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(created["status"], "active", "the spec's websocket flow: active on creation");
    assert_eq!(created["name"], "ward 4 encounters");
    assert_eq!(created["_topic"], sent["_topic"], "unknown elements survive");

    let path = format!("/Subscription/{id}");
    let (status, read) = status_and_json(&app.api(HttpEvent::new("GET", &path, Some(&alice))).await);
    assert_eq!((status, &read), (200, &created));

    let mut changed = read.clone();
    changed["status"] = json!("off");
    changed["heartbeatPeriod"] = json!(120);
    let response = app.api(HttpEvent::new("PUT", &path, Some(&alice)).json(&changed)).await;
    let (status, updated) = status_and_json(&response);
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["status"], "off");
    assert_eq!(updated["heartbeatPeriod"], 120);
    assert_eq!(updated["_topic"], sent["_topic"]);
    assert_eq!(header(&response, "etag").as_deref(), Some("W/\"2\""));

    // Optimistic locking with If-Match.
    let stale = HttpEvent::new("PUT", &path, Some(&alice)).json(&changed).header("if-match", "W/\"1\"");
    assert_outcome(&app.api(stale).await, 412, "conflict");
    let fresh = HttpEvent::new("PUT", &path, Some(&alice)).json(&changed).header("if-match", "W/\"2\"");
    assert_eq!(app.api(fresh).await.status().as_u16(), 200);

    assert_valid_r5(&[created, updated]);

    let response = app.api(HttpEvent::new("DELETE", &path, Some(&alice))).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_outcome(&app.api(HttpEvent::new("GET", &path, Some(&alice))).await, 404, "not-found");
    assert_outcome(&app.api(HttpEvent::new("DELETE", &path, Some(&alice))).await, 404, "not-found");
}
both_stores!(create_read_update_delete_keep_unknown_elements, create_read_update_delete);

async fn owners_only<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let bob = unique_principal("bob");
    let id = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let path = format!("/Subscription/{id}");
    let mut resource = websocket_subscription(TOPIC);
    resource["id"] = json!(id);
    let as_bob = [
        app.api(HttpEvent::new("GET", &path, Some(&bob))).await,
        app.api(HttpEvent::new("PUT", &path, Some(&bob)).json(&resource)).await,
        app.api(HttpEvent::new("DELETE", &path, Some(&bob))).await,
    ];
    let missing =
        assert_outcome(&app.api(HttpEvent::new("GET", "/Subscription/no-such-id", Some(&bob))).await, 404, "not-found");
    for response in &as_bob {
        let body = assert_outcome(response, 404, "not-found");
        assert_eq!(body["issue"][0]["diagnostics"], format!("Subscription/{id} is not known"));
        assert_eq!(missing["issue"][0]["diagnostics"], "Subscription/no-such-id is not known");
    }
    assert_eq!(app.api(HttpEvent::new("GET", &path, Some(&alice))).await.status().as_u16(), 200, "still there");
    assert_outcome(&app.api(HttpEvent::new("GET", &path, None)).await, 401, "login");
    assert_outcome(&app.api(HttpEvent::new("GET", "/Subscription", None)).await, 401, "login");
}
both_stores!(other_principals_get_404_like_a_missing_subscription, owners_only);

async fn search<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let a = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let b = app.create(&alice, &rest_hook_subscription(TOPIC)).await;
    let c = app.create(&alice, &websocket_subscription(TOPIC)).await;
    app.set_status(&alice, &c, "off").await;
    app.create(&unique_principal("bob"), &websocket_subscription(TOPIC)).await;

    let (status, all) = status_and_json(&app.api(HttpEvent::new("GET", "/Subscription", Some(&alice))).await);
    assert_eq!(status, 200);
    assert_eq!(all["type"], "searchset");
    assert_eq!(all["total"], 3);
    let mut expected = vec![a.clone(), b.clone(), c.clone()];
    expected.sort();
    let ids: Vec<&str> =
        all["entry"].as_array().into_iter().flatten().filter_map(|e| e["resource"]["id"].as_str()).collect();
    assert_eq!(ids, expected);
    assert_eq!(all["entry"][0]["fullUrl"], format!("{BASE}/Subscription/{}", expected[0]));
    assert_eq!(all["entry"][0]["search"]["mode"], "match");

    // Websocket subscriptions are active from creation; the rest-hook one (stored, not
    // delivered by this server) stays requested.
    let (_, requested) =
        status_and_json(&app.api(HttpEvent::new("GET", "/Subscription?status=requested", Some(&alice))).await);
    assert_eq!(requested["total"], 1);
    assert_eq!(requested["entry"][0]["resource"]["id"], b.as_str());
    let (_, either) =
        status_and_json(&app.api(HttpEvent::new("GET", "/Subscription?status=off,error", Some(&alice))).await);
    assert_eq!(either["total"], 1);
    assert_eq!(either["entry"][0]["resource"]["id"], c.as_str());
    assert_eq!(either["link"][0]["url"], format!("{BASE}/Subscription?status=off,error"));
    let (_, active) =
        status_and_json(&app.api(HttpEvent::new("GET", "/Subscription?status=active", Some(&alice))).await);
    assert_eq!(active["entry"][0]["resource"]["id"], a.as_str());
    // Set back to requested ("start again"), a websocket subscription is active at once.
    let path = format!("/Subscription/{c}");
    let (_, mut resource) = status_and_json(&app.api(HttpEvent::new("GET", &path, Some(&alice))).await);
    resource["status"] = json!("requested");
    let (_, restarted) = status_and_json(&app.api(HttpEvent::new("PUT", &path, Some(&alice)).json(&resource)).await);
    assert_eq!(restarted["status"], "active");
    assert_outcome(&app.api(HttpEvent::new("GET", "/Subscription?status=paused", Some(&alice))).await, 400, "invalid");
    let (_, none) =
        status_and_json(&app.api(HttpEvent::new("GET", "/Subscription", Some(&unique_principal("carol")))).await);
    assert_eq!(none["total"], 0);
    assert_valid_r5(&[all, none]);
}
both_stores!(search_lists_own_subscriptions_by_status, search);

async fn validation<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let post = |body: serde_json::Value| HttpEvent::new("POST", "/Subscription", Some(&alice)).json(&body);
    let without = |element: &str| {
        let mut resource = websocket_subscription(TOPIC);
        resource.as_object_mut().map(|o| o.remove(element));
        resource
    };
    assert_outcome(&app.api(post(without("topic"))).await, 400, "invalid");
    assert_outcome(&app.api(post(without("channelType"))).await, 400, "invalid");
    let mut bad_channel = websocket_subscription(TOPIC);
    bad_channel["channelType"]["code"] = json!("pigeon");
    assert_outcome(&app.api(post(bad_channel)).await, 400, "invalid");
    let mut wrong_type = websocket_subscription(TOPIC);
    wrong_type["resourceType"] = json!("Patient");
    assert_outcome(&app.api(post(wrong_type)).await, 400, "invalid");
    let mut bad_status = websocket_subscription(TOPIC);
    bad_status["status"] = json!("paused");
    assert_outcome(&app.api(post(bad_status)).await, 400, "invalid");
    let mut bad_number = websocket_subscription(TOPIC);
    bad_number["heartbeatPeriod"] = json!("often");
    assert_outcome(&app.api(post(bad_number)).await, 400, "invalid");
    let raw =
        |content_type: &str, body: &str| HttpEvent::new("POST", "/Subscription", Some(&alice)).body(content_type, body);
    assert_outcome(&app.api(raw("application/fhir+json", "{not json")).await, 400, "structure");
    assert_outcome(&app.api(HttpEvent::new("POST", "/Subscription", Some(&alice))).await, 400, "invalid");
    assert_outcome(&app.api(raw("text/plain", &websocket_subscription(TOPIC).to_string())).await, 415, "not-supported");
    let huge = format!("{{\"resourceType\":\"Subscription\",\"name\":\"{}\"}}", "x".repeat(70_000));
    assert_outcome(&app.api(raw("application/fhir+json", &huge)).await, 413, "too-costly");
    let response = app.api(HttpEvent::new("PATCH", "/Subscription", Some(&alice))).await;
    assert_outcome(&response, 405, "not-supported");
    assert_eq!(header(&response, "allow").as_deref(), Some("GET, POST"));
    assert_outcome(&app.api(HttpEvent::new("POST", "/Subscription/x", Some(&alice))).await, 405, "not-supported");
    assert_outcome(&app.api(HttpEvent::new("GET", "/Subscription/x/_history/1", Some(&alice))).await, 404, "not-found");
    assert_outcome(&app.api(HttpEvent::new("GET", "/Patient/1", Some(&alice))).await, 404, "not-found");

    // Updates: ids must match, and active/error are the server's to set.
    let id = app.create(&alice, &websocket_subscription(TOPIC)).await;
    let path = format!("/Subscription/{id}");
    let put = |body: serde_json::Value| HttpEvent::new("PUT", &path, Some(&alice)).json(&body);
    let mut other_id = websocket_subscription(TOPIC);
    other_id["id"] = json!("someone-else");
    assert_outcome(&app.api(put(other_id)).await, 400, "invalid");
    assert_outcome(&app.api(put(websocket_subscription(TOPIC))).await, 400, "invalid");
    let mut error = websocket_subscription(TOPIC);
    error["id"] = json!(id);
    error["status"] = json!("error");
    assert_outcome(&app.api(put(error)).await, 422, "business-rule");
    let mut bad_end = websocket_subscription(TOPIC);
    bad_end["end"] = json!("next tuesday");
    assert_outcome(&app.api(post(bad_end)).await, 400, "invalid");
    let mut current = websocket_subscription(TOPIC);
    current["id"] = json!(id);
    let stale = HttpEvent::new("PUT", &path, Some(&alice)).json(&current).header("if-match", "nonsense");
    let refused = assert_outcome(&app.api(stale).await, 400, "invalid");
    assert!(refused["issue"][0]["diagnostics"].as_str().is_some_and(|d| d.contains("If-Match")), "{refused}");
    // FHIR JSON never has empty objects (or nulls, or empty strings and arrays).
    assert_outcome(&app.api(put(json!({}))).await, 400, "structure");
    let mut null_reason = current.clone();
    null_reason["reason"] = json!(null);
    assert_outcome(&app.api(put(null_reason)).await, 400, "structure");
}
both_stores!(bad_input_is_refused_with_an_operation_outcome, validation);

/// API Gateway base64-encodes bodies it considers binary; they must read the same.
async fn base64_bodies<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    use base64::Engine as _;
    let app = App::new(stores);
    let alice = unique_principal("alice");
    let body = websocket_subscription(TOPIC).to_string();
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let event = HttpEvent::new("POST", "/Subscription", Some(&alice)).body("application/fhir+json", &encoded).base64();
    assert_eq!(app.api(event).await.status().as_u16(), 201);
    let invalid_utf8 = base64::engine::general_purpose::STANDARD.encode([0x7b, 0xff, 0xfe, 0x7d]);
    let event =
        HttpEvent::new("POST", "/Subscription", Some(&alice)).body("application/fhir+json", &invalid_utf8).base64();
    assert_outcome(&app.api(event).await, 400, "structure");
}
both_stores!(base64_encoded_bodies_are_decoded, base64_bodies);
