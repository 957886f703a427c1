//! `Subscription` (R5 shape) and the small datatypes it uses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::limits;

/// Code system of `Subscription.channelType` codes (`rest-hook`, `websocket`, …).
pub const CHANNEL_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/subscription-channel-type";

/// Channel type codes defined by [`CHANNEL_TYPE_SYSTEM`].
const KNOWN_CHANNEL_TYPES: [&str; 4] = ["rest-hook", "websocket", "email", "message"];

/// `Subscription.status` (value set `subscription-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriptionState {
    /// Created, not yet in use (a websocket subscription until its first bind).
    Requested,
    /// In use: notifications are sent.
    Active,
    /// The server could not deliver; it may recover.
    Error,
    /// Switched off; nothing is sent.
    Off,
    /// Created by mistake; treat as if it did not exist.
    EnteredInError,
}

impl SubscriptionState {
    /// The FHIR code, e.g. `entered-in-error`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Error => "error",
            Self::Off => "off",
            Self::EnteredInError => "entered-in-error",
        }
    }

    /// Parses a FHIR code.
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Requested, Self::Active, Self::Error, Self::Off, Self::EnteredInError]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// `Subscription.content`: how much of the focus resource a notification carries.
/// Ordered from least to most content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentLevel {
    /// No resource content, only the notification.
    Empty,
    /// A reference to the focus resource.
    IdOnly,
    /// The reference and the whole resource.
    FullResource,
}

impl ContentLevel {
    /// The code as FHIR writes it (`empty`, `id-only`, `full-resource`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::IdOnly => "id-only",
            Self::FullResource => "full-resource",
        }
    }
}

/// A FHIR `Coding`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Coding {
    /// The code system URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The code within that system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Other elements (version, display, …), kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A FHIR `Meta` (only the server-managed parts are typed).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Version id, set by the server on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Instant of the last write, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// Profiles, tags, security labels …, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `Subscription.filterBy`: one filter criterion.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterBy {
    /// Resource type the filter applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Filter label defined by the topic (1..1 in R5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_parameter: Option<String>,
    /// Comparator (`eq`, `ne`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<String>,
    /// Modifier (`exact`, `in`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifier: Option<String>,
    /// The value to compare with (1..1 in R5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Other elements, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A FHIR R5 `Subscription`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Must be `Subscription`.
    pub resource_type: String,
    /// Logical id, assigned by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Version and last-update time, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// Lifecycle state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SubscriptionState>,
    /// Canonical URL of the `SubscriptionTopic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Channel type, e.g. `websocket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_type: Option<Coding>,
    /// Where to send notifications (not used by websocket channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Seconds between heartbeats, if the client wants them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_period: Option<u32>,
    /// Seconds a REST notification may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Media type of notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// How much resource content notifications carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentLevel>,
    /// Maximum events per notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
    /// When the subscription ends (FHIR instant); after it, the subscription is `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Filters on the topic's events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_by: Vec<FilterBy>,
    /// Every other element (name, contact, end, extensions, `_status` …), kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Parses a FHIR `instant` (RFC 3339 with seconds and a zone).
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

impl Subscription {
    /// When the subscription ends, if `end` is set (and readable).
    pub fn end_time(&self) -> Option<DateTime<Utc>> {
        self.end.as_deref().and_then(parse_instant)
    }

    /// True when the channel is the standard `websocket` channel type.
    pub fn is_websocket(&self) -> bool {
        self.channel_type.as_ref().is_some_and(|coding| {
            coding.code.as_deref() == Some("websocket")
                && coding.system.as_deref().is_none_or(|s| s == CHANNEL_TYPE_SYSTEM)
        })
    }

