//! The `$connect`, `$default` and `$disconnect` handlers with API Gateway WebSocket
//! events, both back ends (moto_server for DynamoDB), and a real HTTP endpoint standing
//! in for the Management API (SigV4-signed posts from the real SDK client).

use chrono::{TimeDelta, Utc};
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore};
use fhir_ws_tests::websocket::{TEST_SUBPROTOCOLS, WsEvent, WsHarness, WsStores};
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, all_stores, assert_valid_r5, binding_token_config, status_and_json,
    unique_principal,
};
use serde_json::{Value, json};

/// A connection id as API Gateway makes them (base64, with `=` that must be URL-encoded).
fn connection_id() -> String {
    use base64::Engine as _;
    let random = uuid::Uuid::new_v4();
    base64::engine::general_purpose::STANDARD.encode(&random.as_bytes()[..10])
}

/// Checks a handshake frame: R5 shape, for `subscription`, status active, no events yet.
fn assert_handshake(frame: &Value, subscription: &str) {
    assert_eq!(frame["resourceType"], "Bundle", "{frame}");
    assert_eq!(frame["type"], "subscription-notification");
    let status = &frame["entry"][0]["resource"];
    assert_eq!(status["resourceType"], "SubscriptionStatus");
    assert_eq!(status["type"], "handshake");
    assert_eq!(status["status"], "active");
    assert_eq!(status["eventsSinceSubscriptionStart"], "0");
    assert_eq!(status["subscription"]["reference"], format!("Subscription/{subscription}"));
    assert_eq!(status["topic"], fhir_ws_tests::TOPIC);
    assert_eq!(frame["entry"].as_array().map(Vec::len), Some(1), "no resource entries in a handshake");
}

fn handshake_subjects(frames: &[Value]) -> Vec<String> {
    let mut subjects: Vec<String> = frames
        .iter()
        .filter(|f| f["entry"][0]["resource"]["type"] == "handshake")
        .filter_map(|f| f["entry"][0]["resource"]["subscription"]["reference"].as_str())
        .map(|r| r.trim_start_matches("Subscription/").to_owned())
        .collect();
    subjects.sort();
    subjects
}

async fn status_of<S: Backend, T: TokenBackend, B, C, E>(
    ws: &WsHarness<S, T, B, C, E>,
    owner: &str,
    id: &str,
) -> Value {
    let response = ws.app.api(HttpEvent::new("GET", &format!("/Subscription/{id}"), Some(owner))).await;
    status_and_json(&response).1["status"].clone()
}

async fn bind_in_both_dialects<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let forms: [fn(&str) -> String; 3] = [
        |t| format!("bind-with-token {t}"),
        |t| format!("  bind-with-token: {t}\n"),
        |t| json!({"type": "bind-with-token", "payload": {"token": t}}).to_string(),
    ];
    for form in forms {
        let owner = unique_principal("alice");
        let (mut ids, token) = ws.subscriptions_and_token(&owner, 2).await;
        assert_eq!(status_of(&ws, &owner, &ids[0]).await, "active", "websocket subscriptions start active");
        let connection = connection_id();
        assert_eq!(ws.connect(WsEvent::connect(&connection, None)).await.status_code, 200);
        assert_eq!(ws.send(&connection, &form(&token)).await.status_code, 200);

        let frames = ws.frames(&connection);
        assert_eq!(frames.len(), 2, "one handshake per subscription: {frames:?}");
        ids.sort();
        assert_eq!(handshake_subjects(&frames), ids);
        for frame in &frames {
            let id = frame["entry"][0]["resource"]["subscription"]["reference"].as_str().unwrap_or_default();
            assert_handshake(frame, id.trim_start_matches("Subscription/"));
        }
        assert_valid_r5(&frames);
        for id in &ids {
            assert_eq!(status_of(&ws, &owner, id).await, "active", "binding keeps them active");
        }
        let bindings = ws.bindings(&connection).await;
        assert_eq!(bindings.len(), 2);
        assert!(bindings.iter().all(|b| !b.handshake_pending && b.owner == owner));
        let claims = fhir_ws_core::token::decode(&token, &ws.app.config.keys, Utc::now()).unwrap();
        assert!(bindings.iter().all(|b| b.expires_at == claims.expires_at && b.token_id == claims.token_id));
    }
    // Every post was SigV4-signed and addressed by the decoded connection id.
    assert_eq!(ws.management.unsigned_requests(), 0);
    assert!(ws.management.posts().iter().all(|p| p.stage == "live" && p.connection_id.ends_with('=')));
}
all_stores!(bind_with_token_in_both_dialects_sends_one_handshake_per_subscription, bind_in_both_dialects);

