//! Binding tokens: HMAC-SHA256-signed, self-describing, and checkable without I/O.
//!
//! A token reads `fws1.<key id>.<claims>.<mac>`, where `<claims>` is base64url (no
//! padding) JSON of [`TokenClaims`] and `<mac>` is the base64url HMAC-SHA256 of
//! everything before its last dot, under the key named by `<key id>`. Clients treat it
//! as opaque. A [`KeyRing`] signs with one key and verifies with all listed keys, so a
//! key can be rotated by listing the new key first and dropping the old one once its
//! tokens have expired.
//!
//! [`decode`] does the checks that need no I/O (syntax, MAC in constant time, expiry);
//! [`verify`] adds the stored-record and subscription checks.

mod keys;
pub mod verify;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::Mac as _;
use serde::{Deserialize, Serialize};

pub use keys::{KeyRing, KeyRingError};

/// Version tag that starts every token of this format.
const FORMAT_TAG: &str = "fws1";
/// Longest token we look at; anything longer is refused before any decoding work.
pub const MAX_TOKEN_LENGTH: usize = 8 * 1024;

/// What a token says about itself. Signed, so it cannot be altered without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Token id: the key of the token's row in the tokens table.
    #[serde(rename = "jti")]
    pub token_id: String,
    /// Principal the token was issued to (owner of the subscriptions).
    #[serde(rename = "own")]
    pub owner: String,
    /// Ids of the subscriptions the token binds to.
    #[serde(rename = "sub")]
    pub subscription_ids: Vec<String>,
    /// Issue time, epoch seconds.
    #[serde(rename = "iat")]
    pub issued_at: i64,
    /// Expiry, epoch seconds; the token is valid while the clock is before it.
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

impl TokenClaims {
    /// Expiry as a date-time.
    pub fn expiry(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.expires_at, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Why a token was refused by [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a token of this format at all.
    #[error("the token is malformed")]
    Malformed,
    /// Unknown key id or a MAC that does not match: forged, altered or signed with a retired key.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// The signature is good but the expiry has passed.
    #[error("the token has expired")]
    Expired,
}

/// Signs `claims` with the ring's signing key and returns the token text.
pub fn sign(claims: &TokenClaims, keys: &KeyRing) -> String {
    // Serializing a struct of strings and integers cannot fail; fall back to an empty
    // object rather than panicking, which would only ever produce an unusable token.
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let key = keys.signing_key();
    let unsigned = format!("{FORMAT_TAG}.{}.{}", key.id(), URL_SAFE_NO_PAD.encode(json));
    let mac = key.mac(unsigned.as_bytes()).finalize().into_bytes();
    format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// Checks a token's syntax, MAC (constant time) and expiry against `now`.
/// Costs no I/O, so forged tokens are refused before any store is read.
pub fn decode(token: &str, keys: &KeyRing, now: DateTime<Utc>) -> Result<TokenClaims, DecodeError> {
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(DecodeError::Malformed);
    }
    let (unsigned, mac_text) = token.rsplit_once('.').ok_or(DecodeError::Malformed)?;
    let mut parts = unsigned.split('.');
    let (Some(FORMAT_TAG), Some(key_id), Some(claims_text), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecodeError::Malformed);
    };
    let mac = URL_SAFE_NO_PAD.decode(mac_text).map_err(|_| DecodeError::Malformed)?;
    let key = keys.verifying_key(key_id).ok_or(DecodeError::BadSignature)?;
    key.mac(unsigned.as_bytes()).verify_slice(&mac).map_err(|_| DecodeError::BadSignature)?;
    // Only signed bytes are parsed from here on.
    let json = URL_SAFE_NO_PAD.decode(claims_text).map_err(|_| DecodeError::Malformed)?;
    let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| DecodeError::Malformed)?;
    if now.timestamp() >= claims.expires_at {
        return Err(DecodeError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(spec).unwrap_or_else(|e| unreachable!("test key ring: {e}"))
    }

    fn claims(now: DateTime<Utc>) -> TokenClaims {
        TokenClaims {
            token_id: "t-1".to_owned(),
            owner: "alice".to_owned(),
            subscription_ids: vec!["s1".to_owned(), "s2".to_owned()],
            issued_at: now.timestamp(),
            expires_at: now.timestamp() + 1800,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_signed_token_decodes_to_its_claims() {
        let keys = ring("k1:0123456789abcdef0123456789abcdef");
        let token = sign(&claims(now()), &keys);
        assert!(token.starts_with("fws1.k1."));
        assert_eq!(decode(&token, &keys, now()), Ok(claims(now())));
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let keys = ring("k1:0123456789abcdef0123456789abcdef");
        let token = sign(&claims(now()), &keys);
        let mut tried = 0;
        for (index, original) in token.char_indices() {
            for replacement in ALPHABET.chars().filter(|c| *c != original) {
                let mut tampered = token.clone();
                tampered.replace_range(index..index + 1, &replacement.to_string());
                assert!(decode(&tampered, &keys, now()).is_err(), "accepted {tampered}");
                tried += 1;
            }
        }
        assert_eq!(tried, token.len() * (ALPHABET.len() - 1));
    }

    #[test]
    fn expiry_is_checked_against_the_clock() {
        let keys = ring("k1:0123456789abcdef0123456789abcdef");
        let token = sign(&claims(now()), &keys);
        let almost = now() + TimeDelta::seconds(1799);
        assert!(decode(&token, &keys, almost).is_ok());
        let at_expiry = now() + TimeDelta::seconds(1800);
        assert_eq!(decode(&token, &keys, at_expiry), Err(DecodeError::Expired));
    }

    #[test]
    fn rotation_verifies_old_keys_until_they_are_retired() {
        let old = ring("old:0123456789abcdef0123456789abcdef");
        let token = sign(&claims(now()), &old);
        let rotated = ring("new:fedcba9876543210fedcba9876543210,old:0123456789abcdef0123456789abcdef");
        assert!(decode(&token, &rotated, now()).is_ok());
        assert!(sign(&claims(now()), &rotated).starts_with("fws1.new."));
        let retired = ring("new:fedcba9876543210fedcba9876543210");
        assert_eq!(decode(&token, &retired, now()), Err(DecodeError::BadSignature));
    }

    #[test]
    fn a_key_id_cannot_be_swapped_for_another_known_one() {
        let keys = ring("a:0123456789abcdef0123456789abcdef,b:fedcba9876543210fedcba9876543210");
        let token = sign(&claims(now()), &keys);
        let swapped = token.replacen("fws1.a.", "fws1.b.", 1);
        assert_eq!(decode(&swapped, &keys, now()), Err(DecodeError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        let keys = ring("k1:0123456789abcdef0123456789abcdef");
        for garbage in
            ["", ".", "fws1", "fws1.k1.x", "fws1.k1.x.y.z", "fws2.k1.e30.AAAA", &"a".repeat(MAX_TOKEN_LENGTH + 1)]
        {
            assert!(decode(garbage, &keys, now()).is_err(), "{garbage}");
        }
    }
}
