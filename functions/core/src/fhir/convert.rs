//! Resources carried from one FHIR version to another, for a subscriber whose version is
//! not the events' (an R4 producer's Encounter to an R5 subscriber, say).
//!
//! A conversion here is **exact or refused**: a resource is converted only when every
//! element it has has a counterpart in the target version, and the caller then sends a
//! reference in place of the body ([`crate::fanout`], metric `CrossVersionDowngraded`). A
//! body in a version the subscriber did not ask for is never sent.
//!
//! The types converted, and what changes (checked against the StructureDefinitions of the
//! official packages: hl7.fhir.r4.examples 4.0.1, hl7.fhir.r4b.core 4.3.0,
//! hl7.fhir.r5.core 5.0.0):
//!
//! - **Patient**: the same elements in R4, R4B and R5. `photo` is an `Attachment`, whose
//!   `size` is an `unsignedInt` (a JSON number) in R4 and R4B and an `integer64` (a JSON
//!   string) in R5, and whose `height`, `width`, `frames`, `duration` and `pages` only R5
//!   has.
//! - **Encounter**: the same in R4 and R4B. R4/R4B to R5, following the FHIR cross-version
//!   maps: `status` `arrived`/`triaged` become `in-progress` with that `subjectStatus`,
//!   `onleave` becomes `on-hold` with `subjectStatus` `on-leave`, `finished` becomes
//!   `completed`; `class` (a Coding) becomes a one-item list of CodeableConcepts;
//!   `serviceType` a one-item list of CodeableReferences; `participant.individual` is
//!   `participant.actor`; `period` is `actualPeriod`; `reasonCode` and `reasonReference`
//!   become one `reason` with those values; `diagnosis.condition` and `diagnosis.use`
//!   become one-item lists; `hospitalization` is `admission`, its `dietPreference`,
//!   `specialCourtesy` and `specialArrangement` moving to the top level; `location.physicalType`
//!   is `location.form`. R5 to R4/R4B is the reverse. Refused: R4's `statusHistory`,
//!   `classHistory` and `diagnosis.rank`; R5's `plannedStartDate`, `plannedEndDate`,
//!   `careTeam`, `virtualService`, statuses `discharged` and `discontinued`, a `reason`
//!   with a `use`, and anything R4 writes as one value that R5 holds more than one of.
//!
//! In every type: `contained` resources are refused (they would need converting too), and
//! so is an extension whose `value[x]` type the target version does not have.

use serde_json::{Map, Value, json};

use crate::fhir::version::FhirVersion;

/// Why a resource was not converted (for the log).
pub type Refusal = String;

/// The resource types this module converts between every two versions.
pub const CONVERTED_TYPES: [&str; 2] = ["Encounter", "Patient"];

/// `resource`, written in FHIR `from`, as FHIR `to` writes it; `Err` says why it cannot
/// be converted exactly. The same version is the resource unchanged.
pub fn convert(
    resource: &Map<String, Value>,
    from: FhirVersion,
    to: FhirVersion,
) -> Result<Map<String, Value>, Refusal> {
    if from == to {
        return Ok(resource.clone());
    }
    let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if resource.get("contained").is_some_and(|c| c.as_array().is_none_or(|list| !list.is_empty())) {
        return Err(format!("{kind} with contained resources is not converted"));
    }
    let converted = match kind {
        "Patient" => patient(resource)?,
        // R4 and R4B define Encounter alike: only the datatypes below can differ.
        "Encounter" if is_r5(from) == is_r5(to) => resource.clone(),
        "Encounter" if is_r5(to) => encounter_to_r5(resource)?,
        "Encounter" => encounter_from_r5(resource)?,
        other => {
            return Err(format!("no conversion of {other} from FHIR {} to {}", from.path_segment(), to.path_segment()));
        }
    };
    let mut value = Value::Object(converted);
    datatypes(&mut value, from, to, kind)?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(format!("{kind} is not an object")),
    }
}

/// R4 and R4B share the pre-R5 model of the converted types.
fn is_r5(version: FhirVersion) -> bool {
    version == FhirVersion::R5
}

/// Elements every resource may have (with their `_name` primitive extensions).
const RESOURCE_ELEMENTS: [&str; 8] =
    ["resourceType", "id", "meta", "implicitRules", "language", "text", "extension", "modifierExtension"];

