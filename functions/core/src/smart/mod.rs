//! SMART on FHIR authorization (`AuthorizationMode=smart`): what an access token's scopes
//! and launch context let its holder do.
//!
//! - [`scope`] — SMART App Launch 1.x and 2.x resource scopes, read and ordered.
//! - [`grant`] — the grant of one access token, from the JWT authorizer's claims.
//! - [`subscription`] — what a grant lets its holder subscribe to, and the grant a
//!   Subscription keeps for matching.

pub mod grant;
pub mod scope;
pub mod subscription;

pub use grant::{Grant, GrantClaims};
pub use scope::{Permission, ResourceScope};
