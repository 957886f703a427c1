//! Notification Bundles in the Backport IG's R4 and R4B shapes, rendered from the R5
//! Bundles the core builds.
//!
//! - **R4** (profile `backport-subscription-notification-r4`): a `history` Bundle whose
//!   first entry is a `Parameters` (profile `backport-subscription-status-r4`) with
//!   `subscription` (valueReference), `topic` (valueCanonical), `status` and `type`
//!   (valueCode), `events-since-subscription-start` (valueString) and one
//!   `notification-event` per event, with parts `event-number` (valueString), `timestamp`
//!   (valueInstant), `focus` and `additional-context` (valueReference).
//! - **R4B** (profile `backport-subscription-notification`): a `history` Bundle whose first
//!   entry is the R4B `SubscriptionStatus` (event numbers are strings there, as in our R5
//!   JSON).
//!
//! Both: every entry carries `request` and `response`, as a `history` Bundle must; the
//! status entry's request mimics a `$status` call (`GET Subscription/{id}/$status`, 200),
//! resource entries are `GET` of their `fullUrl` (we do not know the interaction that
//! caused the event). `entered-in-error`, which neither R4's nor R4B's status value set
//! has, is shown as `off` (such a subscription gets nothing either way). Following the
//! IG's payload rules, `topic` is left out at content level `empty`. `Bundle.link` is kept;
//! `Bundle.issues` (R5 only) has no place in R4 or R4B and is not carried.

use serde_json::{Map, Value, json};

use crate::fhir::{Bundle, ContentLevel, NotificationEvent, SubscriptionStatus};

/// Canonical of the IG's R4 notification Bundle profile.
pub const R4_NOTIFICATION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";
/// Canonical of the IG's R4 status `Parameters` profile.
pub const R4_STATUS_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
/// Canonical of the IG's R4B notification Bundle profile.
pub const R4B_NOTIFICATION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification";

/// Why a Bundle could not be rendered: it is not a notification Bundle of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a notification Bundle: {0}")]
pub struct NotANotification(pub(crate) String);

/// The first entry's `SubscriptionStatus` of a notification Bundle.
fn status_of(bundle: &Bundle) -> Result<SubscriptionStatus, NotANotification> {
    let resource = bundle
        .entry
        .first()
        .and_then(|entry| entry.resource.clone())
        .ok_or_else(|| NotANotification("it has no first entry".to_owned()))?;
    serde_json::from_value(resource).map_err(|e| NotANotification(format!("its first entry: {e}")))
}

/// `Subscription.status` codes R4 and R4B know (they lack `entered-in-error`).
fn backport_status(code: &str) -> &str {
    if code == "entered-in-error" { "off" } else { code }
}

/// The `history` Bundle around a status resource: every entry with `request`/`response`.
fn history_bundle(bundle: &Bundle, profile: &str, status: Value, subscription_reference: &str) -> Value {
    let mut entries = vec![json!({
        "fullUrl": bundle.entry.first().and_then(|e| e.full_url.clone()),
        "resource": status,
        "request": {"method": "GET", "url": format!("{subscription_reference}/$status")},
        "response": {"status": "200"},
    })];
    for entry in bundle.entry.iter().skip(1) {
        let url = entry.full_url.clone().unwrap_or_default();
        entries.push(json!({
            "fullUrl": url,
            "resource": entry.resource,
            "request": {"method": "GET", "url": url},
            "response": {"status": "200"},
        }));
    }
    let mut rendered = Map::new();
    rendered.insert("resourceType".to_owned(), json!("Bundle"));
    if let Some(id) = &bundle.id {
        rendered.insert("id".to_owned(), json!(id));
    }
    rendered.insert("meta".to_owned(), json!({"profile": [profile]}));
    rendered.insert("type".to_owned(), json!("history"));
    if let Some(timestamp) = &bundle.timestamp {
        rendered.insert("timestamp".to_owned(), json!(timestamp));
    }
    if !bundle.link.is_empty() {
        rendered.insert("link".to_owned(), json!(bundle.link));
    }
    rendered.insert("entry".to_owned(), Value::Array(entries));
    Value::Object(rendered)
}

/// One `notification-event` parameter (R4).
fn r4_event_parameter(event: &NotificationEvent) -> Value {
    let mut parts = vec![json!({"name": "event-number", "valueString": event.event_number})];
    if let Some(timestamp) = &event.timestamp {
        parts.push(json!({"name": "timestamp", "valueInstant": timestamp}));
    }
    if let Some(focus) = &event.focus {
        parts.push(json!({"name": "focus", "valueReference": focus}));
    }
    for context in &event.additional_context {
        parts.push(json!({"name": "additional-context", "valueReference": context}));
    }
    json!({"name": "notification-event", "part": parts})
}

/// The R4 status `Parameters` (profile `backport-subscription-status-r4`) for a
/// `SubscriptionStatus`, as sent at content level `level`.
pub fn r4_status_parameters(status: &SubscriptionStatus, level: ContentLevel) -> Value {
    let reference = status.subscription.reference.clone().unwrap_or_default();
    let mut parameters = vec![json!({"name": "subscription", "valueReference": {"reference": reference}})];
    if let Some(topic) = status.topic.as_ref().filter(|_| level != ContentLevel::Empty) {
        parameters.push(json!({"name": "topic", "valueCanonical": topic}));
    }
    if let Some(state) = status.status {
        parameters.push(json!({"name": "status", "valueCode": backport_status(state.code())}));
    }
    parameters.push(json!({"name": "type", "valueCode": status.notification_type}));
    if let Some(count) = &status.events_since_subscription_start {
        parameters.push(json!({"name": "events-since-subscription-start", "valueString": count}));
    }
    parameters.extend(status.notification_event.iter().map(r4_event_parameter));
    json!({
        "resourceType": "Parameters",
        "meta": {"profile": [R4_STATUS_PROFILE]},
        "parameter": parameters,
    })
}

/// The R4B `SubscriptionStatus` for our R5 one, as sent at content level `level`.
pub fn r4b_status(status: &SubscriptionStatus, level: ContentLevel) -> Result<Value, NotANotification> {
    let mut status = status.clone();
    if level == ContentLevel::Empty {
        status.topic = None;
    }
    let mut resource = serde_json::to_value(&status).map_err(|e| NotANotification(e.to_string()))?;
    if let Some(code) = status.status {
        resource["status"] = json!(backport_status(code.code()));
    }
    Ok(resource)
}

/// The R4 shape of a notification Bundle sent at content level `level`.
pub fn to_r4(bundle: &Bundle, level: ContentLevel) -> Result<Value, NotANotification> {
    let status = status_of(bundle)?;
    let reference = status.subscription.reference.clone().unwrap_or_default();
    Ok(history_bundle(bundle, R4_NOTIFICATION_PROFILE, r4_status_parameters(&status, level), &reference))
}

/// The R4B shape of a notification Bundle sent at content level `level`.
pub fn to_r4b(bundle: &Bundle, level: ContentLevel) -> Result<Value, NotANotification> {
    let status = status_of(bundle)?;
    let reference = status.subscription.reference.clone().unwrap_or_default();
    Ok(history_bundle(bundle, R4B_NOTIFICATION_PROFILE, r4b_status(&status, level)?, &reference))
}
