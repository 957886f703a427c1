//! `SubscriptionTopic.notificationShape`: which further resources a notification carries.
//!
//! fhir-ws has no FHIR database to search, so `include` and `revInclude` are resolved
//! against what the event brought along, its `additionalContext`:
//! - `Encounter:patient` (or `Encounter:subject:Patient`) keeps the context resources the
//!   focus's `patient` parameter references;
//! - `Observation:encounter` as a `revInclude` keeps the context resources of type
//!   Observation whose `encounter` parameter references the focus;
//! - `&iterate=Patient:link` (or `:iterate`) applies once more, to what was included.
//!
//! With a shape for the focus's type, only the resources it selects go into the
//! notification (bodies for `full-resource`, references for `id-only`); with none, the
//! event's context goes in as sent. Nothing is fetched: an include whose resource the
//! event did not bring is left out (the spec lets clients expect them but requires them to
//! work without).

use serde_json::{Map, Value};

use crate::fhir::Subject;
use crate::fhir::string_list;
use crate::fhir::version::{FhirVersion, PerVersion};
use crate::search::{ParamType, SearchParameter, parameter_for};

/// One `_include`-style directive, read.
#[derive(Debug, Clone)]
struct Directive {
    source_type: String,
    /// The reference parameter in each version (`None`: that version has no such
    /// reference parameter, so the directive selects nothing for its resources).
    parameter: PerVersion<Option<&'static SearchParameter>>,
    target_type: Option<String>,
}

impl Directive {
    /// Reads `Type:parameter[:TargetType]` (a trailing `:iterate` is left to the caller),
    /// which must name a reference parameter in `version`.
    fn read(text: &str, version: FhirVersion) -> Result<Self, String> {
        let mut parts = text.split(':');
        let (Some(source_type), Some(code)) = (parts.next(), parts.next()) else {
            return Err(format!("include '{text}' must be Type:parameter"));
        };
        let target_type = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return Err(format!("include '{text}' has too many parts"));
        }
        let reference = |version| {
            parameter_for(source_type, code, version, None).map_err(|e| format!("include '{text}': {e}")).and_then(
                |parameter| match parameter.kind {
                    ParamType::Reference => Ok(parameter),
                    _ => Err(format!("include '{text}': '{code}' is not a reference parameter")),
                },
            )
        };
        reference(version)?;
        let parameter = PerVersion::from_fn(|v| reference(v).ok());
        Ok(Self { source_type: source_type.to_owned(), parameter, target_type })
    }

    /// The `Type/id`s `resource` (in FHIR `version`) references through this directive.
    fn references(&self, resource: &Map<String, Value>, version: FhirVersion) -> Vec<(String, String)> {
        if resource.get("resourceType").and_then(Value::as_str) != Some(self.source_type.as_str()) {
            return Vec::new();
        }
        let Some(Ok(path)) = self.parameter.get(version).map(|p| p.path()) else { return Vec::new() };
        path.evaluate(resource)
            .iter()
            .filter_map(|item| item.value.get("reference").and_then(Value::as_str))
            .filter_map(type_and_id)
            .filter(|(kind, _)| self.target_type.as_deref().is_none_or(|t| t == kind))
            .collect()
    }
}

/// `Type/id` at the end of a reference (without `_history`).
fn type_and_id(reference: &str) -> Option<(String, String)> {
    let reference = reference.split("/_history/").next().unwrap_or(reference);
    let mut segments = reference.rsplit('/');
    let id = segments.next()?;
    let kind = segments.next()?;
    Some((kind.to_owned(), id.to_owned()))
}

/// The `Type/id` a context subject stands for.
fn identity(subject: &Subject) -> Option<(String, String)> {
    match subject {
        Subject::Resource(resource) | Subject::Entry { resource, .. } => Some((
            resource.get("resourceType").and_then(Value::as_str)?.to_owned(),
            resource.get("id").and_then(Value::as_str)?.to_owned(),
        )),
        Subject::Reference(reference) => type_and_id(reference),
    }
}

/// One `notificationShape` entry, read.
#[derive(Debug, Clone)]
pub struct NotificationShape {
    /// The focus type it applies to.
    pub resource_type: String,
    includes: Vec<Directive>,
    iterates: Vec<Directive>,
    rev_includes: Vec<Directive>,
}

impl NotificationShape {
    /// Reads a `notificationShape` entry whose directives must read in `version` (the
    /// deployment's events); the error names the directive.
    pub fn read(value: &Value, version: FhirVersion) -> Result<Self, String> {
        let resource = value.get("resource").and_then(Value::as_str).ok_or("notificationShape needs a resource")?;
        let mut shape = Self {
            resource_type: super::resource_type(resource).to_owned(),
            includes: Vec::new(),
            iterates: Vec::new(),
            rev_includes: Vec::new(),
        };
        for text in string_list(value, "include") {
            let mut parts = text.split('&');
            let first = parts.next().unwrap_or_default();
            match first.strip_suffix(":iterate") {
                Some(directive) => shape.iterates.push(Directive::read(directive, version)?),
                None => shape.includes.push(Directive::read(first, version)?),
            }
            for extra in parts {
                let directive = extra
                    .strip_prefix("iterate=")
                    .ok_or_else(|| format!("include '{text}': only &iterate= may follow"))?;
                shape.iterates.push(Directive::read(directive, version)?);
            }
        }
        for text in string_list(value, "revInclude") {
            shape.rev_includes.push(Directive::read(text.split('&').next().unwrap_or_default(), version)?);
        }
        Ok(shape)
    }

