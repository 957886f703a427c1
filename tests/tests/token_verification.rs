//! `fhir_ws_core::token::verify`, the check the WebSocket functions run on every bind,
//! on tokens issued through the operation's handler, on both back ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{TimeDelta, Utc};
use fhir_ws_core::access::Unbindable;
use fhir_ws_core::store::{StoreError, StoredSubscription, SubscriptionStore, TokenRecord, TokenStore};
use fhir_ws_core::token::verify::{TokenRejection, verify};
use fhir_ws_core::token::{DecodeError, KeyRing, TokenClaims, sign};
use fhir_ws_tests::{
    App, Backend, HttpEvent, Stores, TEST_SIGNING_KEYS, TokenBackend, binding_token_config, both_stores, output_values,
    status_and_json, unique_principal, websocket_subscription,
};

const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/encounter-start";

/// Issues a token through the operation handler for one new subscription of a new owner.
async fn issue<S: Backend, T: TokenBackend>(app: &App<S, T>) -> (String, String, String) {
    let owner = unique_principal("alice");
    let id = app.create(&owner, &websocket_subscription(TOPIC)).await;
    let path = format!("/Subscription/{id}/$get-ws-binding-token");
    let (status, body) = status_and_json(&app.operation(HttpEvent::new("POST", &path, Some(&owner))).await);
    assert_eq!(status, 200, "{body}");
    let token = output_values(&body, "token")[0]["valueString"].as_str().unwrap_or_default().to_owned();
    (owner, id, token)
}

async fn check<S: Backend, T: TokenBackend>(
    app: &App<S, T>,
    token: &str,
    keys: &KeyRing,
) -> Result<(), TokenRejection> {
    verify(token, keys, Utc::now(), &app.stores.tokens, &app.stores.subscriptions).await.map(|_| ())
}

async fn every_changed_character<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let (_, _, token) = issue(&app).await;
    assert_eq!(check(&app, &token, &app.config.keys).await, Ok(()));
    for (index, original) in token.char_indices() {
        // One replacement per position, cycling through the token alphabet.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
        let replacement = alphabet.chars().cycle().skip(index % alphabet.len()).find(|c| *c != original).unwrap_or('A');
        let mut tampered = token.clone();
        tampered.replace_range(index..index + 1, &replacement.to_string());
        let result = check(&app, &tampered, &app.config.keys).await;
        assert!(matches!(result, Err(TokenRejection::Invalid(_))), "position {index}: {result:?}");
    }
}
both_stores!(a_token_with_any_single_character_changed_fails, every_changed_character);

async fn expired_with_row<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let (_, _, token) = issue(&app).await;
    let later = Utc::now() + TimeDelta::minutes(31);
    let result = verify(&token, &app.config.keys, later, &app.stores.tokens, &app.stores.subscriptions).await;
    assert_eq!(result.err(), Some(TokenRejection::Invalid(DecodeError::Expired)));
}
both_stores!(an_expired_token_whose_row_still_exists_fails, expired_with_row);

async fn retired_key<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let rotated_out = "old-2025:old-secret-0123456789abcdef0123456789";
    let app = App::with_config(stores, binding_token_config(rotated_out, None));
    let (_, _, token) = issue(&app).await;
    // During rotation both keys verify; once the old key is dropped its tokens fail.
    let during = KeyRing::parse(&format!("{TEST_SIGNING_KEYS},{rotated_out}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check(&app, &token, &during).await, Ok(()));
    let after = KeyRing::parse(TEST_SIGNING_KEYS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check(&app, &token, &after).await, Err(TokenRejection::Invalid(DecodeError::BadSignature)));
}
both_stores!(a_token_signed_with_a_retired_key_fails, retired_key);

async fn deleted_subscription<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let (owner, id, token) = issue(&app).await;
    let response = app.api(HttpEvent::new("DELETE", &format!("/Subscription/{id}"), Some(&owner))).await;
    assert_eq!(response.status().as_u16(), 204);
    let result = check(&app, &token, &app.config.keys).await;
    assert_eq!(result, Err(TokenRejection::Unbindable(Unbindable::NotFound(id))));
    assert!(!result.err().is_some_and(|r| r.is_bad_token()), "the token itself was fine: 403, not 401");
}
both_stores!(a_token_whose_subscription_was_deleted_fails, deleted_subscription);

