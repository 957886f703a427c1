//! Who may bind to which subscription: the one rule the operation and token
//! verification share.

use chrono::{DateTime, Utc};

use crate::fhir::SubscriptionState;
use crate::store::StoredSubscription;

/// Why a subscription cannot be bound by a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unbindable {
    /// Missing, or owned by someone else: the two are indistinguishable to the caller.
    #[error("Subscription/{0} is not known")]
    NotFound(String),
    /// Its channel is not `websocket`.
    #[error("Subscription/{0} does not use the websocket channel")]
    NotWebsocket(String),
    /// Its status is `off` (set, or its `end` has passed) or `entered-in-error`.
    #[error("Subscription/{0} has status '{1}' and cannot be bound")]
    Inactive(String, &'static str),
}

/// Returns the subscription if `owner` may bind a websocket to it at `now`: it exists,
/// belongs to `owner`, uses the websocket channel and is not `off` (including after its
/// `end`) or `entered-in-error`.
pub fn bindable(
    id: &str,
    found: Option<StoredSubscription>,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<StoredSubscription, Unbindable> {
    let subscription = found.filter(|s| s.owner() == owner).ok_or_else(|| Unbindable::NotFound(id.to_owned()))?;
    if !subscription.resource().is_websocket() {
        return Err(Unbindable::NotWebsocket(id.to_owned()));
    }
    match subscription.status_at(now) {
        status @ (SubscriptionState::Off | SubscriptionState::EnteredInError) => {
            Err(Unbindable::Inactive(id.to_owned(), status.code()))
        }
        SubscriptionState::Requested | SubscriptionState::Active | SubscriptionState::Error => Ok(subscription),
    }
}
