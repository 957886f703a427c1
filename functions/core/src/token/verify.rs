//! Full verification of a binding token, in the order the design fixes:
//! syntax → MAC (constant time) → expiry → stored record present and not revoked →
//! every subscription still bindable by the token's owner.
//!
//! The first three steps cost no I/O ([`super::decode`]), so a forged token never
//! causes a store read. The WebSocket functions call [`verify`] on every bind.

use chrono::{DateTime, Utc};

use super::{DecodeError, KeyRing, TokenClaims, decode};
use crate::access::{Unbindable, bindable};
use crate::store::{StoreError, StoredSubscription, SubscriptionStore, TokenStore};

/// A token that passed every check, with the subscriptions it binds.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The token's claims.
    pub claims: TokenClaims,
    /// The subscriptions, as read during verification, in token order.
    pub subscriptions: Vec<StoredSubscription>,
    /// The grant snapshot recorded with the token (`smart` mode).
    pub grant: Option<crate::smart::subscription::KeptGrant>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Malformed, forged, altered, expired or signed with a retired key.
    #[error(transparent)]
    Invalid(#[from] DecodeError),
    /// Well signed but never recorded as issued (or its row no longer matches).
    #[error("the token was not issued by this server")]
    NotIssued,
    /// Revoked before its expiry.
    #[error("the token has been revoked")]
    Revoked,
    /// The token is genuine, but one of its subscriptions can no longer be bound.
    #[error(transparent)]
    Unbindable(#[from] Unbindable),
    /// A store failed; the token may be fine (detail for logs only).
    #[error("could not check the token: {0}")]
    Store(#[from] StoreError),
}

impl TokenRejection {
    /// True when the token itself is bad (authentication failure, HTTP 401), as opposed
    /// to a good token for subscriptions that are not usable (403) or a store failure.
    pub fn is_bad_token(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::NotIssued | Self::Revoked)
    }
}

/// Verifies `token` at time `now` against the key ring and the stores.
pub async fn verify<S, T>(
    token: &str,
    keys: &KeyRing,
    now: DateTime<Utc>,
    tokens: &T,
    subscriptions: &S,
) -> Result<VerifiedToken, TokenRejection>
where
    S: SubscriptionStore,
    T: TokenStore,
{
    let claims = decode(token, keys, now)?;
    let record = tokens.get_token(&claims.token_id).await?.ok_or(TokenRejection::NotIssued)?;
    let matches_claims = record.owner == claims.owner
        && record.subscription_ids == claims.subscription_ids
        && record.expires_at == claims.expires_at;
    if !matches_claims {
        return Err(TokenRejection::NotIssued);
    }
    if record.revoked {
        return Err(TokenRejection::Revoked);
    }
    let mut bound = Vec::with_capacity(claims.subscription_ids.len());
    for id in &claims.subscription_ids {
        let found = subscriptions.get(id).await?;
        bound.push(bindable(id, found, &claims.owner, now)?);
    }
    Ok(VerifiedToken { claims, subscriptions: bound, grant: record.grant })
}