/// Checks that every key of `object` is one of `allowed` (or its `_` primitive twin).
fn only(object: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), Refusal> {
    match object.keys().find(|key| {
        let name = key.strip_prefix('_').unwrap_or(key);
        !allowed.contains(&name) && !RESOURCE_ELEMENTS.contains(&name) && name != "contained"
    }) {
        Some(key) => Err(format!("{what}.{key} has no counterpart in the other version")),
        None => Ok(()),
    }
}

/// Patient's elements, the same in R4, R4B and R5.
const PATIENT_ELEMENTS: [&str; 18] = [
    "identifier",
    "active",
    "name",
    "telecom",
    "gender",
    "birthDate",
    "deceasedBoolean",
    "deceasedDateTime",
    "address",
    "maritalStatus",
    "multipleBirthBoolean",
    "multipleBirthInteger",
    "photo",
    "contact",
    "communication",
    "generalPractitioner",
    "managingOrganization",
    "link",
];

fn patient(resource: &Map<String, Value>) -> Result<Map<String, Value>, Refusal> {
    only(resource, &PATIENT_ELEMENTS, "Patient")?;
    Ok(resource.clone())
}

/// Elements of Encounter in every version (with unchanged meaning and type).
const ENCOUNTER_COMMON: [&str; 11] = [
    "identifier",
    "status",
    "type",
    "priority",
    "subject",
    "episodeOfCare",
    "basedOn",
    "appointment",
    "length",
    "account",
    "serviceProvider",
];
/// Elements only R4 and R4B Encounters have (as named there).
const ENCOUNTER_R4: [&str; 10] = [
    "class",
    "serviceType",
    "participant",
    "period",
    "reasonCode",
    "reasonReference",
    "diagnosis",
    "hospitalization",
    "location",
    "partOf",
];
/// Elements only R5 Encounters have (as named there).
const ENCOUNTER_R5: [&str; 13] = [
    "class",
    "serviceType",
    "participant",
    "actualPeriod",
    "reason",
    "diagnosis",
    "admission",
    "dietPreference",
    "specialArrangement",
    "specialCourtesy",
    "location",
    "partOf",
    "subjectStatus",
];

/// Encounter's primitive elements, the only ones that may have a `_name` twin.
const ENCOUNTER_PRIMITIVES: [&str; 4] = ["_status", "_id", "_implicitRules", "_language"];

/// Refuses the `_name` twin of an element that is not a primitive in both models.
fn encounter_primitive_twins(resource: &Map<String, Value>) -> Result<(), Refusal> {
    match resource.keys().find(|k| k.starts_with('_') && !ENCOUNTER_PRIMITIVES.contains(&k.as_str())) {
        Some(key) => Err(format!("Encounter.{key} has no counterpart in the other version")),
        None => Ok(()),
    }
}

/// The system of R5's Encounter subject status codes.
const SUBJECT_STATUS: &str = "http://terminology.hl7.org/CodeSystem/encounter-subject-status";

/// A list element as a list (a single value is not expected, but is read as one).
fn list(value: Option<&Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
    }
}

/// A backbone element (an object) with `renames` applied and nothing else changed; other
/// keys must be in `keep` (ids and extensions always are).
fn backbone(value: &Value, what: &str, keep: &[&str], renames: &[(&str, &str)]) -> Result<Value, Refusal> {
    let Value::Object(object) = value else { return Err(format!("{what} is not an object")) };
    let mut out = Map::new();
    for (key, item) in object {
        let name = key.strip_prefix('_').unwrap_or(key);
        let underscore = if key.starts_with('_') { "_" } else { "" };
        if let Some((_, to)) = renames.iter().find(|(from, _)| *from == name) {
            out.insert(format!("{underscore}{to}"), item.clone());
        } else if keep.contains(&name) || ["id", "extension", "modifierExtension"].contains(&name) {
            out.insert(key.clone(), item.clone());
        } else {
            return Err(format!("{what}.{key} has no counterpart in the other version"));
        }
    }
    Ok(Value::Object(out))
}

