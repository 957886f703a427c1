//! Routing: which bucket of a topic's subscriptions each subscription is indexed under,
//! and which buckets an event reads, so that the fan-out's reads grow with the matches
//! and not with the number of subscribers.
//!
//! A subscription with an `eq` filter (no modifier, one value) on a token or reference
//! parameter of its topic goes into that filter's bucket, `parameter=key`: the key is the
//! value's code (tokens: `system|code`, `|code` and `code` all key on `code`) or id
//! (references: `Patient/123`, `123` and `https://…/Patient/123` all key on `123`). A
//! reference filter is preferred over a token one, being the more selective. Every
//! other subscription goes into the topic-wide bucket [`TOPIC_WIDE`].
//!
//! An event reads the topic-wide bucket and, for each routable `canFilterBy` parameter,
//! the buckets of the keys its focus has ([`crate::search::route_keys`]). Keys are
//! coarser than matches (another system's code, another type's id), never finer, so
//! every subscription whose filters can match is read, and the filters then decide as
//! before. Where that cannot be promised, nothing is routed: a filter typed for one
//! resource type on a topic that fires for others (it does not apply to those, so it
//! cannot narrow them), and an event whose focus is not of one of the topic's trigger
//! types (it reads the whole topic, [`Routes::WholeTopic`]).

use serde_json::{Map, Value};

use super::{Topic, resource_type};
use crate::fhir::FilterBy;
use crate::fhir::version::FhirVersion;
use crate::search::{Clause, ParamType, parameter_for, route_keys};

/// The bucket of subscriptions that no filter routes: every event of the topic reads it.
pub const TOPIC_WIDE: &str = "*";

/// What an event of a topic reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routes {
    /// These buckets (always including [`TOPIC_WIDE`]).
    Buckets(Vec<String>),
    /// Every subscription of the topic.
    WholeTopic,
}

impl Topic {
    /// The bucket a subscription with `filters` goes into.
    pub fn route_of(&self, filters: &[FilterBy]) -> String {
        let routed: Vec<(ParamType, String)> = filters.iter().filter_map(|f| self.filter_route(f)).collect();
        routed
            .iter()
            .find(|(kind, _)| *kind == ParamType::Reference)
            .or_else(|| routed.first())
            .map_or_else(|| TOPIC_WIDE.to_owned(), |(_, route)| route.clone())
    }

    /// The bucket one filter would route to, if it can route: it must name the same
    /// kind of parameter with the same key for every resource type it applies to.
    fn filter_route(&self, filter: &FilterBy) -> Option<(ParamType, String)> {
        let code = filter.filter_parameter.as_deref()?;
        if let Some(own) = filter.resource_type.as_deref().map(resource_type)
            && (self.triggers.is_empty() || self.triggers.iter().any(|t| t.resource_type != own))
        {
            return None;
        }
        let kinds = self.filter_types(filter.resource_type.as_deref());
        let mut found: Option<(ParamType, String)> = None;
        for kind in &kinds {
            let definition = self.allowed_for(filter, kind).and_then(|a| a.definition.as_deref());
            let clause = Clause::from_filter(filter, kind, self.event_version, definition).ok()?;
            let entry = (clause.parameter().kind, format!("{code}={}", clause.route_key()?));
            match &found {
                Some(previous) if *previous != entry => return None,
                _ => found = Some(entry),
            }
        }
        found
    }