    /// The resource types its includes and rev-includes can add to a notification, for
    /// resources in FHIR `version` (`None`: any type, a reference parameter that may point
    /// anywhere).
    pub fn included_types(&self, version: FhirVersion) -> Vec<Option<String>> {
        let mut types = Vec::new();
        for directive in self.includes.iter().chain(&self.iterates) {
            match (&directive.target_type, directive.parameter.get(version)) {
                (Some(kind), _) => types.push(Some(kind.clone())),
                (None, Some(parameter)) => match parameter.path().ok().and_then(|path| path.reference_types()) {
                    Some(kinds) => types.extend(kinds.into_iter().map(Some)),
                    None if !parameter.targets.is_empty() => types.extend(parameter.targets.iter().cloned().map(Some)),
                    None => types.push(None),
                },
                (None, None) => types.push(None),
            }
        }
        types.extend(self.rev_includes.iter().map(|d| Some(d.source_type.clone())));
        types
    }

    /// The context subjects this shape selects for `focus`, in the order they were sent;
    /// every resource is in FHIR `version`.
    pub fn select(&self, focus: &Map<String, Value>, context: &[Subject], version: FhirVersion) -> Vec<Subject> {
        let mut wanted: Vec<(String, String)> =
            self.includes.iter().flat_map(|d| d.references(focus, version)).collect();
        let included = |wanted: &[(String, String)]| -> Vec<&Subject> {
            context.iter().filter(|s| identity(s).is_some_and(|id| wanted.contains(&id))).collect()
        };
        let first_round: Vec<&Subject> = included(&wanted);
        for subject in first_round {
            if let Some(resource) = subject.resource() {
                wanted.extend(self.iterates.iter().flat_map(|d| d.references(resource, version)));
            }
        }
        let focus_id = identity(&Subject::Resource(focus.clone()));
        for subject in context {
            let Some(resource) = subject.resource() else { continue };
            if self
                .rev_includes
                .iter()
                .any(|d| d.references(resource, version).iter().any(|r| Some(r) == focus_id.as_ref()))
            {
                wanted.extend(identity(subject));
            }
        }
        context.iter().filter(|s| identity(s).is_some_and(|id| wanted.contains(&id))).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(value: Value) -> Subject {
        Subject::Resource(value.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn includes_rev_includes_and_iterate_select_from_the_context() {
        let shape = NotificationShape::read(
            &json!({"resource": "http://hl7.org/fhir/StructureDefinition/Encounter",
            "include": ["Encounter:patient&iterate=Patient:general-practitioner", "Encounter:participant:Practitioner"],
            "revInclude": ["Observation:encounter"]}),
            FhirVersion::R5,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shape.resource_type, "Encounter");
        let focus = json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"},
            "participant": [{"actor": {"reference": "Practitioner/dr"}}]});
        let context = vec![
            resource(
                json!({"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
            ),
            resource(json!({"resourceType": "Patient", "id": "p2"})),
            resource(json!({"resourceType": "Practitioner", "id": "gp"})),
            Subject::Reference("Practitioner/dr".to_owned()),
            resource(json!({"resourceType": "Observation", "id": "o1", "encounter": {"reference": "Encounter/e1"}})),
            resource(json!({"resourceType": "Observation", "id": "o2", "encounter": {"reference": "Encounter/e2"}})),
        ];
        let selected = shape.select(focus.as_object().unwrap_or(&Map::new()), &context, FhirVersion::R5);
        let ids: Vec<String> = selected.iter().filter_map(identity).map(|(t, i)| format!("{t}/{i}")).collect();
        assert_eq!(ids, ["Patient/p1", "Practitioner/gp", "Practitioner/dr", "Observation/o1"]);

        // R4 names an Encounter's participants `individual` (R5: `actor`): each resource
        // is read with its own version's `participant` parameter.
        let r4_focus = json!({"resourceType": "Encounter", "id": "e1",
            "participant": [{"individual": {"reference": "Practitioner/dr"}}]});
        let r4_focus = r4_focus.as_object().cloned().unwrap_or_default();
        let shape = NotificationShape::read(
            &json!({"resource": "Encounter", "include": ["Encounter:participant:Practitioner"]}),
            FhirVersion::R4,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let selected = |version| shape.select(&r4_focus, &context, version).iter().filter_map(identity).count();
        assert_eq!((selected(FhirVersion::R4), selected(FhirVersion::R5)), (1, 0));
    }

    #[test]
    fn directives_must_be_reference_parameters() {
        for bad in [
            json!({"resource": "Encounter", "include": ["Encounter:status"]}),
            json!({"resource": "Encounter", "include": ["Encounter"]}),
            json!({"resource": "Encounter", "include": ["Encounter:nothing"]}),
            json!({"resource": "Encounter", "include": ["Encounter:patient&sort=x"]}),
            json!({"include": ["Encounter:patient"]}),
        ] {
            assert!(NotificationShape::read(&bad, FhirVersion::R5).is_err(), "{bad}");
        }
    }
}
