//! Reading the notification Bundles other FHIR servers send on the rest-hook channel.
//!
//! Three shapes, told apart by the Bundle's `type` and its first entry:
//!
//! | version | `Bundle.type` | first entry |
//! |---|---|---|
//! | R4 (Backport IG) | `history` | `Parameters` (`backport-subscription-status-r4`) |
//! | R4B (Backport IG) | `history` | R4B `SubscriptionStatus` |
//! | R5 | `subscription-notification` | `SubscriptionStatus` |
//!
//! Every element the reader uses must have its FHIR JSON type (event numbers are strings
//! in all three, as `integer64` and R4's `valueString` are written), checked before it is
//! read, so that nothing of the wrong type is taken as absent. A focus or additional-context reference is resolved to the resource when an
//! entry of the Bundle carries it (its `fullUrl`, or `Type/id`, is the reference): that is
//! a `full-resource` notification; otherwise it stays a reference (`id-only`). An `empty`
//! notification has neither. Relative references are made absolute on the upstream
//! server's base (its subscription's URL without `Subscription/{id}`), since that is where
//! the resources live.

use serde_json::{Map, Value};

use crate::fhir::Subject;
use crate::fhir::is_valid_id;
use crate::fhir::reference_names_a_resource;
use crate::fhir::version::FhirVersion;

/// What an upstream notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamNotification {
    /// The version of its shape.
    pub version: FhirVersion,
    /// The upstream subscription (its reference, as sent).
    pub subscription: String,
    /// The topic canonical, if sent (`empty` notifications may leave it out).
    pub topic: Option<String>,
    /// `handshake`, `heartbeat`, `event-notification`, `query-status` or `query-event`.
    pub kind: String,
    /// Upstream `eventsSinceSubscriptionStart`, if sent.
    pub events_since_start: Option<u64>,
    /// The events, in order.
    pub events: Vec<UpstreamEvent>,
}

/// One upstream `notificationEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamEvent {
    /// Its upstream event number.
    pub number: u64,
    /// When it happened (FHIR instant), if sent.
    pub timestamp: Option<String>,
    /// The focus: the resource when the Bundle carried it, else the reference.
    pub focus: Option<Subject>,
    /// Further resources, the same way.
    pub additional_context: Vec<Subject>,
}

/// Notification types FHIR defines.
const KINDS: [&str; 5] = ["handshake", "heartbeat", "event-notification", "query-status", "query-event"];

/// Reads a notification Bundle; the message says what is wrong (for a 400).
pub fn read_notification(bundle: &Value) -> Result<UpstreamNotification, String> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err("the body must be a FHIR notification Bundle".to_owned());
    }
    shape::check(bundle)?;
    let bundle_type = bundle.get("type").and_then(Value::as_str).unwrap_or_default();
    let status = bundle.pointer("/entry/0/resource").ok_or("the Bundle has no first entry with a resource")?;
    let status_type = status.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let subscription = subscription_reference(status);
    let entries = Entries::of(bundle, &subscription);
    let mut notification = match (bundle_type, status_type) {
        ("history", "Parameters") => read_r4_status(status, &entries)?,
        ("history", "SubscriptionStatus") => read_status(FhirVersion::R4B, status, &entries)?,
        ("subscription-notification", "SubscriptionStatus") => read_status(FhirVersion::R5, status, &entries)?,
        ("history" | "subscription-notification", other) => {
            return Err(format!("the first entry must be the subscription status, not a {other}"));
        }
        (other, _) => {
            return Err(format!(
                "a Bundle of type '{other}' is not a notification (history or subscription-notification)"
            ));
        }
    };
    if !KINDS.contains(&notification.kind.as_str()) {
        return Err(format!("'{}' is not a notification type", notification.kind));
    }
    if notification.subscription.is_empty() || notification.subscription.len() > 2048 {
        return Err("the status must name the upstream subscription".to_owned());
    }
    notification.topic = notification.topic.filter(|t| !t.trim().is_empty());
    if let Some(topic) = &notification.topic {
        crate::limits::within("the notification's topic", topic, crate::limits::MAX_TOPIC_BYTES)?;
    }
    Ok(notification)
}

/// The Bundle's resources after the first entry, findable by reference, and the
/// upstream server's base.
struct Entries<'a> {
    resources: Vec<(Option<&'a str>, &'a Map<String, Value>)>,
    base: Option<String>,
}

