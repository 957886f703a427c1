//! SubscriptionTopic definitions deployed with the stack, and what they allow.
//!
//! The operator puts R5 `SubscriptionTopic` resources (or the R6 ballot shape, whose
//! `trigger` holds `canFilterBy`) as JSON files in `infra/topics/`; `build.rs` compiles
//! them in ([`TopicRegistry::deployed`]). With no files, every topic URL is accepted, as
//! before. With some, [`TopicRegistry::check`] refuses (422) a Subscription whose topic is
//! not one of them, or whose `filterBy` its topic's `canFilterBy` does not allow: the
//! parameter (for that resource type), the comparator and the modifier.
//!
//! Topics are loaded for the FHIR version of the deployment's events (`EventFhirVersion`,
//! [`crate::fanout::event`]): each `canFilterBy` must name a search parameter this server
//! evaluates ([`crate::search`]) for its resource type in that version, and each trigger's
//! `queryCriteria` and each `notificationShape` directive must read in it, or the
//! deployment is refused at cold start. Every resource is then evaluated with the search
//! parameters of its own version (an event may say it is in another one); what does not
//! read in that version cannot be evaluated (the trigger is a `TopicError`, a filter does
//! not match, a shape directive selects nothing). A Subscription's filters on a deployed topic are FHIR search
//! clauses ([`Topic::filters_match`]); on an unknown topic (only possible with no topics
//! deployed) they keep the element-name rules of [`crate::fanout::filter`].
//!
//! Discovery is [`crate::ops::topic_discovery`] (R5) and `metadata` (R4, R4B); evaluation
//! of resource changes is [`trigger`].

pub mod route;
pub mod shape;
pub mod trigger;

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::fhir::Subject;
use crate::fhir::version::{FhirVersion, PerVersion};
use crate::fhir::{FilterBy, Subscription, string_list};
use crate::search::{Clause, parameter_for};
pub use route::{Routes, TOPIC_WIDE};
pub use shape::NotificationShape;
pub use trigger::{FhirPathCriteria, Interaction, ResourceChange, Trigger};

mod files {
    include!(concat!(env!("OUT_DIR"), "/topic_files.rs"));
}

/// Prefix of core resource type URLs; `Encounter` and
/// `http://hl7.org/fhir/StructureDefinition/Encounter` name the same type.
const CORE_TYPES: &str = "http://hl7.org/fhir/StructureDefinition/";

/// A resource type in either form, as the bare name.
fn resource_type(uri: &str) -> &str {
    uri.strip_prefix(CORE_TYPES).unwrap_or(uri)
}

/// One `canFilterBy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedFilter {
    /// The resource type it applies to (bare name), if the topic says.
    pub resource_type: Option<String>,
    /// The `filterParameter` subscribers use.
    pub parameter: String,
    /// Allowed comparators (none listed: only equality, with no comparator).
    pub comparators: Vec<String>,
    /// Allowed modifiers (none listed: none).
    pub modifiers: Vec<String>,
    /// The SearchParameter canonical it is defined by, if given.
    pub definition: Option<String>,
}

