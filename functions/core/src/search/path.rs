//! The FHIRPath subset that base search parameters use to say where their values are.
//!
//! The R5 table's expressions (`Encounter.subject.where(resolve() is Patient)`,
//! `(Observation.value.ofType(Quantity))`, `Patient.telecom.where(system='email')`,
//! `Bundle.entry[0].resource as Composition`, …) and the R4 and R4B tables' (`as(T)`,
//! `(Observation.value as CodeableConcept).text`) need only: child steps, `[n]`, `ofType(T)`,
//! `as T` and `as(T)`, a parenthesized chain followed by steps, `where(resolve() is T)`,
//! `where(name='literal')`, `extension('url')`, and `|` between alternatives. This module reads exactly that, so extracting search values costs
//! no FHIRPath engine; the few expressions outside it (`Patient.deceased.exists() and …`)
//! do not parse, and their parameters are refused when a topic or filter names them.
//!
//! Without a type model, `ofType`/`as` select a choice element's variant by its name
//! (`value.ofType(Quantity)` is `valueQuantity`), a contained or bundled resource by its
//! `resourceType`, and otherwise let the value through.

use serde_json::{Map, Value};

/// A parsed search-parameter expression: its alternatives (`|`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    alternatives: Vec<Vec<Step>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Child(String),
    Index(usize),
    OfType(String),
    ReferenceTo(String),
    WhereEquals(String, String),
    Extension(String),
}

/// One value a path reached, with the type its choice-element name gives, if any
/// (`valueQuantity` → `Quantity`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item<'a> {
    /// The JSON value.
    pub value: &'a Value,
    /// The variant of a choice element (`effectiveDateTime` → `DateTime`).
    pub choice_type: Option<&'a str>,
}

