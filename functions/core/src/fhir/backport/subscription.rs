//! The Backport IG's Subscription profile (R4 and R4B) to and from the R5 `Subscription`.
//!
//! | R4/R4B (IG) | R5 |
//! |---|---|
//! | `criteria` | `topic` |
//! | `_criteria.extension[backport-filter-criteria].valueString` (`Encounter?patient=Patient/123&status=finished`) | one `filterBy` per parameter (`resourceType`, `filterParameter`, `modifier` after `:`, `comparator` from a search prefix such as `gt2020`, `value`) |
//! | `channel.type` | `channelType` (code in the HL7 channel-type system) |
//! | `channel.endpoint` | `endpoint` |
//! | `channel.payload` (a MIME type, maybe with `fhirVersion`) | `contentType` |
//! | `channel._payload.extension[backport-payload-content].valueCode` | `content` |
//! | `channel.extension[backport-heartbeat-period / backport-timeout / backport-max-count]` | `heartbeatPeriod` / `timeout` / `maxCount` |
//! | `status`, `end`, `reason` (required in R4) | the same elements |
//!
//! Everything else the client sent (other extensions, `contact`, the rest of `channel` or
//! `_criteria`, …) is kept and given back unchanged: the R5 model's `other` map holds it
//! while stored. `error` (R4's server-set string) is dropped. R4 and R4B share the
//! profile, so one pair of functions serves both.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::IG_STRUCTURE_DEFINITIONS;
use crate::fhir::{CHANNEL_TYPE_SYSTEM, Coding, ContentLevel, FilterBy, Subscription};

/// Extension names (after [`IG_STRUCTURE_DEFINITIONS`]).
const FILTER_CRITERIA: &str = "backport-filter-criteria";
const PAYLOAD_CONTENT: &str = "backport-payload-content";
const HEARTBEAT_PERIOD: &str = "backport-heartbeat-period";
const TIMEOUT: &str = "backport-timeout";
const MAX_COUNT: &str = "backport-max-count";

/// FHIR search prefixes that act as `filterBy.comparator` (before a number or date).
const PREFIXES: [&str; 9] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];

/// What a filter value must escape in a query string.
const QUERY_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'&').add(b'=').add(b'#').add(b'%').add(b'+');

fn extension_url(name: &str) -> String {
    format!("{IG_STRUCTURE_DEFINITIONS}{name}")
}

/// Removes and returns the extension `name` from an `extension` array inside `holder`.
fn take_extension(holder: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    let url = extension_url(name);
    let Some(Value::Array(extensions)) = holder.get_mut("extension") else { return Vec::new() };
    let (taken, kept): (Vec<Value>, Vec<Value>) = extensions.drain(..).partition(|e| e["url"] == url.as_str());
    *extensions = kept;
    if extensions.is_empty() {
        holder.remove("extension");
    }
    taken
}

/// An optional element that must be a string when present.
fn string(value: Option<Value>, what: &str) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("{what} must be a string")),
    }
}

/// An optional element that must be a JSON object when present.
fn object(value: Option<Value>, what: &str) -> Result<Option<Map<String, Value>>, String> {
    match value {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(format!("{what} must be an object")),
    }
}

/// An unsigned number from an extension's `value[x]`.
fn number_value(extension: &Value, key: &str, what: &str) -> Result<u32, String> {
    extension[key]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("the {what} extension needs a {key}"))
}

/// Parses one `backport-filter-criteria` string into `filterBy` entries.
pub fn parse_filter_criteria(criteria: &str) -> Result<Vec<FilterBy>, String> {
    let (resource_type, query) = criteria
        .split_once('?')
        .ok_or_else(|| format!("filter criteria '{criteria}' must look like Type?name=value"))?;
    let resource_type = (!resource_type.is_empty()).then(|| resource_type.to_owned());
    if resource_type.as_deref().is_some_and(|t| !t.chars().all(|c| c.is_ascii_alphabetic())) {
        return Err(format!("filter criteria '{criteria}' must start with a resource type"));
    }
    let mut filters = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, raw) =
            pair.split_once('=').ok_or_else(|| format!("filter criteria '{criteria}': '{pair}' has no value"))?;
        let decode = |text: &str| percent_decode_str(&text.replace('+', " ")).decode_utf8_lossy().into_owned();
        let (parameter, modifier) = match name.split_once(':') {
            Some((parameter, modifier)) => (decode(parameter), Some(decode(modifier))),
            None => (decode(name), None),
        };
        let value = decode(raw);
        let prefixed = PREFIXES.iter().find(|p| {
            value.strip_prefix(**p).and_then(|rest| rest.chars().next()).is_some_and(|c| c.is_ascii_digit() || c == '-')
        });
        let (comparator, value) = match prefixed {
            Some(prefix) => (Some((*prefix).to_owned()), value[prefix.len()..].to_owned()),
            None => (None, value),
        };
        if parameter.is_empty() {
            return Err(format!("filter criteria '{criteria}': a parameter has no name"));
        }
        filters.push(FilterBy {
            resource_type: resource_type.clone(),
            filter_parameter: Some(parameter),
            comparator,
            modifier,
            value: Some(value),
            other: Map::new(),
        });
    }
    if filters.is_empty() {
        return Err(format!("filter criteria '{criteria}' names no parameter"));
    }
    Ok(filters)
}