impl AllowedFilter {
    fn read(value: &Value) -> Result<Self, String> {
        let parameter = value
            .get("filterParameter")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty())
            .ok_or("each canFilterBy needs a filterParameter")?;
        Ok(Self {
            resource_type: value.get("resource").and_then(Value::as_str).map(|r| resource_type(r).to_owned()),
            parameter: parameter.to_owned(),
            comparators: string_list(value, "comparator"),
            modifiers: string_list(value, "modifier"),
            definition: value.get("filterDefinition").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Whether this entry allows `filter` (a `filterBy` without a resource type matches
    /// an entry of any type).
    fn allows_parameter(&self, filter: &FilterBy) -> bool {
        let kind = filter.resource_type.as_deref().map(resource_type);
        filter.filter_parameter.as_deref() == Some(self.parameter.as_str())
            && (kind.is_none() || self.resource_type.is_none() || kind == self.resource_type.as_deref())
    }
}

/// One deployed topic.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Its canonical URL (what `Subscription.topic` names).
    pub url: String,
    /// The resource as deployed.
    pub resource: Value,
    /// Its `canFilterBy` entries (top level in R5, under each `trigger` in the R6 ballots).
    pub allowed_filters: Vec<AllowedFilter>,
    /// Its resource triggers (`resourceTrigger`, or `trigger` in the R6 ballots).
    pub triggers: Vec<Trigger>,
    /// Its `notificationShape` entries.
    pub shapes: Vec<NotificationShape>,
    /// The FHIR version of the events it was loaded for (what its filters are checked in).
    pub event_version: FhirVersion,
}

impl Topic {
    /// Reads a `SubscriptionTopic` resource for events in FHIR `version`; the message says
    /// what is wrong.
    pub fn read(resource: Value, version: FhirVersion) -> Result<Self, String> {
        if resource.get("resourceType").and_then(Value::as_str) != Some("SubscriptionTopic") {
            return Err("resourceType must be SubscriptionTopic".to_owned());
        }
        let url =
            resource.get("url").and_then(Value::as_str).filter(|u| !u.trim().is_empty()).ok_or("url is required")?;
        let r5 = resource.get("canFilterBy").and_then(Value::as_array).into_iter().flatten();
        let r6 = resource
            .get("trigger")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|trigger| trigger.get("canFilterBy").and_then(Value::as_array).into_iter().flatten());
        let allowed_filters = r5.chain(r6).map(AllowedFilter::read).collect::<Result<Vec<_>, _>>()?;
        let triggers = ["resourceTrigger", "trigger"]
            .iter()
            .flat_map(|key| resource.get(*key).and_then(Value::as_array).into_iter().flatten())
            .map(|trigger| Trigger::read(trigger, version))
            .collect::<Result<Vec<_>, _>>()?;
        let shapes = resource
            .get("notificationShape")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|shape| NotificationShape::read(shape, version))
            .collect::<Result<Vec<_>, _>>()?;
        let topic = Self { url: url.to_owned(), resource, allowed_filters, triggers, shapes, event_version: version };
        for allowed in &topic.allowed_filters {
            for kind in topic.filter_types(allowed.resource_type.as_deref()) {
                parameter_for(&kind, &allowed.parameter, version, allowed.definition.as_deref())
                    .map_err(|e| format!("canFilterBy '{}': {e}", allowed.parameter))?;
            }
        }
        Ok(topic)
    }

    /// The resource types a filter may apply to: its own, or every trigger's.
    fn filter_types(&self, own: Option<&str>) -> Vec<String> {
        match own {
            Some(kind) => vec![resource_type(kind).to_owned()],
            None => {
                let mut kinds: Vec<String> = self.triggers.iter().map(|t| t.resource_type.clone()).collect();
                kinds.dedup();
                kinds
            }
        }
    }

    /// The allowed filter `filter` uses, for resources of `kind`.
    fn allowed_for(&self, filter: &FilterBy, kind: &str) -> Option<&AllowedFilter> {
        self.allowed_filters
            .iter()
            .find(|a| a.allows_parameter(filter) && a.resource_type.as_deref().is_none_or(|own| own == kind))
    }

    /// Why `filter` cannot be evaluated as a search clause, if it cannot.
    fn clause_refusal(&self, filter: &FilterBy) -> Option<String> {
        let own = filter.resource_type.as_deref().or_else(|| {
            self.allowed_filters.iter().find(|a| a.allows_parameter(filter)).and_then(|a| a.resource_type.as_deref())
        });
        self.filter_types(own).into_iter().find_map(|kind| {
            let definition = self.allowed_for(filter, &kind).and_then(|a| a.definition.as_deref());
            Clause::from_filter(filter, &kind, self.event_version, definition).err()
        })
    }

    /// Every resource type a notification of this topic can carry, for events in FHIR
    /// `version`: its triggers' types and what its `notificationShape`s include (`None`:
    /// any type). What a SMART subscriber must be allowed to read.
    pub fn notified_types(&self, version: FhirVersion) -> Vec<Option<String>> {
        let mut types: Vec<Option<String>> = self.triggers.iter().map(|t| Some(t.resource_type.clone())).collect();
        types.extend(self.shapes.iter().flat_map(|shape| shape.included_types(version)));
        let mut unique = Vec::new();
        for kind in types {
            if !unique.contains(&kind) {
                unique.push(kind);
            }
        }
        unique
    }