async fn switched_off<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let (owner, id, token) = issue(&app).await;
    app.set_status(&owner, &id, "off").await;
    assert_eq!(
        check(&app, &token, &app.config.keys).await,
        Err(TokenRejection::Unbindable(Unbindable::Inactive(id, "off")))
    );
}
both_stores!(a_token_whose_subscription_was_switched_off_fails, switched_off);

async fn revoked<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let (_, _, token) = issue(&app).await;
    let claims = fhir_ws_core::token::decode(&token, &app.config.keys, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.stores.tokens.revoke_token(&claims.token_id).await, Ok(true));
    assert_eq!(check(&app, &token, &app.config.keys).await, Err(TokenRejection::Revoked));
}
both_stores!(a_revoked_token_fails, revoked);

async fn never_recorded<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let app = App::new(stores);
    let owner = unique_principal("alice");
    let id = app.create(&owner, &websocket_subscription(TOPIC)).await;
    let now = Utc::now();
    let claims = TokenClaims {
        token_id: fhir_ws_core::fhir::new_id(),
        owner: owner.clone(),
        subscription_ids: vec![id.clone()],
        issued_at: now.timestamp(),
        expires_at: now.timestamp() + 600,
    };
    // Signed with the real key (e.g. a leaked key used offline) but never issued.
    let token = sign(&claims, &app.config.keys);
    assert_eq!(check(&app, &token, &app.config.keys).await, Err(TokenRejection::NotIssued));
    // A row that disagrees with the claims (here: another subscription list) is no better.
    let row = TokenRecord {
        token_id: claims.token_id.clone(),
        owner,
        subscription_ids: vec![id.clone(), "extra".to_owned()],
        key_id: "test-2026".to_owned(),
        issued_at: claims.issued_at,
        expires_at: claims.expires_at,
        revoked: false,
        grant: None,
    };
    app.stores.tokens.put_token(&row).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check(&app, &token, &app.config.keys).await, Err(TokenRejection::NotIssued));
}
both_stores!(a_well_signed_token_that_was_never_issued_fails, never_recorded);

/// Counts reads, to show forged tokens are refused before any store is touched.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    reads: Arc<AtomicUsize>,
}

impl<S: SubscriptionStore> SubscriptionStore for Counting<S> {
    async fn insert(&self, s: &StoredSubscription) -> Result<(), StoreError> {
        self.inner.insert(s).await
    }
    async fn get(&self, id: &str) -> Result<Option<StoredSubscription>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id).await
    }
    async fn replace(&self, s: &StoredSubscription, v: u64) -> Result<(), StoreError> {
        self.inner.replace(s, v).await
    }
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.list_by_owner(owner).await
    }
    async fn list_by_topic(&self, topic: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.list_by_topic(topic).await
    }
    async fn list_by_route(
        &self,
        topic: &str,
        routes: &[String],
        now: i64,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.list_by_route(topic, routes, now).await
    }
}

impl<T: TokenStore> TokenStore for Counting<T> {
    async fn put_token(&self, r: &TokenRecord) -> Result<(), StoreError> {
        self.inner.put_token(r).await
    }
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_token(id).await
    }
    async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_token(id).await
    }
}

async fn forged_costs_no_reads<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = Stores {
        subscriptions: Counting { inner: stores.subscriptions, reads: reads.clone() },
        tokens: Counting { inner: stores.tokens, reads: reads.clone() },
    };
    let app = App::new(counted);
    let (_, _, token) = issue(&app).await;
    // A forger who knows the key id but not the secret.
    let (_, _, forged) = issue(&App::with_config(
        app.stores.clone(),
        binding_token_config("test-2026:an-attacker-secret-0123456789abcdef", None),
    ))
    .await;
    let forged_reads_from = reads.load(Ordering::SeqCst);
    assert!(check(&app, &forged, &app.config.keys).await.is_err());
    assert!(check(&app, &format!("{token}x"), &app.config.keys).await.is_err());
    assert!(check(&app, "fws1.test-2026.e30.AAAA", &app.config.keys).await.is_err());
    assert_eq!(reads.load(Ordering::SeqCst), forged_reads_from, "forged tokens cost no store read");
    assert_eq!(check(&app, &token, &app.config.keys).await, Ok(()));
    assert!(reads.load(Ordering::SeqCst) > forged_reads_from, "a genuine token is checked against the stores");
}
both_stores!(forged_tokens_are_refused_before_any_store_read, forged_costs_no_reads);
