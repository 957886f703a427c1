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
//! (with `resourceType` and `id`), or only a FHIR `Reference` to it
//! (`{"reference": "Encounter/123"}`, relative or absolute), or absent: what an upstream
//! server's `id-only` and `empty` notifications carry; or, for a resource that lives on
//! another server, a Bundle entry `{"fullUrl": "https://…/Encounter/123", "resource": …}`. Each `additionalContext` entry is
//! a resource or a reference too. `timestamp` (FHIR instant, default: when the message is
//! read) is optional. `eventId` makes redeliveries recognisable across producer retries;
//! without it the SQS message id is used.
//!
//! **FHIR version.** Every resource an event carries (`focus`, `additionalContext`,
//! `resource`, `previous`) is in one FHIR version: the deployment's (`EventFhirVersion` in
//! the template, `EVENT_FHIR_VERSION` in the environment, `--event-fhir-version` for
//! `fhir-ws serve`; R5 unless set), or the one the message names in `fhirVersion` (`R4`,
//! `R4B`, `R5`, or `4.0.1`, `4.3.0`, `5.0.0`). The topic engine and `filterBy` evaluate the
//! resources with that version's search parameters, and a subscriber in another version
//! gets them converted or as references, never in a version it did not ask for
//! ([`crate::fhir::convert`]). A notification Bundle relayed from another server carries
//! its own version (its shape says which); the relay writes it into the event.
//!
//! Without the focus resource the fan-out cannot evaluate `filterBy`, so an event with a
//! reference or no focus reaches only subscriptions without filters; and a
//! `full-resource` subscription gets the references when not every resource was sent.
//!
//! A **resource change** leaves the choice of topics to the SubscriptionTopics deployed
//! with the stack ([`crate::topics`]):
//!
//! ```json
//! {
//!   "interaction": "update",
//!   "resource": {"resourceType": "Encounter", "id": "123", "status": "completed", ...},
//!   "previous": {"resourceType": "Encounter", "id": "123", "status": "in-progress", ...},
//!   "additionalContext": [...], "timestamp": "...", "eventId": "..."
//! }
//! ```
//!
//! `interaction` is `create`, `update` or `delete`; `resource` is the new version (required
//! for create and update); `previous` the version before (none on create; on update the
//! `previous` query criteria need it; on delete it is the deleted version, or `resource`
//! is read as that when `previous` is not given). Both are full resources of the same
//! type and id. No `topic`, `subscription` or `focus` goes with them: the focus is the
//! new version (the deleted one on delete).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::fhir::version::FhirVersion;
use crate::fhir::{Subject, is_valid_id, reference_names_a_resource};
use crate::topics::{Interaction, ResourceChange};

/// Largest accepted `eventId`.
const MAX_EVENT_ID: usize = 128;

/// Whom an event is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// Every active websocket subscription to this topic whose filters match.
    Topic(String),
    /// One subscription, by id.
    Subscription(String),
    /// Whichever deployed topics the change fires.
    Change(Box<ResourceChange>),
}

/// A valid event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Whom it is for.
    pub audience: Audience,
    /// What the event is about (none when the producer did not say).
    pub focus: Option<Subject>,
    /// Further resources.
    pub additional_context: Vec<Subject>,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Producer's id for the event, if given.
    pub event_id: Option<String>,
    /// The FHIR version of every resource the event carries.
    pub fhir_version: FhirVersion,
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
    interaction: Option<String>,
    resource: Option<Value>,
    previous: Option<Value>,
    fhir_version: Option<String>,
}

/// Checks that a value is a resource with a type and a valid id, or a `Reference` whose
/// `reference` ends in `Type/id` (optionally `/_history/v`).
fn subject(value: Value, what: &str) -> Result<Subject, String> {
    let Value::Object(object) = value else {
        return Err(format!("{what} must be a FHIR resource or a Reference (a JSON object)"));
    };
    if !object.contains_key("resourceType") && object.contains_key("fullUrl") {
        let full_url = object.get("fullUrl").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !(full_url.starts_with("https://") || full_url.starts_with("http://"))
            || !reference_names_a_resource(&full_url)
        {
            return Err(format!("{what}: fullUrl '{full_url}' is not the absolute URL of a resource"));
        }
        let Some(Value::Object(inner)) = object.get("resource").cloned() else {
            return Err(format!("{what}: an entry needs a resource"));
        };
        return resource(inner, what).map(|resource| Subject::Entry { full_url, resource });
    }
    if !object.contains_key("resourceType") && object.contains_key("reference") {
        let reference = object.get("reference").and_then(Value::as_str).unwrap_or_default();
        return if reference_names_a_resource(reference) {
            Ok(Subject::Reference(reference.to_owned()))
        } else {
            Err(format!("{what}: '{reference}' is not a reference to a resource (Type/id)"))
        };
    }
    resource(object, what).map(Subject::Resource)
}