    /// The context resources a notification about `focus` carries, when this topic has a
    /// `notificationShape` for its type (`None`: the event's context as sent); the
    /// resources are in FHIR `version`.
    pub fn shaped_context(
        &self,
        focus: Option<&Map<String, Value>>,
        context: &[Subject],
        version: FhirVersion,
    ) -> Option<Vec<Subject>> {
        let focus = focus?;
        let kind = focus.get("resourceType").and_then(Value::as_str)?;
        self.shapes.iter().find(|shape| shape.resource_type == kind).map(|shape| shape.select(focus, context, version))
    }

    /// Whether the change fires this topic (any trigger); `Err` (for the log) when no
    /// trigger matched and one could not be evaluated.
    pub fn matches(
        &self,
        change: &ResourceChange,
        fhirpath: Option<&dyn FhirPathCriteria>,
        now: DateTime<Utc>,
    ) -> Result<bool, String> {
        let mut failure = None;
        for trigger in &self.triggers {
            match trigger.matches(change, fhirpath, now) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(error) => failure = Some(error),
            }
        }
        failure.map_or(Ok(false), Err)
    }

    /// Whether a subscription's `filterBy` entries all match `focus` (a resource in FHIR
    /// `version`), as FHIR search clauses of that version; filters for another resource
    /// type are skipped. Without the resource only a subscription without filters matches;
    /// a filter whose parameter that version lacks does not match.
    pub fn filters_match(
        &self,
        filters: &[FilterBy],
        focus: Option<&Map<String, Value>>,
        version: FhirVersion,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(focus) = focus else { return filters.is_empty() };
        let kind = focus.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        filters.iter().filter(|f| f.resource_type.as_deref().is_none_or(|own| resource_type(own) == kind)).all(
            |filter| {
                let definition = self.allowed_for(filter, kind).and_then(|a| a.definition.as_deref());
                Clause::from_filter(filter, kind, version, definition).is_ok_and(|clause| clause.matches(focus, now))
            },
        )
    }

    /// Why `filter` is not allowed by this topic, if it is not.
    fn refusal(&self, filter: &FilterBy) -> Option<String> {
        let parameter = filter.filter_parameter.as_deref().unwrap_or_default();
        let candidates: Vec<&AllowedFilter> =
            self.allowed_filters.iter().filter(|a| a.allows_parameter(filter)).collect();
        if candidates.is_empty() {
            let allowed: Vec<&str> = self.allowed_filters.iter().map(|a| a.parameter.as_str()).collect();
            let kind = filter.resource_type.as_deref().map(|k| format!(" on {}", resource_type(k))).unwrap_or_default();
            return Some(format!(
                "topic {} does not allow filtering by '{parameter}'{kind}; it allows: {}",
                self.url,
                if allowed.is_empty() { "no filters".to_owned() } else { allowed.join(", ") }
            ));
        }
        if let Some(comparator) = filter.comparator.as_deref().filter(|c| *c != "eq")
            && !candidates.iter().any(|a| a.comparators.iter().any(|c| c == comparator))
        {
            return Some(format!("topic {} does not allow comparator '{comparator}' on '{parameter}'", self.url));
        }
        if let Some(modifier) = filter.modifier.as_deref()
            && !candidates.iter().any(|a| a.modifiers.iter().any(|m| m == modifier))
        {
            return Some(format!("topic {} does not allow modifier '{modifier}' on '{parameter}'", self.url));
        }
        None
    }
}

/// The topics of a deployment.
#[derive(Debug, Clone, Default)]
pub struct TopicRegistry {
    topics: Vec<Topic>,
}

impl TopicRegistry {
    /// Reads topic files (`(name, JSON)`) for events in FHIR `version`; the message names
    /// the file and the problem.
    pub fn from_files(files: &[(&str, &str)], version: FhirVersion) -> Result<Self, String> {
        let mut topics: Vec<Topic> = Vec::with_capacity(files.len());
        for (name, text) in files {
            let json: Value = serde_json::from_str(text).map_err(|e| format!("{name}: not JSON: {e}"))?;
            let topic = Topic::read(json, version)
                .map_err(|e| format!("{name} (for FHIR {} events): {e}", version.path_segment()))?;
            if topics.iter().any(|t| t.url == topic.url) {
                return Err(format!("{name}: another file already defines topic {}", topic.url));
            }
            topics.push(topic);
        }
        Ok(Self { topics })
    }

