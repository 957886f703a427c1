//! Notification Bundles (R5 shape): `Bundle.type = subscription-notification` whose first
//! entry is a `SubscriptionStatus` (`handshake`, `heartbeat` or `event-notification`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::fhir::{
    Bundle, BundleEntry, ContentLevel, NotificationEvent, NotificationType, Reference, SubscriptionStatus, new_id,
};
use crate::store::StoredSubscription;

/// A notification without events (`handshake` or `heartbeat`) for `subscription`,
/// reporting `events_since_start` (handshakes and heartbeats do not advance it).
pub fn status_notification(
    kind: NotificationType,
    subscription: &StoredSubscription,
    events_since_start: u64,
    now: DateTime<Utc>,
) -> Bundle {
    notification_bundle(subscription, kind, events_since_start, Vec::new(), now)
}

/// A `subscription-notification` Bundle whose first entry is the `SubscriptionStatus`.
fn notification_bundle(
    subscription: &StoredSubscription,
    kind: NotificationType,
    events_since_start: u64,
    notification_event: Vec<NotificationEvent>,
    now: DateTime<Utc>,
) -> Bundle {
    let status = SubscriptionStatus {
        resource_type: "SubscriptionStatus".to_owned(),
        status: Some(subscription.status()),
        notification_type: kind,
        events_since_subscription_start: Some(events_since_start.to_string()),
        notification_event,
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

/// Largest message API Gateway delivers on a WebSocket (128 KiB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// What an event notification is about.
#[derive(Debug, Clone, Copy)]
pub struct EventContent<'a> {
    /// The focus resource (with `resourceType` and `id`).
    pub focus: &'a Map<String, Value>,
    /// Further resources.
    pub additional_context: &'a [Map<String, Value>],
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// Base URL of the FHIR server the resources live on, for references and `fullUrl`s.
    pub fhir_base_url: &'a str,
}

/// The absolute URL of a resource on the FHIR server.
fn resource_url(base: &str, resource: &Map<String, Value>) -> String {
    let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    format!("{}/{kind}/{id}", base.trim_end_matches('/'))
}

/// An `event-notification` for event number `event_number` of `subscription`, at
/// content level `level`: `empty` carries no references or resources, `id-only` the
/// focus and context references, `full-resource` those plus the resources as entries.
pub fn event_notification(
    subscription: &StoredSubscription,
    event_number: u64,
    content: EventContent<'_>,
    level: ContentLevel,
    now: DateTime<Utc>,
) -> Bundle {
    let base = content.fhir_base_url;
    let with_references = level != ContentLevel::Empty;
    let event = NotificationEvent {
        event_number: event_number.to_string(),
        timestamp: Some(content.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)),
        focus: with_references.then(|| Reference::to(resource_url(base, content.focus))),
        additional_context: if with_references {
            content.additional_context.iter().map(|r| Reference::to(resource_url(base, r))).collect()
        } else {
            Vec::new()
        },
    };
    let mut bundle =
        notification_bundle(subscription, NotificationType::EventNotification, event_number, vec![event], now);
    if level == ContentLevel::FullResource {
        for resource in std::iter::once(content.focus).chain(content.additional_context) {
            bundle.entry.push(BundleEntry {
                full_url: Some(resource_url(base, resource)),
                resource: Some(Value::Object(resource.clone())),
                search: None,
            });
        }
    }
    bundle
}

/// The notification as one WebSocket frame. A `full-resource` notification larger than
/// API Gateway accepts is sent `id-only` instead (never dropped); the flag says so.
pub fn event_frame(
    subscription: &StoredSubscription,
    event_number: u64,
    content: EventContent<'_>,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, bool), serde_json::Error> {
    // R5 leaves the default open; id-only tells the client what changed without
    // shipping data it may not be allowed to cache.
    let level = subscription.resource().content.unwrap_or(ContentLevel::IdOnly);
    let frame = serde_json::to_vec(&event_notification(subscription, event_number, content, level, now))?;
    if frame.len() <= MAX_MESSAGE_BYTES || level != ContentLevel::FullResource {
        return Ok((frame, false));
    }
    let smaller = event_notification(subscription, event_number, content, ContentLevel::IdOnly, now);
    Ok((serde_json::to_vec(&smaller)?, true))
}