/// The base of an absolute `…/Subscription/{id}` reference.
fn upstream_base(subscription: &str) -> Option<String> {
    let (base, id) = subscription.rsplit_once("/Subscription/")?;
    (base.contains("://") && is_valid_id(id)).then(|| base.to_owned())
}

impl<'a> Entries<'a> {
    fn of(bundle: &'a Value, subscription: &str) -> Self {
        let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        Self {
            resources: entries
                .iter()
                .skip(1)
                .filter_map(|entry| {
                    let resource = entry.get("resource")?.as_object()?;
                    Some((entry.get("fullUrl").and_then(Value::as_str), resource))
                })
                .collect(),
            base: upstream_base(subscription),
        }
    }

    /// A reference made absolute on the upstream base, when there is one.
    fn absolute(&self, reference: &str) -> String {
        match &self.base {
            Some(base) if !reference.contains("://") => format!("{base}/{reference}"),
            _ => reference.to_owned(),
        }
    }

    /// The subject a reference names: the resource when an entry holds it.
    fn subject(&self, reference: &str) -> Subject {
        let found = self.resources.iter().find(|(full_url, resource)| {
            let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
            let type_and_id = format!("{kind}/{id}");
            *full_url == Some(reference)
                || (is_valid_id(id) && (reference == type_and_id || reference.ends_with(&format!("/{type_and_id}"))))
        });
        let url = self.absolute(reference);
        match found {
            Some((_, resource)) if is_valid_id(resource.get("id").and_then(Value::as_str).unwrap_or_default()) => {
                if url.contains("://") {
                    Subject::Entry { full_url: url, resource: (*resource).clone() }
                } else {
                    Subject::Resource((*resource).clone())
                }
            }
            _ => Subject::Reference(url),
        }
    }

    /// A `Reference` JSON value as a subject; the message names `what` when it is not one.
    fn reference(&self, value: &Value, what: &str) -> Result<Subject, String> {
        let reference = value.get("reference").and_then(Value::as_str).unwrap_or_default();
        if !reference_names_a_resource(reference) {
            return Err(format!("{what} '{reference}' is not a reference to a resource"));
        }
        Ok(self.subject(reference))
    }
}

/// The upstream subscription reference of a status resource (R4 `Parameters` or
/// `SubscriptionStatus`); empty when missing.
fn subscription_reference(status: &Value) -> String {
    let reference = match status.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => {
            let parameters = status.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            named(parameters, "subscription").next().and_then(value_of).and_then(|v| v.get("reference"))
        }
        _ => status.pointer("/subscription/reference"),
    };
    reference.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A number sent as a string.
fn number(value: &Value, what: &str) -> Result<u64, String> {
    match value {
        Value::String(text) => text.trim().parse().map_err(|_| format!("{what} '{text}' is not a whole number")),
        Value::Null => Err(format!("{what} is missing")),
        _ => Err(format!("{what} must be a string")),
    }
}

/// The JSON types of the elements the reader uses, declared once and checked by serde
/// (unknown elements are ignored here; they are kept or dropped by the reader).
mod shape {
    use serde::Deserialize;
    use serde_json::{Map, Value};