fn encounter_to_r5(resource: &Map<String, Value>) -> Result<Map<String, Value>, Refusal> {
    let allowed: Vec<&str> = ENCOUNTER_COMMON.iter().chain(&ENCOUNTER_R4).copied().collect();
    only(resource, &allowed, "Encounter")?;
    encounter_primitive_twins(resource)?;
    let mut out = Map::new();
    let mut reason_values = Vec::new();
    for (key, value) in resource {
        match key.as_str() {
            "status" => {
                let (status, subject_status) = match value.as_str().unwrap_or_default() {
                    "arrived" => ("in-progress", Some("arrived")),
                    "triaged" => ("in-progress", Some("triaged")),
                    "onleave" => ("on-hold", Some("on-leave")),
                    "finished" => ("completed", None),
                    other @ ("planned" | "in-progress" | "cancelled" | "entered-in-error" | "unknown") => (other, None),
                    other => return Err(format!("Encounter.status '{other}' is not an R4 status")),
                };
                out.insert("status".to_owned(), json!(status));
                if let Some(code) = subject_status {
                    out.insert(
                        "subjectStatus".to_owned(),
                        json!({"coding": [{"system": SUBJECT_STATUS, "code": code}]}),
                    );
                }
            }
            "class" => {
                out.insert("class".to_owned(), json!([{"coding": [value]}]));
            }
            "serviceType" => {
                out.insert("serviceType".to_owned(), json!([{"concept": value}]));
            }
            "participant" => {
                let participants = list(Some(value))
                    .iter()
                    .map(|p| backbone(p, "Encounter.participant", &["type", "period"], &[("individual", "actor")]))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("participant".to_owned(), Value::Array(participants));
            }
            "period" => {
                out.insert("actualPeriod".to_owned(), value.clone());
            }
            "reasonCode" => reason_values.extend(list(Some(value)).into_iter().map(|c| json!({"concept": c}))),
            "reasonReference" => reason_values.extend(list(Some(value)).into_iter().map(|r| json!({"reference": r}))),
            "diagnosis" => {
                let diagnoses = list(Some(value))
                    .iter()
                    .map(|d| {
                        let mut d = backbone(d, "Encounter.diagnosis", &["condition", "use"], &[])?;
                        if let Some(condition) = d.get("condition").cloned() {
                            d["condition"] = json!([{"reference": condition}]);
                        }
                        if let Some(use_) = d.get("use").cloned() {
                            d["use"] = json!([use_]);
                        }
                        Ok(d)
                    })
                    .collect::<Result<Vec<_>, Refusal>>()?;
                out.insert("diagnosis".to_owned(), Value::Array(diagnoses));
            }
            "hospitalization" => {
                let Value::Object(stay) = value else {
                    return Err("Encounter.hospitalization is not an object".to_owned());
                };
                let mut admission = Map::new();
                for (name, item) in stay {
                    match name.as_str() {
                        "dietPreference" | "specialCourtesy" | "specialArrangement" => {
                            out.insert(name.clone(), item.clone());
                        }
                        "preAdmissionIdentifier"
                        | "origin"
                        | "admitSource"
                        | "reAdmission"
                        | "destination"
                        | "dischargeDisposition"
                        | "id"
                        | "extension"
                        | "modifierExtension" => {
                            admission.insert(name.clone(), item.clone());
                        }
                        other => return Err(format!("Encounter.hospitalization.{other} has no counterpart in R5")),
                    }
                }
                if !admission.is_empty() {
                    out.insert("admission".to_owned(), Value::Object(admission));
                }
            }
            "location" => {
                let locations = list(Some(value))
                    .iter()
                    .map(|l| {
                        backbone(
                            l,
                            "Encounter.location",
                            &["location", "status", "period"],
                            &[("physicalType", "form")],
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("location".to_owned(), Value::Array(locations));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if !reason_values.is_empty() {
        out.insert("reason".to_owned(), json!([{"value": reason_values}]));
    }
    Ok(out)
}

/// The one item of a list R4 writes as a single value; more than one cannot be written.
fn single(value: &Value, what: &str) -> Result<Value, Refusal> {
    match list(Some(value)).as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{what} has more than one value; R4 and R4B hold one")),
    }
}

fn encounter_from_r5(resource: &Map<String, Value>) -> Result<Map<String, Value>, Refusal> {
    let allowed: Vec<&str> = ENCOUNTER_COMMON.iter().chain(&ENCOUNTER_R5).copied().collect();
    only(resource, &allowed, "Encounter")?;
    encounter_primitive_twins(resource)?;
    let subject_status = resource
        .get("subjectStatus")
        .map(|status| match status.pointer("/coding/0/code").and_then(Value::as_str) {
            Some(code @ ("arrived" | "triaged" | "on-leave"))
                if status.pointer("/coding/0/system").and_then(Value::as_str) == Some(SUBJECT_STATUS)
                    && list(status.get("coding")).len() == 1 =>
            {
                Ok(code)
            }
            _ => Err("Encounter.subjectStatus other than arrived, triaged or on-leave has no counterpart".to_owned()),
        })
        .transpose()?;
    let mut out = Map::new();
    let (mut reason_codes, mut reason_references) = (Vec::new(), Vec::new());
    for (key, value) in resource {
        match key.as_str() {
            "status" => {
                let status = match (value.as_str().unwrap_or_default(), subject_status) {
                    ("in-progress", Some("arrived")) => "arrived",
                    ("in-progress", Some("triaged")) => "triaged",
                    ("on-hold", Some("on-leave") | None) => "onleave",
                    ("completed", None) => "finished",
                    (other @ ("planned" | "in-progress" | "cancelled" | "entered-in-error" | "unknown"), None) => other,
                    (other, _) => return Err(format!("Encounter.status '{other}' has no counterpart in R4")),
                };
                out.insert("status".to_owned(), json!(status));
            }
            "subjectStatus" => {}
            "class" => {
                let concept = single(value, "Encounter.class")?;
                let coding = concept.get("coding").map(|c| single(c, "Encounter.class.coding")).transpose()?;
                match (coding, concept.as_object().map(Map::len)) {
                    (Some(coding), Some(1)) => out.insert("class".to_owned(), coding),
                    _ => return Err("Encounter.class must be one concept with one coding for R4".to_owned()),
                };
            }
            "serviceType" => {
                let reference = single(value, "Encounter.serviceType")?;
                match (reference.get("concept"), reference.as_object().map(Map::len)) {
                    (Some(concept), Some(1)) => out.insert("serviceType".to_owned(), concept.clone()),
                    _ => return Err("Encounter.serviceType must be one concept for R4".to_owned()),
                };
            }
            "participant" => {
                let participants = list(Some(value))
                    .iter()
                    .map(|p| backbone(p, "Encounter.participant", &["type", "period"], &[("actor", "individual")]))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("participant".to_owned(), Value::Array(participants));
            }
            "actualPeriod" => {
                out.insert("period".to_owned(), value.clone());
            }
            "reason" => {
                for reason in list(Some(value)) {
                    let Value::Object(reason) = reason else {
                        return Err("Encounter.reason is not an object".to_owned());
                    };
                    if reason.keys().any(|k| k != "value") {
                        return Err("Encounter.reason with a use (or extensions) has no counterpart in R4".to_owned());
                    }
                    for item in list(reason.get("value")) {
                        match (item.get("concept"), item.get("reference"), item.as_object().map(Map::len)) {
                            (Some(concept), None, Some(1)) => reason_codes.push(concept.clone()),
                            (None, Some(reference), Some(1)) => reason_references.push(reference.clone()),
                            _ => return Err("Encounter.reason.value must be a concept or a reference".to_owned()),
                        }
                    }
                }
            }
            "diagnosis" => {
                let diagnoses = list(Some(value))
                    .iter()
                    .map(|d| {
                        let mut d = backbone(d, "Encounter.diagnosis", &["condition", "use"], &[])?;
                        if let Some(condition) = d.get("condition").cloned() {
                            let condition = single(&condition, "Encounter.diagnosis.condition")?;
                            match (condition.get("reference"), condition.as_object().map(Map::len)) {
                                (Some(reference), Some(1)) => d["condition"] = reference.clone(),
                                _ => return Err("Encounter.diagnosis.condition must be a reference for R4".to_owned()),
                            }
                        }
                        if let Some(use_) = d.get("use").cloned() {
                            d["use"] = single(&use_, "Encounter.diagnosis.use")?;
                        }
                        Ok(d)
                    })
                    .collect::<Result<Vec<_>, Refusal>>()?;
                out.insert("diagnosis".to_owned(), Value::Array(diagnoses));
            }
            "admission" | "dietPreference" | "specialCourtesy" | "specialArrangement" => {
                let stay = out.entry("hospitalization").or_insert_with(|| json!({}));
                match (key.as_str(), value) {
                    ("admission", Value::Object(admission)) => {
                        for (name, item) in admission {
                            stay[name] = item.clone();
                        }
                    }
                    ("admission", _) => return Err("Encounter.admission is not an object".to_owned()),
                    (name, item) => stay[name] = item.clone(),
                }
            }
            "location" => {
                let locations = list(Some(value))
                    .iter()
                    .map(|l| {
                        backbone(
                            l,
                            "Encounter.location",
                            &["location", "status", "period"],
                            &[("form", "physicalType")],
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("location".to_owned(), Value::Array(locations));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if !out.contains_key("class") {
        return Err("an R4 Encounter needs a class; this one has none".to_owned());
    }
    if !reason_codes.is_empty() {
        out.insert("reasonCode".to_owned(), Value::Array(reason_codes));
    }
    if !reason_references.is_empty() {
        out.insert("reasonReference".to_owned(), Value::Array(reason_references));
    }
    Ok(out)
}

/// Extension `value[x]` types a version does not have.
fn extension_types_missing_in(version: FhirVersion) -> &'static [&'static str] {
    match version {
        FhirVersion::R4 => &["Availability", "CodeableReference", "ExtendedContactDetail", "RatioRange", "Integer64"],
        FhirVersion::R4B => &["Availability", "ExtendedContactDetail", "Integer64", "Meta", "Contributor"],
        FhirVersion::R5 => &["Contributor"],
    }
}

/// Converts the datatypes that differ between versions, wherever they are: extension
/// values (refused when the target has no such type) and `Attachment`s (`photo` of a
/// Patient, `valueAttachment` of an extension).
fn datatypes(value: &mut Value, from: FhirVersion, to: FhirVersion, what: &str) -> Result<(), Refusal> {
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(|item| datatypes(item, from, to, what)),
        Value::Object(object) => {
            if object.contains_key("url") {
                let missing = extension_types_missing_in(to);
                if let Some(key) =
                    object.keys().find(|k| k.strip_prefix("value").is_some_and(|kind| missing.contains(&kind)))
                {
                    return Err(format!(
                        "{what}: an extension's {key} has no counterpart in FHIR {}",
                        to.path_segment()
                    ));
                }
                if let Some(attachment) = object.get_mut("valueAttachment") {
                    convert_attachment(attachment, from, to)?;
                }
            }
            if what == "Patient"
                && let Some(Value::Array(photos)) = object.get_mut("photo")
            {
                photos.iter_mut().try_for_each(|photo| convert_attachment(photo, from, to))?;
            }
            object
                .iter_mut()
                .filter(|(key, _)| key.as_str() != "photo" && key.as_str() != "valueAttachment")
                .try_for_each(|(_, item)| datatypes(item, from, to, what))
        }
        _ => Ok(()),
    }
}

/// An `Attachment`: `size` is a JSON number before R5 and a string in R5; R5's further
/// elements have no counterpart before it.
fn convert_attachment(attachment: &mut Value, from: FhirVersion, to: FhirVersion) -> Result<(), Refusal> {
    let Value::Object(object) = attachment else { return Ok(()) };
    if is_r5(from) && !is_r5(to) {
        if let Some(key) = ["height", "width", "frames", "duration", "pages"]
            .iter()
            .find(|k| object.contains_key(**k) || object.contains_key(&format!("_{k}")))
        {
            return Err(format!("Attachment.{key} has no counterpart in FHIR {}", to.path_segment()));
        }
        if let Some(size) = object.get("size") {
            let number = size.as_str().and_then(|s| s.parse::<u32>().ok()).ok_or("Attachment.size does not fit R4")?;
            object.insert("size".to_owned(), json!(number));
        }
    } else if !is_r5(from)
        && is_r5(to)
        && let Some(size) = object.get("size")
    {
        let number = size.as_u64().ok_or("Attachment.size is not a number")?;
        object.insert("size".to_owned(), json!(number.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_r4_encounter_becomes_the_r5_encounter_and_back() {
        let r4 = map(json!({"resourceType": "Encounter", "id": "e1", "status": "arrived",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
            "subject": {"reference": "Patient/p1"},
            "participant": [{"individual": {"reference": "Practitioner/dr"}}],
            "period": {"start": "2026-12-03T08:00:00Z"},
            "reasonCode": [{"text": "chest pain"}],
            "hospitalization": {"admitSource": {"text": "ambulance"}, "dietPreference": [{"text": "vegan"}]},
            "location": [{"location": {"reference": "Location/ward"}, "physicalType": {"text": "room"}}]}));
        let r5 = convert(&r4, FhirVersion::R4, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r5["status"], "in-progress");
        assert_eq!(r5["subjectStatus"]["coding"][0]["code"], "arrived");
        assert_eq!(r5["class"][0]["coding"][0]["code"], "EMER");
        assert_eq!(r5["participant"][0]["actor"]["reference"], "Practitioner/dr");
        assert_eq!(r5["actualPeriod"]["start"], "2026-12-03T08:00:00Z");
        assert_eq!(r5["reason"][0]["value"][0]["concept"]["text"], "chest pain");
        assert_eq!(
            (r5["admission"]["admitSource"]["text"].as_str(), r5["dietPreference"][0]["text"].as_str()),
            (Some("ambulance"), Some("vegan"))
        );
        assert_eq!(r5["location"][0]["form"]["text"], "room");
        assert!(r5.get("period").is_none() && r5.get("hospitalization").is_none());
        let back = convert(&r5, FhirVersion::R5, FhirVersion::R4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, r4, "R4 -> R5 -> R4 is the same resource");
        assert_eq!(
            convert(&r4, FhirVersion::R4, FhirVersion::R4B),
            Ok(r4.clone()),
            "R4 and R4B Encounters are one model"
        );
    }

    #[test]
    fn what_has_no_counterpart_is_refused_not_dropped() {
        let refused = |resource: Value, from, to| convert(&map(resource), from, to).err().unwrap_or_default();
        let class = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"});
        for (resource, from, to, expected) in [
            (
                json!({"resourceType": "Encounter", "id": "e", "status": "finished", "class": class,
                "statusHistory": [{"status": "arrived", "period": {}}]}),
                FhirVersion::R4,
                FhirVersion::R5,
                "statusHistory",
            ),
            (
                json!({"resourceType": "Encounter", "id": "e", "status": "discharged", "class": [{"coding": [class]}]}),
                FhirVersion::R5,
                FhirVersion::R4,
                "discharged",
            ),
            (
                json!({"resourceType": "Encounter", "id": "e", "status": "planned"}),
                FhirVersion::R5,
                FhirVersion::R4B,
                "class",
            ),
            (
                json!({"resourceType": "Encounter", "id": "e", "status": "planned",
                "class": [{"coding": [class]}, {"coding": [class]}]}),
                FhirVersion::R5,
                FhirVersion::R4,
                "more than one",
            ),
            (
                json!({"resourceType": "Observation", "id": "o"}),
                FhirVersion::R4,
                FhirVersion::R5,
                "no conversion of Observation",
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Organization", "id": "o"}]}),
                FhirVersion::R4,
                FhirVersion::R5,
                "contained",
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "extension": [{"url": "http://x", "valueInteger64": "5"}]}),
                FhirVersion::R5,
                FhirVersion::R4,
                "valueInteger64",
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "photo": [{"contentType": "image/png", "height": 10}]}),
                FhirVersion::R5,
                FhirVersion::R4,
                "height",
            ),
            (
                json!({"resourceType": "Patient", "id": "p", "surprise": true}),
                FhirVersion::R4,
                FhirVersion::R5,
                "surprise",
            ),
        ] {
            let message = refused(resource.clone(), from, to);
            assert!(message.contains(expected), "{resource} {from:?}->{to:?}: {message}");
        }
    }

    #[test]
    fn a_patients_photo_size_changes_type_with_r5() {
        let r4 = map(json!({"resourceType": "Patient", "id": "p", "active": true,
            "photo": [{"contentType": "image/png", "size": 2048}]}));
        let r5 = convert(&r4, FhirVersion::R4, FhirVersion::R5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r5["photo"][0]["size"], "2048");
        assert_eq!(
            convert(&r5, FhirVersion::R5, FhirVersion::R4B).map(|p| p["photo"][0]["size"].clone()),
            Ok(json!(2048))
        );
    }
}
