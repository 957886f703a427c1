//! The Subscriptions R5 Backport IG (1.1.0): how R4 and R4B clients write Subscriptions
//! and read notifications, translated at the edge to and from the one R5-shaped model the
//! core keeps.
//!
//! - [`notification`] — notification Bundles in R4 (`Parameters` status) and R4B
//!   (`SubscriptionStatus`) shape.
//! - [`subscription`] — the IG's R4/R4B Subscription profile (topic in `criteria`,
//!   filters, channel and payload extensions) to and from the R5 `Subscription`.
//!
//! The functions below are the one place the rest of the server asks "in which version's
//! shape": they read a Subscription body and render a Subscription, a status resource or
//! a notification Bundle for a [`FhirVersion`]; R5 passes through unchanged.

pub mod notification;
pub mod subscription;
pub mod topic;

pub use notification::{
    NotANotification, R4_NOTIFICATION_PROFILE, R4_STATUS_PROFILE, R4B_NOTIFICATION_PROFILE, r4_status_parameters,
    r4b_status, to_r4, to_r4b,
};

/// Prefix of the IG's StructureDefinition canonicals.
pub const IG_STRUCTURE_DEFINITIONS: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

use serde_json::Value;

use crate::fhir::version::{FhirVersion, fhir_version_parameter};
use crate::fhir::{Bundle, ContentLevel, Subscription, SubscriptionState, SubscriptionStatus};

/// Reads a Subscription body written in `version` into the R5 model, checking what that
/// version's shape requires. The message says what is wrong, for a 400 `OperationOutcome`.
pub fn read_subscription(version: FhirVersion, body: Value) -> Result<Subscription, String> {
    let subscription = match version {
        FhirVersion::R5 => {
            serde_json::from_value(body).map_err(|e| format!("the body does not have the expected shape: {e}"))?
        }
        FhirVersion::R4 | FhirVersion::R4B => {
            if body.get("criteria").is_none() && (body.get("topic").is_some() || body.get("channelType").is_some()) {
                return Err(format!(
                    "this is an R5 Subscription (topic, channelType); at the /{} base send the Backport IG's \
                     shape (criteria holding the topic, channel.type), or use the R5 base",
                    version.path_segment()
                ));
            }
            let subscription = subscription::subscription_from_r4(body)?;
            if subscription.status == Some(SubscriptionState::EnteredInError) {
                return Err(format!(
                    "'entered-in-error' is not a Subscription status in FHIR {}; use 'off'",
                    version.path_segment()
                ));
            }
            subscription
        }
    };
    check_payload_version(version, subscription.content_type.as_deref())?;
    Ok(subscription)
}

/// A payload MIME type may name the notification's FHIR version (`fhirVersion=4.0`); it
/// must be the version the subscription is created in, which is the one it is sent in.
fn check_payload_version(version: FhirVersion, content_type: Option<&str>) -> Result<(), String> {
    let Some(named) = content_type.and_then(fhir_version_parameter) else {
        return Ok(());
    };
    match FhirVersion::from_mime_version(named) {
        Some(asked) if asked == version => Ok(()),
        _ => Err(format!(
            "the payload asks for fhirVersion={named}, but a subscription created at the {} base is notified in \
             FHIR {} (fhirVersion={})",
            version.path_segment(),
            version.path_segment(),
            version.mime_version()
        )),
    }
}

/// A Subscription as a client of `version` reads it.
pub fn render_subscription(version: FhirVersion, resource: &Subscription) -> Result<Value, serde_json::Error> {
    match version {
        FhirVersion::R5 => serde_json::to_value(resource),
        FhirVersion::R4 | FhirVersion::R4B => Ok(subscription::subscription_to_r4(resource)),
    }
}

/// A status resource (R5/R4B `SubscriptionStatus`, R4 `Parameters`) as a client of
/// `version` reads it.
pub fn render_status(
    version: FhirVersion,
    status: &SubscriptionStatus,
    level: ContentLevel,
) -> Result<Value, NotANotification> {
    match version {
        FhirVersion::R5 => serde_json::to_value(status).map_err(|e| NotANotification(e.to_string())),
        FhirVersion::R4 => Ok(r4_status_parameters(status, level)),
        FhirVersion::R4B => r4b_status(status, level),
    }
}

/// A notification Bundle (R5 shape, built at content level `level`) as a client of
/// `version` reads it.
pub fn render_notification(
    version: FhirVersion,
    bundle: &Bundle,
    level: ContentLevel,
) -> Result<Value, NotANotification> {
    match version {
        FhirVersion::R5 => serde_json::to_value(bundle).map_err(|e| NotANotification(e.to_string())),
        FhirVersion::R4 => to_r4(bundle, level),
        FhirVersion::R4B => to_r4b(bundle, level),
    }
}
