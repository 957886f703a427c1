//! What a SMART grant lets a caller subscribe to, and the grant a Subscription keeps.
//!
//! **At creation and update** ([`admit`]): the caller needs, on every resource type the
//! topic can put in a notification (a deployed topic's trigger types and what its
//! `notificationShape` includes; `*` for a topic that is not deployed), `r` for
//! `full-resource` content and `r` or `s` for `id-only` and `empty`. Where only
//! patient-level scopes grant a type, the Subscription must be limited to the launch
//! patient by a `filterBy` on one of that type's Patient-compartment parameters
//! (`Encounter` `patient=Patient/123`; the Patient itself `_id=123`); the refusal names the
//! filter to add, and the client's resource is never rewritten.
//!
//! **At matching** ([`KeptGrant::permits`]): the grant kept with the Subscription decides
//! whether an event's focus may reach it at all, before the event is numbered: its type
//! must be granted, a patient-level scope needs it in the launch patient's compartment,
//! and a granular scope's restrictions (`?category=…`) are search clauses it must match.
//! A focus sent only as a reference passes only a grant that needs none of those checks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::grant::Grant;
use super::scope::{Context, Permission, ResourceScope, Syntax, resource_scopes};
use crate::fhir::version::FhirVersion;
use crate::fhir::{ContentLevel, Subscription};
use crate::search::Clause;
use crate::search::compartment::PatientCompartment;
use crate::topics::TopicRegistry;

/// The grant a Subscription created in `smart` mode keeps (stored with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptGrant {
    /// The resource scopes, as v2 writes them.
    pub scopes: Vec<String>,
    /// The launch patient, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// The permissions a content level needs on every notified type: `full-resource` shows
/// bodies (read); `id-only` and `empty` show that something happened (read or search).
fn needed(level: ContentLevel) -> &'static [Permission] {
    match level {
        ContentLevel::FullResource => &[Permission::Read],
        _ => &[Permission::Read, Permission::Search],
    }
}

/// A readable example of the scope that would grant `permissions` on `kind`.
fn example(kind: Option<&str>, permissions: &[Permission]) -> String {
    let letters: String = permissions.iter().map(|p| p.letter()).collect();
    let first = permissions.first().map(|p| p.letter()).unwrap_or('r');
    let kind = kind.unwrap_or("*");
    if permissions.len() > 1 {
        format!(
            "'{}' on {kind} (e.g. patient/{kind}.{first} or user/{kind}.{letters})",
            letters.chars().map(String::from).collect::<Vec<_>>().join("' or '")
        )
    } else {
        format!("'{first}' on {kind} (e.g. patient/{kind}.{first} or user/{kind}.{first})")
    }
}

/// The scopes of `grant` that give one of `permissions` on `kind` (`None`: every type,
/// which only a `*` scope covers).
fn granting<'a>(grant: &'a Grant, kind: Option<&'a str>, permissions: &'a [Permission]) -> Vec<&'a ResourceScope> {
    grant
        .scopes
        .iter()
        .filter(|s| match kind {
            Some(kind) => s.covers(kind),
            None => s.resource_type.is_none(),
        })
        .filter(|s| permissions.iter().any(|p| s.permissions.has(*p)))
        .collect()
}

/// Whether `filter` limits `kind` resources to Patient `patient` through one of the
/// compartment's `parameters`.
fn limits_to_patient(filter: &crate::fhir::FilterBy, kind: &str, parameters: &[String], patient: &str) -> bool {
    let own = filter.resource_type.as_deref().map(|t| t.rsplit('/').next().unwrap_or(t));
    let parameter = filter.filter_parameter.as_deref().unwrap_or_default();
    let value = filter.value.as_deref().unwrap_or_default();
    let plain = filter.modifier.is_none() && filter.comparator.as_deref().is_none_or(|c| c == "eq");
    let names_patient =
        value == format!("Patient/{patient}") || value == patient || value.ends_with(&format!("/Patient/{patient}"));
    let by_compartment = parameters.iter().any(|p| p == parameter) || (kind == "Patient" && parameter == "_id");
    plain
        && own.is_none_or(|own| own == kind)
        && by_compartment
        && names_patient
        && (kind != "Patient" || parameter != "_id" || value == patient)
}

/// The filter a patient-level caller must add for `kind`, as a message.
fn patient_filter_needed(kind: &str, parameters: &[String], patient: &str) -> String {
    let parameter = parameters.iter().find(|p| p.as_str() != "{def}").map(String::as_str);
    match (kind, parameter) {
        ("Patient", _) => format!("Patient?_id={patient}"),
        (_, Some(parameter)) => format!("{kind}?{parameter}=Patient/{patient}"),
        (_, None) => format!("(none exists: {kind} is not in the Patient compartment)"),
    }
}

