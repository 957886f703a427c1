//! SubscriptionTopic in R4B: the deployed R5 (or R6 ballot) topics in R4B's shape, for
//! the `SubscriptionTopic` read and search the Backport IG's R4B server statement requires.
//!
//! R4B's SubscriptionTopic (4.3.0) has no `comparator` on `canFilterBy`: its `modifier`
//! codes carry both (`= | eq | ne | gt | lt | ge | le | sa | eb | ap | above | below | in |
//! not-in | of-type`). So R5 comparators become R4B modifiers, and the R5 modifiers R4B
//! cannot express (`missing`, `exact`, `contains`, `not`, `text`, `identifier`, `type`, …)
//! are left out of the discovery view (the server still allows them). Elements R4B does
//! not have (`name`, `copyrightLabel`, `versionAlgorithm[x]`) are dropped; an R6 ballot
//! `trigger` becomes `resourceTrigger`, its `canFilterBy` moving to the top level.

use serde_json::{Map, Value, json};

use crate::fhir::string_list;

/// R4B's `canFilterBy.modifier` codes.
const R4B_MODIFIERS: &[&str] =
    &["=", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "above", "below", "in", "not-in", "of-type"];

/// R5 (and R6 ballot) top-level elements R4B's SubscriptionTopic does not have.
const NOT_IN_R4B: &[&str] = &["name", "copyrightLabel", "versionAlgorithmString", "versionAlgorithmCoding", "trigger"];

/// `topic` (R5 or R6 ballot shape) in R4B's shape.
pub fn topic_to_r4b(topic: &Value) -> Value {
    let Some(object) = topic.as_object() else { return topic.clone() };
    let mut out: Map<String, Value> =
        object.iter().filter(|(k, _)| !NOT_IN_R4B.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut filters: Vec<Value> = object.get("canFilterBy").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(triggers) = object.get("trigger").and_then(Value::as_array) {
        let mut resource_triggers: Vec<Value> =
            out.get("resourceTrigger").and_then(Value::as_array).cloned().unwrap_or_default();
        for trigger in triggers {
            let mut trigger = trigger.as_object().cloned().unwrap_or_default();
            if let Some(Value::Array(nested)) = trigger.remove("canFilterBy") {
                filters.extend(nested);
            }
            resource_triggers.push(Value::Object(trigger));
        }
        out.insert("resourceTrigger".to_owned(), Value::Array(resource_triggers));
    }
    if !filters.is_empty() {
        out.insert("canFilterBy".to_owned(), Value::Array(filters.iter().map(filter_to_r4b).collect()));
    }
    Value::Object(out)
}

fn filter_to_r4b(filter: &Value) -> Value {
    let Some(object) = filter.as_object() else { return filter.clone() };
    let mut out = object.clone();
    let mut modifiers: Vec<String> = string_list(filter, "comparator");
    modifiers.extend(string_list(filter, "modifier"));
    modifiers.retain(|code| R4B_MODIFIERS.contains(&code.as_str()));
    modifiers.dedup();
    out.remove("comparator");
    out.remove("modifier");
    if !modifiers.is_empty() {
        out.insert("modifier".to_owned(), json!(modifiers));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparators_become_modifiers_and_r6_triggers_flatten() {
        let r5 = json!({"resourceType": "SubscriptionTopic", "url": "http://t", "name": "T", "status": "active",
            "canFilterBy": [{"filterParameter": "patient", "comparator": ["eq"], "modifier": ["missing"]},
                            {"filterParameter": "date", "comparator": ["gt", "lt"]}]});
        assert_eq!(
            topic_to_r4b(&r5),
            json!({"resourceType": "SubscriptionTopic", "url": "http://t", "status": "active",
            "canFilterBy": [{"filterParameter": "patient", "modifier": ["eq"]},
                            {"filterParameter": "date", "modifier": ["gt", "lt"]}]})
        );
        let r6 = json!({"resourceType": "SubscriptionTopic", "url": "http://t", "status": "active",
            "trigger": [{"resource": "Patient", "canFilterBy": [{"filterParameter": "gender"}]}]});
        assert_eq!(
            topic_to_r4b(&r6),
            json!({"resourceType": "SubscriptionTopic", "url": "http://t", "status": "active",
            "resourceTrigger": [{"resource": "Patient"}], "canFilterBy": [{"filterParameter": "gender"}]})
        );
    }
}
