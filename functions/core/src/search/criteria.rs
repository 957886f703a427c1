//! Search strings and `filterBy` entries, read into clauses this server can evaluate.
//!
//! A criteria string is `[Type?]name[:modifier]=value[,value]&…` (the R5 example topic
//! writes `status:not=completed` without the type; HAPI and HealthLake write
//! `Encounter?status=completed`; both are read). Clauses are AND-ed, comma-separated
//! values OR-ed; values are percent-decoded and `\,` `\|` `\$` `\\` are FHIR's escapes.
//! A `filterBy` entry is one clause: its `comparator` is the value's prefix.
//!
//! Refused, with a message that says why: unknown parameters for the resource type,
//! chains (`subject.name`, `subject:Patient.name`), `_has`, composite and special
//! parameters (not in the table), result and other control parameters (`_sort`,
//! `_include`, `_filter`, …), expressions outside [`super::path`], prefixes on unordered
//! types, malformed dates and numbers, and modifiers that need a terminology server or a
//! type model (`:in`, `:not-in`, `:below`/`:above` on tokens, `:of-type`, `:code-text`,
//! `:text-advanced`, `:iterate`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::matcher;
use super::value::{ESCAPED_BAR, Modifier, Prefix, SearchValue};
use super::{ParamType, SearchParameter, SearchParameters};
use crate::fhir::FilterBy;
use crate::fhir::version::FhirVersion;

/// One parameter's test: true when any of its values matches.
#[derive(Debug, Clone)]
pub struct Clause {
    parameter: &'static SearchParameter,
    modifier: Modifier,
    values: Vec<SearchValue>,
}

/// Clauses that must all match.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    clauses: Vec<Clause>,
}

/// Control parameters that say how to answer a search, not what matches.
const CONTROL: &[&str] = &[
    "_sort",
    "_count",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_contained",
    "_containedType",
    "_total",
    "_format",
    "_pretty",
    "_filter",
    "_query",
    "_text",
    "_content",
    "_list",
    "_has",
    "_type",
    "_score",
    "_maxresults",
    "_graph",
];

impl Criteria {
    /// Reads a criteria string for resources of `resource_type` written in FHIR `version`
    /// (a `Type?` prefix must name that type).
    pub fn parse(query: &str, resource_type: &str, version: FhirVersion) -> Result<Self, String> {
        let query = query.trim();
        let query = match query.split_once('?') {
            Some((kind, rest)) if kind == resource_type => rest,
            Some((kind, _)) => {
                return Err(format!("criteria '{query}' are for {kind}, but the trigger is for {resource_type}"));
            }
            None => query,
        };
        let clauses = query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (name, value) =
                    part.split_once('=').ok_or_else(|| format!("'{part}' is not name=value in '{query}'"))?;
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| format!("'{part}' is not UTF-8 once decoded"))?;
                Clause::parse(name, &value, resource_type, version)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { clauses })
    }

    /// Whether `resource` matches every clause (`now` anchors `ap` on dates).
    pub fn matches(&self, resource: &Map<String, Value>, now: DateTime<Utc>) -> bool {
        self.clauses.iter().all(|clause| clause.matches(resource, now))
    }
}