/// The `backport-filter-criteria` strings for `filterBy` entries: one per resource type,
/// in order of first appearance.
pub fn render_filter_criteria(filters: &[FilterBy]) -> Vec<String> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for filter in filters {
        let resource_type = filter.resource_type.clone().unwrap_or_default();
        let mut name =
            utf8_percent_encode(filter.filter_parameter.as_deref().unwrap_or_default(), QUERY_VALUE).to_string();
        if let Some(modifier) = &filter.modifier {
            name.push(':');
            name.push_str(&utf8_percent_encode(modifier, QUERY_VALUE).to_string());
        }
        let value = format!(
            "{}{}",
            filter.comparator.as_deref().unwrap_or_default(),
            filter.value.as_deref().unwrap_or_default()
        );
        let pair = format!("{name}={}", utf8_percent_encode(&value, QUERY_VALUE));
        match groups.iter_mut().find(|(t, _)| *t == resource_type) {
            Some((_, pairs)) => pairs.push(pair),
            None => groups.push((resource_type, vec![pair])),
        }
    }
    groups.into_iter().map(|(resource_type, pairs)| format!("{resource_type}?{}", pairs.join("&"))).collect()
}

/// Reads an R4/R4B Subscription (Backport IG profile) into the R5 model. The message says
/// what is wrong, for a 400 `OperationOutcome`.
pub fn subscription_from_r4(resource: Value) -> Result<Subscription, String> {
    let Value::Object(mut resource) = resource else { return Err("a Subscription must be a JSON object".to_owned()) };
    if resource.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err("resourceType must be 'Subscription'".to_owned());
    }
    if resource.get("reason").and_then(Value::as_str).is_none_or(|r| r.trim().is_empty()) {
        return Err("Subscription.reason is required in R4 and R4B".to_owned());
    }
    resource.remove("error");
    let topic = match resource.remove("criteria") {
        Some(Value::String(topic)) => topic,
        _ => return Err("Subscription.criteria must hold the SubscriptionTopic canonical URL".to_owned()),
    };
    let mut filter_by = Vec::new();
    if let Some(mut criteria) = object(resource.remove("_criteria"), "Subscription._criteria")? {
        for extension in take_extension(&mut criteria, FILTER_CRITERIA) {
            let text = extension["valueString"].as_str().ok_or("the filter criteria extension needs a valueString")?;
            filter_by.extend(parse_filter_criteria(text)?);
        }
        if !criteria.is_empty() {
            resource.insert("_criteria".to_owned(), Value::Object(criteria));
        }
    }
    let Some(Value::Object(mut channel)) = resource.remove("channel") else {
        return Err("Subscription.channel is required".to_owned());
    };
    let channel_type = match channel.remove("type") {
        Some(Value::String(code)) => code,
        _ => return Err("Subscription.channel.type is required".to_owned()),
    };
    let endpoint = string(channel.remove("endpoint"), "Subscription.channel.endpoint")?;
    let content_type = string(channel.remove("payload"), "Subscription.channel.payload")?;
    let mut content = None;
    if let Some(mut payload) = object(channel.remove("_payload"), "Subscription.channel._payload")? {
        if let Some(extension) = take_extension(&mut payload, PAYLOAD_CONTENT).first() {
            let code = extension["valueCode"].as_str().unwrap_or_default();
            content = Some(
                serde_json::from_value::<ContentLevel>(json!(code))
                    .map_err(|_| format!("payload content '{code}' is not one of empty, id-only, full-resource"))?,
            );
        }
        if !payload.is_empty() {
            channel.insert("_payload".to_owned(), Value::Object(payload));
        }
    }
    let heartbeat_period = take_extension(&mut channel, HEARTBEAT_PERIOD)
        .first()
        .map(|e| number_value(e, "valueUnsignedInt", "heartbeat period"))
        .transpose()?;
    let timeout = take_extension(&mut channel, TIMEOUT)
        .first()
        .map(|e| number_value(e, "valueUnsignedInt", "timeout"))
        .transpose()?;
    let max_count = take_extension(&mut channel, MAX_COUNT)
        .first()
        .map(|e| number_value(e, "valuePositiveInt", "max count"))
        .transpose()?;
    if !channel.is_empty() {
        resource.insert("channel".to_owned(), Value::Object(channel));
    }
    // What is left maps one to one (id, meta, status, end, reason, …) or is kept as sent.
    let mut subscription: Subscription =
        serde_json::from_value(Value::Object(resource)).map_err(|e| format!("the Subscription is not valid: {e}"))?;
    subscription.topic = Some(topic);
    subscription.filter_by = filter_by;
    subscription.channel_type =
        Some(Coding { system: Some(CHANNEL_TYPE_SYSTEM.to_owned()), code: Some(channel_type), other: Map::new() });
    subscription.endpoint = endpoint;
    subscription.content_type = content_type;
    subscription.content = content;
    subscription.heartbeat_period = heartbeat_period;
    subscription.timeout = timeout;
    subscription.max_count = max_count;
    Ok(subscription)
}

