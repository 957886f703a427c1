//! `Parameters`: the input and output of FHIR operations.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One `Parameters.parameter`: a name and whatever value element (`valueString`,
/// `valueId`, `resource`, `part`, …) it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// The parameter's name.
    pub name: String,
    /// The value element(s), keyed by their JSON name, e.g. `valueId`.
    #[serde(flatten)]
    pub value: Map<String, Value>,
}

impl Parameter {
    /// A parameter holding one primitive value under `value[x]`, e.g. `("valueString", …)`.
    pub fn primitive(name: &str, value_key: &str, value: impl Into<String>) -> Self {
        let mut map = Map::new();
        map.insert(value_key.to_owned(), Value::String(value.into()));
        Self { name: name.to_owned(), value: map }
    }

    /// A parameter holding any JSON value under `value[x]` (a boolean or an integer).
    pub fn json(name: &str, value_key: &str, value: Value) -> Self {
        let mut map = Map::new();
        map.insert(value_key.to_owned(), value);
        Self { name: name.to_owned(), value: map }
    }

    /// The string held under `value_key`, if that is what this parameter carries.
    pub fn string_value(&self, value_key: &str) -> Option<&str> {
        self.value.get(value_key).and_then(Value::as_str)
    }
}

/// A FHIR `Parameters` resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameters {
    /// Always `Parameters`.
    pub resource_type: String,
    /// Logical id, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The parameters, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter: Vec<Parameter>,
    /// Every other element (meta, extensions …), kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Default for Parameters {
    fn default() -> Self {
        Self { resource_type: "Parameters".to_owned(), id: None, parameter: Vec::new(), other: Map::new() }
    }
}

impl Parameters {
    /// Appends a parameter and returns `self`, for building responses.
    pub fn with(mut self, parameter: Parameter) -> Self {
        self.parameter.push(parameter);
        self
    }

    /// All parameters with this name, in order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Parameter> + 'a {
        self.parameter.iter().filter(move |p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_parameters() -> Result<(), serde_json::Error> {
        let params = Parameters::default()
            .with(Parameter::primitive("id", "valueId", "a"))
            .with(Parameter::primitive("id", "valueId", "b"));
        let json = serde_json::to_value(&params)?;
        assert_eq!(json["parameter"][1], serde_json::json!({"name": "id", "valueId": "b"}));
        let back: Parameters = serde_json::from_value(json)?;
        let ids: Vec<_> = back.named("id").filter_map(|p| p.string_value("valueId")).collect();
        assert_eq!(ids, ["a", "b"]);
        Ok(())
    }
}
