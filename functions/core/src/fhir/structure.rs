//! The rules every FHIR JSON resource obeys whatever its type (FHIR's "JSON
//! representation" page, the same in R4, R4B and R5), checked on everything clients and
//! upstream servers send before it is read:
//!
//! - a property's value is never `null` (`null` only pads arrays, to line primitive values
//!   up with their `_name` extensions);
//! - arrays and objects are never empty, strings never `""`;
//! - `extension` and `modifierExtension` are arrays of objects, each with a `url` string;
//! - `_name` (a primitive's id and extensions) is an object, or for a repeating element
//!   an array of objects and `null`s.
//!
//! Typed readers (serde's, or the Backport IG's) then check element types; these rules
//! catch what they would take as "absent" and silently drop.

use serde_json::Value;

/// Checks `resource` against the rules above; the message names the first element
/// that breaks one, as a path (`channel.extension[0].url`).
pub fn check(resource: &Value) -> Result<(), String> {
    check_value(resource, "", false)
}

fn check_value(value: &Value, path: &str, in_array: bool) -> Result<(), String> {
    let at = |path: &str| if path.is_empty() { "the resource".to_owned() } else { path.to_owned() };
    match value {
        Value::Null if in_array => Ok(()),
        Value::Null => Err(format!("{} is null; leave an absent element out", at(path))),
        Value::String(text) if text.is_empty() => Err(format!("{} is an empty string", at(path))),
        Value::Array(items) if items.is_empty() => Err(format!("{} is an empty array", at(path))),
        Value::Object(map) if map.is_empty() => Err(format!("{} is an empty object", at(path))),
        Value::Array(items) => {
            if items.iter().all(Value::is_null) {
                return Err(format!("{} holds nothing but null", at(path)));
            }
            for (index, item) in items.iter().enumerate() {
                check_value(item, &format!("{path}[{index}]"), true)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if key == "extension" || key == "modifierExtension" {
                    check_extensions(child, &child_path)?;
                } else if key.starts_with('_') {
                    check_primitive_extras(child, &child_path)?;
                }
                check_value(child, &child_path, false)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_extensions(value: &Value, path: &str) -> Result<(), String> {
    let Value::Array(extensions) = value else { return Err(format!("{path} must be an array of extensions")) };
    for (index, extension) in extensions.iter().enumerate() {
        match extension.get("url") {
            Some(Value::String(url)) if !url.is_empty() => {}
            _ if !extension.is_object() => return Err(format!("{path}[{index}] must be an object")),
            _ => return Err(format!("{path}[{index}].url must be a string")),
        }
    }
    Ok(())
}

fn check_primitive_extras(value: &Value, path: &str) -> Result<(), String> {
    let fine = match value {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().all(|item| item.is_object() || item.is_null()),
        _ => false,
    };
    if fine { Ok(()) } else { Err(format!("{path} must be an object (or an array of objects and nulls)")) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_what_fhir_json_allows() {
        let resource = json!({"resourceType": "Patient", "name": [{"given": ["Ann", null], "_given": [null, {"id": "g2"}]}],
            "extension": [{"url": "http://example.org/x", "valueBoolean": false}], "_active": {"id": "a"}, "active": true});
        assert_eq!(check(&resource), Ok(()));
    }

    #[test]
    fn refuses_what_it_does_not() {
        let cases = [
            (json!({"resourceType": "Subscription", "reason": null}), "reason is null"),
            (json!({"resourceType": "Subscription", "filterBy": []}), "filterBy is an empty array"),
            (json!({"resourceType": "Subscription", "channelType": {}}), "channelType is an empty object"),
            (json!({"resourceType": "Subscription", "reason": ""}), "reason is an empty string"),
            (
                json!({"resourceType": "Subscription", "channel": {"extension": {}}}),
                "channel.extension must be an array",
            ),
            (
                json!({"resourceType": "Subscription", "channel": {"extension": [7]}}),
                "channel.extension[0] must be an object",
            ),
            (
                json!({"resourceType": "Subscription", "extension": [{"valueCode": "a"}]}),
                "extension[0].url must be a string",
            ),
            (json!({"resourceType": "Subscription", "_criteria": "x"}), "_criteria must be an object"),
            (json!({"resourceType": "Subscription", "contact": [null]}), "contact holds nothing but null"),
            (json!(null), "the resource is null"),
        ];
        for (resource, message) in cases {
            let answer = check(&resource);
            assert!(answer.as_ref().is_err_and(|m| m.starts_with(message)), "{resource}: {answer:?}");
        }
    }
}
