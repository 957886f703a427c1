//! Matching one clause against one resource, per parameter type (FHIR R5 search page).
//!
//! - **string**: case-insensitive match from the start of any string the path reaches
//!   (for HumanName and Address: each of their parts); `:exact` whole and as written;
//!   `:contains` anywhere. Accents are not folded.
//! - **token**: `code`, `system|code`, `|code` (no system), `system|` (any code of the
//!   system) against codes, booleans, Codings, CodeableConcepts (any coding),
//!   Identifiers (`system|value`) and ContactPoints (their `value`). A bare code, whose
//!   code system only its binding knows, matches on the code alone. `:not` is true when
//!   no value matches (also when there is none); `:text` matches the display texts from
//!   the start, ignoring case.
//! - **reference**: `Type/id`, a bare `id`, or an absolute URL; a relative reference and
//!   an absolute one match when they end in the same `Type/id` (`_history` is ignored).
//!   Canonical references match `url` or `url|version`. `:[Type]` and `:identifier`.
//! - **date**: every value is a range (its precision: `2026` is the whole year; a Period
//!   is its start to its end, open where missing; a Timing is each `event`) and compared
//!   with the prefix rules of the spec: `eq` the search range contains the value's, `gt`
//!   the value's range reaches above the search range, `sa` it starts after it ends, `ap`
//!   the ranges meet once the search range is widened by 10 % of its distance from now.
//!   Times without a zone are read as UTC.
//! - **number** and **quantity**: a search value has the precision it is written with
//!   (`100` is 99.5 up to 100.5); `gt`/`lt`/`ge`/`le`/`sa`/`eb` compare with the value
//!   itself, `ap` within 10 %. A quantity's `|system|code` must match the resource's
//!   system and code (without a system, its code or unit).
//! - **uri**: exactly; `:below` the value is a prefix, `:above` the URI is a prefix of it.
//! - `:missing=true` matches when the path reaches nothing, `false` when it reaches something.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::{Map, Value};

use super::path::{Item, reference_type};
use super::value::{ESCAPED_BAR, Modifier, Prefix, SearchValue};
use super::{ParamType, SearchParameter};

/// Whether `resource` matches one clause: any of `values` (OR).
pub(crate) fn clause_matches(
    parameter: &SearchParameter,
    modifier: &Modifier,
    values: &[SearchValue],
    resource: &Map<String, Value>,
    now: DateTime<Utc>,
) -> bool {
    let Ok(path) = parameter.path() else { return false };
    let items = path.evaluate(resource);
    match modifier {
        Modifier::Missing => values.iter().any(|v| (v.text == "true") == items.is_empty()),
        Modifier::Not => !values.iter().any(|v| items.iter().any(|item| token(item, &v.text))),
        _ => values.iter().any(|v| items.iter().any(|item| item_matches(parameter, modifier, item, v, now))),
    }
}

fn item_matches(
    parameter: &SearchParameter,
    modifier: &Modifier,
    item: &Item<'_>,
    value: &SearchValue,
    now: DateTime<Utc>,
) -> bool {
    match parameter.kind {
        ParamType::String => string(item.value, modifier, &unescape(&value.text)),
        ParamType::Token if *modifier == Modifier::Text => token_text(item.value, &value.text),
        ParamType::Token => token(item, &value.text),
        ParamType::Reference => reference(item.value, modifier, &value.text),
        ParamType::Date => date(item.value, value, now),
        ParamType::Number => item.value.as_f64().is_some_and(|n| compare_number(n, value.prefix, &value.text)),
        ParamType::Quantity => quantity(item.value, value),
        ParamType::Uri => uri(item.value, modifier, &unescape(&value.text)),
    }
}

fn unescape(text: &str) -> String {
    text.replace(ESCAPED_BAR, "|")
}

// ---- string ----

fn string(value: &Value, modifier: &Modifier, wanted: &str) -> bool {
    let mut texts = Vec::new();
    string_parts(value, &mut texts);
    texts.iter().any(|text| match modifier {
        Modifier::Exact => *text == wanted,
        Modifier::Contains => text.to_lowercase().contains(&wanted.to_lowercase()),
        _ => text.to_lowercase().starts_with(&wanted.to_lowercase()),
    })
}

