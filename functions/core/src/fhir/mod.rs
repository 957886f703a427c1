//! FHIR R5 JSON types for the resources fhir-ws reads and writes; [`backport`], the R4/R4B
//! edges of the Subscriptions Backport IG; [`version`], which FHIR version a request speaks;
//! [`convert`], resources a notification carries from the events' version to a subscriber's.
//!
//! Only the elements this project acts on are typed; every other element a client sends
//! is kept in an `other` map (`#[serde(flatten)]`) so a stored resource survives a round
//! trip without losing anything. Serialization follows FHIR JSON: camelCase names,
//! `resourceType` first, empty arrays and absent values omitted.

pub mod backport;
mod bundle;
pub mod convert;
mod id;
mod outcome;
mod parameters;
pub mod structure;
mod subject;
mod subscription;
pub mod version;

pub use bundle::{
    Bundle, BundleEntry, BundleLink, BundleSearch, NotificationEvent, NotificationType, Reference, SubscriptionStatus,
    SubscriptionStatusCode,
};
pub use id::{is_valid_id, new_id};
pub use outcome::{IssueSeverity, IssueType, OperationOutcome, OperationOutcomeIssue};
pub use parameters::{Parameter, Parameters};
pub use subject::{Subject, reference_names_a_resource};
pub use subscription::{
    CHANNEL_TYPE_SYSTEM, Coding, ContentLevel, FilterBy, Meta, Subscription, SubscriptionState, parse_instant,
};

/// The media type of FHIR JSON, used for every response body.
pub const FHIR_JSON: &str = "application/fhir+json";

/// The strings of a JSON array element (`"comparator": ["eq", "gt"]`); none when absent.
pub fn string_list(element: &serde_json::Value, key: &str) -> Vec<String> {
    element
        .get(key)
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .map(str::to_owned)
        .collect()
}