    /// Checks what FHIR and this server require of a Subscription a client writes.
    /// Returns a message fit to show the client for the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type != "Subscription" {
            return Err(format!("resourceType must be 'Subscription', not '{}'", self.resource_type));
        }
        match self.topic.as_deref() {
            None => return Err("Subscription.topic is required".to_owned()),
            Some(topic) if topic.trim().is_empty() || topic.chars().any(char::is_whitespace) => {
                return Err("Subscription.topic must be a canonical URL without spaces".to_owned());
            }
            Some(topic) => limits::within("Subscription.topic", topic, limits::MAX_TOPIC_BYTES)?,
        }
        if let Some(endpoint) = &self.endpoint {
            limits::within("Subscription.endpoint", endpoint, limits::MAX_URL_BYTES)?;
        }
        if self.filter_by.len() > limits::MAX_FILTERS {
            return Err(format!(
                "Subscription has {} filterBy entries; the limit is {}",
                self.filter_by.len(),
                limits::MAX_FILTERS
            ));
        }
        for (index, filter) in self.filter_by.iter().enumerate() {
            let names = [
                ("resourceType", &filter.resource_type),
                ("filterParameter", &filter.filter_parameter),
                ("modifier", &filter.modifier),
                ("comparator", &filter.comparator),
            ];
            for (element, name) in names {
                if let Some(name) = name {
                    let what = format!("Subscription.filterBy[{index}].{element}");
                    limits::within(&what, name, limits::MAX_FILTER_NAME_BYTES)?;
                }
            }
            if let Some(value) = &filter.value {
                let what = format!("Subscription.filterBy[{index}].value");
                limits::within(&what, value, limits::MAX_FILTER_VALUE_BYTES)?;
            }
        }
        let Some(channel) = &self.channel_type else {
            return Err("Subscription.channelType is required".to_owned());
        };
        let Some(code) = channel.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err("Subscription.channelType.code is required".to_owned());
        };
        let standard_system = channel.system.as_deref().is_none_or(|s| s == CHANNEL_TYPE_SYSTEM);
        if standard_system && !KNOWN_CHANNEL_TYPES.contains(&code) {
            return Err(format!(
                "Subscription.channelType.code '{code}' is not one of {} in {CHANNEL_TYPE_SYSTEM}",
                KNOWN_CHANNEL_TYPES.join(", ")
            ));
        }
        if let Some(content_type) = &self.content_type
            && !content_type.contains('/')
        {
            return Err(format!("Subscription.contentType '{content_type}' is not a media type"));
        }
        if let Some(end) = &self.end
            && parse_instant(end).is_none()
        {
            return Err(format!("Subscription.end '{end}' is not a FHIR instant (e.g. 2027-01-15T08:00:00Z)"));
        }
        if self.max_count == Some(0) {
            return Err("Subscription.maxCount must be a positive integer".to_owned());
        }
        for (index, filter) in self.filter_by.iter().enumerate() {
            if filter.filter_parameter.as_deref().is_none_or(str::is_empty) {
                return Err(format!("Subscription.filterBy[{index}].filterParameter is required"));
            }
            if filter.value.is_none() {
                return Err(format!("Subscription.filterBy[{index}].value is required"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn websocket_subscription() -> Value {
        json!({
            "resourceType": "Subscription",
            "status": "requested",
            "topic": "http://example.org/topics/encounter-start",
            "channelType": {"system": CHANNEL_TYPE_SYSTEM, "code": "websocket", "display": "Websocket"},
            "content": "id-only",
            "heartbeatPeriod": 60,
            "filterBy": [{"filterParameter": "patient", "value": "Patient/1", "extension": [{"url": "x", "valueString": "y"}]}],
            "name": "kept",
            "_status": {"extension": [{"url": "http://example.org/e", "valueBoolean": true}]},
            "contact": [{"system": "email", "value": "a@example.org"}]
        })
    }

    #[test]
    fn unknown_elements_survive_a_round_trip() -> Result<(), serde_json::Error> {
        let sent = websocket_subscription();
        let parsed: Subscription = serde_json::from_value(sent.clone())?;
        assert!(parsed.is_websocket());
        assert_eq!(parsed.validate(), Ok(()));
        assert_eq!(serde_json::to_value(&parsed)?, sent);
        Ok(())
    }

    #[test]
    fn validation_names_the_problem() -> Result<(), serde_json::Error> {
        let cases = [
            ("resourceType", json!("Patient"), "resourceType"),
            ("topic", Value::Null, "topic is required"),
            ("channelType", Value::Null, "channelType is required"),
            ("channelType", json!({"system": CHANNEL_TYPE_SYSTEM, "code": "carrier-pigeon"}), "carrier-pigeon"),
            ("channelType", json!({"system": CHANNEL_TYPE_SYSTEM}), "channelType.code"),
            ("contentType", json!("json"), "media type"),
            ("maxCount", json!(0), "maxCount"),
            ("end", json!("tomorrow"), "instant"),
            ("filterBy", json!([{"value": "x"}]), "filterParameter"),
        ];
        for (element, value, expected) in cases {
            let mut resource = websocket_subscription();
            if value.is_null() {
                resource.as_object_mut().map(|o| o.remove(element));
            } else {
                resource[element] = value;
            }
            let parsed: Subscription = serde_json::from_value(resource)?;
            let message = parsed.validate().err().unwrap_or_default();
            assert!(message.contains(expected), "{element}: {message}");
        }
        Ok(())
    }

    #[test]
    fn other_systems_are_not_websocket() -> Result<(), serde_json::Error> {
        let mut resource = websocket_subscription();
        resource["channelType"] = json!({"system": "http://example.org/custom", "code": "websocket"});
        let parsed: Subscription = serde_json::from_value(resource)?;
        assert_eq!(parsed.validate(), Ok(()));
        assert!(!parsed.is_websocket());
        Ok(())
    }

    #[test]
    fn wrong_types_are_refused_by_parsing() {
        let mut resource = websocket_subscription();
        resource["status"] = json!("paused");
        assert!(serde_json::from_value::<Subscription>(resource).is_err());
    }
}
