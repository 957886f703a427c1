//! The Subscriptions Backport IG's canonical URLs (`hl7.fhir.uv.subscriptions-backport`
//! 1.1.0), written out here from the IG's published StructureDefinitions rather than taken
//! from the code's constants: a test that compared the code with its own constant would
//! pass whatever the constant said.

/// Profile of an R4 notification Bundle (`history`, first entry a `Parameters`).
pub const R4_NOTIFICATION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";

/// Profile of the R4 `Parameters` that stands for a SubscriptionStatus.
pub const R4_STATUS_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";

/// Profile of an R4B notification Bundle (`history`, first entry an R4B SubscriptionStatus).
pub const R4B_NOTIFICATION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification";

/// The extension on a CapabilityStatement's `Subscription` resource naming a topic the
/// server supports.
pub const TOPIC_CANONICAL_EXTENSION: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical";