/// Why `subscription` may not be created (or updated to this) under `grant`, as a 403
/// message; otherwise the grant to keep with it.
pub fn admit(grant: &Grant, subscription: &Subscription, topics: &TopicRegistry) -> Result<KeptGrant, String> {
    let level = subscription.content.unwrap_or(ContentLevel::IdOnly);
    let topic = subscription.topic.as_deref().and_then(|url| topics.get(url));
    // Every type a notification carries needs the permission; the focus types (the
    // triggers') are what filters can limit to the launch patient (included resources
    // are checked on each notification instead).
    let (types, focus_types, version) = match topic {
        Some(topic) => (
            topic.notified_types(topic.event_version),
            topic.triggers.iter().map(|t| Some(t.resource_type.clone())).collect::<Vec<_>>(),
            topic.event_version,
        ),
        None => (vec![None], vec![None], FhirVersion::R5),
    };
    let permissions = needed(level);
    for kind in &types {
        let scopes = granting(grant, kind.as_deref(), permissions);
        if scopes.is_empty() {
            return Err(format!(
                "'{}' notifications of this topic can carry {} resources: that needs {}; the access token's \
                 resource scopes are: {}",
                level.code(),
                kind.as_deref().unwrap_or("any"),
                example(kind.as_deref(), permissions),
                held(grant)
            ));
        }
        if focus_types.contains(kind) && scopes.iter().all(|s| s.context == Context::Patient) {
            let Some(patient) = grant.patient.as_deref() else {
                return Err("patient-level scopes need a launch patient, and the access token names none".to_owned());
            };
            let kind_name = kind.as_deref().unwrap_or("*");
            let parameters: Vec<String> = match kind {
                Some(kind) => PatientCompartment::of(version).parameters(kind).to_vec(),
                None => Vec::new(),
            };
            let limited = subscription.filter_by.iter().any(|filter| match kind {
                Some(kind) => limits_to_patient(filter, kind, &parameters, patient),
                // A topic not deployed: any filter naming the launch patient (the
                // compartment is checked again on each notification).
                None => filter.value.as_deref().is_some_and(|v| v == format!("Patient/{patient}")),
            });
            if !limited {
                let filter = match kind {
                    Some(kind) => format!("the filter {}", patient_filter_needed(kind, &parameters, patient)),
                    None => format!("a filter whose value is Patient/{patient} (such as patient=Patient/{patient})"),
                };
                return Err(format!(
                    "patient-level access to {kind_name}: the Subscription must be limited to the launch patient \
                     with {filter}"
                ));
            }
        }
    }
    Ok(grant.kept())
}

fn held(grant: &Grant) -> String {
    let texts = grant.scope_texts();
    if texts.is_empty() { "none".to_owned() } else { texts.join(" ") }
}

impl KeptGrant {
    /// The kept scopes, read again (they were written as v2).
    fn scopes(&self) -> Vec<ResourceScope> {
        resource_scopes(self.scopes.iter().map(String::as_str)).into_iter().filter(|s| s.syntax == Syntax::V2).collect()
    }