async fn bind_at_connect<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (mut ids, token) = ws.subscriptions_and_token(&owner, 2).await;
    let connection = connection_id();
    let answer = ws.connect(WsEvent::connect(&connection, Some(&token))).await;
    assert_eq!(answer.status_code, 200);
    // API Gateway would not deliver a post before $connect returns: none was made.
    assert!(ws.frames(&connection).is_empty());
    let pending = ws.bindings(&connection).await;
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|b| b.handshake_pending));
    assert_eq!(status_of(&ws, &owner, &ids[0]).await, "active");

    // The first frame on the connection flushes the owed handshakes, then is answered.
    ws.send(&connection, "ping").await;
    let frames = ws.frames(&connection);
    assert_eq!(frames.len(), 3, "{frames:?}");
    ids.sort();
    assert_eq!(handshake_subjects(&frames[..2]), ids);
    assert_eq!(frames[2], json!("pong"));
    assert_valid_r5(&frames[..2]);
    assert!(ws.bindings(&connection).await.iter().all(|b| !b.handshake_pending));
    // Owed once, sent once.
    ws.send(&connection, "ping").await;
    assert_eq!(ws.frames(&connection).len(), 4);
}
all_stores!(query_string_bind_at_connect_gets_its_handshake_on_the_first_frame, bind_at_connect);

async fn refused_connects<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (ids, token) = ws.subscriptions_and_token(&owner, 1).await;

    // Forged: the right shape and key id, signed with another secret.
    let forger = fhir_ws_tests::App::with_config(
        ws.app.stores.clone(),
        binding_token_config("test-2026:forged-secret-0123456789abcdef0123", None),
    );
    let path = format!("/Subscription/{}/$get-ws-binding-token", ids[0]);
    let (_, forged) = status_and_json(&forger.operation(HttpEvent::new("POST", &path, Some(&owner))).await);
    let forged = forged["parameter"][0]["valueString"].as_str().unwrap().to_owned();
    let later = Utc::now() + TimeDelta::minutes(31);

    let revoked = ws.token(&owner, &ids).await;
    let claims = fhir_ws_core::token::decode(&revoked, &ws.app.config.keys, Utc::now()).unwrap();
    ws.app.stores.tokens.revoke_token(&claims.token_id).await.unwrap();

    let cases: Vec<(&str, String, chrono::DateTime<Utc>, i64)> = vec![
        ("forged", forged, Utc::now(), 401),
        ("expired", token.clone(), later, 401),
        ("revoked", revoked, Utc::now(), 401),
        ("garbage", "not-a-token".to_owned(), Utc::now(), 401),
    ];
    for (label, candidate, at, status) in cases {
        let connection = connection_id();
        let answer = ws.connect_at(WsEvent::connect(&connection, Some(&candidate)), at).await;
        assert_eq!(answer.status_code, status, "{label}");
        let body: Value = match answer.body {
            Some(aws_lambda_events::encodings::Body::Text(text)) => serde_json::from_str(&text).unwrap(),
            other => panic!("{label}: no OperationOutcome body: {other:?}"),
        };
        assert_eq!(body["issue"][0]["code"], "login", "{label}");
        assert!(ws.bindings(&connection).await.is_empty(), "{label}: nothing written");
    }
    // A genuine token whose subscription was switched off: 403.
    ws.app.set_status(&owner, &ids[0], "off").await;
    let connection = connection_id();
    let answer = ws.connect(WsEvent::connect(&connection, Some(&token))).await;
    assert_eq!(answer.status_code, 403);
    assert!(ws.bindings(&connection).await.is_empty());
    assert!(ws.management.posts().is_empty(), "no post for refused connections");
}
all_stores!(connect_refuses_forged_expired_revoked_and_unusable_tokens, refused_connects);

