//! The event contract: what producers put on the fan-out queue.
//!
//! One SQS message body is one JSON object:
//!
//! ```json
//! {
//!   "topic": "http://example.org/fhir/SubscriptionTopic/encounter-start",
//!   "focus": {"resourceType": "Encounter", "id": "123", "status": "in-progress", ...},
//!   "additionalContext": [{"resourceType": "Patient", "id": "p1", ...}],
//!   "timestamp": "2026-11-27T06:30:00Z",
//!   "eventId": "optional-producer-id"
//! }
//! ```
//!
//! Exactly one of `topic` (a SubscriptionTopic canonical URL: every matching subscription)
//! or `subscription` (`Subscription/{id}`: that one only). `focus` is the full resource
//! (with `resourceType` and `id`). `additionalContext` and `timestamp` (FHIR instant,
//! default: when the message is read) are optional. `eventId` makes redeliveries
//! recognisable across producer retries; without it the SQS message id is used.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::fhir::is_valid_id;

/// Largest accepted `eventId`.
const MAX_EVENT_ID: usize = 128;

/// Whom an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every active websocket subscription to this topic whose filters match.
    Topic(String),
    /// One subscription, by id.
    Subscription(String),
}

/// A valid event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Whom it is for.
    pub audience: Audience,
    /// The resource the event is about.
    pub focus: Map<String, Value>,
    /// Further resources.
    pub additional_context: Vec<Map<String, Value>>,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Producer's id for the event, if given.
    pub event_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    topic: Option<String>,
    subscription: Option<String>,
    focus: Option<Value>,
    #[serde(default)]
    additional_context: Vec<Value>,
    timestamp: Option<String>,
    event_id: Option<String>,
}

/// Checks that a value is a resource with a type and a valid id.
fn resource(value: Value, what: &str) -> Result<Map<String, Value>, String> {
    let Value::Object(object) = value else {
        return Err(format!("{what} must be a FHIR resource (a JSON object)"));
    };
    let kind = object.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("{what} needs a resourceType"));
    }
    if !object.get("id").and_then(Value::as_str).is_some_and(is_valid_id) {
        return Err(format!("{what} needs a valid id"));
    }
    Ok(object)
}

/// Parses and checks a message body; `now` stands in for a missing timestamp. The error
/// says what is wrong (for the log; the message goes to the dead-letter queue).
pub fn parse(body: &str, now: DateTime<Utc>) -> Result<Event, String> {
    let wire: Wire = serde_json::from_str(body).map_err(|e| format!("not a fan-out event: {e}"))?;
    let audience = match (wire.topic, wire.subscription) {
        (Some(topic), None) if !topic.trim().is_empty() => Audience::Topic(topic),
        (None, Some(reference)) => {
            let id = reference.strip_prefix("Subscription/").unwrap_or(&reference);
            if !is_valid_id(id) {
                return Err(format!("'{reference}' is not a Subscription reference"));
            }
            Audience::Subscription(id.to_owned())
        }
        _ => return Err("give exactly one of topic or subscription".to_owned()),
    };
    let focus = resource(wire.focus.ok_or("focus is required")?, "focus")?;
    let additional_context = wire
        .additional_context
        .into_iter()
        .map(|value| resource(value, "each additionalContext entry"))
        .collect::<Result<Vec<_>, _>>()?;
    let timestamp = match wire.timestamp {
        None => now,
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map_err(|_| format!("timestamp '{text}' is not a FHIR instant"))?
            .with_timezone(&Utc),
    };
    if let Some(id) = &wire.event_id
        && (id.is_empty() || id.len() > MAX_EVENT_ID)
    {
        return Err(format!("eventId must be 1 to {MAX_EVENT_ID} characters"));
    }
    Ok(Event { audience, focus, additional_context, timestamp, event_id: wire.event_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn reads_topic_and_subscription_events() {
        let body = json!({"topic": "http://t", "focus": {"resourceType": "Encounter", "id": "e1"}, "timestamp": "2027-01-15T08:00:00Z"});
        let event = parse(&body.to_string(), now());
        assert!(matches!(&event, Ok(e) if e.audience == Audience::Topic("http://t".into()) && e.timestamp == now()));
        let body = json!({"subscription": "Subscription/s1", "focus": {"resourceType": "Encounter", "id": "e1"}});
        assert!(matches!(parse(&body.to_string(), now()), Ok(e) if e.audience == Audience::Subscription("s1".into())));
    }

    #[test]
    fn refuses_what_cannot_be_delivered() {
        let focus = json!({"resourceType": "Encounter", "id": "e1"});
        let cases = [
            json!({"focus": focus}),
            json!({"topic": "t", "subscription": "Subscription/s", "focus": focus}),
            json!({"topic": "t"}),
            json!({"topic": "t", "focus": {"id": "e1"}}),
            json!({"topic": "t", "focus": {"resourceType": "Encounter"}}),
            json!({"topic": "t", "focus": [1]}),
            json!({"topic": "t", "focus": focus, "timestamp": "yesterday"}),
            json!({"topic": "t", "focus": focus, "additionalContext": [{"resourceType": "Patient"}]}),
            json!({"topic": "t", "focus": focus, "surprise": true}),
            json!({"subscription": "Subscription/a b", "focus": focus}),
            json!({"topic": "t", "focus": focus, "eventId": ""}),
        ];
        for case in cases {
            assert!(parse(&case.to_string(), now()).is_err(), "{case}");
        }
        assert!(parse("not json", now()).is_err());
    }
}
