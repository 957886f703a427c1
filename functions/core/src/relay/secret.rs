//! The relay's shared secrets: what the upstream server sends to prove it is the one the
//! operator configured.
//!
//! The upstream sends `Authorization: Bearer <secret>` (set upstream with R4
//! `Subscription.channel.header`, or an R5 `parameter` named `Authorization`). Several
//! secrets may be accepted at once (comma-separated in `RELAY_SECRETS`), so a secret can be
//! rotated upstream before the old one is dropped here. Each must be at least
//! [`MIN_SECRET_BYTES`] long. The comparison is constant-time: both sides are put through
//! HMAC-SHA256 under a fixed label and the MACs compared with `verify_slice`.

use hmac::{Hmac, KeyInit as _, Mac as _};
use lambda_http::Request;
use lambda_http::http::header;
use sha2::Sha256;

use crate::http::ApiError;

/// Shortest secret accepted in the configuration.
pub const MIN_SECRET_BYTES: usize = 32;
/// What the MACs are computed over.
const LABEL: &[u8] = b"fhir-ws relay secret";

/// The accepted secrets, each kept as its MAC.
#[derive(Clone)]
pub struct RelaySecrets(Vec<Vec<u8>>);

impl std::fmt::Debug for RelaySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelaySecrets({} secret(s), not shown)", self.0.len())
    }
}

fn mac(secret: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(LABEL);
    Some(mac)
}

impl RelaySecrets {
    /// Reads a comma-separated list; the message says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut macs = Vec::new();
        for secret in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!("each relay secret must be at least {MIN_SECRET_BYTES} characters"));
            }
            let mac = mac(secret.as_bytes()).ok_or("a relay secret cannot be used as an HMAC key")?;
            macs.push(mac.finalize().into_bytes().to_vec());
        }
        if macs.is_empty() {
            return Err("no relay secret is configured".to_owned());
        }
        Ok(Self(macs))
    }

    /// 401 unless the request carries one of the secrets as its bearer token.
    pub fn check(&self, request: &Request) -> Result<(), ApiError> {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|secret| !secret.is_empty());
        let Some(presented) = presented else {
            return Err(ApiError::unauthenticated());
        };
        // Every configured secret is compared, so the time does not say which one matched.
        let mut matched = false;
        for expected in &self.0 {
            if let Some(mac) = mac(presented.as_bytes()) {
                matched |= mac.verify_slice(expected).is_ok();
            }
        }
        if matched { Ok(()) } else { Err(ApiError::unauthenticated()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = lambda_http::http::Request::builder().method("POST").uri("https://x/relay");
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        builder.body(lambda_http::Body::Empty).unwrap_or_default()
    }

    #[test]
    fn only_a_configured_secret_passes() {
        let old = "old-secret-0123456789abcdef0123456789";
        let new = "new-secret-0123456789abcdef0123456789";
        let secrets = RelaySecrets::parse(&format!("{old}, {new}")).unwrap_or_else(|e| panic!("{e}"));
        assert!(secrets.check(&request(Some(&format!("Bearer {old}")))).is_ok());
        assert!(secrets.check(&request(Some(&format!("Bearer {new}")))).is_ok());
        for wrong in [None, Some("Bearer"), Some("Bearer nope"), Some(old), Some(&*format!("Basic {old}"))] {
            assert_eq!(secrets.check(&request(wrong)).map_err(|e| e.status.as_u16()), Err(401), "{wrong:?}");
        }
        assert!(RelaySecrets::parse("short").is_err());
        assert!(RelaySecrets::parse(" , ").is_err());
        assert!(!format!("{secrets:?}").contains("secret-0123"), "never printed");
    }
}