async fn subprotocols<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let offered = format!("chat, {TEST_SUBPROTOCOLS}");
    let answer = ws.connect(WsEvent::connect(&connection_id(), None).header("Sec-WebSocket-Protocol", &offered)).await;
    assert_eq!(answer.status_code, 200);
    assert_eq!(answer.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some(TEST_SUBPROTOCOLS));
    let answer = ws.connect(WsEvent::connect(&connection_id(), None).header("Sec-WebSocket-Protocol", "chat")).await;
    assert_eq!(answer.status_code, 200);
    assert!(answer.headers.get("sec-websocket-protocol").is_none(), "only accepted protocols are echoed");
}
all_stores!(connect_echoes_an_accepted_subprotocol, subprotocols);

async fn rebinding<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (first, token_a) = ws.subscriptions_and_token(&owner, 1).await;
    let (second, token_b) = ws.subscriptions_and_token(&owner, 1).await;
    let connection = connection_id();
    ws.send(&connection, &format!("bind-with-token {token_a}")).await;
    ws.send(&connection, &format!("bind-with-token {token_b}")).await;
    assert_eq!(ws.bindings(&connection).await.len(), 2, "a second bind adds subscriptions");
    assert_eq!(ws.frames(&connection).len(), 2);

    // A fresh token for the first subscription, issued later, extends its binding.
    let fresh = ws.token_at(&owner, &first, Utc::now() + TimeDelta::minutes(10)).await;
    ws.send(&connection, &format!("bind-with-token {fresh}")).await;
    let fresh_claims = fhir_ws_core::token::decode(&fresh, &ws.app.config.keys, Utc::now()).unwrap();
    let rows = ws.bindings(&connection).await;
    let renewed = rows.iter().find(|b| b.subscription_id == first[0]).unwrap();
    assert_eq!(
        (renewed.expires_at, renewed.token_id.as_str()),
        (fresh_claims.expires_at, fresh_claims.token_id.as_str())
    );
    assert_eq!(rows.iter().find(|b| b.subscription_id == second[0]).map(|b| b.token_id.clone()), {
        let claims = fhir_ws_core::token::decode(&token_b, &ws.app.config.keys, Utc::now()).unwrap();
        Some(claims.token_id)
    });
    assert_eq!(handshake_subjects(&ws.frames(&connection)[2..]), first, "a rebind shakes hands again");
}
all_stores!(second_binds_add_and_fresh_tokens_extend, rebinding);

async fn unbinding<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (_, token_a) = ws.subscriptions_and_token(&owner, 2).await;
    let (kept, token_b) = ws.subscriptions_and_token(&owner, 1).await;
    let connection = connection_id();
    let other = connection_id();
    ws.send(&connection, &format!("bind-with-token {token_a}")).await;
    ws.send(&connection, &format!("bind-with-token {token_b}")).await;
    ws.send(&other, &format!("bind-with-token {token_a}")).await;
    assert_eq!(ws.bindings(&connection).await.len(), 3);

    ws.send(&connection, &format!("unbind-with-token {token_a}")).await;
    let left: Vec<String> = ws.bindings(&connection).await.into_iter().map(|b| b.subscription_id).collect();
    assert_eq!(left, kept, "exactly that token's bindings go");
    assert_eq!(ws.bindings(&other).await.len(), 2, "and only on this connection");
    let reply = ws.frames(&connection).last().cloned().unwrap();
    assert_eq!(reply["resourceType"], "OperationOutcome");
    assert_eq!(reply["issue"][0]["severity"], "information");

    let envelope = json!({"type": "unbind-from-token", "payload": {"token": token_b}}).to_string();
    ws.send(&connection, &envelope).await;
    assert!(ws.bindings(&connection).await.is_empty());
}
all_stores!(unbind_removes_exactly_that_tokens_bindings, unbinding);

async fn ping_pong<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let connection = connection_id();
    ws.send(&connection, "ping").await;
    ws.send(&connection, r#"{"type":"ping"}"#).await;
    assert_eq!(ws.frames(&connection), vec![json!("pong"), json!({"type": "pong"})]);
}
all_stores!(ping_is_answered_pong_in_both_dialects, ping_pong);

