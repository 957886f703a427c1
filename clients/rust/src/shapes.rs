//! Reading and writing the three FHIR versions' shapes: R5 and R4B `SubscriptionStatus`
//! and R4 `Parameters` (Backport IG) into one [`Status`] and one [`Notification`] per
//! event; websocket Subscriptions written in each version's shape.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::Error;

/// The Subscriptions Backport IG's StructureDefinition base (R4 and R4B shapes).
pub const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
const CHANNEL_TYPES: &str = "http://terminology.hl7.org/CodeSystem/subscription-channel-type";

/// A FHIR version the client reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FhirVersion {
    /// 4.0.1, with the Backport IG.
    R4,
    /// 4.3.0, with the Backport IG.
    R4B,
    /// 5.0.0.
    R5,
}

impl FhirVersion {
    /// The version a CapabilityStatement's `fhirVersion` names.
    pub fn from_fhir_version(text: &str) -> Option<Self> {
        match text {
            t if t.starts_with("5.") => Some(Self::R5),
            t if t.starts_with("4.3") => Some(Self::R4B),
            t if t.starts_with("4.0") => Some(Self::R4),
            _ => None,
        }
    }
}

/// One event of a status resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusEvent {
    /// `eventNumber` (`event-number` in R4).
    pub event_number: Option<u64>,
    /// When it happened.
    pub timestamp: Option<String>,
    /// The focus reference.
    pub focus: Option<String>,
    /// Further references.
    pub additional_context: Vec<String>,
}

/// What a handshake, heartbeat, notification or `$events` status resource says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `handshake`, `heartbeat`, `event-notification`, `query-event`, …
    pub kind: String,
    /// The subscription's status.
    pub status: Option<String>,
    /// The Subscription's logical id.
    pub subscription: String,
    /// The topic's canonical URL, if sent.
    pub topic: Option<String>,
    /// `eventsSinceSubscriptionStart`.
    pub events_since_subscription_start: Option<u64>,
    /// The events, in the order sent.
    pub events: Vec<StatusEvent>,
    /// Error texts the status carries.
    pub errors: Vec<String>,
}

/// One event, read from any version's notification or `$events` Bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The Subscription's logical id.
    pub subscription: String,
    /// The topic's canonical URL, when the server sent it.
    pub topic: Option<String>,
    /// `event-notification`, or `query-event` when it came from `$events`.
    pub kind: String,
    /// The event's number in its subscription.
    pub event_number: u64,
    /// When it happened, when the server said.
    pub timestamp: Option<String>,
    /// The focus reference (absent at content `empty`).
    pub focus: Option<String>,
    /// Further references of the event.
    pub additional_context: Vec<String>,
    /// The resources the Bundle carries for it (content `full-resource`).
    pub resources: Vec<Value>,
    /// Whether it was fetched with `$events` (missed on the socket).
    pub replayed: bool,
    /// The Bundle it was read from.
    pub raw: Arc<Value>,
}

/// The logical id in a Subscription reference (`Subscription/abc`, an absolute URL,
/// with or without `_history`).
pub fn subscription_id(reference: &str) -> String {
    match reference.rfind("Subscription/") {
        Some(at) => reference[at + "Subscription/".len()..].split('/').next().unwrap_or_default().to_owned(),
        None => reference.to_owned(),
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.parse().ok(),
        other => other.as_u64(),
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// The value[x] of the Parameters parameter (or part) named `name`.
fn parameter_value<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p.as_object()?.iter().find(|(key, _)| key.starts_with("value")).map(|(_, v)| v))
        .unwrap_or(&Value::Null)
}