    #[derive(Deserialize)]
    struct Bundle {
        #[serde(rename = "type")]
        _kind: Option<String>,
        #[serde(rename = "timestamp")]
        _timestamp: Option<String>,
        entry: Option<Vec<Entry>>,
    }

    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "fullUrl")]
        _full_url: Option<String>,
        resource: Option<Map<String, Value>>,
        #[serde(rename = "request")]
        _request: Option<EntryRequest>,
        #[serde(rename = "response")]
        _response: Option<EntryResponse>,
    }

    #[derive(Deserialize)]
    struct EntryRequest {
        #[serde(rename = "method")]
        _method: Option<String>,
        #[serde(rename = "url")]
        _url: Option<String>,
    }

    #[derive(Deserialize)]
    struct EntryResponse {
        #[serde(rename = "status")]
        _status: Option<String>,
    }

    #[derive(Deserialize)]
    struct Reference {
        #[serde(rename = "reference")]
        _reference: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        #[serde(rename = "status")]
        _status: Option<String>,
        #[serde(rename = "type")]
        _kind: Option<String>,
        #[serde(rename = "topic")]
        _topic: Option<String>,
        #[serde(rename = "subscription")]
        _subscription: Option<Reference>,
        #[serde(rename = "eventsSinceSubscriptionStart")]
        _events_since_start: Option<String>,
        #[serde(rename = "notificationEvent")]
        _events: Option<Vec<Event>>,
    }

    #[derive(Deserialize)]
    struct Event {
        #[serde(rename = "eventNumber")]
        _number: Option<String>,
        #[serde(rename = "timestamp")]
        _timestamp: Option<String>,
        #[serde(rename = "focus")]
        _focus: Option<Reference>,
        #[serde(rename = "additionalContext")]
        _additional_context: Option<Vec<Reference>>,
    }

    #[derive(Deserialize)]
    struct Parameters {
        parameter: Option<Vec<Parameter>>,
    }

    #[derive(Deserialize)]
    struct Parameter {
        name: String,
        part: Option<Vec<Parameter>>,
        #[serde(flatten)]
        rest: Map<String, Value>,
    }

    /// Checks the Bundle, its entries and its status resource (either shape).
    pub(super) fn check(bundle: &Value) -> Result<(), String> {
        let parsed = Bundle::deserialize(bundle).map_err(|e| format!("the Bundle is not valid: {e}"))?;
        let Some(status) = parsed.entry.and_then(|entries| entries.into_iter().next()).and_then(|e| e.resource) else {
            return Ok(());
        };
        let status = Value::Object(status);
        if status.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
            let parameters =
                Parameters::deserialize(&status).map_err(|e| format!("the status Parameters are not valid: {e}"))?;
            parameters.parameter.iter().flatten().try_for_each(check_parameter)
        } else {
            Status::deserialize(&status).map(|_| ()).map_err(|e| format!("the SubscriptionStatus is not valid: {e}"))
        }
    }

    /// A parameter's `value[x]`: `valueReference` an object with a string `reference`,
    /// every other kind the reader uses a string.
    fn check_parameter(parameter: &Parameter) -> Result<(), String> {
        for (key, value) in &parameter.rest {
            let fine = match key.as_str() {
                "valueReference" => Reference::deserialize(value).is_ok() && value.is_object(),
                "valueString" | "valueCode" | "valueCanonical" | "valueUri" | "valueInstant" => value.is_string(),
                _ => true,
            };
            if !fine {
                return Err(format!("parameter '{}': {key} has the wrong type", parameter.name));
            }
        }
        parameter.part.iter().flatten().try_for_each(check_parameter)
    }
}

/// An R4B or R5 `SubscriptionStatus`.
fn read_status(version: FhirVersion, status: &Value, entries: &Entries<'_>) -> Result<UpstreamNotification, String> {
    let text = |key: &str| status.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut events = Vec::new();
    for event in status.get("notificationEvent").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let focus = event.get("focus").map(|f| entries.reference(f, "focus")).transpose()?;
        let additional_context = event
            .get("additionalContext")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| entries.reference(c, "additionalContext"))
            .collect::<Result<Vec<_>, _>>()?;
        events.push(UpstreamEvent {
            number: number(event.get("eventNumber").unwrap_or(&Value::Null), "eventNumber")?,
            timestamp: event.get("timestamp").and_then(Value::as_str).map(str::to_owned),
            focus,
            additional_context,
        });
    }
    Ok(UpstreamNotification {
        version,
        subscription: subscription_reference(status),
        topic: text("topic"),
        kind: text("type").unwrap_or_default(),
        events_since_start: status
            .get("eventsSinceSubscriptionStart")
            .map(|n| number(n, "eventsSinceSubscriptionStart"))
            .transpose()?,
        events,
    })
}

/// The `value[x]` of a parameter (or part).
fn value_of(parameter: &Value) -> Option<&Value> {
    parameter.as_object()?.iter().find(|(key, _)| key.starts_with("value")).map(|(_, value)| value)
}

/// The parameters (or parts) named `name`.
fn named<'a>(list: &'a [Value], name: &str) -> impl Iterator<Item = &'a Value> {
    list.iter().filter(move |p| p.get("name").and_then(Value::as_str) == Some(name))
}

