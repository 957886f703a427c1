//! fhir-ws FHIRPath: the engine behind `fhir_ws_core::topics::FhirPathCriteria`.
//!
//! Topic `fhirPathCriteria` (`(%previous.empty() or %previous.status != 'completed') and
//! %current.status = 'completed'`) are evaluated by `octofhir-fhirpath` (pinned 0.4.57:
//! the only maintained engine that builds with this workspace's Rust and reads JSON as is;
//! see the guide's Topics chapter). Only the functions that evaluate topics link this crate
//! (the fan-out and the local stack), so the others neither build nor load it.
//!
//! The engine is started on first use, not at cold start: building its function registry
//! takes milliseconds, and most fan-out invocations carry events that name their topic.
//!
//! Two things the engine does not do as FHIRPath says, handled here:
//! - a variable bound to an empty collection becomes a one-item collection, so an absent
//!   `%previous` (create) or `%current` (delete) is written into the expression as `{}`
//!   (the empty collection) instead, outside string literals;
//! - evaluation is `async` though it does no I/O; it is driven to completion in place.

use std::sync::{Arc, OnceLock};

use fhir_ws_core::topics::FhirPathCriteria;
use octofhir_fhirpath::{Collection, EmptyModelProvider, EvaluationContext, FhirPathEngine, FhirPathValue};
use serde_json::{Map, Value};

/// The FHIRPath engine, started on first use; cheap to create.
#[derive(Default)]
pub struct FhirPath {
    engine: OnceLock<Result<FhirPathEngine, String>>,
}

impl std::fmt::Debug for FhirPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirPath").field("started", &self.engine.get().is_some()).finish()
    }
}

impl FhirPath {
    /// An engine that starts when first asked.
    pub fn new() -> Self {
        Self::default()
    }

    /// The engine, once started, as a shared port for the fan-out.
    pub fn shared() -> Arc<dyn FhirPathCriteria> {
        Arc::new(Self::new())
    }