impl Status {
    /// Reads a status resource of any version; `None` when it is none.
    pub fn read(resource: &Value) -> Option<Self> {
        match resource["resourceType"].as_str()? {
            "SubscriptionStatus" => Some(Self {
                kind: text(&resource["type"])?,
                status: text(&resource["status"]),
                subscription: subscription_id(resource["subscription"]["reference"].as_str().unwrap_or_default()),
                topic: text(&resource["topic"]),
                events_since_subscription_start: number(&resource["eventsSinceSubscriptionStart"]),
                events: resource["notificationEvent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| StatusEvent {
                        event_number: number(&e["eventNumber"]),
                        timestamp: text(&e["timestamp"]),
                        focus: text(&e["focus"]["reference"]),
                        additional_context: e["additionalContext"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|r| text(&r["reference"]))
                            .collect(),
                    })
                    .collect(),
                errors: resource["error"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| text(&e["text"]).or_else(|| text(&e["coding"][0]["code"])))
                    .collect(),
            }),
            "Parameters" => {
                let list = resource["parameter"].as_array()?;
                Some(Self {
                    kind: text(parameter_value(list, "type"))?,
                    status: text(parameter_value(list, "status")),
                    subscription: subscription_id(
                        parameter_value(list, "subscription")["reference"].as_str().unwrap_or_default(),
                    ),
                    topic: text(parameter_value(list, "topic")),
                    events_since_subscription_start: number(parameter_value(list, "events-since-subscription-start")),
                    events: list
                        .iter()
                        .filter(|p| p["name"] == "notification-event")
                        .map(|event| {
                            let parts = event["part"].as_array().map(Vec::as_slice).unwrap_or_default();
                            StatusEvent {
                                event_number: number(parameter_value(parts, "event-number")),
                                timestamp: text(parameter_value(parts, "timestamp")),
                                focus: text(&parameter_value(parts, "focus")["reference"]),
                                additional_context: parts
                                    .iter()
                                    .filter(|q| q["name"] == "additional-context")
                                    .filter_map(|q| text(&q["valueReference"]["reference"]))
                                    .collect(),
                            }
                        })
                        .collect(),
                    errors: list
                        .iter()
                        .filter(|p| p["name"] == "error")
                        .filter_map(|p| text(&p["valueCodeableConcept"]["text"]))
                        .collect(),
                })
            }
            _ => None,
        }
    }

    /// The status resource (first entry) of a notification or `$events` Bundle.
    pub fn of_bundle(bundle: &Value) -> Option<Self> {
        Self::read(&bundle["entry"][0]["resource"])
    }
}

/// Whether Bundle entry `entry` is the resource `reference` points at.
fn entry_is(entry: &Value, reference: &str) -> bool {
    if let Some(full_url) = entry["fullUrl"].as_str()
        && (full_url == reference || full_url.ends_with(&format!("/{reference}")))
    {
        return true;
    }
    match (entry["resource"]["resourceType"].as_str(), entry["resource"]["id"].as_str()) {
        (Some(kind), Some(id)) => {
            let local = format!("{kind}/{id}");
            reference == local || reference.ends_with(&format!("/{local}"))
        }
        _ => false,
    }
}

impl Notification {
    /// One notification per numbered event of a notification or `$events` Bundle of any
    /// version, each with the resources the Bundle carries for it; none for a handshake
    /// or heartbeat.
    pub fn from_bundle(bundle: Value) -> Vec<Self> {
        if bundle["resourceType"] != "Bundle" {
            return Vec::new();
        }
        let Some(status) = Status::of_bundle(&bundle) else { return Vec::new() };
        let raw = Arc::new(bundle);
        let entries: Vec<&Value> =
            raw["entry"].as_array().into_iter().flatten().skip(1).filter(|e| e["resource"].is_object()).collect();
        let single = status.events.len() == 1;
        status
            .events
            .iter()
            .filter_map(|event| {
                let event_number = event.event_number?;
                let references: Vec<&str> =
                    event.focus.iter().chain(&event.additional_context).map(String::as_str).collect();
                let resources = entries
                    .iter()
                    .filter(|e| single || references.iter().any(|r| entry_is(e, r)))
                    .map(|e| e["resource"].clone())
                    .collect();
                Some(Self {
                    subscription: status.subscription.clone(),
                    topic: status.topic.clone(),
                    kind: status.kind.clone(),
                    event_number,
                    timestamp: event.timestamp.clone(),
                    focus: event.focus.clone(),
                    additional_context: event.additional_context.clone(),
                    resources,
                    replayed: status.kind == "query-event",
                    raw: raw.clone(),
                })
            })
            .collect()
    }
}