/// The R4 status `Parameters` of the Backport IG.
fn read_r4_status(status: &Value, entries: &Entries<'_>) -> Result<UpstreamNotification, String> {
    let parameters = status.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let text =
        |name: &str| named(parameters, name).next().and_then(value_of).and_then(Value::as_str).map(str::to_owned);
    let mut events = Vec::new();
    for event in named(parameters, "notification-event") {
        let parts = event.get("part").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let part = |name: &str| named(parts, name).next().and_then(value_of);
        let focus = part("focus").map(|f| entries.reference(f, "focus")).transpose()?;
        let additional_context = named(parts, "additional-context")
            .filter_map(value_of)
            .map(|c| entries.reference(c, "additional-context"))
            .collect::<Result<Vec<_>, _>>()?;
        events.push(UpstreamEvent {
            number: number(part("event-number").unwrap_or(&Value::Null), "event-number")?,
            timestamp: part("timestamp").and_then(Value::as_str).map(str::to_owned),
            focus,
            additional_context,
        });
    }
    let subscription = subscription_reference(status);
    let events_since_start = named(parameters, "events-since-subscription-start")
        .next()
        .and_then(value_of)
        .map(|n| number(n, "events-since-subscription-start"))
        .transpose()?;
    Ok(UpstreamNotification {
        version: FhirVersion::R4,
        subscription,
        topic: text("topic"),
        kind: text("type").unwrap_or_default(),
        events_since_start,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r4(events: Value, entries: Value) -> Value {
        let mut all = vec![json!({"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": "https://up.example/fhir/Subscription/admission"}},
            {"name": "topic", "valueCanonical": "http://hl7.org/SubscriptionTopic/admission"},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": "2"},
            events]}})];
        all.extend(entries.as_array().cloned().unwrap_or_default());
        json!({"resourceType": "Bundle", "type": "history", "entry": all})
    }

    #[test]
    fn reads_r4_events_and_resolves_resources_from_the_entries() {
        let event = json!({"name": "notification-event", "part": [
            {"name": "event-number", "valueString": "2"},
            {"name": "timestamp", "valueInstant": "2020-05-29T11:44:13.1882432-05:00"},
            {"name": "focus", "valueReference": {"reference": "https://up.example/fhir/Encounter/86009987"}},
            {"name": "additional-context", "valueReference": {"reference": "Patient/p1"}}]});
        let encounter = json!({"fullUrl": "https://up.example/fhir/Encounter/86009987",
            "resource": {"resourceType": "Encounter", "id": "86009987"}, "request": {"method": "POST", "url": "Encounter"}});
        let full = read_notification(&r4(event.clone(), json!([encounter]))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(full.version, FhirVersion::R4);
        assert_eq!(full.subscription, "https://up.example/fhir/Subscription/admission");
        assert_eq!((full.kind.as_str(), full.events_since_start), ("event-notification", Some(2)));
        let first = &full.events[0];
        assert_eq!(first.number, 2);
        assert!(matches!(&first.focus, Some(Subject::Entry { resource, .. }) if resource["id"] == "86009987"));
        let patient = Subject::Reference("https://up.example/fhir/Patient/p1".to_owned());
        assert_eq!(first.additional_context, [patient], "relative: on the upstream's base");
        let id_only = read_notification(&r4(event, json!([]))).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&id_only.events[0].focus, Some(Subject::Reference(r)) if r.ends_with("Encounter/86009987")));
    }

    #[test]
    fn refuses_what_is_not_a_notification() {
        let status = json!({"resourceType": "SubscriptionStatus", "type": "heartbeat",
                            "subscription": {"reference": "Subscription/s"}});
        let ok =
            json!({"resourceType": "Bundle", "type": "subscription-notification", "entry": [{"resource": status}]});
        assert!(read_notification(&ok).is_ok());
        let cases = [
            json!({"resourceType": "Patient"}),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": status}]}),
            json!({"resourceType": "Bundle", "type": "history", "entry": []}),
            json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {"resourceType": "Patient"}}]}),
            json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource":
                {"resourceType": "SubscriptionStatus", "type": "surprise", "subscription": {"reference": "Subscription/s"}}}]}),
            json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource":
                {"resourceType": "SubscriptionStatus", "type": "heartbeat"}}]}),
            json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource":
                {"resourceType": "SubscriptionStatus", "type": "event-notification", "subscription": {"reference": "Subscription/s"},
                 "notificationEvent": [{"eventNumber": "two"}]}}]}),
            json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource":
                {"resourceType": "SubscriptionStatus", "type": "event-notification", "subscription": {"reference": "Subscription/s"},
                 "notificationEvent": [{"eventNumber": "2", "focus": {"reference": "nonsense"}}]}}]}),
        ];
        for case in cases {
            assert!(read_notification(&case).is_err(), "{case}");
        }
    }
}