    /// Whether an event whose focus is `resource` (in FHIR `version`), or only a reference
    /// to a `reference_type`, may reach a subscription with this grant at content `level`.
    pub fn permits(
        &self,
        resource: Option<&Map<String, Value>>,
        reference_type: Option<&str>,
        level: ContentLevel,
        version: FhirVersion,
        now: DateTime<Utc>,
    ) -> bool {
        let kind = match resource {
            Some(resource) => resource.get("resourceType").and_then(Value::as_str).unwrap_or_default(),
            None => reference_type.unwrap_or_default(),
        };
        if kind.is_empty() {
            return false;
        }
        let permissions = needed(level);
        self.scopes().iter().filter(|s| s.covers(kind) && permissions.iter().any(|p| s.permissions.has(*p))).any(
            |scope| {
                let unchecked = scope.context != Context::Patient && scope.restrictions.is_empty();
                match resource {
                    None => unchecked,
                    Some(_) if unchecked => true,
                    Some(resource) => {
                        let in_compartment = scope.context != Context::Patient
                            || self.patient.as_deref().is_some_and(|patient| {
                                PatientCompartment::of(version).contains(resource, patient, version, now)
                            });
                        in_compartment
                            && scope.restrictions.iter().all(|(name, value)| {
                                Clause::parse(name, value, kind, version).is_ok_and(|c| c.matches(resource, now))
                            })
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(scopes: &str, patient: Option<&str>) -> Grant {
        let mut claims = std::collections::HashMap::from([("scope".to_owned(), scopes.to_owned())]);
        if let Some(patient) = patient {
            claims.insert("patient".to_owned(), patient.to_owned());
        }
        Grant::from_claims(&claims, &super::super::GrantClaims::default())
    }

    fn topics() -> TopicRegistry {
        let topic = json!({"resourceType": "SubscriptionTopic", "url": "http://t/encounter",
            "resourceTrigger": [{"resource": "Encounter"}],
            "canFilterBy": [{"resource": "Encounter", "filterParameter": "patient"}],
            "notificationShape": [{"resource": "Encounter", "include": ["Encounter:patient"]}]});
        TopicRegistry::from_files(&[("t.json", &topic.to_string())], FhirVersion::R4).unwrap_or_else(|e| panic!("{e}"))
    }

    fn subscription(content: &str, filters: Value) -> Subscription {
        serde_json::from_value(json!({"resourceType": "Subscription", "status": "requested",
            "topic": "http://t/encounter", "channelType": {"code": "websocket"}, "content": content,
            "filterBy": filters}))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn creation_needs_read_on_what_notifications_carry_and_the_patient_filter() {
        let topics = topics();
        let mine = json!([{"resourceType": "Encounter", "filterParameter": "patient", "value": "Patient/123"}]);
        let admitted = |scopes: &str, content: &str, filters: &Value| {
            admit(&grant(scopes, Some("123")), &subscription(content, filters.clone()), &topics)
        };
        let ok = admitted("user/Encounter.r user/Patient.r", "full-resource", &json!([]));
        assert!(ok.is_ok(), "{ok:?}");
        assert!(admitted("user/*.rs", "full-resource", &json!([])).is_ok());
        let refused =
            admitted("user/Encounter.s user/Patient.s", "full-resource", &json!([])).err().unwrap_or_default();
        assert!(refused.contains("'r' on Encounter"), "{refused}");
        assert!(admitted("user/Encounter.s user/Patient.s", "id-only", &json!([])).is_ok(), "id-only: s suffices");
        let no_patient_type = admitted("user/Encounter.r", "full-resource", &json!([])).err().unwrap_or_default();
        assert!(no_patient_type.contains("Patient"), "the shape includes the Patient: {no_patient_type}");
        // Patient-level: the filter on the launch patient is required, and must be that patient.
        let refused = admitted("patient/*.rs", "full-resource", &json!([])).err().unwrap_or_default();
        assert!(refused.contains("Encounter?patient=Patient/123"), "{refused}");
        assert!(admitted("patient/*.rs", "full-resource", &mine).is_ok());
        let other = json!([{"resourceType": "Encounter", "filterParameter": "patient", "value": "Patient/999"}]);
        assert!(admitted("patient/*.rs", "full-resource", &other).is_err());
        let kept = admitted("patient/*.rs", "full-resource", &mine).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, KeptGrant { scopes: vec!["patient/*.rs".to_owned()], patient: Some("123".to_owned()) });
        // No launch patient: patient-level scopes cannot be limited to one.
        let orphan = admit(&grant("patient/*.rs", None), &subscription("id-only", mine.clone()), &topics);
        assert!(orphan.is_err_and(|e| e.contains("launch patient")));
    }

    #[test]
    fn matching_applies_the_kept_grant() {
        let now = Utc::now();
        let encounter = |patient: &str, class: &str| {
            json!({"resourceType": "Encounter", "id": "e", "subject": {"reference": format!("Patient/{patient}")},
                   "class": {"code": class}})
            .as_object()
            .cloned()
            .unwrap_or_default()
        };
        let kept = |scopes: &[&str], patient: Option<&str>| KeptGrant {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            patient: patient.map(str::to_owned),
        };
        let permits = |grant: &KeptGrant, resource: Option<&Map<String, Value>>, level| {
            grant.permits(resource, Some("Encounter"), level, FhirVersion::R4, now)
        };
        let patient = kept(&["patient/Encounter.rs"], Some("123"));
        assert!(permits(&patient, Some(&encounter("123", "IMP")), ContentLevel::FullResource));
        assert!(!permits(&patient, Some(&encounter("999", "IMP")), ContentLevel::FullResource), "another patient");
        assert!(!permits(&patient, None, ContentLevel::IdOnly), "a reference cannot be checked");
        let granular = kept(&["user/Encounter.rs?class=EMER"], None);
        assert!(permits(&granular, Some(&encounter("1", "EMER")), ContentLevel::FullResource));
        assert!(!permits(&granular, Some(&encounter("1", "IMP")), ContentLevel::FullResource));
        let clinician = kept(&["user/*.rs"], None);
        assert!(permits(&clinician, None, ContentLevel::IdOnly), "nothing to check");
        let searcher = kept(&["user/Encounter.s"], None);
        assert!(!permits(&searcher, Some(&encounter("1", "IMP")), ContentLevel::FullResource));
        assert!(permits(&searcher, Some(&encounter("1", "IMP")), ContentLevel::IdOnly));
        assert!(!permits(&kept(&["user/Observation.rs"], None), Some(&encounter("1", "IMP")), ContentLevel::IdOnly));
    }
}