/// The strings of a value: itself, or the text parts of a HumanName or Address.
fn string_parts<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| string_parts(item, out)),
        Value::Object(object) => {
            for (key, part) in object {
                // Codes and structure, not text a person would search for.
                if !matches!(key.as_str(), "use" | "type" | "period" | "id" | "extension") {
                    string_parts(part, out);
                }
            }
        }
        _ => {}
    }
}

// ---- token ----

fn token(item: &Item<'_>, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((system, code)) => (Some(unescape(system)), unescape(code)),
        None => (None, unescape(wanted)),
    };
    let pair = |own_system: Option<&str>, own_code: Option<&str>| match system.as_deref() {
        None => own_code == Some(code.as_str()),
        Some("") => own_system.is_none() && own_code == Some(code.as_str()),
        Some(system) => own_system == Some(system) && (code.is_empty() || own_code == Some(code.as_str())),
    };
    match item.value {
        // A code's system is its binding's, unknown here: the code alone decides.
        Value::String(text) => system.as_deref().is_none_or(|_| !code.is_empty()) && *text == code,
        Value::Bool(flag) => system.is_none() && flag.to_string() == code,
        Value::Number(number) => system.is_none() && number.to_string() == code,
        Value::Object(object) => {
            let text = |key: &str| object.get(key).and_then(Value::as_str);
            if let Some(codings) = object.get("coding").and_then(Value::as_array) {
                return codings
                    .iter()
                    .filter_map(Value::as_object)
                    .any(|c| pair(c.get("system").and_then(Value::as_str), c.get("code").and_then(Value::as_str)));
            }
            if object.contains_key("code") {
                return pair(text("system"), text("code"));
            }
            match (text("system"), text("value")) {
                // A ContactPoint's system is a kind of contact (`phone`), not a URI.
                (Some("phone" | "fax" | "email" | "pager" | "url" | "sms" | "other"), own_value) => {
                    system.is_none() && own_value == Some(code.as_str())
                }
                (own_system, own_value) => pair(own_system, own_value),
            }
        }
        _ => false,
    }
}

fn token_text(value: &Value, wanted: &str) -> bool {
    let wanted = unescape(wanted).to_lowercase();
    let starts = |text: Option<&str>| text.is_some_and(|t| t.to_lowercase().starts_with(&wanted));
    let Some(object) = value.as_object() else { return false };
    starts(object.get("text").and_then(Value::as_str))
        || starts(object.get("display").and_then(Value::as_str))
        || object
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|coding| starts(coding.get("display").and_then(Value::as_str)))
        || object.get("type").is_some_and(|kind| token_text(kind, &wanted))
}

// ---- reference ----

/// A reference without `/_history/n`.
fn without_history(reference: &str) -> &str {
    match reference.rfind("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    }
}

/// The last two segments, `Type/id`.
fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let mut segments = reference.rsplit('/');
    let id = segments.next()?;
    let kind = segments.next()?;
    Some((kind, id))
}

fn reference(value: &Value, modifier: &Modifier, wanted: &str) -> bool {
    if let Value::String(canonical) = value {
        return match wanted.split_once('|') {
            Some(_) => canonical == wanted,
            None => canonical == wanted || canonical.split_once('|').is_some_and(|(url, _)| url == wanted),
        };
    }
    let Some(object) = value.as_object() else { return false };
    if *modifier == Modifier::Identifier {
        let identifier = object.get("identifier");
        return identifier.is_some_and(|id| token(&Item { value: id, choice_type: None }, wanted));
    }
    let Some(own) = object.get("reference").and_then(Value::as_str).map(without_history) else { return false };
    let wanted = without_history(wanted);
    if let Modifier::Type(kind) = modifier {
        return reference_type(object) == Some(kind.as_str())
            && type_and_id(own).is_some_and(|(_, id)| id == wanted || format!("{kind}/{id}") == wanted);
    }
    if own == wanted {
        return true;
    }
    match (own.contains("://"), wanted.contains("://"), wanted.contains('/')) {
        // A bare id: any reference ending in it.
        (_, false, false) => type_and_id(own).is_some_and(|(_, id)| id == wanted),
        // One absolute, one relative: the same Type/id at the end.
        (true, false, true) | (false, true, _) => type_and_id(own) == type_and_id(wanted),
        _ => false,
    }
}