impl Path {
    /// Reads an expression of the subset; the error names what is outside it.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let alternatives = split_top_level(expression, '|')
            .into_iter()
            .map(|part| parse_chain(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if alternatives.is_empty() {
            return Err("empty expression".to_owned());
        }
        Ok(Self { alternatives })
    }

    /// The resource types the expression's references are limited to, when every
    /// alternative ends in `where(resolve() is T)` (`Encounter.subject.where(resolve() is
    /// Patient)` reaches only Patients, whatever the parameter's declared targets).
    pub fn reference_types(&self) -> Option<Vec<String>> {
        self.alternatives
            .iter()
            .map(|steps| match steps.last() {
                Some(Step::ReferenceTo(kind)) => Some(kind.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every value the expression reaches in `resource`, alternatives in order.
    pub fn evaluate<'a>(&self, resource: &'a Map<String, Value>) -> Vec<Item<'a>> {
        let mut out = Vec::new();
        for steps in &self.alternatives {
            let Some((Step::Child(root), rest)) = steps.split_first() else { continue };
            let own = resource.get("resourceType").and_then(Value::as_str);
            if own != Some(root.as_str()) && root != "Resource" && root != "DomainResource" {
                continue;
            }
            let mut nodes = vec![Node::Resource(resource)];
            for step in rest {
                nodes = apply(step, nodes);
            }
            out.extend(nodes.into_iter().filter_map(|node| match node {
                Node::Item(item) => Some(item),
                Node::Resource(_) => None,
            }));
        }
        out
    }
}

/// Splits at `separator` outside parentheses and quotes.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0_i32, false, 0);
    for (i, ch) in text.char_indices() {
        match ch {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == separator && !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + ch.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Whether the outer parentheses of `text` enclose all of it.
fn wrapped(text: &str) -> bool {
    if !(text.starts_with('(') && text.ends_with(')')) {
        return false;
    }
    let mut depth = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i + 1 < text.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

fn is_name(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && text.chars().all(|c| c.is_ascii_alphanumeric())
}

fn parse_chain(text: &str) -> Result<Vec<Step>, String> {
    let mut text = text.trim();
    while wrapped(text) {
        text = text[1..text.len() - 1].trim();
    }
    if let Some((left, kind)) = text.rsplit_once(" as ")
        && is_name(kind.trim())
    {
        let mut steps = parse_chain(left)?;
        steps.push(Step::OfType(kind.trim().to_owned()));
        return Ok(steps);
    }
    // `(Observation.value as CodeableConcept).text` (R4): a parenthesized chain, then steps.
    if let Some(inner) = text.strip_prefix('(') {
        let close = matching_paren(inner).ok_or_else(|| format!("unclosed ( in '{text}'"))?;
        let mut steps = parse_chain(&inner[..close])?;
        parse_steps(&inner[close + 1..], text, &mut steps)?;
        return Ok(steps);
    }
    let mut steps = Vec::new();
    let root_end = text.find(['.', '[']).unwrap_or(text.len());
    let root = &text[..root_end];
    if !is_name(root) || !root.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Err(format!("'{text}' does not start with a resource type"));
    }
    steps.push(Step::Child(root.to_owned()));
    parse_steps(&text[root_end..], text, &mut steps)?;
    Ok(steps)
}

/// Reads the steps of `rest` (`.name`, `[n]`, `.function(argument)`) onto `steps`; `text`
/// is the whole expression, for messages.
fn parse_steps(mut rest: &str, text: &str, steps: &mut Vec<Step>) -> Result<(), String> {
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let (digits, tail) = after.split_once(']').ok_or_else(|| format!("unclosed [ in '{text}'"))?;
            steps.push(Step::Index(digits.parse().map_err(|_| format!("index '{digits}' in '{text}'"))?));
            rest = tail;
            continue;
        }
        let after = rest.strip_prefix('.').ok_or_else(|| format!("unexpected '{rest}' in '{text}'"))?;
        let name_end = after.find(['.', '[', '(']).unwrap_or(after.len());
        let name = &after[..name_end];
        if !is_name(name) {
            return Err(format!("unexpected '{after}' in '{text}'"));
        }
        let tail = &after[name_end..];
        let Some(call) = tail.strip_prefix('(') else {
            steps.push(Step::Child(name.to_owned()));
            rest = tail;
            continue;
        };
        let close = matching_paren(call).ok_or_else(|| format!("unclosed ( in '{text}'"))?;
        let argument = call[..close].trim();
        steps.push(function(name, argument).ok_or_else(|| format!("'{name}({argument})' is not supported"))?);
        rest = &call[close + 1..];
    }
    Ok(())
}

/// Index of the `)` closing a call whose `(` was just consumed.
fn matching_paren(text: &str) -> Option<usize> {
    let (mut depth, mut quoted) = (0, false);
    for (i, ch) in text.char_indices() {
        match ch {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth == 0 => return Some(i),
            ')' if !quoted => depth -= 1,
            _ => {}
        }
    }
    None
}

fn quoted_literal(text: &str) -> Option<&str> {
    text.strip_prefix('\'')?.strip_suffix('\'').filter(|inner| !inner.contains('\''))
}

fn function(name: &str, argument: &str) -> Option<Step> {
    match name {
        "first" if argument.is_empty() => Some(Step::Index(0)),
        // `as(T)` is the function form R4's expressions write (`Condition.onset.as(Age)`).
        "ofType" | "as" if is_name(argument) => Some(Step::OfType(argument.to_owned())),
        "extension" => quoted_literal(argument).map(|url| Step::Extension(url.to_owned())),
        "where" => {
            if let Some(kind) = argument.strip_prefix("resolve() is ").map(str::trim).filter(|k| is_name(k)) {
                return Some(Step::ReferenceTo(kind.to_owned()));
            }
            let (field, literal) = argument.split_once('=')?;
            let field = field.trim();
            Some(Step::WhereEquals(field.to_owned(), quoted_literal(literal.trim())?.to_owned()))
                .filter(|_| is_name(field))
        }
        _ => None,
    }
}

/// What a step reads from: the resource itself, or a value reached so far.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Resource(&'a Map<String, Value>),
    Item(Item<'a>),
}

impl<'a> Node<'a> {
    fn object(self) -> Option<&'a Map<String, Value>> {
        match self {
            Self::Resource(map) => Some(map),
            Self::Item(item) => item.value.as_object(),
        }
    }
}

/// Pushes a value, each element of an array as its own item (FHIRPath collections are flat).
fn push<'a>(out: &mut Vec<Node<'a>>, value: &'a Value, choice_type: Option<&'a str>) {
    match value {
        Value::Array(values) => {
            out.extend(values.iter().filter(|v| !v.is_null()).map(|value| Node::Item(Item { value, choice_type })));
        }
        Value::Null => {}
        value => out.push(Node::Item(Item { value, choice_type })),
    }
}

/// The type a reference points to: from its `reference` (`Type/id`, absolute, or with
/// `_history`), else its `type`.
pub(crate) fn reference_type(reference: &Map<String, Value>) -> Option<&str> {
    if let Some(text) = reference.get("reference").and_then(Value::as_str) {
        let mut segments: Vec<&str> = text.split('/').collect();
        if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
            segments.truncate(segments.len() - 2);
        }
        if segments.len() >= 2 {
            return Some(segments[segments.len() - 2]);
        }
    }
    reference.get("type").and_then(Value::as_str).map(|t| t.rsplit('/').next().unwrap_or(t))
}

