//! Revocation: `$revoke-ws-binding-token`, and subscriptions deleted or switched off,
//! take bindings away; the connections are told why in a last `OperationOutcome` frame
//! and closed (Management API `DELETE @connections`) when nothing is left on them.
//! Through the real handlers, on both stores, against the Management API stub.

use chrono::{TimeDelta, Utc};
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore, StoreError, TokenRecord, TokenStore};
use fhir_ws_core::ws::{Binder, Connection};
use fhir_ws_tests::websocket::{WsEvent, WsHarness, WsStores};
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, all_stores, assert_outcome, output_values, status_and_json,
    unique_principal,
};
use serde_json::{Value, json};

fn revoke_request(owner: &str, token: &str) -> HttpEvent {
    let body = json!({"resourceType": "Parameters", "parameter": [{"name": "token", "valueString": token}]});
    HttpEvent::new("POST", "/Subscription/$revoke-ws-binding-token", Some(owner)).json(&body)
}

/// `(revoked, bindings-removed, connections-closed)` of a successful answer.
fn revocation_counts(body: &Value) -> (bool, i64, i64) {
    let value = |name: &str, key: &str| output_values(body, name).first().map(|v| v[key].clone()).unwrap_or_default();
    (
        value("revoked", "valueBoolean").as_bool().unwrap_or_default(),
        value("bindings-removed", "valueInteger").as_i64().unwrap_or(-1),
        value("connections-closed", "valueInteger").as_i64().unwrap_or(-1),
    )
}

fn last_frame(ws_frames: &[Value]) -> Value {
    ws_frames.last().cloned().unwrap_or_default()
}

async fn revoked_tokens<
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
    let (ids, token) = ws.subscriptions_and_token(&owner, 2).await;
    let alone = ws.bound_connection(&token).await;
    // A second connection bound with this token and, for the other subscription, with a
    // second token: it keeps what the second token bound.
    let shared = ws.bound_connection(&token).await;
    let other_token = ws.token(&owner, &ids[1..]).await;
    ws.send(&shared, &format!("bind-with-token {other_token}")).await;
    assert_eq!(ws.bindings(&alone).await.len(), 2);

    // Only the owner may revoke; a string that is not a token of ours is refused.
    let mallory = unique_principal("mallory");
    assert_outcome(&ws.app.operation(revoke_request(&mallory, &token)).await, 403, "forbidden");
    assert_outcome(&ws.app.operation(revoke_request(&owner, "not-a-token")).await, 400, "invalid");
    let get = HttpEvent::new("GET", "/Subscription/$revoke-ws-binding-token", Some(&owner));
    assert_outcome(&ws.app.operation(get).await, 405, "not-supported");
    assert_eq!(ws.bindings(&alone).await.len(), 2, "refusals change nothing");

    let (status, body) = status_and_json(&ws.app.operation(revoke_request(&owner, &token)).await);
    assert_eq!(status, 200, "{body}");
    fhir_ws_tests::assert_valid_r5(std::slice::from_ref(&body));
    // `alone` loses both bindings and is closed; `shared` loses the one of `ids[0]` (the
    // one of `ids[1]` was rebound by the other token) and stays open.
    assert_eq!(revocation_counts(&body), (true, 3, 1));
    assert!(ws.bindings(&alone).await.is_empty());
    let left: Vec<String> = ws.bindings(&shared).await.into_iter().map(|b| b.subscription_id).collect();
    assert_eq!(left, [ids[1].clone()]);
    assert_eq!(ws.management.closed(), std::slice::from_ref(&alone));
    let last = last_frame(&ws.frames(&alone));
    assert_eq!((&last["resourceType"], &last["issue"][0]["severity"]), (&json!("OperationOutcome"), &json!("error")));
    assert_eq!(last["issue"][0]["code"], "security", "{last}");
    fhir_ws_tests::assert_valid_r5(std::slice::from_ref(&last));
    let warned = last_frame(&ws.frames(&shared));
    assert_eq!((&warned["issue"][0]["severity"], &warned["issue"][0]["code"]), (&json!("warning"), &json!("security")));

    // Never again: not at $connect, not by a frame.
    let connection = format!("{}=", &uuid::Uuid::new_v4().simple().to_string()[..15]);
    let answer = ws.connect(WsEvent::connect(&connection, Some(&token))).await;
    assert_eq!(answer.status_code, 401);
    ws.send(&connection, &format!("bind-with-token {token}")).await;
    assert!(ws.bindings(&connection).await.is_empty());
    assert_eq!(last_frame(&ws.frames(&connection))["issue"][0]["code"], "login");

    // Revoking again is harmless; an expired token has nothing left to revoke.
    let (status, again) = status_and_json(&ws.app.operation(revoke_request(&owner, &token)).await);
    assert_eq!((status, revocation_counts(&again)), (200, (true, 0, 0)));
    let expired = ws.token_at(&owner, &ids[..1], Utc::now() - TimeDelta::hours(2)).await;
    let (status, answer) = status_and_json(&ws.app.operation(revoke_request(&owner, &expired)).await);
    assert_eq!((status, revocation_counts(&answer)), (200, (false, 0, 0)));
}
all_stores!(a_revoked_token_never_binds_again_and_its_connections_are_told_and_closed, revoked_tokens);