// ---- route keys ----
//
// A route key is coarser than a match: every resource value that matches a search value
// yields the search value's key, so reading the buckets of a resource's keys finds every
// subscription whose filter it can match (and perhaps a few more, which the filter
// itself then turns away). Tokens key on the code, references on the id.

/// The key of one `eq` search value of a token or reference parameter, or `None` when
/// it has none (`system|` matches any code; a canonical's `|version` is dropped).
pub(crate) fn route_key(kind: ParamType, wanted: &str) -> Option<String> {
    let key = match kind {
        ParamType::Token => match wanted.split_once('|') {
            Some((_, code)) => unescape(code),
            None => unescape(wanted),
        },
        ParamType::Reference => {
            let reference = without_history(wanted.split_once('|').map_or(wanted, |(url, _)| url));
            reference.rsplit('/').next().unwrap_or_default().to_owned()
        }
        _ => return None,
    };
    (!key.is_empty()).then_some(key)
}

/// The keys of one value a token or reference parameter's path reached.
pub(crate) fn item_route_keys(kind: ParamType, value: &Value, keys: &mut Vec<String>) {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    match (kind, value) {
        (ParamType::Token, Value::String(code)) => keys.push(code.clone()),
        (ParamType::Token, Value::Bool(flag)) => keys.push(flag.to_string()),
        (ParamType::Token, Value::Number(number)) => keys.push(number.to_string()),
        (ParamType::Token, Value::Object(object)) => match object.get("coding").and_then(Value::as_array) {
            Some(codings) => keys.extend(codings.iter().filter_map(|c| text(c.get("code")))),
            None => keys.extend(text(object.get("code")).or_else(|| text(object.get("value")))),
        },
        (ParamType::Reference, Value::String(canonical)) => keys.extend(route_key(kind, canonical)),
        (ParamType::Reference, Value::Object(object)) => {
            keys.extend(object.get("reference").and_then(Value::as_str).and_then(|r| route_key(kind, r)));
        }
        _ => {}
    }
}

// ---- date ----

/// Milliseconds since the epoch, `[low, high)`.
type Range = (i64, i64);

/// The range a FHIR date, dateTime or instant covers at its precision.
pub(crate) fn date_range(text: &str) -> Option<Range> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let year: i32 = number(parts.first()?, 4)?;
    let month: Option<u32> = parts.get(1).map(|m| number(m, 2)).unwrap_or(Some(1)).filter(|_| parts.len() >= 2);
    let day: Option<u32> = parts.get(2).map(|d| number(d, 2)).unwrap_or(Some(1)).filter(|_| parts.len() >= 3);
    if parts.len() > 3 || (parts.len() >= 2 && month.is_none()) || (parts.len() == 3 && day.is_none()) {
        return None;
    }
    let start = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), day.unwrap_or(1))?;
    let Some(time) = time else {
        let end = match (month, day) {
            (None, _) => NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
            (Some(_), None) => start.checked_add_months(chrono::Months::new(1))?,
            (Some(_), Some(_)) => start.succ_opt()?,
        };
        let ms = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
        return (day.is_some() || parts.len() < 3).then(|| (ms(start), ms(end)));
    };
    if parts.len() != 3 {
        return None;
    }
    let (clock, offset_minutes) = split_zone(time)?;
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, fraction)) if !fraction.is_empty() && fraction.chars().all(|c| c.is_ascii_digit()) => {
            (clock, Some(fraction))
        }
        Some(_) => return None,
        None => (clock, None),
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let hour: u32 = number(fields.first()?, 2)?;
    let minute: u32 = number(fields.get(1)?, 2)?;
    let second: u32 = match fields.get(2) {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if fields.len() > 3 {
        return None;
    }
    let naive = NaiveDateTime::new(start, NaiveTime::from_hms_opt(hour, minute, second)?);
    let mut low = naive.and_utc().timestamp_millis() - i64::from(offset_minutes) * 60_000;
    let width = match (fields.len(), fraction) {
        (2, _) => 60_000,
        (_, None) => 1_000,
        (_, Some(digits)) => {
            let shown: String = digits.chars().take(3).collect();
            let scale = 10_i64.pow(3 - u32::try_from(shown.len()).unwrap_or(3));
            low += shown.parse::<i64>().unwrap_or(0) * scale;
            scale
        }
    };
    Some((low, low + width))
}

