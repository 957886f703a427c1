//! `Bundle` (search results and subscription notifications) and `SubscriptionStatus`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SubscriptionState;

/// A FHIR `Reference` (literal reference only).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reference {
    /// Relative or absolute URL of the target, e.g. `Subscription/123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl Reference {
    /// A reference to `url`.
    pub fn to(url: impl Into<String>) -> Self {
        Self { reference: Some(url.into()) }
    }
}

/// `Bundle.link`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleLink {
    /// Link relation, e.g. `self`.
    pub relation: String,
    /// The URL.
    pub url: String,
}

/// `Bundle.entry.search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleSearch {
    /// `match` or `include`.
    pub mode: String,
}

/// `Bundle.entry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    /// Absolute URL of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    /// The resource, as FHIR JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    /// Why the entry is in a searchset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<BundleSearch>,
}

/// A FHIR `Bundle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Always `Bundle`.
    pub resource_type: String,
    /// Logical id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `searchset`, `subscription-notification`, …
    #[serde(rename = "type")]
    pub bundle_type: String,
    /// When the bundle was assembled (FHIR instant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Total number of matches (searchset only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Links (`self`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<BundleLink>,
    /// The entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
    /// Issues with the Bundle as a whole (R5 `Bundle.issues`, an `OperationOutcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issues: Option<Value>,
}

impl Bundle {
    /// An empty bundle of the given type.
    pub fn new(bundle_type: &str) -> Self {
        Self {
            resource_type: "Bundle".to_owned(),
            id: None,
            bundle_type: bundle_type.to_owned(),
            timestamp: None,
            total: None,
            link: Vec::new(),
            entry: Vec::new(),
            issues: None,
        }
    }
}

/// `SubscriptionStatus.type`: what a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationType {
    /// Sent once per subscription when a channel is bound.
    Handshake,
    /// Sent periodically when nothing else was.
    Heartbeat,
    /// Carries one or more events.
    EventNotification,
    /// Answer to a `$status` query.
    QueryStatus,
    /// Answer to a `$events` query.
    QueryEvent,
}

/// `SubscriptionStatus.notificationEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationEvent {
    /// Event number (integer64, a JSON string).
    pub event_number: String,
    /// When the event happened (FHIR instant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The resource that triggered the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<Reference>,
    /// Further resources relevant to the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_context: Vec<Reference>,
}

/// `SubscriptionStatus.status` reuses the Subscription status codes.
pub type SubscriptionStatusCode = SubscriptionState;

/// A FHIR R5 `SubscriptionStatus`, the first entry of every notification Bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    /// Always `SubscriptionStatus`.
    pub resource_type: String,
    /// State of the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SubscriptionStatusCode>,
    /// What kind of notification this is.
    #[serde(rename = "type")]
    pub notification_type: NotificationType,
    /// Events sent since the subscription started (integer64, a JSON string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_since_subscription_start: Option<String>,
    /// The events in this notification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notification_event: Vec<NotificationEvent>,
    /// The subscription this notification is for.
    pub subscription: Reference,
    /// Canonical URL of the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Other elements, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handshake_status_has_the_r5_shape() -> Result<(), serde_json::Error> {
        let status = SubscriptionStatus {
            resource_type: "SubscriptionStatus".to_owned(),
            status: Some(SubscriptionState::Active),
            notification_type: NotificationType::Handshake,
            events_since_subscription_start: Some("0".to_owned()),
            notification_event: Vec::new(),
            subscription: Reference::to("Subscription/abc"),
            topic: Some("http://example.org/topic".to_owned()),
            other: Map::new(),
        };
        let mut bundle = Bundle::new("subscription-notification");
        bundle.entry.push(BundleEntry { resource: Some(serde_json::to_value(&status)?), ..BundleEntry::default() });
        assert_eq!(
            serde_json::to_value(&bundle)?,
            json!({
                "resourceType": "Bundle",
                "type": "subscription-notification",
                "entry": [{"resource": {
                    "resourceType": "SubscriptionStatus",
                    "status": "active",
                    "type": "handshake",
                    "eventsSinceSubscriptionStart": "0",
                    "subscription": {"reference": "Subscription/abc"},
                    "topic": "http://example.org/topic"
                }}]
            })
        );
        Ok(())
    }
}
