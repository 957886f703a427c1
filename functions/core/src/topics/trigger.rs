//! A topic's resource triggers, evaluated against one resource change.
//!
//! The rules (FHIR R5 `SubscriptionTopic.resourceTrigger`; *ours* where the spec leaves the
//! choice to the server, see the guide, docs/src/topics.md):
//! 1. the changed resource's type must be the trigger's `resource` (bare name or
//!    `http://hl7.org/fhir/StructureDefinition/…`);
//! 2. a non-empty `supportedInteraction` must list the interaction; an empty one means all;
//! 3. `queryCriteria`: `previous` is run on the previous version (on a create, it is
//!    `resultForCreate`: absent means *fail*, ours), `current` on the new version (on a
//!    delete, `resultForDelete`: absent means *fail*, ours); a criterion that is not
//!    given is left out rather than counted as a pass (ours; HAPI and fhir-candle pass
//!    it); `requireBoth` ANDs the two, otherwise either suffices. An update sent without
//!    its previous version fails a `previous` criterion (ours: it cannot be checked);
//! 4. `fhirPathCriteria` is evaluated with `%current` and `%previous` (either may be
//!    empty) by a [`FhirPathCriteria`] engine; exactly one `true` matches, anything else
//!    does not and is reported as an error of the topic;
//! 5. with both 3 and 4, both must match (ours, as HAPI; the spec calls them alternative
//!    renderings of one rule);
//! 6. a topic matches when any of its triggers does.
//!
//! `eventTrigger`s are not evaluated: producers name such topics in their events.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::fhir::version::{FhirVersion, PerVersion};
use crate::search::Criteria;

/// What happened to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// It was created (no previous version).
    Create,
    /// It was updated.
    Update,
    /// It was deleted (no current version).
    Delete,
}

