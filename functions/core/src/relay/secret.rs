//! The relay's shared secrets: what the upstream server sends to prove it is the one the
//! operator configured.
//!
//! The upstream sends `Authorization: Bearer <secret>` (set upstream with R4
//! `Subscription.channel.header`, or an R5 `parameter` named `Authorization`). Several
//! secrets may be accepted at once (comma-separated), so a secret can be rotated upstream
//! before the old one is dropped here. Each must be at least [`MIN_SECRET_BYTES`] long.
//! The comparison is constant-time: both sides are put through HMAC-SHA256 under a fixed
//! label and the MACs compared with `verify_slice`.
//!
//! Deployed, the secrets are read from Secrets Manager at cold start and again at runtime
//! ([`crate::secret`]): when the copy is five minutes old, and when a request's secret
//! matches none, at most once per ten seconds, so a secret added to the store is accepted
//! at once and one removed stops working within five minutes, without a deploy.

use std::sync::Arc;

use hmac::{Hmac, KeyInit as _, Mac as _};
use lambda_http::Request;
use lambda_http::http::header;
use sha2::Sha256;

use crate::http::ApiError;
use crate::secret::{ReadError, Refreshing, SecretStore};

/// Shortest secret accepted in the configuration.
pub const MIN_SECRET_BYTES: usize = 32;
/// What the MACs are computed over.
const LABEL: &[u8] = b"fhir-ws relay secret";

/// The accepted secrets, each kept as its MAC.
struct Macs(Vec<Vec<u8>>);

/// The accepted secrets, given in configuration or read from a secret store. Clones share
/// them.
#[derive(Clone)]
pub struct RelaySecrets {
    macs: Refreshing<Macs, String>,
}

impl std::fmt::Debug for RelaySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelaySecrets({} secret(s), not shown)", self.macs.current().0.len())
    }
}

fn mac(secret: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(LABEL);
    Some(mac)
}

impl Macs {
    /// A comma-separated list, or the secret's JSON `{"secrets": "…"}` as the template's
    /// generated secret holds it; the message says what is wrong with it.
    fn parse(text: &str) -> Result<Self, String> {
        let from_json = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|json| json.get("secrets").and_then(serde_json::Value::as_str).map(str::to_owned));
        let list = from_json.as_deref().unwrap_or(text);
        let mut macs = Vec::new();
        for secret in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
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

    /// Whether `presented` is one of the secrets. Every one is compared, so the time does
    /// not say which one matched.
    fn accept(&self, presented: &str) -> bool {
        let mut matched = false;
        for expected in &self.0 {
            if let Some(mac) = mac(presented.as_bytes()) {
                matched |= mac.verify_slice(expected).is_ok();
            }
        }
        matched
    }
}

impl RelaySecrets {
    /// Reads a comma-separated list (or the secret's JSON `{"secrets": "…"}`); the message
    /// says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self { macs: Refreshing::fixed(Macs::parse(text)?) })
    }

    /// Reads the secrets from `secret_id` in `store`, to be read again as the module
    /// describes; the message says why they cannot be used (never a secret).
    pub async fn from_secret(store: Arc<dyn SecretStore>, secret_id: &str) -> Result<Self, String> {
        match Refreshing::read(store, secret_id, Macs::parse).await {
            Ok(macs) => Ok(Self { macs }),
            Err(ReadError::Unreadable(detail)) => Err(format!("the relay secret could not be read: {detail}")),
            Err(ReadError::Invalid(problem)) => Err(problem),
        }
    }

    /// The same secrets read again after `max_age` and, on a secret matching none, at most
    /// once per `retry_after` (see [`Refreshing::with_refresh`]).
    pub fn with_refresh(self, max_age: std::time::Duration, retry_after: std::time::Duration) -> Self {
        Self { macs: self.macs.with_refresh(max_age, retry_after) }
    }

    /// The same secrets with their age measured by `clock` (see [`Refreshing::with_clock`]).
    pub fn with_clock(self, clock: crate::secret::Clock) -> Self {
        Self { macs: self.macs.with_clock(clock) }
    }

    /// 401 unless the request carries one of the secrets as its bearer token.
    pub async fn check(&self, request: &Request) -> Result<(), ApiError> {
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
        self.macs.refresh_if_old().await;
        if self.macs.current().accept(presented) {
            return Ok(());
        }
        // Perhaps a secret added since the last read: look once more (rate-limited).
        if self.macs.refresh_on_miss().await && self.macs.current().accept(presented) {
            return Ok(());
        }
        Err(ApiError::unauthenticated())
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

    #[tokio::test]
    async fn only_a_configured_secret_passes() {
        let old = "old-secret-0123456789abcdef0123456789";
        let new = "new-secret-0123456789abcdef0123456789";
        let secrets = RelaySecrets::parse(&format!("{old}, {new}")).unwrap_or_else(|e| panic!("{e}"));
        assert!(secrets.check(&request(Some(&format!("Bearer {old}")))).await.is_ok());
        assert!(secrets.check(&request(Some(&format!("Bearer {new}")))).await.is_ok());
        for wrong in [None, Some("Bearer"), Some("Bearer nope"), Some(old), Some(&*format!("Basic {old}"))] {
            assert_eq!(secrets.check(&request(wrong)).await.map_err(|e| e.status.as_u16()), Err(401), "{wrong:?}");
        }
        let json = RelaySecrets::parse(&format!(r#"{{"secrets": "{new}"}}"#)).unwrap_or_else(|e| panic!("{e}"));
        assert!(json.check(&request(Some(&format!("Bearer {new}")))).await.is_ok(), "the generated secret's JSON");
        assert!(RelaySecrets::parse("short").is_err());
        assert!(RelaySecrets::parse(" , ").is_err());
        assert!(!format!("{secrets:?}").contains("secret-0123"), "never printed");
    }
}