    fn engine(&self) -> Result<&FhirPathEngine, String> {
        self.engine
            .get_or_init(|| {
                let registry = Arc::new(octofhir_fhirpath::create_function_registry());
                futures::executor::block_on(FhirPathEngine::new(registry, Arc::new(EmptyModelProvider)))
                    .map_err(|e| format!("the FHIRPath engine did not start: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// `expression` with every `%name` outside string literals replaced by `{}`.
fn bind_empty(expression: &str, name: &str) -> String {
    let variable = format!("%{name}");
    let mut out = String::with_capacity(expression.len());
    let mut rest = expression;
    let mut quoted = false;
    while let Some(ch) = rest.chars().next() {
        if ch == '\\' && quoted {
            // An escape inside a literal: copy it and the escaped character.
            let escaped: String = rest.chars().take(2).collect();
            out.push_str(&escaped);
            rest = &rest[escaped.len()..];
            continue;
        }
        if ch == '\'' {
            quoted = !quoted;
        }
        let whole_name = rest
            .get(variable.len()..)
            .is_none_or(|after| !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
        if !quoted && rest.starts_with(&variable) && whole_name {
            out.push_str("{}");
            rest = &rest[variable.len()..];
            continue;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

impl FhirPathCriteria for FhirPath {
    fn evaluate(
        &self,
        expression: &str,
        current: Option<&Map<String, Value>>,
        previous: Option<&Map<String, Value>>,
    ) -> Result<bool, String> {
        let engine = self.engine()?;
        let mut text = expression.to_owned();
        for (name, version) in [("current", current), ("previous", previous)] {
            if version.is_none() {
                text = bind_empty(&text, name);
            }
        }
        let focus = current.or(previous).map(|r| FhirPathValue::resource(Value::Object(r.clone())));
        let input = focus.map_or_else(Collection::empty, Collection::single);
        let context = EvaluationContext::new(input, Arc::new(EmptyModelProvider), None, None, None);
        for (name, version) in [("current", current), ("previous", previous)] {
            if let Some(resource) = version {
                context.set_variable(name.to_owned(), FhirPathValue::resource(Value::Object(resource.clone())));
            }
        }
        let result = futures::executor::block_on(engine.evaluate(&text, &context))
            .map_err(|e| format!("fhirPathCriteria '{expression}': {e}"))?;
        let values: Vec<&FhirPathValue> = result.value.iter().collect();
        match values.as_slice() {
            [] => Ok(false),
            [FhirPathValue::Boolean(flag, _, _)] => Ok(*flag),
            _ => Err(format!("fhirPathCriteria '{expression}' gave {} values, not one boolean", values.len())),
        }
    }

    fn check(&self, expression: &str) -> Result<(), String> {
        self.engine()?.compile_plan(expression).map(|_| ()).map_err(|e| format!("fhirPathCriteria '{expression}': {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_ws_core::fhir::version::FhirVersion;
    use fhir_ws_core::topics::{Interaction, ResourceChange, TopicRegistry, Trigger};
    use serde_json::json;

    fn encounter(status: &str) -> Option<Map<String, Value>> {
        json!({"resourceType": "Encounter", "id": "e1", "status": status}).as_object().cloned()
    }

    #[test]
    fn empty_versions_are_written_as_the_empty_collection() {
        assert_eq!(
            bind_empty("%previous.empty() or %previousX = 'a %previous'", "previous"),
            "{}.empty() or %previousX = 'a %previous'"
        );
        assert_eq!(bind_empty(r"'it\'s %current' and %current", "current"), r"'it\'s %current' and {}");
    }

    #[test]
    fn the_spec_example_fires_on_completion_only() {
        let engine = FhirPath::new();
        // SubscriptionTopic/example's rule, with `or` where it writes `|` (see the guide, "Topics").
        let rule = "(%previous.empty() or (%previous.status != 'completed')) and (%current.status = 'completed')";
        let cases = [
            ("create completed", None, encounter("completed"), Ok(true)),
            ("in-progress -> completed", encounter("in-progress"), encounter("completed"), Ok(true)),
            ("completed -> completed", encounter("completed"), encounter("completed"), Ok(false)),
            ("planned -> in-progress", encounter("planned"), encounter("in-progress"), Ok(false)),
            ("delete", encounter("completed"), None, Ok(false)),
        ];
        for (name, previous, current, expected) in cases {
            assert_eq!(engine.evaluate(rule, current.as_ref(), previous.as_ref()), expected, "{name}");
        }
        let union = "(%previous.empty() | (%previous.status != 'completed')) and (%current.status = 'completed')";
        let outcome = engine.evaluate(union, encounter("completed").as_ref(), encounter("in-progress").as_ref());
        assert_ne!(outcome, Ok(true), "the example's union is not a boolean: {outcome:?}");
        assert!(engine.evaluate("%current.status", encounter("a").as_ref(), None).is_err(), "not a boolean");
        assert!(engine.check("%current.status = ").is_err());
        assert!(engine.check("%current.status = 'x'").is_ok());
    }

    #[test]
    fn triggers_combine_fhirpath_with_their_query_criteria() {
        let engine = FhirPath::new();
        let trigger = Trigger::read(
            &json!({"resource": "Encounter", "supportedInteraction": ["create", "update"],
            "queryCriteria": {"current": "status=completed"},
            "fhirPathCriteria": "%previous.empty() or %previous.status != 'completed'"}),
            FhirVersion::R5,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let now = chrono::Utc::now();
        let fires = |interaction, previous: Option<Map<String, Value>>, current| {
            trigger.matches(
                &ResourceChange { fhir_version: FhirVersion::R5, interaction, current, previous },
                Some(&engine),
                now,
            )
        };
        assert_eq!(fires(Interaction::Create, None, encounter("completed")), Ok(true));
        assert_eq!(fires(Interaction::Update, encounter("planned"), encounter("completed")), Ok(true));
        assert_eq!(fires(Interaction::Update, encounter("completed"), encounter("completed")), Ok(false));
        assert_eq!(fires(Interaction::Update, encounter("planned"), encounter("planned")), Ok(false), "query fails");
    }

    /// The `fhirPathCriteria` of `registry`'s topics that the engine refuses, and how many
    /// it checked.
    fn refused_expressions(registry: &TopicRegistry) -> (Vec<String>, usize) {
        let engine = FhirPath::new();
        let expressions: Vec<(&str, &str)> = registry
            .topics()
            .iter()
            .flat_map(|topic| {
                topic.triggers.iter().filter_map(|t| t.fhirpath.as_deref()).map(|e| (topic.url.as_str(), e))
            })
            .collect();
        let refused = expressions
            .iter()
            .filter_map(|(url, expression)| engine.check(expression).err().map(|error| format!("{url}: {error}")))
            .collect();
        (refused, expressions.len())
    }

    /// The topics deployed (`infra/topics/`, compiled in) and the examples to copy
    /// (`infra/topics-examples/`): every FHIRPath criterion compiles. The deployed set is
    /// empty in this repository, which the assertion on the examples' count keeps from
    /// passing over nothing.
    #[test]
    fn every_deployed_and_example_topics_fhirpath_compiles() {
        let deployed = TopicRegistry::deployed(FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"));
        let (refused, checked) = refused_expressions(deployed);
        assert!(refused.is_empty(), "deployed topics: {refused:?}");
        if checked == 0 {
            eprintln!("infra/topics/ deploys no FHIRPath criteria: only the examples were checked");
        }
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/topics-examples");
        let examples = TopicRegistry::from_folder(&folder, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"));
        let (refused, checked) = refused_expressions(&examples);
        assert!(refused.is_empty(), "example topics: {refused:?}");
        assert!(checked >= 2, "the examples hold FHIRPath criteria to check, found {checked}");
    }

    #[test]
    fn a_malformed_criterion_is_refused() {
        assert!(FhirPath::new().check("%current.status = ").is_err());
    }
}