impl Interaction {
    /// Reads `create`, `update` or `delete`.
    pub fn read(code: &str) -> Option<Self> {
        match code {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// A resource change: the versions before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChange {
    /// The FHIR version both are written in (their search parameters are that version's).
    pub fhir_version: FhirVersion,
    /// The interaction.
    pub interaction: Interaction,
    /// The resource after the change (none on delete).
    pub current: Option<Map<String, Value>>,
    /// The resource before it (none on create; optional on update and delete).
    pub previous: Option<Map<String, Value>>,
}

impl ResourceChange {
    /// The resource the change is about: the new version, or on delete the last one.
    pub fn focus(&self) -> Option<&Map<String, Value>> {
        self.current.as_ref().or(self.previous.as_ref())
    }

    /// The focus's resource type.
    pub fn resource_type(&self) -> &str {
        self.focus().and_then(|f| f.get("resourceType")).and_then(Value::as_str).unwrap_or_default()
    }
}

/// A FHIRPath engine for `fhirPathCriteria` (built only into the functions that evaluate
/// topics; see the `fhir-ws-fhirpath` crate).
pub trait FhirPathCriteria: Send + Sync + std::fmt::Debug {
    /// Evaluates `expression` on the focus with `%current` and `%previous` bound (absent
    /// ones are empty): `Ok(true)` only for a single `true`; `Ok(false)` for a single
    /// `false` or an empty result; `Err` for anything else (the message is logged).
    fn evaluate(
        &self,
        expression: &str,
        current: Option<&Map<String, Value>>,
        previous: Option<&Map<String, Value>>,
    ) -> Result<bool, String>;

    /// Checks that `expression` parses (when a topic is loaded).
    fn check(&self, expression: &str) -> Result<(), String>;
}

/// A `queryCriteria`, read.
#[derive(Debug, Clone)]
struct QueryCriteria {
    previous: Option<Criteria>,
    result_for_create: bool,
    current: Option<Criteria>,
    result_for_delete: bool,
    require_both: bool,
}

/// One resource trigger, read.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The resource type (bare name).
    pub resource_type: String,
    interactions: Vec<Interaction>,
    /// The `queryCriteria` read against each version's search parameters (`Err`: they do
    /// not read in that version, so a change in it cannot be evaluated).
    query: PerVersion<Result<Option<QueryCriteria>, String>>,
    /// The `fhirPathCriteria`, if any.
    pub fhirpath: Option<String>,
}

impl Trigger {
    /// Reads a `resourceTrigger` (R5, R4B) or `trigger` (R6 ballot) entry, whose
    /// `queryCriteria` must read for resources in `version` (the deployment's events).
    pub fn read(value: &Value, version: FhirVersion) -> Result<Self, String> {
        let resource = value.get("resource").and_then(Value::as_str).ok_or("each trigger needs a resource")?;
        let resource_type = super::resource_type(resource).to_owned();
        let interactions = value
            .get("supportedInteraction")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|code| {
                code.as_str()
                    .and_then(Interaction::read)
                    .ok_or_else(|| format!("supportedInteraction {code} is not create, update or delete"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let query = PerVersion::from_fn(|v| {
            value.get("queryCriteria").map(|q| read_query(q, &resource_type, v)).transpose().map(Option::flatten)
        });
        if let Err(error) = query.get(version) {
            return Err(error.clone());
        }
        let fhirpath = value.get("fhirPathCriteria").and_then(Value::as_str).map(str::to_owned);
        Ok(Self { resource_type, interactions, query, fhirpath })
    }

    /// Whether the change fires this trigger; `Err` when its FHIRPath could not be
    /// evaluated to a boolean.
    pub fn matches(
        &self,
        change: &ResourceChange,
        fhirpath: Option<&dyn FhirPathCriteria>,
        now: DateTime<Utc>,
    ) -> Result<bool, String> {
        if change.resource_type() != self.resource_type {
            return Ok(false);
        }
        if !self.interactions.is_empty() && !self.interactions.contains(&change.interaction) {
            return Ok(false);
        }
        let query = self.query.get(change.fhir_version).as_ref().map_err(|error| {
            format!("the queryCriteria do not read for FHIR {} resources: {error}", change.fhir_version.path_segment())
        })?;
        if let Some(query) = query
            && !query.matches(change, now)
        {
            return Ok(false);
        }
        match (&self.fhirpath, fhirpath) {
            (None, _) => Ok(true),
            (Some(expression), Some(engine)) => {
                engine.evaluate(expression, change.current.as_ref(), change.previous.as_ref())
            }
            (Some(_), None) => Err("this function has no FHIRPath engine for fhirPathCriteria".to_owned()),
        }
    }
}

fn read_query(value: &Value, resource_type: &str, version: FhirVersion) -> Result<Option<QueryCriteria>, String> {
    let criteria = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(|text| Criteria::parse(text, resource_type, version).map_err(|e| format!("queryCriteria.{key}: {e}")))
            .transpose()
    };
    let passes = |key: &str| match value.get(key).and_then(Value::as_str) {
        None | Some("test-fails") => Ok(false),
        Some("test-passes") => Ok(true),
        Some(other) => Err(format!("queryCriteria.{key} '{other}' is not test-passes or test-fails")),
    };
    let (previous, current) = (criteria("previous")?, criteria("current")?);
    if previous.is_none() && current.is_none() {
        return Ok(None);
    }
    Ok(Some(QueryCriteria {
        previous,
        result_for_create: passes("resultForCreate")?,
        current,
        result_for_delete: passes("resultForDelete")?,
        require_both: value.get("requireBoth").and_then(Value::as_bool).unwrap_or(false),
    }))
}

impl QueryCriteria {
    fn matches(&self, change: &ResourceChange, now: DateTime<Utc>) -> bool {
        let previous = self.previous.as_ref().map(|criteria| match change.interaction {
            Interaction::Create => self.result_for_create,
            _ => change.previous.as_ref().is_some_and(|p| criteria.matches(p, now)),
        });
        let current = self.current.as_ref().map(|criteria| match change.interaction {
            Interaction::Delete => self.result_for_delete,
            _ => change.current.as_ref().is_some_and(|c| criteria.matches(c, now)),
        });
        let results = previous.into_iter().chain(current);
        if self.require_both { results.into_iter().all(|r| r) } else { results.into_iter().any(|r| r) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn resource(value: Value) -> Option<Map<String, Value>> {
        value.as_object().cloned()
    }

    fn encounter(status: &str, patient: &str) -> Option<Map<String, Value>> {
        resource(json!({"resourceType": "Encounter", "id": "e1", "status": status,
            "subject": {"reference": patient}}))
    }

    fn change(
        interaction: Interaction,
        previous: Option<Map<String, Value>>,
        current: Option<Map<String, Value>>,
    ) -> ResourceChange {
        ResourceChange { fhir_version: FhirVersion::R5, interaction, current, previous }
    }

    fn trigger(value: Value) -> Trigger {
        Trigger::read(&value, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (description, change, expected) rows against one trigger.
    fn check(trigger: &Trigger, rows: Vec<(&str, ResourceChange, bool)>) {
        for (description, change, expected) in rows {
            assert_eq!(trigger.matches(&change, None, now()), Ok(expected), "{description}");
        }
    }

    #[test]
    fn the_spec_example_fires_when_an_encounter_becomes_completed() {
        // SubscriptionTopic/example's queryCriteria (its FHIRPath is tested with the engine).
        let example = trigger(json!({"resource": "http://hl7.org/fhir/StructureDefinition/Encounter",
            "supportedInteraction": ["update"], "queryCriteria": {"previous": "status:not=completed",
            "resultForCreate": "test-passes", "current": "status=completed", "resultForDelete": "test-fails",
            "requireBoth": true}}));
        let (planned, done) = (encounter("in-progress", "Patient/p1"), encounter("completed", "Patient/p1"));
        check(
            &example,
            vec![
                ("in-progress -> completed", change(Interaction::Update, planned.clone(), done.clone()), true),
                ("completed -> completed", change(Interaction::Update, done.clone(), done.clone()), false),
                ("in-progress -> in-progress", change(Interaction::Update, planned.clone(), planned.clone()), false),
                (
                    "created completed: not a supported interaction",
                    change(Interaction::Create, None, done.clone()),
                    false,
                ),
                ("deleted", change(Interaction::Delete, done.clone(), None), false),
                ("an update without its previous version", change(Interaction::Update, None, done.clone()), false),
                (
                    "another resource type",
                    change(
                        Interaction::Update,
                        resource(json!({"resourceType": "Observation",
                "id": "o", "status": "in-progress"})),
                        resource(json!({"resourceType": "Observation", "id": "o",
                "status": "completed"})),
                    ),
                    false,
                ),
            ],
        );
    }

    #[test]
    fn status_transitions_count_creates_by_result_for_create() {
        // No supportedInteraction: every interaction.
        let started = trigger(json!({"resource": "Encounter", "queryCriteria": {"previous": "status:not=in-progress",
            "resultForCreate": "test-passes", "current": "Encounter?status=in-progress", "requireBoth": true}}));
        let (planned, active) = (encounter("planned", "Patient/p1"), encounter("in-progress", "Patient/p1"));
        check(
            &started,
            vec![
                ("created in progress", change(Interaction::Create, None, active.clone()), true),
                ("created planned", change(Interaction::Create, None, planned.clone()), false),
                ("planned -> in progress", change(Interaction::Update, planned.clone(), active.clone()), true),
                ("deleted: resultForDelete absent fails", change(Interaction::Delete, active.clone(), None), false),
            ],
        );
        let absent_result =
            trigger(json!({"resource": "Encounter", "queryCriteria": {"previous": "status:not=in-progress",
            "current": "status=in-progress", "requireBoth": true}}));
        check(
            &absent_result,
            vec![("resultForCreate absent fails", change(Interaction::Create, None, active.clone()), false)],
        );
        let either = trigger(json!({"resource": "Encounter", "queryCriteria": {"previous": "status=in-progress",
            "current": "status=in-progress", "resultForDelete": "test-passes"}}));
        check(
            &either,
            vec![
                ("leaves in-progress", change(Interaction::Update, active.clone(), planned.clone()), true),
                ("neither", change(Interaction::Update, planned.clone(), planned.clone()), false),
                ("deleted: resultForDelete passes", change(Interaction::Delete, planned.clone(), None), true),
            ],
        );
    }

    #[test]
    fn new_resources_with_a_code_and_references_to_a_patient() {
        let heart_rate = trigger(json!({"resource": "Observation", "supportedInteraction": ["create"],
            "queryCriteria": {"current": "code=http://loinc.org|8867-4"}}));
        let observation = |code: &str, subject: &str| {
            resource(json!({"resourceType": "Observation", "id": "o",
            "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": subject}}))
        };
        check(
            &heart_rate,
            vec![
                ("created with the code", change(Interaction::Create, None, observation("8867-4", "Patient/p1")), true),
                ("created with another", change(Interaction::Create, None, observation("1234-5", "Patient/p1")), false),
                (
                    "updated with the code",
                    change(Interaction::Update, None, observation("8867-4", "Patient/p1")),
                    false,
                ),
            ],
        );
        let about_a_patient = trigger(json!({"resource": "Observation", "supportedInteraction": ["create", "delete"],
            "queryCriteria": {"current": "patient:missing=false", "resultForDelete": "test-passes"}}));
        check(
            &about_a_patient,
            vec![
                ("about a patient", change(Interaction::Create, None, observation("1", "Patient/p1")), true),
                ("about a group", change(Interaction::Create, None, observation("1", "Group/g1")), false),
                ("deleted", change(Interaction::Delete, observation("1", "Group/g1"), None), true),
            ],
        );
        let any_change = trigger(json!({"resource": "Patient"}));
        let patient = resource(json!({"resourceType": "Patient", "id": "p1"}));
        check(&any_change, vec![("interaction only", change(Interaction::Delete, patient, None), true)]);
    }

    #[test]
    fn unreadable_triggers_and_missing_engines_are_errors() {
        for bad in [
            json!({}),
            json!({"resource": "Encounter", "supportedInteraction": ["read"]}),
            json!({"resource": "Encounter", "queryCriteria": {"current": "subject.name=x"}}),
            json!({"resource": "Encounter", "queryCriteria": {"current": "status=x", "resultForDelete": "maybe"}}),
        ] {
            assert!(Trigger::read(&bad, FhirVersion::R5).is_err(), "{bad}");
        }
        let with_fhirpath =
            trigger(json!({"resource": "Encounter", "fhirPathCriteria": "%current.status = 'completed'"}));
        let update = change(Interaction::Update, None, encounter("completed", "Patient/p1"));
        assert!(with_fhirpath.matches(&update, None, now()).is_err_and(|e| e.contains("FHIRPath")));
    }

    #[test]
    fn criteria_read_each_resource_with_its_own_versions_search_parameters() {
        let trigger = trigger(json!({"resource": "Encounter", "queryCriteria": {"current": "date=ge2026-01-01"}}));
        // An R4 Encounter keeps its dates in `period`; R5 renamed it `actualPeriod`.
        let r4 =
            resource(json!({"resourceType": "Encounter", "id": "e1", "period": {"start": "2026-12-03T08:00:00Z"}}));
        let mut as_r4 = change(Interaction::Create, None, r4);
        as_r4.fhir_version = FhirVersion::R4;
        assert_eq!(trigger.matches(&as_r4, None, now()), Ok(true), "R4: date is Encounter.period");
        let mut as_r5 = as_r4.clone();
        as_r5.fhir_version = FhirVersion::R5;
        assert_eq!(trigger.matches(&as_r5, None, now()), Ok(false), "R5: date is Encounter.actualPeriod");
        // A parameter R4 does not have: the topic loads for R5 events, and an R4 change
        // cannot be evaluated (an error of the topic, not a silent no-match).
        let r5_only = json!({"resource": "Encounter", "queryCriteria": {"current": "subject-status=arrived"}});
        assert!(Trigger::read(&r5_only, FhirVersion::R4).is_err_and(|e| e.contains("subject-status")));
        let loaded = trigger_for_r5_only(&r5_only);
        assert!(loaded.matches(&as_r4, None, now()).is_err_and(|e| e.contains("FHIR R4")));
    }

    fn trigger_for_r5_only(value: &Value) -> Trigger {
        Trigger::read(value, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"))
    }
}
