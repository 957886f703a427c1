//! The grant an access token carries: its resource scopes and launch context, read from
//! the JWT authorizer's claims.
//!
//! - Scopes: the `scope` claim (a space-separated string, RFC 8693 and SMART) and the `scp`
//!   claim (Okta and Entra ID: a string, or an array). API Gateway's HTTP API JWT authorizer
//!   hands a Lambda every claim as a string, an array as its items in brackets separated by
//!   spaces (`[patient/*.rs launch/patient]`, measured by floci's emulator against real HTTP
//!   APIs, 2026-08); a JSON array text (`["a","b"]`, as REST APIs and some gateways write
//!   it) is read too.
//! - Launch context: the patient claim (name set by `SMART_PATIENT_CLAIM`, default
//!   `patient`; `123` and `Patient/123` both name Patient 123) and `fhirUser`.

use std::collections::HashMap;

use super::scope::{Context, Permission, ResourceScope, resource_scopes};

/// What a caller's access token grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// Its resource scopes (v2 over v1, malformed ones left out).
    pub scopes: Vec<ResourceScope>,
    /// The launch patient's id, if the token has one.
    pub patient: Option<String>,
    /// The `fhirUser` claim, if any.
    pub fhir_user: Option<String>,
    /// The access token's expiry (`exp`, epoch seconds), if it says.
    pub expires_at: Option<i64>,
}

/// The claim names a grant is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantClaims {
    /// The claim holding the launch patient (default `patient`).
    pub patient: String,
}

impl Default for GrantClaims {
    fn default() -> Self {
        Self { patient: "patient".to_owned() }
    }
}

/// The items of a claim that may hold a list: space-separated text, API Gateway's
/// `[a b]`, or a JSON array text.
pub fn claim_items(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.starts_with('[') && text.ends_with(']') {
        if let Ok(items) = serde_json::from_str::<Vec<String>>(text) {
            return items.into_iter().flat_map(|item| split(&item)).collect();
        }
        return split(&text[1..text.len() - 1]);
    }
    split(text)
}

fn split(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// A patient claim's id: `123` or `Patient/123` (or an absolute URL ending so).
fn patient_id(value: &str) -> Option<String> {
    let value = value.trim();
    let id = match value.rsplit_once("Patient/") {
        Some((_, id)) => id,
        None if !value.contains('/') => value,
        None => return None,
    };
    crate::fhir::is_valid_id(id).then(|| id.to_owned())
}

impl Grant {
    /// Reads the grant from the authorizer's `claims`.
    pub fn from_claims(claims: &HashMap<String, String>, names: &GrantClaims) -> Self {
        let mut texts: Vec<String> = Vec::new();
        for name in ["scope", "scp"] {
            if let Some(value) = claims.get(name) {
                texts.extend(claim_items(value));
            }
        }
        let patient = claims.get(&names.patient).and_then(|value| {
            let id = patient_id(value);
            if id.is_none() {
                tracing::warn!(claim = names.patient, "the patient claim names no Patient id; ignored");
            }
            id
        });
        let fhir_user = claims.get("fhirUser").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let expires_at = claims.get("exp").and_then(|v| v.trim().parse::<i64>().ok());
        Self { scopes: resource_scopes(texts.iter().map(String::as_str)), patient, fhir_user, expires_at }
    }

    /// Whether some scope permits `permission` on resources of `kind` (in any context).
    pub fn allows(&self, kind: &str, permission: Permission) -> bool {
        self.scopes_for(kind, permission).next().is_some()
    }

    /// The scopes that permit `permission` on resources of `kind`.
    pub fn scopes_for<'a>(&'a self, kind: &'a str, permission: Permission) -> impl Iterator<Item = &'a ResourceScope> {
        self.scopes.iter().filter(move |s| s.covers(kind) && s.permissions.has(permission))
    }

    /// Whether a scope without granular restrictions permits `permission` on resources of
    /// `kind`. The Subscription API's permissions need one: a restriction on Subscription
    /// (`user/Subscription.rs?status=active`) is not evaluated per route, so it grants
    /// nothing rather than everything.
    pub fn allows_unrestricted(&self, kind: &str, permission: Permission) -> bool {
        self.scopes_for(kind, permission).any(|s| s.restrictions.is_empty())
    }

    /// Whether every scope that permits `permission` on `kind` is patient-level (the
    /// caller then sees only the launch patient's data of that type).
    pub fn only_patient_level(&self, kind: &str, permission: Permission) -> bool {
        self.scopes_for(kind, permission).all(|s| s.context == Context::Patient)
    }

    /// The grant as a Subscription or a binding keeps it.
    pub fn kept(&self) -> super::subscription::KeptGrant {
        super::subscription::KeptGrant { scopes: self.scope_texts(), patient: self.patient.clone() }
    }

    /// The scopes, as v2 writes them, for messages and the console.
    pub fn scope_texts(&self) -> Vec<String> {
        self.scopes.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn scopes_come_from_scope_and_scp_in_every_shape_api_gateway_and_idps_use() {
        let names = GrantClaims::default();
        for (pairs, expected) in [
            (vec![("scope", "openid patient/Encounter.rs  launch/patient")], vec!["patient/Encounter.rs"]),
            (
                vec![("scp", "[patient/Encounter.rs user/Subscription.cruds]")],
                vec!["patient/Encounter.rs", "user/Subscription.cruds"],
            ),
            (vec![("scp", r#"["patient/Encounter.rs","openid"]"#)], vec!["patient/Encounter.rs"]),
            (vec![("scp", "user/*.rs"), ("scope", "system/Patient.r")], vec!["system/Patient.r", "user/*.rs"]),
            (vec![("sub", "alice")], vec![]),
        ] {
            let grant = Grant::from_claims(&claims(&pairs), &names);
            assert_eq!(grant.scope_texts(), expected, "{pairs:?}");
        }
    }

    #[test]
    fn the_launch_patient_is_an_id_whatever_the_claim_writes() {
        let names = GrantClaims { patient: "https://idp.example.org/patient".to_owned() };
        for (value, expected) in [
            ("123", Some("123")),
            ("Patient/123", Some("123")),
            ("https://fhir.example.org/r4/Patient/abc-1", Some("abc-1")),
            ("Practitioner/1", None),
            ("not an id!", None),
        ] {
            let grant = Grant::from_claims(&claims(&[("https://idp.example.org/patient", value)]), &names);
            assert_eq!(grant.patient.as_deref(), expected, "{value}");
        }
    }

    #[test]
    fn permissions_follow_the_scopes() {
        let grant = Grant::from_claims(
            &claims(&[("scope", "patient/Encounter.rs user/Subscription.cru system/*.s")]),
            &GrantClaims::default(),
        );
        assert!(grant.allows("Encounter", Permission::Read) && grant.allows("Subscription", Permission::Create));
        assert!(!grant.allows("Subscription", Permission::Delete) && !grant.allows("Patient", Permission::Read));
        assert!(grant.allows("Patient", Permission::Search), "system/*.s");
        assert!(grant.only_patient_level("Encounter", Permission::Read));
        assert!(!grant.only_patient_level("Encounter", Permission::Search), "system/*.s is not patient-level");
    }
}
