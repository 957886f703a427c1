//! Signing keys and relay secrets read from a secret store at runtime (AWS Secrets
//! Manager's API, served by moto_server): a key or relay secret rotated in the secret is
//! used without restarting anything, a dropped one stops working, forged input does not
//! drive the store, and a function that cannot read its secret refuses to start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use fhir_ws_core::config::{BindingTokenConfig, ConfigError, RelayConfig};
use fhir_ws_core::secret::SecretStore;
use fhir_ws_core::secret::secrets_manager::SecretsManager;
use fhir_ws_core::token::{KeyRing, decode};
use fhir_ws_core::ws::{Binder, Connection};
use fhir_ws_tests::{App, HttpEvent, output_values, status_and_json, unique_principal};

const FIRST: &str = "first-secret-0123456789abcdef0123456789";
const SECOND: &str = "second-secret-0123456789abcdef012345678";

/// Secrets Manager at moto_server, counting reads.
struct Counted {
    inner: SecretsManager,
    reads: AtomicUsize,
}

impl SecretStore for Counted {
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.secret_string(secret_id)
    }
}

/// A clock the test moves by hand: the refresh rules (maximum age, retry gap) are checked
/// exactly, without waiting for real time to pass.
#[derive(Clone)]
struct HandClock(Arc<std::sync::Mutex<std::time::Instant>>);

