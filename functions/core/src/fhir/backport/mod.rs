//! The Subscriptions R5 Backport IG (1.1.0): how R4 and R4B clients write Subscriptions
//! and read notifications, translated at the edge to and from the one R5-shaped model the
//! core keeps.
//!
//! - [`notification`] — notification Bundles in R4 (`Parameters` status) and R4B
//!   (`SubscriptionStatus`) shape.
//! - [`subscription`] — the IG's R4/R4B Subscription profile (topic in `criteria`,
//!   filters, channel and payload extensions) to and from the R5 `Subscription`.
//!
//! Wired so far: a stored subscription records the FHIR version it was created in, and
//! delivery (handshakes, heartbeats, event notifications) frames each notification in that
//! version ([`crate::notification::frame`]). Not yet: the Subscription API and the
//! operations create and answer R5 only, so no R4/R4B subscription can be created through
//! them yet (issue 10 goes on from here: routes per version, `$status`/`$events`/token
//! operation and `metadata` in backport shape, CLI `--fhir-version`).

pub mod notification;
pub mod subscription;

pub use notification::{
    NotANotification, R4_NOTIFICATION_PROFILE, R4_STATUS_PROFILE, R4B_NOTIFICATION_PROFILE, to_r4, to_r4b,
};

/// Prefix of the IG's StructureDefinition canonicals.
pub const IG_STRUCTURE_DEFINITIONS: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
