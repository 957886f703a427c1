//! What an event or a notification names: a resource (ours, or another server's with its
//! own URL) or only a reference to one. A FHIR-level value used by the event contract,
//! the topic engine, notifications, `$events` and the relay alike, so it lives here,
//! below all of them.

use serde_json::{Map, Value};

/// A resource an event names: the resource itself, or only a reference to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The resource (with `resourceType` and a valid `id`), on the configured FHIR server.
    Resource(Map<String, Value>),
    /// The resource and its own absolute URL (another server's resource, as a Bundle
    /// entry carries it: `{"fullUrl": …, "resource": …}`).
    Entry {
        /// Where the resource lives.
        full_url: String,
        /// The resource.
        resource: Map<String, Value>,
    },
    /// A reference (`Type/id`, or an absolute URL ending so).
    Reference(String),
}

impl Subject {
    /// The resource, when it was sent.
    pub fn resource(&self) -> Option<&Map<String, Value>> {
        match self {
            Self::Resource(resource) | Self::Entry { resource, .. } => Some(resource),
            Self::Reference(_) => None,
        }
    }

    /// Its resource type (from the resource, or the reference's `Type/id`).
    pub fn resource_type(&self) -> Option<String> {
        match self {
            Self::Resource(resource) | Self::Entry { resource, .. } => {
                resource.get("resourceType").and_then(Value::as_str).map(str::to_owned)
            }
            Self::Reference(reference) => {
                let path = reference.split("/_history/").next().unwrap_or(reference);
                let mut segments = path.rsplit('/');
                segments.next();
                segments.next().map(str::to_owned)
            }
        }
    }

    /// Its absolute URL: an absolute reference or entry URL as it is, otherwise
    /// `Type/id` on `base`.
    pub fn url(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        match self {
            Self::Entry { full_url, .. } => full_url.clone(),
            Self::Resource(resource) => {
                let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
                let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
                format!("{base}/{kind}/{id}")
            }
            Self::Reference(reference) if reference.contains("://") => reference.clone(),
            Self::Reference(reference) => format!("{base}/{reference}"),
        }
    }
}

/// Whether a reference ends in `Type/id`, or `Type/id/_history/version`.
pub fn reference_names_a_resource(reference: &str) -> bool {
    if reference.is_empty()
        || reference.len() > crate::limits::MAX_URL_BYTES
        || reference.chars().any(char::is_whitespace)
    {
        return false;
    }
    let mut segments: Vec<&str> = reference.split('/').collect();
    if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
        segments.truncate(segments.len() - 2);
    }
    match segments.as_slice() {
        [.., kind, id] => {
            !kind.is_empty()
                && kind.chars().all(|c| c.is_ascii_alphabetic())
                && kind.starts_with(|c: char| c.is_ascii_uppercase())
                && super::is_valid_id(id)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_resource_by_type_and_id() {
        for good in ["Encounter/1", "http://x/fhir/Encounter/1", "Encounter/1/_history/3"] {
            assert!(reference_names_a_resource(good), "{good}");
        }
        for bad in ["", "Encounter", "encounter/1", "Encounter/a b", "/1", "Encounter/1/_history"] {
            assert!(!reference_names_a_resource(bad), "{bad}");
        }
    }
}