impl HandClock {
    fn new() -> Self {
        Self(Arc::new(std::sync::Mutex::new(std::time::Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn clock(&self) -> fhir_ws_core::secret::Clock {
        let now = self.0.clone();
        Arc::new(move || *now.lock().unwrap())
    }
}

async fn sdk() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run through infra/test.sh");
    fhir_ws_tests::sdk_loader().endpoint_url(endpoint).load().await
}

async fn put(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client.put_secret_value().secret_id(name).secret_string(value).send().await.unwrap();
}

#[tokio::test]
async fn a_key_rotated_in_the_secret_store_is_used_without_a_restart() {
    let aws = sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let name = format!("signing-keys-{}", uuid::Uuid::new_v4());
    let initial = format!(r#"{{"keyId": "k1", "secret": "{FIRST}", "previous": ""}}"#);
    client.create_secret().name(&name).secret_string(&initial).send().await.unwrap();
    let store = Arc::new(Counted { inner: SecretsManager::new(&aws), reads: AtomicUsize::new(0) });

    // The operation, configured as deployed (the secret's id, no keys in the environment),
    // re-reading its keys before every signature; and a verifier ("another function") that
    // re-reads on an unknown key id at most once per 200 ms.
    let env = |variable: &str| match variable {
        "SUBSCRIPTIONS_TABLE" | "TOKENS_TABLE" | "BINDINGS_TABLE" => Some("unused".to_owned()),
        "WEBSOCKET_URL" => Some(fhir_ws_tests::TEST_WEBSOCKET_URL.to_owned()),
        "TOKEN_SIGNING_KEYS_SECRET" => Some(name.clone()),
        _ => None,
    };
    let mut config = BindingTokenConfig::load_with_secrets(&env, store.clone()).await.unwrap();
    config.keys = config.keys.with_refresh(Duration::ZERO, Duration::ZERO);
    let stores = fhir_ws_tests::memory_stores();
    let app = App::with_config(stores.clone(), config);
    let hand = HandClock::new();
    let verifier_keys = KeyRing::from_secret(store.clone(), &name)
        .await
        .unwrap()
        .with_refresh(Duration::from_secs(3600), Duration::from_millis(200))
        .with_clock(hand.clock());
    let ws_stores = fhir_ws_tests::memory_ws_stores();
    let binder = Binder::new(stores.subscriptions.clone(), stores.tokens.clone(), ws_stores.bindings, verifier_keys);
    let connection = Connection { id: "rotation-connection=".to_owned(), callback_url: "http://unused".to_owned() };

    let owner = unique_principal("alice");
    let id = app.create(&owner, &fhir_ws_tests::websocket_subscription(fhir_ws_tests::TOPIC)).await;
    let issue = async || {
        let path = format!("/Subscription/{id}/$get-ws-binding-token");
        let (status, body) = status_and_json(&app.operation(HttpEvent::new("POST", &path, Some(&owner))).await);
        assert_eq!(status, 200, "{body}");
        output_values(&body, "token")[0]["valueString"].as_str().unwrap().to_owned()
    };
    let key_of = |token: &str| token.split('.').nth(1).unwrap().to_owned();
    let old_token = issue().await;
    assert_eq!(key_of(&old_token), "k1");
    assert!(binder.bind(&old_token, &connection, Utc::now()).await.is_ok());

    // Rotate in the store only: k2 signs, k1 still verifies.
    put(&client, &name, &format!(r#"{{"keyId": "k2", "secret": "{SECOND}", "previous": "k1:{FIRST}"}}"#)).await;
    let new_token = issue().await;
    assert_eq!(key_of(&new_token), "k2", "the operation signs with the rotated key");
    hand.advance(Duration::from_millis(250));
    let reads = store.reads.load(Ordering::SeqCst);
    assert!(binder.bind(&new_token, &connection, Utc::now()).await.is_ok(), "the verifier learns k2 by itself");
    assert_eq!(store.reads.load(Ordering::SeqCst), reads + 1, "one read for the unknown key id");
    assert!(binder.bind(&old_token, &connection, Utc::now()).await.is_ok(), "k1 tokens still verify");

    // Forged key ids: within the retry gap, no further read; past it, one.
    let forged = old_token.replacen(".k1.", ".k9.", 1);
    let reads = store.reads.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert!(binder.bind(&forged, &connection, Utc::now()).await.is_err());
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), reads, "no read within the retry gap");
    hand.advance(Duration::from_millis(250));
    for _ in 0..20 {
        assert!(binder.bind(&forged, &connection, Utc::now()).await.is_err());
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), reads + 1, "one read per retry gap");

    // Drop k1 in the store: once re-read (here at the next signature), k1 tokens fail.
    put(&client, &name, &format!(r#"{{"keyId": "k2", "secret": "{SECOND}", "previous": ""}}"#)).await;
    let _ = issue().await;
    assert!(decode(&old_token, &app.config.keys, Utc::now()).is_err(), "the dropped key no longer verifies");

    // A secret that cannot be read keeps the keys in use (an outage is not a lock-out).
    client.delete_secret().secret_id(&name).force_delete_without_recovery(true).send().await.unwrap();
    assert_eq!(key_of(&issue().await), "k2");
}

#[tokio::test]
async fn a_function_that_cannot_read_its_keys_refuses_to_start() {
    let aws = sdk().await;
    let env = |variable: &str| match variable {
        "SUBSCRIPTIONS_TABLE" | "TOKENS_TABLE" | "BINDINGS_TABLE" => Some("unused".to_owned()),
        "WEBSOCKET_URL" => Some(fhir_ws_tests::TEST_WEBSOCKET_URL.to_owned()),
        "TOKEN_SIGNING_KEYS_SECRET" => Some(format!("missing-{}", uuid::Uuid::new_v4())),
        _ => None,
    };
    let answer = BindingTokenConfig::load_with_secrets(&env, Arc::new(SecretsManager::new(&aws))).await;
    assert!(matches!(&answer, Err(ConfigError::Keys(_))), "{answer:?}");
    let message = answer.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("could not be read"), "{message}");
    let neither = |variable: &str| env(variable).filter(|_| variable != "TOKEN_SIGNING_KEYS_SECRET");
    let answer = BindingTokenConfig::load_with_secrets(&neither, Arc::new(SecretsManager::new(&aws))).await;
    assert!(matches!(answer, Err(ConfigError::Missing(_))));
}

/// A request to the relay presenting `secret`.
fn relay_request(secret: &str) -> lambda_http::Request {
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://example.org/relay")
        .header("authorization", format!("Bearer {secret}"))
        .body(lambda_http::Body::Empty)
        .unwrap()
}

#[tokio::test]
async fn a_relay_secret_rotated_in_the_secret_store_is_used_without_a_restart() {
    let aws = sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let name = format!("relay-secrets-{}", uuid::Uuid::new_v4());
    client.create_secret().name(&name).secret_string(format!(r#"{{"secrets": "{FIRST}"}}"#)).send().await.unwrap();
    let store = Arc::new(Counted { inner: SecretsManager::new(&aws), reads: AtomicUsize::new(0) });
    let env = |variable: &str| match variable {
        "UPSTREAM_TABLE" | "EVENTS_QUEUE_URL" => Some("unused".to_owned()),
        "RELAY_SECRETS_SECRET" => Some(name.clone()),
        _ => None,
    };
    let config = RelayConfig::load_with_secrets(&env, store.clone()).await.unwrap();
    // Read again after 1 s, or on a secret matching none at most once per 200 ms.
    let hand = HandClock::new();
    let secrets =
        config.secrets.with_refresh(Duration::from_secs(1), Duration::from_millis(200)).with_clock(hand.clock());
    let accepted = async |secret: &str| secrets.check(&relay_request(secret)).await.is_ok();
    let reads = || store.reads.load(Ordering::SeqCst);
    assert!(accepted(FIRST).await);
    assert!(!accepted(SECOND).await, "not configured yet");

    // The operator adds a second secret in the store only; the upstream switches to it.
    put(&client, &name, &format!(r#"{{"secrets": "{SECOND},{FIRST}"}}"#)).await;
    hand.advance(Duration::from_millis(250));
    let before = reads();
    assert!(accepted(SECOND).await, "the relay learns the new secret by itself");
    assert_eq!(reads(), before + 1, "one read for the unmatched secret");
    assert!(accepted(FIRST).await, "the old one still works until dropped");

    // Wrong secrets within the retry gap cause no read; past it, one.
    let before = reads();
    for attempt in 0..20 {
        assert!(!accepted(&format!("forged-secret-{attempt:02}-0123456789abcdef0123")).await);
    }
    assert_eq!(reads(), before, "no read within the retry gap");
    hand.advance(Duration::from_millis(250));
    for attempt in 0..20 {
        assert!(!accepted(&format!("forged-secret-{attempt:02}-0123456789abcdef0123")).await);
    }
    assert_eq!(reads(), before + 1, "one read per retry gap");

    // The old secret dropped in the store stops working once the copy is old.
    put(&client, &name, &format!(r#"{{"secrets": "{SECOND}"}}"#)).await;
    hand.advance(Duration::from_millis(1_100));
    assert!(!accepted(FIRST).await, "the dropped secret no longer passes");
    assert!(accepted(SECOND).await);

    // A secret that cannot be read keeps the secrets in use.
    client.delete_secret().secret_id(&name).force_delete_without_recovery(true).send().await.unwrap();
    hand.advance(Duration::from_millis(1_100));
    assert!(accepted(SECOND).await, "an outage of the secret store is not a lock-out");
}

#[tokio::test]
async fn a_relay_that_cannot_read_its_secret_refuses_to_start() {
    let aws = sdk().await;
    let missing = format!("missing-{}", uuid::Uuid::new_v4());
    let env = |variable: &str| match variable {
        "UPSTREAM_TABLE" | "EVENTS_QUEUE_URL" => Some("unused".to_owned()),
        "RELAY_SECRETS_SECRET" => Some(missing.clone()),
        _ => None,
    };
    let answer = RelayConfig::load_with_secrets(&env, Arc::new(SecretsManager::new(&aws))).await;
    let message = answer.as_ref().err().map(ToString::to_string).unwrap_or_default();
    assert!(matches!(answer, Err(ConfigError::Invalid("RELAY_SECRETS_SECRET", _))), "{message}");
    assert!(message.contains("could not be read"), "{message}");
    let neither = |variable: &str| env(variable).filter(|_| variable != "RELAY_SECRETS_SECRET");
    let answer = RelayConfig::load_with_secrets(&neither, Arc::new(SecretsManager::new(&aws))).await;
    assert!(matches!(answer, Err(ConfigError::Missing(_))));
}