/// Checks that a JSON object is a resource with a type and a valid id.
fn resource(object: Map<String, Value>, what: &str) -> Result<Map<String, Value>, String> {
    let kind = object.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("{what} needs a resourceType"));
    }
    if !object.get("id").and_then(Value::as_str).is_some_and(is_valid_id) {
        return Err(format!("{what} needs a valid id"));
    }
    Ok(object)
}

/// Reads a resource change's versions (see the module docs).
fn change(
    interaction: &str,
    sent: Option<Value>,
    before: Option<Value>,
    fhir_version: FhirVersion,
) -> Result<ResourceChange, String> {
    let interaction = Interaction::read(interaction)
        .ok_or_else(|| format!("interaction '{interaction}' is not create, update or delete"))?;
    let version = |value: Option<Value>, what: &str| -> Result<Option<Map<String, Value>>, String> {
        match value {
            None => Ok(None),
            Some(Value::Object(object)) => resource(object, what).map(Some),
            Some(_) => Err(format!("{what} must be a FHIR resource")),
        }
    };
    let (sent, before) = (version(sent, "resource")?, version(before, "previous")?);
    let (current, previous) = match interaction {
        Interaction::Create if before.is_some() => return Err("a create has no previous version".to_owned()),
        Interaction::Create | Interaction::Update if sent.is_none() => {
            return Err("a create or update needs the resource".to_owned());
        }
        Interaction::Delete => match (sent, before) {
            (None, None) => return Err("a delete needs the deleted resource (previous or resource)".to_owned()),
            (sent, before) => (None, before.or(sent)),
        },
        _ => (sent, before),
    };
    if let (Some(current), Some(previous)) = (&current, &previous) {
        let key = |r: &Map<String, Value>| (r.get("resourceType").cloned(), r.get("id").cloned());
        if key(current) != key(previous) {
            return Err("resource and previous must be versions of one resource (same type and id)".to_owned());
        }
    }
    Ok(ResourceChange { fhir_version, interaction, current, previous })
}