/// Appends an extension to the `extension` array of `holder`.
fn push_extension(holder: &mut Map<String, Value>, name: &str, value_key: &str, value: Value) {
    let entry = holder.entry("extension").or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(extensions) = entry {
        let mut extension = Map::new();
        extension.insert("url".to_owned(), json!(extension_url(name)));
        extension.insert(value_key.to_owned(), value);
        extensions.push(Value::Object(extension));
    }
}

/// The R4/R4B (Backport IG) form of a Subscription held in the R5 model.
pub fn subscription_to_r4(subscription: &Subscription) -> Value {
    let mut other = subscription.other.clone();
    let mut channel = match other.remove("channel") {
        Some(Value::Object(channel)) => channel,
        _ => Map::new(),
    };
    channel.insert("type".to_owned(), json!(subscription.channel_type.as_ref().and_then(|c| c.code.clone())));
    if let Some(endpoint) = &subscription.endpoint {
        channel.insert("endpoint".to_owned(), json!(endpoint));
    }
    channel.insert(
        "payload".to_owned(),
        json!(subscription.content_type.clone().unwrap_or_else(|| "application/fhir+json".to_owned())),
    );
    if let Some(content) = subscription.content {
        let mut payload = match channel.remove("_payload") {
            Some(Value::Object(payload)) => payload,
            _ => Map::new(),
        };
        push_extension(&mut payload, PAYLOAD_CONTENT, "valueCode", json!(content));
        channel.insert("_payload".to_owned(), Value::Object(payload));
    }
    if let Some(period) = subscription.heartbeat_period {
        push_extension(&mut channel, HEARTBEAT_PERIOD, "valueUnsignedInt", json!(period));
    }
    if let Some(timeout) = subscription.timeout {
        push_extension(&mut channel, TIMEOUT, "valueUnsignedInt", json!(timeout));
    }
    if let Some(max_count) = subscription.max_count {
        push_extension(&mut channel, MAX_COUNT, "valuePositiveInt", json!(max_count));
    }
    let mut criteria = match other.remove("_criteria") {
        Some(Value::Object(criteria)) => criteria,
        _ => Map::new(),
    };
    for text in render_filter_criteria(&subscription.filter_by) {
        push_extension(&mut criteria, FILTER_CRITERIA, "valueString", json!(text));
    }
    let mut resource = Map::new();
    resource.insert("resourceType".to_owned(), json!("Subscription"));
    for (key, value) in [
        ("id", json!(subscription.id)),
        ("meta", json!(subscription.meta)),
        ("status", json!(subscription.status)),
        ("end", json!(subscription.end)),
    ] {
        if !value.is_null() {
            resource.insert(key.to_owned(), value);
        }
    }
    resource.extend(other);
    resource.insert("criteria".to_owned(), json!(subscription.topic));
    if !criteria.is_empty() {
        resource.insert("_criteria".to_owned(), Value::Object(criteria));
    }
    resource.insert("channel".to_owned(), Value::Object(channel));
    Value::Object(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_criteria_read_modifiers_prefixes_and_escapes() {
        let filters =
            parse_filter_criteria("Encounter?patient=Patient/123&date=gt2026-01-01&code:not=a%26b").unwrap_or_default();
        let seen: Vec<[&str; 4]> = filters
            .iter()
            .map(|f| [&f.filter_parameter, &f.modifier, &f.comparator, &f.value].map(|v| v.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            seen,
            [["patient", "-", "-", "Patient/123"], ["date", "-", "gt", "2026-01-01"], ["code", "not", "-", "a&b"],]
        );
        assert!(filters.iter().all(|f| f.resource_type.as_deref() == Some("Encounter")));
        assert_eq!(
            render_filter_criteria(&filters),
            ["Encounter?patient=Patient/123&date=gt2026-01-01&code:not=a%26b"]
        );
        for bad in ["Encounter", "Encounter?", "Encounter?patient", "En counter?a=b", "?=x"] {
            assert!(parse_filter_criteria(bad).is_err(), "{bad}");
        }
        // A word that merely starts like a prefix is a value, not a comparator.
        let plain = parse_filter_criteria("Encounter?status=gtfinished").unwrap_or_default();
        assert_eq!((plain[0].comparator.as_deref(), plain[0].value.as_deref()), (None, Some("gtfinished")));
    }
}