    /// The buckets an event whose focus is `focus` (written in FHIR `version`) reads.
    pub fn routes_for(&self, focus: Option<&Map<String, Value>>, version: FhirVersion) -> Routes {
        // Without the resource only unfiltered subscriptions match, and no filter routes
        // those.
        let Some(focus) = focus else { return Routes::Buckets(vec![TOPIC_WIDE.to_owned()]) };
        let kind = focus.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        if !self.triggers.iter().any(|t| t.resource_type == kind) {
            return Routes::WholeTopic;
        }
        let mut routes = vec![TOPIC_WIDE.to_owned()];
        for allowed in self.allowed_filters.iter().filter(|a| a.resource_type.as_deref().is_none_or(|own| own == kind))
        {
            let Ok(parameter) = parameter_for(kind, &allowed.parameter, version, allowed.definition.as_deref()) else {
                continue;
            };
            routes.extend(route_keys(parameter, focus).into_iter().map(|key| format!("{}={key}", allowed.parameter)));
        }
        routes.sort();
        routes.dedup();
        Routes::Buckets(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topic(resource: Value) -> Topic {
        Topic::read(resource, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"))
    }

    fn encounters() -> Topic {
        topic(json!({"resourceType": "SubscriptionTopic", "url": "http://t/enc",
            "resourceTrigger": [{"resource": "Encounter", "supportedInteraction": ["update"]}],
            "canFilterBy": [
                {"resource": "Encounter", "filterParameter": "patient"},
                {"resource": "Encounter", "filterParameter": "class"},
                {"resource": "Encounter", "filterParameter": "status", "modifier": ["not"]},
                {"resource": "Encounter", "filterParameter": "date", "comparator": ["eq", "gt"]}]}))
    }

    fn filter(parameter: &str, value: &str) -> FilterBy {
        FilterBy { filter_parameter: Some(parameter.into()), value: Some(value.into()), ..FilterBy::default() }
    }

    fn buckets(routes: Routes) -> Vec<String> {
        match routes {
            Routes::Buckets(buckets) => buckets,
            Routes::WholeTopic => panic!("expected buckets"),
        }
    }

    #[test]
    fn subscriptions_route_by_their_most_selective_filter() {
        let topic = encounters();
        assert_eq!(topic.route_of(&[filter("patient", "Patient/123")]), "patient=123");
        assert_eq!(topic.route_of(&[filter("patient", "https://ehr.example/fhir/Patient/123")]), "patient=123");
        assert_eq!(topic.route_of(&[filter("class", "http://x|IMP"), filter("patient", "123")]), "patient=123");
        assert_eq!(topic.route_of(&[filter("class", "|IMP")]), "class=IMP");
        let mut typed = filter("patient", "Patient/7");
        typed.resource_type = Some("Encounter".into());
        assert_eq!(topic.route_of(&[typed]), "patient=7", "the topic fires only for Encounters");
        // Nothing to route by: no filter, OR-ed values, a modifier, a comparator'd date.
        let mut not = filter("status", "finished");
        not.modifier = Some("not".into());
        let mut later = filter("date", "2026-01-01");
        later.comparator = Some("gt".into());
        for filters in [vec![], vec![filter("patient", "Patient/1,Patient/2")], vec![not], vec![later]] {
            assert_eq!(topic.route_of(&filters), TOPIC_WIDE, "{filters:?}");
        }
    }

    #[test]
    fn a_typed_filter_on_a_topic_of_several_types_does_not_route() {
        let topic = topic(json!({"resourceType": "SubscriptionTopic", "url": "http://t/two",
            "resourceTrigger": [{"resource": "Encounter"}, {"resource": "Observation"}],
            "canFilterBy": [{"filterParameter": "patient"}]}));
        let mut typed = filter("patient", "Patient/7");
        typed.resource_type = Some("Encounter".into());
        // It does not apply to Observations, which it would then never be read for.
        assert_eq!(topic.route_of(&[typed]), TOPIC_WIDE);
        assert_eq!(topic.route_of(&[filter("patient", "Patient/7")]), "patient=7");
    }

    #[test]
    fn events_read_the_buckets_of_their_focus_and_the_topic_wide_one() {
        let topic = encounters();
        let focus = json!({"resourceType": "Encounter", "id": "e1", "status": "completed",
            "subject": {"reference": "http://ehr.example/fhir/Patient/123/_history/4"},
            "class": [{"coding": [{"system": "http://x", "code": "IMP"}, {"code": "EMER"}]}]});
        let routes = buckets(topic.routes_for(focus.as_object(), FhirVersion::R5));
        assert_eq!(routes, ["*", "class=EMER", "class=IMP", "patient=123", "status=completed"]);
        // Every routed subscription above reads a bucket the event reads.
        for value in ["Patient/123", "123", "https://other.example/Patient/123"] {
            assert!(routes.contains(&topic.route_of(&[filter("patient", value)])), "{value}");
        }
        assert_eq!(buckets(topic.routes_for(None, FhirVersion::R5)), ["*"]);
        let observation = json!({"resourceType": "Observation", "id": "o1"});
        assert_eq!(topic.routes_for(observation.as_object(), FhirVersion::R5), Routes::WholeTopic);
    }
}