/// Parses and checks a message body whose resources are in `default_version` unless it
/// names another; `now` stands in for a missing timestamp. The error says what is wrong
/// (for the dead-letter queue's reason and the log).
pub fn parse(body: &str, now: DateTime<Utc>, default_version: FhirVersion) -> Result<Event, String> {
    let wire: Wire = serde_json::from_str(body).map_err(|e| format!("not a fan-out event: {e}"))?;
    let fhir_version = match wire.fhir_version.as_deref() {
        None => default_version,
        Some(text) => text.parse::<FhirVersion>().map_err(|e| format!("fhirVersion: {e}"))?,
    };
    let (audience, focus) = match wire.interaction.as_deref() {
        Some(interaction) => {
            if wire.topic.is_some() || wire.subscription.is_some() || wire.focus.is_some() {
                return Err("a resource change names no topic, subscription or focus: the topics decide".to_owned());
            }
            let change = change(interaction, wire.resource, wire.previous, fhir_version)?;
            let focus = change.focus().cloned().map(Subject::Resource);
            (Audience::Change(Box::new(change)), focus)
        }
        None => {
            if wire.resource.is_some() || wire.previous.is_some() {
                return Err("resource and previous go with an interaction (a resource change)".to_owned());
            }
            let audience = match (wire.topic, wire.subscription) {
                (Some(topic), None) if !topic.trim().is_empty() => Audience::Topic(topic),
                (None, Some(reference)) => {
                    let id = reference.strip_prefix("Subscription/").unwrap_or(&reference);
                    if !is_valid_id(id) {
                        return Err(format!("'{reference}' is not a Subscription reference"));
                    }
                    Audience::Subscription(id.to_owned())
                }
                _ => return Err("give exactly one of topic or subscription, or an interaction".to_owned()),
            };
            (audience, wire.focus.map(|value| subject(value, "focus")).transpose()?)
        }
    };
    let additional_context = wire
        .additional_context
        .into_iter()
        .map(|value| subject(value, "each additionalContext entry"))
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
    Ok(Event { audience, focus, additional_context, timestamp, event_id: wire.event_id, fhir_version })
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
        let event = parse(&body.to_string(), now(), FhirVersion::R5);
        assert!(matches!(&event, Ok(e) if e.audience == Audience::Topic("http://t".into()) && e.timestamp == now()));
        let body = json!({"subscription": "Subscription/s1", "focus": {"resourceType": "Encounter", "id": "e1"}});
        assert!(
            matches!(parse(&body.to_string(), now(), FhirVersion::R5), Ok(e) if e.audience == Audience::Subscription("s1".into()))
        );
    }

    #[test]
    fn the_focus_may_be_a_reference_or_absent() {
        let body = json!({"topic": "t", "focus": {"reference": "https://up.example/fhir/Encounter/e1/_history/2"},
                          "additionalContext": [{"reference": "Patient/p1"}, {"resourceType": "Group", "id": "g"}]});
        let event = parse(&body.to_string(), now(), FhirVersion::R5);
        assert!(matches!(&event, Ok(e) if e.focus.as_ref().is_some_and(|f| f.resource().is_none())), "{event:?}");
        let context = event.map(|e| e.additional_context).unwrap_or_default();
        assert_eq!(
            context.iter().map(|s| s.url("https://b/fhir/")).collect::<Vec<_>>(),
            ["https://b/fhir/Patient/p1", "https://b/fhir/Group/g"]
        );
        assert!(
            matches!(parse(r#"{"topic": "t"}"#, now(), FhirVersion::R5), Ok(e) if e.focus.is_none()),
            "an empty notification's event"
        );
    }

    #[test]
    fn reads_resource_changes() {
        let v1 = json!({"resourceType": "Encounter", "id": "e1", "status": "in-progress"});
        let v2 = json!({"resourceType": "Encounter", "id": "e1", "status": "completed"});
        let update = parse(
            &json!({"interaction": "update", "resource": v2, "previous": v1}).to_string(),
            now(),
            FhirVersion::R5,
        );
        let Ok(Event { audience: Audience::Change(change), focus: Some(focus), .. }) = update else {
            panic!("{update:?}")
        };
        assert_eq!((change.interaction, change.resource_type()), (Interaction::Update, "Encounter"));
        assert_eq!(focus.resource().and_then(|f| f.get("status")), Some(&json!("completed")));
        let delete = parse(&json!({"interaction": "delete", "resource": v1}).to_string(), now(), FhirVersion::R5);
        assert!(
            matches!(&delete, Ok(Event { audience: Audience::Change(c), .. }) if c.current.is_none() && c.previous.is_some()),
            "{delete:?}"
        );
        let other = json!({"resourceType": "Encounter", "id": "e2"});
        for bad in [
            json!({"interaction": "read", "resource": v2}),
            json!({"interaction": "create"}),
            json!({"interaction": "create", "resource": v2, "previous": v1}),
            json!({"interaction": "update", "resource": v2, "previous": other}),
            json!({"interaction": "delete"}),
            json!({"interaction": "update", "resource": {"resourceType": "Encounter"}}),
            json!({"interaction": "update", "resource": [1]}),
            json!({"interaction": "update", "resource": v2, "topic": "t"}),
            json!({"topic": "t", "resource": v2}),
        ] {
            assert!(parse(&bad.to_string(), now(), FhirVersion::R5).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_delivered() {
        let focus = json!({"resourceType": "Encounter", "id": "e1"});
        let cases = [
            json!({"focus": focus}),
            json!({"topic": "t", "focus": {"reference": "not a reference"}}),
            json!({"topic": "t", "focus": {"reference": "Encounter/"}}),
            json!({"topic": "t", "focus": {"reference": 7}}),
            json!({"topic": "t", "subscription": "Subscription/s", "focus": focus}),
            json!({"topic": "t", "focus": {"id": "e1"}}),
            json!({"topic": "t", "focus": {"resourceType": "Encounter"}}),
            json!({"topic": "t", "focus": [1]}),
            json!({"topic": "t", "focus": focus, "timestamp": "yesterday"}),
            json!({"topic": "t", "focus": focus, "additionalContext": [{"resourceType": "Patient"}]}),
            json!({"topic": "t", "focus": focus, "surprise": true}),
            json!({"subscription": "Subscription/a b", "focus": focus}),
            json!({"topic": "t", "focus": focus, "eventId": ""}),
            json!({"topic": "t", "focus": focus, "fhirVersion": "3.0"}),
            json!({"topic": "t", "focus": focus, "fhirVersion": 4}),
        ];
        for case in cases {
            assert!(parse(&case.to_string(), now(), FhirVersion::R5).is_err(), "{case}");
        }
        assert!(parse("not json", now(), FhirVersion::R5).is_err());
    }

    #[test]
    fn resources_are_in_the_deployments_version_unless_the_message_names_one() {
        let body = |version: Option<&str>| {
            let mut body = json!({"topic": "t", "focus": {"resourceType": "Encounter", "id": "e1"}});
            if let Some(version) = version {
                body["fhirVersion"] = json!(version);
            }
            body.to_string()
        };
        let version = |text: &str, default| parse(text, now(), default).map(|e| e.fhir_version);
        assert_eq!(version(&body(None), FhirVersion::R4), Ok(FhirVersion::R4));
        assert_eq!(version(&body(None), FhirVersion::R5), Ok(FhirVersion::R5));
        for (named, expected) in [("R4", FhirVersion::R4), ("4.0.1", FhirVersion::R4), ("4.3", FhirVersion::R4B)] {
            assert_eq!(version(&body(Some(named)), FhirVersion::R5), Ok(expected), "{named}");
        }
        let change = json!({"interaction": "create", "fhirVersion": "R4B",
            "resource": {"resourceType": "Encounter", "id": "e1"}});
        let parsed = parse(&change.to_string(), now(), FhirVersion::R5);
        assert!(
            matches!(&parsed, Ok(Event { audience: Audience::Change(c), .. }) if c.fhir_version == FhirVersion::R4B),
            "{parsed:?}"
        );
        let refused = parse(&body(Some("STU3")), now(), FhirVersion::R5).err().unwrap_or_default();
        assert!(refused.contains("fhirVersion") && refused.contains("R4B"), "{refused}");
    }
}
