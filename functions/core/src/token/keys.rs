//! The signing key ring: given in configuration (`TOKEN_SIGNING_KEYS`), or read from a
//! secret store at cold start and again at runtime (`TOKEN_SIGNING_KEYS_SECRET`), so that
//! a rotated key is used without a deploy. When a ring is read again is
//! [`crate::secret`]'s rule: when older than five minutes, before signing or verifying
//! (new tokens are signed with a rotated key, and a dropped key stops verifying, within
//! that time), and on a token whose key id the ring does not know, at most once per ten
//! seconds (a rotated key verifies at once; forged key ids cannot drive the store).

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit as _};
use sha2::Sha256;

use crate::secret::{ReadError, Refreshing, SecretStore};

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

/// The keys at one moment: the first signs new tokens, every one verifies.
struct Keys {
    signing: SigningKey,
    /// Keys that still verify but no longer sign (being rotated out).
    verify_only: Vec<SigningKey>,
}

/// Keys by id: the first signs new tokens, every one verifies. Clones share the keys, so a
/// ring read again from its secret is seen by every holder.
#[derive(Clone)]
pub struct KeyRing {
    keys: Refreshing<Keys, KeyRingError>,
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

impl Keys {
    /// See [`KeyRing::parse`].
    fn parse(spec: &str) -> Result<Self, KeyRingError> {
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
        Ok(Self { signing, verify_only: keys.collect() })
    }

    fn parse_secret_json(json: &str) -> Result<Self, KeyRingError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|_| KeyRingError::NotJson)?;
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str).unwrap_or_default();
        let current = format!("{}:{}", field("keyId"), field("secret"));
        Self::parse(&format!("{current},{}", field("previous")))
    }

    fn all(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.signing).chain(&self.verify_only)
    }
}

impl KeyRing {
    /// Parses `keyid:secret[,keyid:secret…]` (the first key signs), or the JSON the
    /// template's generated Secrets Manager secret holds:
    /// `{"keyId": "k2", "secret": "…", "previous": "k1:…[,k0:…]"}` (the current key
    /// signs; `previous` keys, optional, still verify). Secrets are used as their UTF-8
    /// bytes, must be at least 32 bytes and may not contain commas.
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        Ok(Self { keys: Refreshing::fixed(Keys::parse(spec)?) })
    }

    /// Reads the ring from `secret_id` in `store` (the secret's JSON or `keyid:secret,…`),
    /// to be read again as the module describes.
    pub async fn from_secret(store: Arc<dyn SecretStore>, secret_id: &str) -> Result<Self, KeyRingError> {
        match Refreshing::read(store, secret_id, Keys::parse).await {
            Ok(keys) => Ok(Self { keys }),
            Err(ReadError::Unreadable(detail)) => Err(KeyRingError::Unreadable(detail)),
            Err(ReadError::Invalid(error)) => Err(error),
        }
    }

    /// The same ring read again after `max_age` and on unknown key ids at most once per
    /// `unknown_key_retry` (see [`Refreshing::with_refresh`]).
    pub fn with_refresh(self, max_age: std::time::Duration, unknown_key_retry: std::time::Duration) -> Self {
        Self { keys: self.keys.with_refresh(max_age, unknown_key_retry) }
    }

    /// The same ring with its age measured by `clock` (see [`Refreshing::with_clock`]).
    pub fn with_clock(self, clock: crate::secret::Clock) -> Self {
        Self { keys: self.keys.with_clock(clock) }
    }

    /// Before signing: reads a ring from a secret again when it is old.
    pub async fn refresh_for_signing(&self) {
        self.keys.refresh_if_old().await;
    }

    /// Before verifying `token`: reads the ring again when it is old, or when it does not
    /// know the token's key id (at most once per retry interval).
    pub async fn refresh_for(&self, token: &str) {
        let key_id = token.split('.').nth(1).unwrap_or_default();
        if !key_id.is_empty() && self.verifying_key(key_id).is_none() {
            self.keys.refresh_on_miss().await;
        } else {
            self.keys.refresh_if_old().await;
        }
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> SigningKey {
        self.keys.current().signing.clone()
    }

    /// The key with this id, if it is still accepted.
    pub fn verifying_key(&self, id: &str) -> Option<SigningKey> {
        self.keys.current().all().find(|k| k.id == id).cloned()
    }
}

impl fmt::Debug for KeyRing {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.current();
        let ids: Vec<&str> = keys.all().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).field("from_secret", &self.keys.is_from_secret()).finish()
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
