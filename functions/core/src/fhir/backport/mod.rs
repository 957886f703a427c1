//! The Subscriptions R5 Backport IG (1.1.0): how R4 and R4B clients write Subscriptions
//! and read notifications, translated at the edge to and from the one R5-shaped model the
//! core keeps.
//!
//! - [`notification`] — notification Bundles in R4 (`Parameters` status) and R4B
//!   (`SubscriptionStatus`) shape.
//! - [`subscription`] — the IG's R4/R4B Subscription profile (topic in `criteria`,
//!   filters, channel and payload extensions) to and from the R5 `Subscription`.
//!
//! Not wired yet: the Subscription API, the operations and delivery still answer in R5
//! only (issue 10 goes on from here: version selection, storage of each subscription's
//! version, routes).

pub mod notification;
pub mod subscription;

pub use notification::{
    NotANotification, R4_NOTIFICATION_PROFILE, R4_STATUS_PROFILE, R4B_NOTIFICATION_PROFILE, to_r4, to_r4b,
};

/// Prefix of the IG's StructureDefinition canonicals.
pub const IG_STRUCTURE_DEFINITIONS: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