/// Exactly `len` digits, as a number.
fn number<T: std::str::FromStr>(text: &str, len: usize) -> Option<T> {
    (text.len() == len && text.chars().all(|c| c.is_ascii_digit())).then(|| text.parse().ok())?
}

/// `hh:mm[:ss[.f]]` and its zone in minutes east of UTC (none: UTC).
fn split_zone(time: &str) -> Option<(&str, i32)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    match time.rfind(['+', '-']) {
        Some(at) => {
            let (clock, zone) = time.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone[1..].split_once(':')?;
            let (hours, minutes): (i32, i32) = (number(hours, 2)?, number(minutes, 2)?);
            Some((clock, sign * (hours * 60 + minutes)))
        }
        None => Some((time, 0)),
    }
}

/// The ranges a resource's date-like value covers.
fn value_ranges(value: &Value) -> Vec<Range> {
    match value {
        Value::String(text) => date_range(text).into_iter().collect(),
        Value::Object(object) if object.contains_key("start") || object.contains_key("end") => {
            let start = object.get("start").and_then(Value::as_str).and_then(date_range).map_or(i64::MIN, |r| r.0);
            let end = object.get("end").and_then(Value::as_str).and_then(date_range).map_or(i64::MAX, |r| r.1);
            vec![(start, end)]
        }
        Value::Object(object) => object
            .get("event")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(date_range)
            .collect(),
        _ => Vec::new(),
    }
}

fn date(value: &Value, wanted: &SearchValue, now: DateTime<Utc>) -> bool {
    let Some((low, high)) = date_range(&wanted.text) else { return false };
    value_ranges(value).into_iter().any(|(own_low, own_high)| {
        let contained = low <= own_low && own_high <= high;
        match wanted.prefix {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt => own_high > high,
            Prefix::Lt => own_low < low,
            Prefix::Ge => own_high > high || contained,
            Prefix::Le => own_low < low || contained,
            Prefix::Sa => own_low >= high,
            Prefix::Eb => own_high <= low,
            Prefix::Ap => {
                let distance = (now.timestamp_millis() - low).abs().max((now.timestamp_millis() - high).abs());
                let slack = distance / 10;
                own_low < high.saturating_add(slack) && own_high > low.saturating_sub(slack)
            }
        }
    })
}

// ---- number and quantity ----

/// The value and half the width its precision implies (`100` → 100 ± 0.5).
pub(crate) fn number_range(text: &str) -> Option<(f64, f64)> {
    let value: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, fraction)| fraction.len());
    let decimals = i32::try_from(decimals).ok()?;
    Some((value, 0.5 * 10_f64.powi(exponent.saturating_sub(decimals))))
}

fn compare_number(own: f64, prefix: Prefix, wanted: &str) -> bool {
    let Some((value, half)) = number_range(wanted) else { return false };
    match prefix {
        Prefix::Eq => own >= value - half && own < value + half,
        Prefix::Ne => !(own >= value - half && own < value + half),
        Prefix::Gt | Prefix::Sa => own > value,
        Prefix::Lt | Prefix::Eb => own < value,
        Prefix::Ge => own >= value,
        Prefix::Le => own <= value,
        Prefix::Ap => (own - value).abs() <= (value * 0.1).abs(),
    }
}