/// A warning the server attached to an `$events` answer: R5's `Bundle.issues`, or the
/// status entry's `response.outcome` in R4 and R4B.
pub(crate) fn bundle_warning(bundle: &Value) -> Option<Value> {
    [&bundle["issues"], &bundle["entry"][0]["response"]["outcome"]].into_iter().find(|v| v.is_object()).cloned()
}

/// A Subscription to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionRequest {
    /// The SubscriptionTopic's canonical URL.
    pub topic: String,
    /// Filters as the Backport IG writes them: `Encounter?patient=Patient/123`.
    pub filters: Vec<String>,
    /// `empty`, `id-only` or `full-resource` (default `id-only`).
    pub content: Option<String>,
    /// Seconds between heartbeats; also what the watchdog waits for (twice this).
    pub heartbeat_period: Option<u32>,
    /// The Subscription's reason (R4 and R4B require one).
    pub reason: Option<String>,
}

impl SubscriptionRequest {
    /// A request for `topic`, content `id-only`, no filters, no heartbeat.
    pub fn new(topic: impl Into<String>) -> Self {
        Self { topic: topic.into(), ..Self::default() }
    }

    /// The websocket Subscription in `version`'s shape (R5, or the Backport IG's).
    pub fn resource(&self, version: FhirVersion) -> Result<Value, Error> {
        let content = self.content.as_deref().unwrap_or("id-only");
        let mut resource = match version {
            FhirVersion::R5 => {
                let mut resource = json!({
                    "resourceType": "Subscription",
                    "status": "requested",
                    "topic": self.topic,
                    "channelType": {"system": CHANNEL_TYPES, "code": "websocket"},
                    "content": content,
                });
                if let Some(reason) = &self.reason {
                    resource["reason"] = json!(reason);
                }
                if let Some(period) = self.heartbeat_period {
                    resource["heartbeatPeriod"] = json!(period);
                }
                resource
            }
            FhirVersion::R4 | FhirVersion::R4B => {
                let mut resource = json!({
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": self.reason.as_deref().unwrap_or("fhir-ws-client"),
                    "criteria": self.topic,
                    "channel": {
                        "type": "websocket",
                        "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"), "valueCode": content}]},
                    },
                });
                if let Some(period) = self.heartbeat_period {
                    resource["channel"]["extension"] =
                        json!([{"url": format!("{BACKPORT}backport-heartbeat-period"), "valueUnsignedInt": period}]);
                }
                resource
            }
        };
        if !self.filters.is_empty() {
            if version == FhirVersion::R5 {
                let mut filter_by = Vec::new();
                for criteria in &self.filters {
                    filter_by.extend(filter_by_entries(criteria)?);
                }
                resource["filterBy"] = Value::Array(filter_by);
            } else {
                let extensions: Vec<Value> = self
                    .filters
                    .iter()
                    .map(|c| json!({"url": format!("{BACKPORT}backport-filter-criteria"), "valueString": c}))
                    .collect();
                resource["_criteria"] = json!({ "extension": extensions });
            }
        }
        Ok(resource)
    }
}

/// `Encounter?patient=Patient/1&date=ge2020` as R5 `filterBy` entries.
pub fn filter_by_entries(criteria: &str) -> Result<Vec<Value>, Error> {
    let (resource_type, query) = criteria
        .split_once('?')
        .filter(|(kind, query)| !kind.is_empty() && !query.is_empty())
        .ok_or_else(|| Error::Config(format!("a filter needs a resource type and a query: {criteria}")))?;
    const COMPARATORS: [&str; 9] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];
    query
        .split('&')
        .map(|clause| {
            let (name, value) = clause
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| Error::Config(format!("a filter clause needs name=value: {clause}")))?;
            let (parameter, modifier) = match name.split_once(':') {
                Some((parameter, modifier)) => (parameter, Some(modifier)),
                None => (name, None),
            };
            let mut entry = json!({"resourceType": resource_type, "filterParameter": parameter});
            let mut value = value;
            let prefix = value.get(..2).unwrap_or_default();
            if modifier.is_none()
                && COMPARATORS.contains(&prefix)
                && value[2..].starts_with(|c: char| c.is_ascii_digit() || c == '-')
            {
                entry["comparator"] = json!(prefix);
                value = &value[2..];
            }
            if let Some(modifier) = modifier {
                entry["modifier"] = json!(modifier);
            }
            entry["value"] = json!(value);
            Ok(entry)
        })
        .collect()
}