async fn ended_subscriptions<
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
    let owner = unique_principal("bob");
    let subscription = fhir_ws_tests::websocket_subscription(fhir_ws_tests::TOPIC);
    for (how, code) in [("DELETE", "deleted"), ("off", "business-rule"), ("entered-in-error", "business-rule")] {
        let (id, connection) = ws.subscribe(&owner, &subscription).await;
        // A connection that carries this subscription and another one keeps the other.
        let (other, _) = ws.subscribe(&owner, &subscription).await;
        let token = ws.token(&owner, &[id.clone(), other.clone()]).await;
        let shared = ws.bound_connection(&token).await;
        assert_eq!(ws.bindings(&shared).await.len(), 2, "{how}");
        if how == "DELETE" {
            let response = ws.app.api(HttpEvent::new("DELETE", &format!("/Subscription/{id}"), Some(&owner))).await;
            assert_eq!(response.status().as_u16(), 204);
        } else {
            ws.app.set_status(&owner, &id, how).await;
        }
        assert!(ws.bindings(&connection).await.is_empty(), "{how}");
        assert!(ws.management.closed().contains(&connection), "{how}: closed");
        let last = last_frame(&ws.frames(&connection));
        assert_eq!(
            (&last["issue"][0]["severity"], &last["issue"][0]["code"]),
            (&json!("error"), &json!(code)),
            "{how}"
        );
        assert!(last["issue"][0]["diagnostics"].as_str().unwrap_or_default().contains(&id), "{how}: {last}");
        let left: Vec<String> = ws.bindings(&shared).await.into_iter().map(|b| b.subscription_id).collect();
        assert_eq!(left, std::slice::from_ref(&other), "{how}");
        assert!(!ws.management.closed().contains(&shared), "{how}: the shared connection stays open");
        assert_eq!(last_frame(&ws.frames(&shared))["issue"][0]["severity"], "warning", "{how}");
    }
    // Other updates leave bindings alone.
    let (id, connection) = ws.subscribe(&owner, &subscription).await;
    let path = format!("/Subscription/{id}");
    let (_, mut resource) = status_and_json(&ws.app.api(HttpEvent::new("GET", &path, Some(&owner))).await);
    resource["heartbeatPeriod"] = json!(120);
    assert_eq!(ws.app.api(HttpEvent::new("PUT", &path, Some(&owner)).json(&resource)).await.status().as_u16(), 200);
    assert_eq!(ws.bindings(&connection).await.len(), 1);
}
all_stores!(deleted_and_switched_off_subscriptions_lose_their_connections, ended_subscriptions);

/// A token store that reports the token revoked from its second read on: a revocation
/// landing between the binder's verification and its bindings being written.
#[derive(Clone)]
struct RevokedWhileBinding<T> {
    inner: T,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<T: TokenStore> TokenStore for RevokedWhileBinding<T> {
    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.inner.put_token(record).await
    }

    async fn get_token(&self, token_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let read = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if read == 1 {
            self.inner.revoke_token(token_id).await?;
        }
        self.inner.get_token(token_id).await
    }

    async fn revoke_token(&self, token_id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_token(token_id).await
    }
}

async fn racing_bind<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores.clone(), ws_stores.clone()).await;
    let owner = unique_principal("carol");
    let (_, token) = ws.subscriptions_and_token(&owner, 1).await;
    let racing = RevokedWhileBinding { inner: stores.tokens.clone(), reads: Default::default() };
    let binder =
        Binder::new(stores.subscriptions.clone(), racing, ws_stores.bindings.clone(), ws.app.config.keys.clone());
    let connection = Connection { id: "racing-connection=".to_owned(), callback_url: ws.management.endpoint("live") };
    let answer = binder.bind(&token, &connection, Utc::now()).await;
    assert!(matches!(answer, Err(fhir_ws_core::token::verify::TokenRejection::Revoked)), "{answer:?}");
    assert!(ws_stores.bindings.bindings_of_connection(&connection.id).await.unwrap().is_empty(), "nothing left bound");
}
all_stores!(a_bind_racing_a_revocation_leaves_nothing_bound, racing_bind);