impl Clause {
    /// Reads `name[:modifier]` = `value[,value]` (value already percent-decoded) for
    /// resources of `resource_type` in FHIR `version`.
    pub fn parse(name: &str, value: &str, resource_type: &str, version: FhirVersion) -> Result<Self, String> {
        let (code, modifier) = match name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (name, None),
        };
        Self::build(Target { resource_type, version }, code, None, modifier, None, value)
    }

    /// Reads a `Subscription.filterBy` entry for resources of `resource_type` in FHIR
    /// `version`; `definition` is the topic's `canFilterBy.filterDefinition`, when it gives one.
    pub fn from_filter(
        filter: &FilterBy,
        resource_type: &str,
        version: FhirVersion,
        definition: Option<&str>,
    ) -> Result<Self, String> {
        let code = filter.filter_parameter.as_deref().unwrap_or_default();
        let value = filter.value.as_deref().ok_or_else(|| format!("filter '{code}' needs a value"))?;
        let target = Target { resource_type, version };
        Self::build(target, code, definition, filter.modifier.as_deref(), filter.comparator.as_deref(), value)
    }

    fn build(
        target: Target<'_>,
        code: &str,
        definition: Option<&str>,
        modifier: Option<&str>,
        comparator: Option<&str>,
        value: &str,
    ) -> Result<Self, String> {
        if let Some(modifier) = modifier.filter(|m| m.contains('.')) {
            return Err(format!("'{code}:{modifier}': chained parameters are not supported"));
        }
        let parameter = parameter_for(target.resource_type, code, target.version, definition)?;
        let modifier = read_modifier(parameter, modifier)?;
        let comparator = comparator
            .map(|c| Prefix::read(c).ok_or_else(|| format!("'{c}' is not a search comparator")))
            .transpose()?;
        if comparator.is_some_and(|c| c != Prefix::Eq) && !parameter.kind.is_ordered() {
            return Err(format!("'{code}' is a {:?} parameter and takes no comparator", parameter.kind));
        }
        let values = split_values(value)
            .into_iter()
            .map(|text| read_value(parameter, &modifier, comparator, text))
            .collect::<Result<Vec<_>, _>>()?;
        if values.is_empty() {
            return Err(format!("'{code}' needs a value"));
        }
        Ok(Self { parameter, modifier, values })
    }

    /// Whether `resource` matches (`now` anchors `ap` on dates).
    pub fn matches(&self, resource: &Map<String, Value>, now: DateTime<Utc>) -> bool {
        matcher::clause_matches(self.parameter, &self.modifier, &self.values, resource, now)
    }

    /// The route key of this clause, when it has one: a single `eq` value, no modifier,
    /// on a token or reference parameter. Every resource it matches has this key among
    /// its [`route_keys`] for the parameter.
    pub fn route_key(&self) -> Option<String> {
        match (&self.modifier, self.values.as_slice()) {
            (Modifier::None, [value]) if value.prefix == Prefix::Eq => {
                matcher::route_key(self.parameter.kind, &value.text)
            }
            _ => None,
        }
    }

    /// The parameter it tests.
    pub fn parameter(&self) -> &'static SearchParameter {
        self.parameter
    }
}

/// The route keys of `resource` for `parameter` (token and reference parameters; none for
/// other types): every `eq` value of the parameter that matches it has its
/// [`Clause::route_key`] among them.
pub fn route_keys(parameter: &SearchParameter, resource: &Map<String, Value>) -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(path) = parameter.path() {
        for item in path.evaluate(resource) {
            matcher::item_route_keys(parameter.kind, item.value, &mut keys);
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// What a clause searches: resources of one type, written in one FHIR version.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    resource_type: &'a str,
    version: FhirVersion,
}

/// The search parameter `code` (or, when given and known, the one with canonical
/// `definition`) of `resource_type` in FHIR `version`, if this server evaluates it; the
/// error is for the client.
pub fn parameter_for(
    resource_type: &str,
    code: &str,
    version: FhirVersion,
    definition: Option<&str>,
) -> Result<&'static SearchParameter, String> {
    if code.contains('.') {
        return Err(format!("'{code}': chained parameters are not supported"));
    }
    if CONTROL.contains(&code) {
        return Err(format!("'{code}' does not select resources and is not supported in criteria or filters"));
    }
    let table = SearchParameters::of(version);
    let parameter = definition
        .and_then(|url| table.find_by_url(resource_type, url))
        .or_else(|| table.find(resource_type, code))
        .ok_or_else(|| {
            format!(
                "'{code}' is not a search parameter of {resource_type} in FHIR {} that this server evaluates",
                version.path_segment()
            )
        })?;
    match parameter.path() {
        Ok(_) => Ok(parameter),
        Err(reason) => Err(format!("'{code}' on {resource_type} cannot be evaluated here ({reason})")),
    }
}

fn read_modifier(parameter: &SearchParameter, modifier: Option<&str>) -> Result<Modifier, String> {
    let Some(text) = modifier else { return Ok(Modifier::None) };
    let kind = parameter.kind;
    let modifier = match (text, kind) {
        ("missing", _) => Modifier::Missing,
        ("not", ParamType::Token) => Modifier::Not,
        ("text", ParamType::Token) => Modifier::Text,
        ("exact", ParamType::String) => Modifier::Exact,
        ("contains", ParamType::String) => Modifier::Contains,
        ("identifier", ParamType::Reference) => Modifier::Identifier,
        ("below", ParamType::Uri) => Modifier::Below,
        ("above", ParamType::Uri) => Modifier::Above,
        (kind_name, ParamType::Reference)
            if kind_name.starts_with(|c: char| c.is_ascii_uppercase())
                && kind_name.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            if !parameter.targets.is_empty() && !parameter.targets.iter().any(|t| t == kind_name) {
                return Err(format!("'{}' cannot point to {kind_name}", parameter.code));
            }
            Modifier::Type(kind_name.to_owned())
        }
        ("in" | "not-in" | "below" | "above" | "code-text", ParamType::Token) => {
            return Err(format!(":{text} needs a terminology server, which this server does not use"));
        }
        _ => return Err(format!("modifier ':{text}' is not supported on the {kind:?} parameter '{}'", parameter.code)),
    };
    Ok(modifier)
}

