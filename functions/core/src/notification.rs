//! Notification Bundles (R5 shape): `Bundle.type = subscription-notification` whose first
//! entry is a `SubscriptionStatus`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Map;

use crate::fhir::{Bundle, BundleEntry, NotificationType, Reference, SubscriptionStatus, new_id};
use crate::store::StoredSubscription;

/// A notification without events (`handshake` or `heartbeat`) for `subscription`,
/// reporting `events_since_start` (handshakes and heartbeats do not advance it).
pub fn status_notification(
    kind: NotificationType,
    subscription: &StoredSubscription,
    events_since_start: u64,
    now: DateTime<Utc>,
) -> Bundle {
    let status = SubscriptionStatus {
        resource_type: "SubscriptionStatus".to_owned(),
        status: Some(subscription.status()),
        notification_type: kind,
        events_since_subscription_start: Some(events_since_start.to_string()),
        notification_event: Vec::new(),
        subscription: Reference::to(format!("Subscription/{}", subscription.id())),
        topic: subscription.resource().topic.clone(),
        other: Map::new(),
    };
    let mut bundle = Bundle::new("subscription-notification");
    bundle.id = Some(new_id());
    bundle.timestamp = Some(now.to_rfc3339_opts(SecondsFormat::Millis, true));
    bundle.entry.push(BundleEntry {
        full_url: Some(format!("urn:uuid:{}", new_id())),
        resource: serde_json::to_value(&status).ok(),
        search: None,
    });
    bundle
}