    /// Reads every `*.json` file of `folder`, in name order, for events in FHIR `version`
    /// (`fhir-ws serve --topics`).
    pub fn from_folder(folder: &std::path::Path, version: FhirVersion) -> Result<Self, String> {
        let entries = std::fs::read_dir(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let mut paths: Vec<std::path::PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.retain(|path| path.extension().is_some_and(|e| e == "json"));
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
        let named: Vec<(&str, &str)> = files.iter().map(|(name, text)| (name.as_str(), text.as_str())).collect();
        Self::from_files(&named, version)
    }

    /// The topics compiled in from `infra/topics/`, for events in FHIR `version` (read
    /// once; a file that does not read is a deployment error, reported at cold start by
    /// the function's configuration).
    pub fn deployed(version: FhirVersion) -> Result<&'static Self, String> {
        static DEPLOYED: OnceLock<PerVersion<OnceLock<Result<TopicRegistry, String>>>> = OnceLock::new();
        let slot = DEPLOYED.get_or_init(|| PerVersion::from_fn(|_| OnceLock::new())).get(version);
        slot.get_or_init(|| Self::from_files(files::TOPIC_FILES, version)).as_ref().map_err(Clone::clone)
    }

    /// No topics deployed: any topic is accepted.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Every deployed topic, in file-name order.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// The topic with this canonical URL.
    pub fn get(&self, url: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.url == url)
    }

    /// The deployed topics `change` fires, each with its outcome (`Err`: a trigger could
    /// not be evaluated).
    pub fn fired_by<'a>(
        &'a self,
        change: &'a ResourceChange,
        fhirpath: Option<&'a dyn FhirPathCriteria>,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (&'a Topic, Result<bool, String>)> + 'a {
        self.topics.iter().map(move |topic| (topic, topic.matches(change, fhirpath, now)))
    }

    /// The bucket of its topic `subscription` is indexed under ([`route`]): the
    /// topic-wide one for a topic not deployed.
    pub fn route_of(&self, subscription: &Subscription) -> String {
        match subscription.topic.as_deref().and_then(|url| self.get(url)) {
            Some(topic) => topic.route_of(&subscription.filter_by),
            None => TOPIC_WIDE.to_owned(),
        }
    }

    /// Why `subscription` may not be created with these topics, if it may not (for a 422).
    pub fn check(&self, subscription: &Subscription) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let url = subscription.topic.as_deref().unwrap_or_default();
        let topic = self.get(url).ok_or_else(|| {
            let known: Vec<&str> = self.topics.iter().map(|t| t.url.as_str()).collect();
            format!("topic '{url}' is not known here; this server has: {}", known.join(", "))
        })?;
        match subscription
            .filter_by
            .iter()
            .find_map(|filter| topic.refusal(filter).or_else(|| topic.clause_refusal(filter)))
        {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subscription(topic: &str, filters: Value) -> Subscription {
        serde_json::from_value(json!({"resourceType": "Subscription", "status": "requested", "topic": topic,
            "channelType": {"code": "websocket"}, "filterBy": filters}))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn no_topics_accept_anything_and_deployed_and_example_topics_read() {
        assert!(TopicRegistry::default().check(&subscription("http://any", json!([]))).is_ok());
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/topics-examples");
        for version in FhirVersion::ALL {
            // Empty in this repository (then any topic is accepted); what is there must read.
            if let Err(error) = TopicRegistry::deployed(version) {
                panic!("the files in infra/topics do not read for {version:?}: {error}");
            }
            let read = TopicRegistry::from_folder(&examples, version)
                .unwrap_or_else(|error| panic!("infra/topics-examples for {version:?}: {error}"));
            assert_eq!(read.topics().len(), 3, "the three example topics, for {version:?}");
        }
    }

    #[test]
    fn subscriptions_must_name_a_topic_and_filters_it_allows() {
        let r5 = json!({"resourceType": "SubscriptionTopic", "url": "http://t/encounter", "canFilterBy": [
            {"resource": "http://hl7.org/fhir/StructureDefinition/Encounter", "filterParameter": "patient",
             "comparator": ["eq"], "modifier": ["missing"]},
            {"resource": "Encounter", "filterParameter": "date", "comparator": ["gt", "lt"]}]});
        let r6 = json!({"resourceType": "SubscriptionTopic", "url": "http://t/r6", "trigger": [
            {"resource": "Patient", "canFilterBy": [{"filterParameter": "gender"}]}]});
        let files = [("a.json", r5.to_string()), ("b.json", r6.to_string())];
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let registry = TopicRegistry::from_files(&files, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"));
        let ok = |topic: &str, filters: Value| registry.check(&subscription(topic, filters));
        assert!(ok("http://t/encounter", json!([])).is_ok());
        assert!(ok("http://t/encounter", json!([{"filterParameter": "patient", "value": "Patient/1"}])).is_ok());
        assert!(
            ok(
                "http://t/encounter",
                json!([{"resourceType": "Encounter", "filterParameter": "date",
            "comparator": "gt", "value": "2026"}])
            )
            .is_ok()
        );
        assert!(
            ok("http://t/encounter", json!([{"filterParameter": "patient", "modifier": "missing", "value": "true"}]))
                .is_ok()
        );
        assert!(ok("http://t/r6", json!([{"filterParameter": "gender", "value": "female"}])).is_ok());
        let refusals = [
            ("http://t/unknown", json!([]), "not known"),
            ("http://t/encounter", json!([{"filterParameter": "status", "value": "x"}]), "'status'"),
            (
                "http://t/encounter",
                json!([{"resourceType": "Patient", "filterParameter": "patient", "value": "x"}]),
                "on Patient",
            ),
            (
                "http://t/encounter",
                json!([{"filterParameter": "patient", "comparator": "gt", "value": "x"}]),
                "comparator 'gt'",
            ),
            (
                "http://t/encounter",
                json!([{"filterParameter": "date", "modifier": "missing", "value": "x"}]),
                "modifier 'missing'",
            ),
            (
                "http://t/r6",
                json!([{"filterParameter": "gender", "comparator": "ne", "value": "x"}]),
                "comparator 'ne'",
            ),
        ];
        for (topic, filters, expected) in refusals {
            let message = ok(topic, filters.clone()).err().unwrap_or_default();
            assert!(message.contains(expected), "{topic} {filters}: {message}");
        }
        let twice = [("a.json", r5.to_string()), ("c.json", r5.to_string())];
        let twice: Vec<(&str, &str)> = twice.iter().map(|(n, t)| (*n, t.as_str())).collect();
        assert!(TopicRegistry::from_files(&twice, FhirVersion::R5).is_err_and(|e| e.contains("c.json")));
        assert!(TopicRegistry::from_files(&[("x.json", "{\"resourceType\": \"Patient\"}")], FhirVersion::R5).is_err());
        assert!(
            TopicRegistry::from_files(&[("y.json", "{not json")], FhirVersion::R5).is_err_and(|e| e.contains("y.json"))
        );
    }

    #[test]
    fn a_filter_parameter_the_events_version_lacks_is_refused_when_the_topic_loads() {
        // `subject-status` is an R5 Encounter parameter; R4 and R4B have none.
        let topic = json!({"resourceType": "SubscriptionTopic", "url": "http://t/status", "canFilterBy": [
            {"resource": "Encounter", "filterParameter": "subject-status"}]});
        let files = [("status.json", topic.to_string())];
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        assert!(TopicRegistry::from_files(&files, FhirVersion::R5).is_ok());
        for version in [FhirVersion::R4, FhirVersion::R4B] {
            let refused = TopicRegistry::from_files(&files, version).err().unwrap_or_default();
            assert!(refused.contains("status.json") && refused.contains("subject-status"), "{refused}");
            assert!(refused.contains(&format!("FHIR {}", version.path_segment())), "{refused}");
        }
    }
}