/// A Subscription's heartbeatPeriod in seconds, whatever its version.
pub(crate) fn heartbeat_period_of(resource: &Value) -> Option<u32> {
    if let Some(period) = resource["heartbeatPeriod"].as_u64() {
        return u32::try_from(period).ok();
    }
    let url = format!("{BACKPORT}backport-heartbeat-period");
    resource["channel"]["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == url.as_str())
        .and_then(|e| e["valueUnsignedInt"].as_u64())
        .and_then(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_parameters_and_r5_status_read_the_same() {
        let r4 = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": "http://x/Subscription/s1"}},
            {"name": "topic", "valueCanonical": "http://t"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": "3"},
            {"name": "notification-event", "part": [
                {"name": "event-number", "valueString": "3"},
                {"name": "focus", "valueReference": {"reference": "Encounter/e3"}}]}]}}]});
        let r5 = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "SubscriptionStatus",
            "type": "event-notification", "eventsSinceSubscriptionStart": "3", "topic": "http://t",
            "subscription": {"reference": "Subscription/s1"},
            "notificationEvent": [{"eventNumber": "3", "focus": {"reference": "Encounter/e3"}}]}}]});
        for bundle in [r4, r5] {
            let [notification] = Notification::from_bundle(bundle).try_into().unwrap();
            assert_eq!(notification.subscription, "s1");
            assert_eq!(notification.event_number, 3);
            assert_eq!(notification.focus.as_deref(), Some("Encounter/e3"));
            assert_eq!(notification.topic.as_deref(), Some("http://t"));
            assert!(!notification.replayed);
        }
    }

    #[test]
    fn an_events_bundles_resources_go_to_their_events() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "SubscriptionStatus", "type": "query-event",
                "subscription": {"reference": "Subscription/s"},
                "notificationEvent": [{"eventNumber": "1", "focus": {"reference": "Encounter/a"}},
                                      {"eventNumber": "2", "focus": {"reference": "Encounter/b"}}]}},
            {"fullUrl": "http://x/Encounter/b", "resource": {"resourceType": "Encounter", "id": "b"}},
            {"fullUrl": "http://x/Encounter/a", "resource": {"resourceType": "Encounter", "id": "a"}}]});
        let read: Vec<(u64, Vec<Value>, bool)> =
            Notification::from_bundle(bundle).into_iter().map(|n| (n.event_number, n.resources, n.replayed)).collect();
        assert_eq!(
            read,
            [
                (1, vec![json!({"resourceType": "Encounter", "id": "a"})], true),
                (2, vec![json!({"resourceType": "Encounter", "id": "b"})], true)
            ]
        );
    }

    #[test]
    fn filters_become_filter_by_entries_in_r5_and_criteria_extensions_in_r4() {
        let request = SubscriptionRequest {
            filters: vec!["Observation?code=1234-5&date=ge2020-01-01".to_owned()],
            heartbeat_period: Some(30),
            ..SubscriptionRequest::new("http://t")
        };
        let r5 = request.resource(FhirVersion::R5).unwrap();
        assert_eq!(
            r5["filterBy"],
            json!([{"resourceType": "Observation", "filterParameter": "code", "value": "1234-5"},
                   {"resourceType": "Observation", "filterParameter": "date", "comparator": "ge", "value": "2020-01-01"}])
        );
        assert_eq!(heartbeat_period_of(&r5), Some(30));
        let r4 = request.resource(FhirVersion::R4).unwrap();
        assert_eq!(
            r4["_criteria"]["extension"][0]["url"],
            "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
        );
        assert_eq!(heartbeat_period_of(&r4), Some(30));
        assert!(filter_by_entries("no-query").is_err());
    }
}
