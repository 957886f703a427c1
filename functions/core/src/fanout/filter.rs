//! `Subscription.filterBy`: which filters this server evaluates, and how.
//!
//! Without SubscriptionTopic definitions to map filter names to search parameters,
//! `filterParameter` names a top-level element of the focus resource (`_id` means `id`),
//! and `value` is compared for equality:
//! - primitives (string, number, boolean) by their text;
//! - `Reference`: `reference` equals the value, or ends with `/` + the value
//!   (`patient=Patient/123` matches `http://fhir.example.org/Patient/123`);
//! - `Coding` / `CodeableConcept` / `Identifier` (token): `code`, `system|code` or `|code`
//!   (`value` and `system|value` for identifiers);
//! - arrays: any element matches.
//!
//! `filterBy.resourceType`, when given, must equal the focus's `resourceType`. Only the
//! `eq` comparator (or none) and no modifier are supported; anything else is refused
//! when the Subscription is written. All filters must match (AND).

use serde_json::{Map, Value};

use crate::fhir::FilterBy;

/// Checks a filter can be evaluated here; the error is shown to the client.
pub fn check_supported(filter: &FilterBy) -> Result<(), String> {
    let parameter = filter.filter_parameter.as_deref().unwrap_or_default();
    let element_like = parameter.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && parameter.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !element_like {
        return Err(format!("filterParameter '{parameter}' must name an element of the focus resource"));
    }
    if let Some(comparator) = filter.comparator.as_deref().filter(|c| *c != "eq") {
        return Err(format!("comparator '{comparator}' is not supported; only eq"));
    }
    if let Some(modifier) = &filter.modifier {
        return Err(format!("modifier '{modifier}' is not supported"));
    }
    Ok(())
}

/// True when every filter matches the focus resource. Without the resource (an event
/// that carried only a reference, or nothing) only a subscription without filters
/// matches: what cannot be checked is not delivered.
pub fn matches_all(filters: &[FilterBy], focus: Option<&Map<String, Value>>) -> bool {
    match focus {
        Some(focus) => filters.iter().all(|filter| matches(filter, focus)),
        None => filters.is_empty(),
    }
}

fn matches(filter: &FilterBy, focus: &Map<String, Value>) -> bool {
    if let Some(kind) = &filter.resource_type
        && focus.get("resourceType").and_then(Value::as_str) != Some(kind.as_str())
    {
        return false;
    }
    let (Some(parameter), Some(wanted)) = (filter.filter_parameter.as_deref(), filter.value.as_deref()) else {
        return false;
    };
    let element = if parameter == "_id" { "id" } else { parameter };
    focus.get(element).is_some_and(|value| value_matches(value, wanted))
}

fn value_matches(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(text) => text == wanted,
        Value::Number(number) => number.to_string() == wanted,
        Value::Bool(flag) => flag.to_string() == wanted,
        Value::Array(items) => items.iter().any(|item| value_matches(item, wanted)),
        Value::Object(object) => object_matches(object, wanted),
        Value::Null => false,
    }
}

fn object_matches(object: &Map<String, Value>, wanted: &str) -> bool {
    if let Some(reference) = object.get("reference").and_then(Value::as_str) {
        return reference == wanted || (wanted.contains('/') && reference.ends_with(&format!("/{wanted}")));
    }
    if let Some(codings) = object.get("coding").and_then(Value::as_array) {
        return codings.iter().filter_map(Value::as_object).any(|coding| token_matches(coding, "code", wanted));
    }
    if object.contains_key("code") {
        return token_matches(object, "code", wanted);
    }
    if object.contains_key("value") {
        return token_matches(object, "value", wanted);
    }
    false
}

/// FHIR token search semantics on a Coding (`code`) or Identifier (`value`).
fn token_matches(object: &Map<String, Value>, field: &str, wanted: &str) -> bool {
    let code = object.get(field).and_then(Value::as_str);
    let system = object.get("system").and_then(Value::as_str);
    match wanted.split_once('|') {
        None => code == Some(wanted),
        Some(("", wanted_code)) => system.is_none() && code == Some(wanted_code),
        Some((wanted_system, wanted_code)) => system == Some(wanted_system) && code == Some(wanted_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(parameter: &str, value: &str) -> FilterBy {
        FilterBy { filter_parameter: Some(parameter.into()), value: Some(value.into()), ..FilterBy::default() }
    }

    fn encounter() -> Map<String, Value> {
        json!({
            "resourceType": "Encounter", "id": "e1", "status": "finished", "priority": 3, "active": true,
            "subject": {"reference": "http://fhir.example.org/Patient/123"},
            "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}]}],
            "identifier": [{"system": "urn:mrn", "value": "42"}],
            "serviceType": {"code": "bare"}
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    #[test]
    fn equality_filters_include_and_exclude() {
        let focus = encounter();
        let included = [
            filter("status", "finished"),
            filter("_id", "e1"),
            filter("priority", "3"),
            filter("active", "true"),
            filter("subject", "Patient/123"),
            filter("subject", "http://fhir.example.org/Patient/123"),
            filter("class", "IMP"),
            filter("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP"),
            filter("identifier", "urn:mrn|42"),
            filter("serviceType", "|bare"),
        ];
        for f in &included {
            assert!(matches_all(std::slice::from_ref(f), Some(&focus)), "{f:?}");
        }
        let excluded = [
            filter("status", "planned"),
            filter("subject", "Patient/12"),
            filter("subject", "123"),
            filter("class", "other|IMP"),
            filter("identifier", "urn:other|42"),
            filter("serviceType", "x|bare"),
            filter("missing", "x"),
        ];
        for f in &excluded {
            assert!(!matches_all(std::slice::from_ref(f), Some(&focus)), "{f:?}");
        }
        let mut typed = filter("status", "finished");
        typed.resource_type = Some("Observation".into());
        assert!(!matches_all(&[typed], Some(&focus)), "resourceType must agree");
        assert!(!matches_all(&[filter("status", "finished"), filter("priority", "4")], Some(&focus)), "AND");
        assert!(matches_all(&[], Some(&focus)), "no filters match everything");
        assert!(matches_all(&[], None), "…even without the resource");
        assert!(!matches_all(&[filter("status", "finished")], None), "a filter cannot be checked without it");
    }

    #[test]
    fn unsupported_filters_are_named() {
        assert_eq!(check_supported(&filter("status", "x")), Ok(()));
        let mut gt = filter("priority", "3");
        gt.comparator = Some("gt".into());
        assert!(check_supported(&gt).is_err_and(|e| e.contains("gt")));
        let mut modified = filter("status", "x");
        modified.modifier = Some("not".into());
        assert!(check_supported(&modified).is_err_and(|e| e.contains("not")));
        assert!(check_supported(&filter("subject.reference", "x")).is_err());
    }
}
