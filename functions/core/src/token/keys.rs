//! The signing key ring: given in configuration (`TOKEN_SIGNING_KEYS`), or read from a
//! secret store at cold start and again at runtime (`TOKEN_SIGNING_KEYS_SECRET`), so that
//! a rotated key is used without a deploy.
//!
//! A ring read from a secret is re-read (never more than one read at a time):
//! - before signing or verifying, when the copy is older than [`SIGNING_REFRESH`], so new
//!   tokens are signed with a rotated key, and a dropped key stops verifying, within that
//!   time;
//! - on a token whose key id the copy does not know, at most once per
//!   [`UNKNOWN_KEY_RETRY`], so a rotated key verifies at once while forged key ids cannot
//!   drive the secret store.
//!
//! A read that fails keeps the copy in use (and is logged): a passing outage of the secret
//! store never stops tokens from verifying.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit as _};
use sha2::Sha256;

/// HMAC-SHA256, the only MAC tokens use.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted: 32 bytes, the output size of SHA-256.
const MIN_SECRET_BYTES: usize = 32;

/// One named key.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl SigningKey {
    /// The key id written into tokens.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh MAC keyed with this key's secret.
    pub(crate) fn mac(&self, data: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this never falls back in practice.
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        hmac::Mac::update(&mut mac, data);
        mac
    }
}

/// How old a ring read from a secret may be when it signs or verifies.
pub const SIGNING_REFRESH: Duration = Duration::from_secs(300);
/// Least time between two reads prompted by unknown key ids.
pub const UNKNOWN_KEY_RETRY: Duration = Duration::from_secs(10);

/// The keys at one moment: the first signs new tokens, every one verifies.
#[derive(Clone)]
struct Keys {
    signing: SigningKey,
    /// Keys that still verify but no longer sign (being rotated out).
    verify_only: Vec<SigningKey>,
}

/// A secret store: the current text of a secret.
pub trait SecretStore: Send + Sync {
    /// The secret's current string value; the error is for logs (never holds the secret).
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// Where a ring read from a secret reads it again.
struct Source {
    store: Arc<dyn SecretStore>,
    secret_id: String,
    read_at: RwLock<Instant>,
    max_age: Duration,
    unknown_key_retry: Duration,
    /// Held while reading, so concurrent requests wait for one read instead of each making one.
    reading: tokio::sync::Mutex<()>,
}

/// Keys by id: the first signs new tokens, every one verifies. Clones share the keys, so a
/// ring re-read from its secret is seen by every holder.
#[derive(Clone)]
pub struct KeyRing {
    /// A snapshot swapped whole on a re-read, so a lookup copies one pointer, not the keys.
    keys: Arc<RwLock<Arc<Keys>>>,
    source: Option<Arc<Source>>,
}

/// Why a key ring specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    /// No keys at all.
    #[error("no signing keys given; expected 'keyid:secret[,keyid:secret…]'")]
    Empty,
    /// An entry without a `:`.
    #[error("key entry {0} is not 'keyid:secret'")]
    NotAPair(usize),
    /// A key id outside `[A-Za-z0-9_-]{1,32}`.
    #[error("key id '{0}' must be 1-32 characters of A-Z a-z 0-9 _ -")]
    BadKeyId(String),
    /// A secret shorter than 32 bytes.
    #[error("the secret of key '{0}' is shorter than 32 bytes")]
    ShortSecret(String),
    /// The same id twice.
    #[error("key id '{0}' is listed twice")]
    DuplicateKeyId(String),
    /// Looked like the secret's JSON but did not parse.
    #[error("the signing key JSON does not parse")]
    NotJson,
    /// The secret store could not be read (detail for logs; never the secret).
    #[error("the signing key secret could not be read: {0}")]
    Unreadable(String),
}