/// Splits at commas not escaped by `\\`, and removes FHIR's escapes.
fn split_values(value: &str) -> Vec<String> {
    let (mut values, mut current) = (Vec::new(), String::new());
    let mut chars = value.chars();
    while let Some(ch) = chars.next() {
        match (ch, ch == '\\') {
            (_, true) => match chars.next() {
                Some(',') => current.push(','),
                Some('$') => current.push('$'),
                // An escaped `|` stays apart from the token/quantity separator.
                Some('|') => current.push(ESCAPED_BAR),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            (',', false) => values.push(std::mem::take(&mut current)),
            (other, false) => current.push(other),
        }
    }
    values.push(current);
    values.into_iter().filter(|v| !v.is_empty()).collect()
}

fn read_value(
    parameter: &SearchParameter,
    modifier: &Modifier,
    comparator: Option<Prefix>,
    text: String,
) -> Result<SearchValue, String> {
    if *modifier == Modifier::Missing {
        return match text.as_str() {
            "true" | "false" => Ok(SearchValue { prefix: Prefix::Eq, text }),
            _ => Err(format!(":missing on '{}' takes true or false", parameter.code)),
        };
    }
    let (prefix, text) = match (comparator, parameter.kind.is_ordered()) {
        (Some(prefix), _) => (prefix, text),
        (None, true) => match text.get(..2).and_then(Prefix::read) {
            Some(prefix) => (prefix, text[2..].to_owned()),
            None => (Prefix::Eq, text),
        },
        (None, false) => (Prefix::Eq, text),
    };
    let valid = match parameter.kind {
        ParamType::Date => matcher::date_range(&text).is_some(),
        ParamType::Number => matcher::number_range(&text).is_some(),
        ParamType::Quantity => {
            matcher::number_range(text.split('|').next().unwrap_or_default()).is_some() && text.split('|').count() <= 3
        }
        _ => true,
    };
    if !valid {
        return Err(format!("'{text}' is not a valid {:?} value for '{}'", parameter.kind, parameter.code));
    }
    Ok(SearchValue { prefix, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criteria_in_both_forms_and_refuses_what_cannot_run_here() {
        for good in [
            "status=completed",
            "Encounter?status=completed",
            "status:not=completed",
            "patient=Patient/1,Patient/2&status=in-progress",
            "date=ge2026-01-01",
            "subject:Patient=p1",
            "_id=e1",
            "patient:missing=false",
            "reason-code:text=flu",
        ] {
            assert!(Criteria::parse(good, "Encounter", FhirVersion::R5).is_ok(), "{good}");
        }
        let refusals = [
            ("Observation?code=x", "for Observation"),
            ("subject.name=x", "chained"),
            ("subject:Patient.name=x", "chained"),
            ("_has:Observation:subject:code=x", "does not select"),
            ("_sort=date", "does not select"),
            ("nonsense=1", "not a search parameter"),
            ("status:in=http://vs", "terminology"),
            ("status=gt1", "X"),
            ("date=tomorrow", "not a valid"),
            ("length=abc", "not a valid"),
            ("patient:Group=g1", "cannot point to Group"),
            ("patient:missing=maybe", "true or false"),
            ("status", "not name=value"),
            ("status:exact=x", "not supported"),
        ];
        for (query, expected) in refusals {
            let outcome = Criteria::parse(query, "Encounter", FhirVersion::R5);
            if expected == "X" {
                // `gt1` on a token is the literal code "gt1", not a comparator.
                assert!(outcome.is_ok(), "{query}");
                continue;
            }
            let message = outcome.err().unwrap_or_default();
            assert!(message.contains(expected), "{query}: {message}");
        }
        assert_eq!(split_values(r"a\,b,c"), ["a,b", "c"]);
    }
}