async fn garbage<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (ids, token) = ws.subscriptions_and_token(&owner, 1).await;
    let connection = connection_id();
    ws.send(&connection, &format!("bind-with-token {token}")).await;
    let (_, other_token) = ws.subscriptions_and_token(&owner, 1).await;
    let before = ws.bindings(&connection).await;
    let status_before = status_of(&ws, &owner, &ids[0]).await;
    let frames_before = ws.frames(&connection).len();

    let one_megabyte = format!("bind-with-token {}", "A".repeat(1024 * 1024));
    // The genuine token with its last character changed (to one it did not have).
    let last = if other_token.ends_with('A') { "B" } else { "A" };
    let tampered = format!("bind-with-token {}{last}", &other_token[..other_token.len() - 1]);
    let cases: Vec<(&str, WsEvent, &str)> = vec![
        ("empty", WsEvent::message(&connection, ""), "required"),
        ("whitespace", WsEvent::message(&connection, " \n\t "), "required"),
        ("1 MB", WsEvent::message(&connection, &one_megabyte), "too-costly"),
        ("invalid UTF-8", WsEvent::binary(&connection, &[0x62, 0xff, 0xfe, 0x00]), "structure"),
        ("invalid JSON", WsEvent::message(&connection, "{\"type\": "), "structure"),
        ("unknown JSON type", WsEvent::message(&connection, r#"{"type":"subscribe","payload":{}}"#), "not-supported"),
        ("unknown command", WsEvent::message(&connection, "hello"), "not-supported"),
        ("bind without token", WsEvent::message(&connection, "bind-with-token"), "required"),
        ("bad token", WsEvent::message(&connection, "bind-with-token fws1.x.y.z"), "login"),
        ("tampered token", WsEvent::message(&connection, &tampered), "login"),
        ("unbind with a bad token", WsEvent::message(&connection, "unbind-with-token nope"), "login"),
    ];
    let count = cases.len();
    for (label, event, code) in cases {
        assert_eq!(ws.send_event(event).await.status_code, 200, "{label}");
        let reply = ws.frames(&connection).last().cloned().unwrap();
        assert_eq!(reply["resourceType"], "OperationOutcome", "{label}: {reply}");
        assert_eq!(reply["issue"][0]["code"], code, "{label}: {reply}");
        assert_eq!(reply["issue"][0]["severity"], "error", "{label}");
    }
    assert_eq!(ws.frames(&connection).len(), frames_before + count, "one OperationOutcome each, nothing else");
    assert_eq!(ws.bindings(&connection).await, before, "no state change");
    assert_eq!(status_of(&ws, &owner, &ids[0]).await, status_before);
    let outcomes: Vec<Value> = ws.frames(&connection)[frames_before..].to_vec();
    assert_valid_r5(&outcomes);
    // The connection still works.
    ws.send(&connection, "ping").await;
    assert_eq!(ws.frames(&connection).last(), Some(&json!("pong")));
}
all_stores!(garbage_frames_get_an_operation_outcome_and_change_nothing, garbage);

async fn disconnects<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (_, token) = ws.subscriptions_and_token(&owner, 2).await;
    let (leaving, staying) = (connection_id(), connection_id());
    ws.send(&leaving, &format!("bind-with-token {token}")).await;
    ws.send(&staying, &format!("bind-with-token {token}")).await;
    assert_eq!(ws.disconnect(&leaving).await.status_code, 200);
    assert!(ws.bindings(&leaving).await.is_empty());
    assert_eq!(ws.bindings(&staying).await.len(), 2);
    assert_eq!(ws.disconnect(&leaving).await.status_code, 200, "disconnect twice is harmless");
}
all_stores!(disconnect_deletes_the_connections_bindings, disconnects);

async fn gone<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = unique_principal("alice");
    let (_, token) = ws.subscriptions_and_token(&owner, 2).await;
    let (vanished, alive) = (connection_id(), connection_id());
    ws.send(&vanished, &format!("bind-with-token {token}")).await;
    ws.send(&alive, &format!("bind-with-token {token}")).await;
    // The client went away without a $disconnect reaching us.
    ws.management.mark_gone(&vanished);
    ws.send(&vanished, "ping").await;
    assert!(ws.bindings(&vanished).await.is_empty(), "a 410 removes that connection's bindings");
    assert_eq!(ws.bindings(&alive).await.len(), 2);
    // Same when the 410 answers a handshake.
    let late = connection_id();
    ws.connect(WsEvent::connect(&late, Some(&token))).await;
    ws.management.mark_gone(&late);
    ws.send(&late, "ping").await;
    assert!(ws.bindings(&late).await.is_empty());
}
all_stores!(gone_from_the_management_api_removes_the_bindings, gone);