impl KeyRing {
    /// Parses `keyid:secret[,keyid:secret…]` (the first key signs), or the JSON the
    /// template's generated Secrets Manager secret holds:
    /// `{"keyId": "k2", "secret": "…", "previous": "k1:…[,k0:…]"}` (the current key
    /// signs; `previous` keys, optional, still verify). Secrets are used as their UTF-8
    /// bytes, must be at least 32 bytes and may not contain commas.
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        if spec.trim_start().starts_with('{') {
            return Self::parse_secret_json(spec);
        }
        let mut keys: Vec<SigningKey> = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (id, secret) = entry.split_once(':').ok_or(KeyRingError::NotAPair(index + 1))?;
            let id_ok =
                (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok {
                return Err(KeyRingError::BadKeyId(id.to_owned()));
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(KeyRingError::ShortSecret(id.to_owned()));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyRingError::DuplicateKeyId(id.to_owned()));
            }
            keys.push(SigningKey { id: id.to_owned(), secret: secret.as_bytes().to_vec() });
        }
        let mut keys = keys.into_iter();
        let signing = keys.next().ok_or(KeyRingError::Empty)?;
        let keys = Keys { signing, verify_only: keys.collect() };
        Ok(Self { keys: Arc::new(RwLock::new(Arc::new(keys))), source: None })
    }

    /// Reads the ring from `secret_id` in `store` (the secret's JSON or `keyid:secret,…`),
    /// to be read again as the module describes.
    pub async fn from_secret(store: Arc<dyn SecretStore>, secret_id: &str) -> Result<Self, KeyRingError> {
        let text = store.secret_string(secret_id).await.map_err(KeyRingError::Unreadable)?;
        let ring = Self::parse(&text)?;
        let source = Source {
            store,
            secret_id: secret_id.to_owned(),
            read_at: RwLock::new(Instant::now()),
            max_age: SIGNING_REFRESH,
            unknown_key_retry: UNKNOWN_KEY_RETRY,
            reading: tokio::sync::Mutex::new(()),
        };
        Ok(Self { keys: ring.keys, source: Some(Arc::new(source)) })
    }

    /// The same ring re-read after `max_age` (instead of [`SIGNING_REFRESH`]) and on unknown
    /// key ids at most once per `unknown_key_retry` (instead of [`UNKNOWN_KEY_RETRY`]). Only
    /// for a ring read from a secret, before it is cloned; otherwise it is returned as is.
    pub fn with_refresh(mut self, max_age: Duration, unknown_key_retry: Duration) -> Self {
        if let Some(source) = self.source.as_mut().and_then(Arc::get_mut) {
            source.max_age = max_age;
            source.unknown_key_retry = unknown_key_retry;
        }
        self
    }

    fn current(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Re-reads the secret when the copy is older than `max_age` (no-op without a secret).
    async fn reread_if_older_than(&self, max_age: Duration) {
        let Some(source) = &self.source else { return };
        let age = |source: &Source| source.read_at.read().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
        if age(source) < max_age {
            return;
        }
        let _one_reader = source.reading.lock().await;
        if age(source) < max_age {
            return; // another request read it while this one waited
        }
        *source.read_at.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        let fresh = source.store.secret_string(&source.secret_id).await.map_err(KeyRingError::Unreadable);
        match fresh.and_then(|text| Self::parse(&text)) {
            Ok(ring) => {
                let keys = ring.current();
                tracing::info!(signing = keys.signing.id(), "signing keys read again from the secret");
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
            }
            Err(error) => tracing::warn!(%error, "signing keys not read again; the keys in use stay"),
        }
    }

    /// Before signing: re-reads a ring older than [`SIGNING_REFRESH`].
    pub async fn refresh_for_signing(&self) {
        if let Some(source) = &self.source {
            self.reread_if_older_than(source.max_age).await;
        }
    }

    /// Before verifying `token`: re-reads a ring older than [`SIGNING_REFRESH`], or one
    /// that does not know the token's key id (at most once per [`UNKNOWN_KEY_RETRY`]).
    pub async fn refresh_for(&self, token: &str) {
        let Some(source) = &self.source else { return };
        let key_id = token.split('.').nth(1).unwrap_or_default();
        let unknown = !key_id.is_empty() && self.verifying_key(key_id).is_none();
        let max_age = if unknown { source.unknown_key_retry.min(source.max_age) } else { source.max_age };
        self.reread_if_older_than(max_age).await;
    }

    fn parse_secret_json(json: &str) -> Result<Self, KeyRingError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|_| KeyRingError::NotJson)?;
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str).unwrap_or_default();
        let current = format!("{}:{}", field("keyId"), field("secret"));
        Self::parse(&format!("{current},{}", field("previous")))
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> SigningKey {
        self.current().signing.clone()
    }

    /// The key with this id, if it is still accepted.
    pub fn verifying_key(&self, id: &str) -> Option<SigningKey> {
        let keys = self.current();
        std::iter::once(&keys.signing).chain(&keys.verify_only).find(|k| k.id == id).cloned()
    }
}

impl fmt::Debug for KeyRing {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.current();
        let ids: Vec<&str> = std::iter::once(&keys.signing).chain(&keys.verify_only).map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).field("from_secret", &self.source.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_key_specs() {
        let secret = "0123456789abcdef0123456789abcdef";
        let ring = KeyRing::parse(&format!("a:{secret}, b:{secret}x"));
        assert!(matches!(&ring, Ok(r) if r.signing_key().id() == "a" && r.verifying_key("b").is_some()));
        assert_eq!(KeyRing::parse("").err(), Some(KeyRingError::Empty));
        assert_eq!(KeyRing::parse("nocolon").err(), Some(KeyRingError::NotAPair(1)));
        assert_eq!(KeyRing::parse("a:short").err(), Some(KeyRingError::ShortSecret("a".into())));
        assert_eq!(KeyRing::parse(&format!("a.b:{secret}")).err(), Some(KeyRingError::BadKeyId("a.b".into())));
        assert_eq!(
            KeyRing::parse(&format!("a:{secret},a:{secret}")).err(),
            Some(KeyRingError::DuplicateKeyId("a".into()))
        );
    }

    #[test]
    fn reads_the_generated_secret_json() {
        let secret = "0123456789abcdef0123456789abcdef";
        let ring = KeyRing::parse(&format!(r#"{{"keyId":"k2","secret":"{secret}x","previous":"k1:{secret}"}}"#));
        assert!(matches!(&ring, Ok(r) if r.signing_key().id() == "k2" && r.verifying_key("k1").is_some()));
        let fresh = KeyRing::parse(&format!(r#"{{"keyId":"k1","secret":"{secret}","previous":""}}"#));
        assert!(matches!(&fresh, Ok(r) if r.signing_key().id() == "k1"));
        assert_eq!(KeyRing::parse("{not json").err(), Some(KeyRingError::NotJson));
        assert_eq!(
            KeyRing::parse(r#"{"keyId":"k1","secret":"short"}"#).err(),
            Some(KeyRingError::ShortSecret("k1".into()))
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let ring = KeyRing::parse("a:0123456789abcdef0123456789abcdef");
        let text = format!("{ring:?}");
        assert!(!text.contains("0123456789"), "{text}");
    }
}