fn quantity(value: &Value, wanted: &SearchValue) -> bool {
    let Some(object) = value.as_object() else { return false };
    let Some(own) = object.get("value").and_then(Value::as_f64) else { return false };
    let mut parts = wanted.text.splitn(3, '|');
    let amount = parts.next().unwrap_or_default();
    let system = parts.next().map(unescape).unwrap_or_default();
    let code = parts.next().map(unescape).unwrap_or_default();
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let unit_matches = match (system.is_empty(), code.is_empty()) {
        (_, true) => system.is_empty() || text("system") == Some(system.as_str()),
        (true, false) => text("code") == Some(code.as_str()) || text("unit") == Some(code.as_str()),
        (false, false) => text("system") == Some(system.as_str()) && text("code") == Some(code.as_str()),
    };
    unit_matches && compare_number(own, wanted.prefix, amount)
}

// ---- uri ----

fn uri(value: &Value, modifier: &Modifier, wanted: &str) -> bool {
    let Some(own) = value.as_str() else { return false };
    match modifier {
        Modifier::Below => own.starts_with(wanted),
        Modifier::Above => wanted.starts_with(own),
        _ => own == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Criteria;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").map(|d| d.with_timezone(&Utc)).unwrap_or_default()
    }

    /// (resource, criteria, expected) rows.
    fn check(resource: &Value, rows: &[(&str, bool)]) {
        let map = resource.as_object().cloned().unwrap_or_default();
        let kind = map.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
        for (criteria, expected) in rows {
            let parsed = Criteria::parse(criteria, &kind, crate::fhir::version::FhirVersion::R5)
                .unwrap_or_else(|e| panic!("{criteria}: {e}"));
            assert_eq!(parsed.matches(&map, now()), *expected, "{kind}?{criteria}");
        }
    }

    #[test]
    fn dates_compare_as_ranges() {
        assert_eq!(date_range("2026"), Some((1_767_225_600_000, 1_798_761_600_000)));
        assert!(date_range("2026-02-30").is_none());
        assert!(date_range("2026-1").is_none());
        assert!(date_range("2026-03-04T10:00:00+9999999999:00").is_none(), "no overflow on absurd zones");
        assert!(number_range("1.5e-2147483648").is_some(), "no overflow on absurd exponents");
        assert_eq!(date_range("2026-03-04T10:00:00+01:00").map(|r| r.1 - r.0), Some(1000));
        assert_eq!(date_range("2026-03-04T10:00Z").map(|r| r.1 - r.0), Some(60_000));
        assert_eq!(date_range("2026-03-04T10:00:00.5Z").map(|r| r.1 - r.0), Some(100));
        let encounter = json!({"resourceType": "Encounter", "id": "e",
            "actualPeriod": {"start": "2026-03-04T10:00:00Z", "end": "2026-03-04T11:00:00Z"}});
        check(
            &encounter,
            &[
                ("date=2026-03-04", true),
                ("date=2026-03", true),
                ("date=2026-03-05", false),
                ("date=ne2026-03-05", true),
                ("date=gt2026-03-03", true),
                ("date=gt2026-03-04", false),
                ("date=lt2026-03-05", true),
                ("date=lt2026-03-04", false),
                ("date=ge2026-03-04", true),
                ("date=le2026-03-04", true),
                ("date=sa2026-03-03", true),
                ("date=sa2026-03-04", false),
                ("date=eb2026-03-05", true),
                ("date=eb2026-03-04", false),
                ("date=eq2026-03-04T10:00:00Z", false),
                ("date=ap2026-03-01", true),
                ("date=ap2020", false),
            ],
        );
        let open = json!({"resourceType": "Encounter", "id": "e", "actualPeriod": {"start": "2026-03-04"}});
        check(&open, &[("date=gt2030", true), ("date=lt2026", false), ("date=2026", false)]);
    }

    #[test]
    fn tokens_strings_references_numbers_quantities_and_uris() {
        let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "HR"},
            "subject": {"reference": "http://fhir.example.org/Patient/p1/_history/2"},
            "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
            "identifier": [{"system": "urn:lab", "value": "A|1"}],
            "derivedFrom": [{"reference": "Observation/o0"}],
            "focus": [{"identifier": {"system": "urn:mrn", "value": "42"}}]});
        check(
            &observation,
            &[
                ("status=final", true),
                ("status=http://hl7.org/fhir/observation-status|final", true),
                ("status=preliminary", false),
                ("status:not=preliminary", true),
                ("status:not=final", false),
                ("code=8867-4", true),
                ("code=http://loinc.org|8867-4", true),
                ("code=http://snomed.info/sct|8867-4", false),
                ("code=|8867-4", false),
                ("code=http://loinc.org|", true),
                ("code:text=heart", true),
                ("code:text=hr", true),
                ("code:text=pulse", false),
                ("code=1,8867-4", true),
                (r"identifier=urn:lab|A\|1", true),
                ("identifier=urn:lab|A", false),
                ("subject=Patient/p1", true),
                ("subject=p1", true),
                ("subject=http://fhir.example.org/Patient/p1", true),
                ("subject=http://other.example.org/Patient/p1", false),
                ("subject=Patient/p2", false),
                ("subject:Patient=p1", true),
                ("subject:Group=p1", false),
                ("patient=Patient/p1", true),
                ("derived-from=Observation/o0", true),
                ("focus:identifier=urn:mrn|42", true),
                ("focus:identifier=urn:mrn|43", false),
                ("subject:missing=false", true),
                ("subject:missing=true", false),
                ("value-quantity=72", true),
                ("value-quantity=72.0", true),
                ("value-quantity=72.4", false),
                ("value-quantity=gt70", true),
                ("value-quantity=lt70", false),
                ("value-quantity=ap70", true),
                ("value-quantity=ap60", false),
                ("value-quantity=72|http://unitsofmeasure.org|/min", true),
                ("value-quantity=72||beats/minute", true),
                ("value-quantity=72|http://unitsofmeasure.org|/h", false),
                ("value-quantity=ge72,le1", true),
                ("status=final&code=8867-4", true),
                ("status=final&code=x", false),
            ],
        );
        let patient = json!({"resourceType": "Patient", "id": "p1",
            "name": [{"use": "official", "family": "Müller", "given": ["Anna", "Maria"]}],
            "telecom": [{"system": "phone", "value": "555-1234"}], "birthDate": "1980-05-06",
            "gender": "female", "active": true, "address": [{"city": "Bern"}]});
        check(
            &patient,
            &[
                ("name=mül", true),
                ("name=anna", true),
                ("name=maria", true),
                ("name=official", false),
                ("name:exact=Müller", true),
                ("name:exact=müller", false),
                ("name:contains=ll", true),
                ("family=Mü", true),
                ("given=Anna", true),
                ("address-city=bern", true),
                ("phone=555-1234", true),
                ("telecom=555-1234", true),
                ("birthdate=1980", true),
                ("birthdate=lt1980-05-06", false),
                ("gender=female", true),
                ("active=true", true),
                ("active=false", false),
                ("_id=p1", true),
                ("general-practitioner:missing=true", true),
            ],
        );
        let measure = json!({"resourceType": "Measure", "id": "m", "url": "http://example.org/fhir/Measure/m",
            "library": ["http://example.org/fhir/Library/l|1.0"]});
        check(
            &measure,
            &[
                ("url=http://example.org/fhir/Measure/m", true),
                ("url=http://example.org/fhir/Measure", false),
                ("url:below=http://example.org/fhir/", true),
                ("url:above=http://example.org/fhir/Measure/m/x", true),
                ("depends-on=http://example.org/fhir/Library/l", true),
                ("depends-on=http://example.org/fhir/Library/l|1.0", true),
                ("depends-on=http://example.org/fhir/Library/l|2.0", false),
            ],
        );
        let risk = json!({"resourceType": "RiskAssessment", "id": "r", "prediction": [{"probabilityDecimal": 0.25}]});
        check(
            &risk,
            &[
                ("probability=0.25", true),
                ("probability=0.3", true),
                ("probability=0.30", false),
                ("probability=gt0.2", true),
            ],
        );
    }
}