fn apply<'a>(step: &Step, nodes: Vec<Node<'a>>) -> Vec<Node<'a>> {
    let mut out = Vec::new();
    match step {
        Step::Child(name) => {
            for object in nodes.into_iter().filter_map(Node::object) {
                if let Some(value) = object.get(name.as_str()) {
                    push(&mut out, value, None);
                    continue;
                }
                // A choice element: `effective` is whichever `effective[Type]` is present.
                for (key, value) in object {
                    if let Some(variant) = key.strip_prefix(name.as_str())
                        && variant.starts_with(|c: char| c.is_ascii_uppercase())
                    {
                        push(&mut out, value, Some(variant));
                    }
                }
            }
        }
        Step::Index(index) => out.extend(nodes.into_iter().nth(*index)),
        Step::OfType(kind) => out.extend(nodes.into_iter().filter(|node| of_type(*node, kind))),
        Step::ReferenceTo(kind) => {
            out.extend(nodes.into_iter().filter(|node| node.object().and_then(reference_type) == Some(kind.as_str())))
        }
        Step::WhereEquals(field, literal) => out.extend(nodes.into_iter().filter(|node| {
            node.object().and_then(|o| o.get(field.as_str())).and_then(Value::as_str) == Some(literal.as_str())
        })),
        Step::Extension(url) => {
            for object in nodes.into_iter().filter_map(Node::object) {
                let extensions = object.get("extension").and_then(Value::as_array).into_iter().flatten();
                for extension in extensions.filter(|e| e.get("url").and_then(Value::as_str) == Some(url.as_str())) {
                    push(&mut out, extension, None);
                }
            }
        }
    }
    out
}

/// `ofType(kind)` without a type model: by choice-element variant, by `resourceType`, or
/// (nothing to tell by) kept.
fn of_type(node: Node<'_>, kind: &str) -> bool {
    match node {
        Node::Resource(map) => map.get("resourceType").and_then(Value::as_str) == Some(kind),
        Node::Item(item) => match (item.choice_type, item.value.get("resourceType").and_then(Value::as_str)) {
            (Some(variant), _) => variant.eq_ignore_ascii_case(kind),
            (None, Some(resource_type)) => resource_type == kind,
            (None, None) => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(expression: &str, resource: &Value) -> Vec<Value> {
        let path = Path::parse(expression).unwrap_or_else(|e| panic!("{e}"));
        let map = resource.as_object().cloned().unwrap_or_default();
        path.evaluate(&map).into_iter().map(|item| item.value.clone()).collect()
    }

    #[test]
    fn reads_the_subset_the_base_parameters_use() {
        let observation = json!({"resourceType": "Observation", "id": "o",
            "code": {"coding": [{"code": "a"}, {"code": "b"}]},
            "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/x"},
            {"reference": "http://h/fhir/Patient/p2/_history/3"}],
            "valueQuantity": {"value": 5}, "effectivePeriod": {"start": "2026"},
            "extension": [{"url": "http://e", "valueString": "ext"}],
            "contained": [{"resourceType": "Patient", "id": "c"}]});
        let cases = [
            ("Observation.code.coding.code", json!(["a", "b"])),
            ("Observation.code.coding[1].code", json!(["b"])),
            ("(Observation.value.ofType(Quantity))", json!([{"value": 5}])),
            ("Observation.value.ofType(string)", json!([])),
            ("Observation.value as Quantity", json!([{"value": 5}])),
            ("Observation.value.as(Quantity)", json!([{"value": 5}])),
            ("(Observation.value as Quantity).value", json!([5])),
            ("(Observation.value as string).value", json!([])),
            ("Observation.effective", json!([{"start": "2026"}])),
            (
                "Observation.effective.ofType(dateTime) | Observation.effective.ofType(Period)",
                json!([{"start": "2026"}]),
            ),
            (
                "Observation.performer.where(resolve() is Patient)",
                json!([{"reference": "http://h/fhir/Patient/p2/_history/3"}]),
            ),
            ("Observation.subject.where(resolve() is Group)", json!([])),
            ("Observation.code.coding.where(code='b')", json!([{"code": "b"}])),
            ("Observation.extension('http://e').value", json!(["ext"])),
            ("Resource.id", json!(["o"])),
            ("Observation.performer.first()", json!([{"reference": "Practitioner/x"}])),
            ("Observation.contained.ofType(Patient).id", json!(["c"])),
            ("Patient.id", json!([])),
        ];
        for (expression, expected) in cases {
            assert_eq!(Value::Array(values(expression, &observation)), expected, "{expression}");
        }
    }

    #[test]
    fn refuses_what_is_outside_the_subset() {
        for expression in [
            "Patient.deceased.exists() and Patient.deceased != false",
            "Patient.name.last()",
            "Patient.x.where(extension('u').exists())",
            "",
            "patient.id",
            "Patient.a[x]",
        ] {
            assert!(Path::parse(expression).is_err(), "{expression}");
        }
    }
}
