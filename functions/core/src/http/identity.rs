//! The caller's identity, read from the HTTP API JWT authorizer's claims, and what the
//! caller may do: in `owner` mode (the default) any authenticated caller may use the
//! Subscription API for its own subscriptions; in `smart` mode the access token's SMART
//! scopes must also grant the Subscription permission each route needs ([`crate::smart`]).

use std::collections::HashMap;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt as _};

use super::ApiError;
use crate::smart::{Grant, GrantClaims, Permission};

/// How callers are authorized (`AUTHORIZATION_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    /// Ownership only: a caller uses its own subscriptions (the default).
    #[default]
    Owner,
    /// Ownership and SMART on FHIR scopes and launch context.
    Smart,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "owner" => Ok(Self::Owner),
            "smart" => Ok(Self::Smart),
            other => Err(format!("'{other}' is not owner or smart")),
        }
    }
}

/// Which JWT claims name the caller, and how callers are authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Claim holding the principal (default `sub`).
    pub principal_claim: String,
    /// Optional claim holding a tenant; when set, the owner is tenant-qualified.
    pub tenant_claim: Option<String>,
    /// `owner` or `smart`.
    pub mode: AuthorizationMode,
    /// Where a SMART grant's launch context is read from.
    pub grant_claims: GrantClaims,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            principal_claim: "sub".to_owned(),
            tenant_claim: None,
            mode: AuthorizationMode::Owner,
            grant_claims: GrantClaims::default(),
        }
    }
}

/// The authorizer's claims of a request, if it was authenticated.
fn claims_of(request: &Request) -> Option<&HashMap<String, String>> {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return None;
    };
    context.authorizer.as_ref().and_then(|authorizer| authorizer.jwt.as_ref()).map(|jwt| &jwt.claims)
}

impl IdentityConfig {
    /// In `smart` mode, the caller's grant if it permits `permission` on Subscription
    /// (403 `forbidden` naming the scope needed otherwise); in `owner` mode, `None`.
    pub fn authorize(&self, request: &Request, permission: Permission) -> Result<Option<Grant>, ApiError> {
        if self.mode == AuthorizationMode::Owner {
            return Ok(None);
        }
        let claims = claims_of(request).ok_or_else(ApiError::unauthenticated)?;
        let grant = Grant::from_claims(claims, &self.grant_claims);
        if grant.allows_unrestricted("Subscription", permission) {
            return Ok(Some(grant));
        }
        let letter = permission.letter();
        let v1 = if matches!(permission, Permission::Read | Permission::Search) { "read" } else { "write" };
        let held = grant.scope_texts();
        Err(ApiError::forbidden(format!(
            "this needs a SMART scope granting '{letter}' on Subscription without restrictions, such as \
             user/Subscription.{letter} (SMART v1: user/Subscription.{v1}); the access token's resource scopes \
             are: {}",
            if held.is_empty() { "none".to_owned() } else { held.join(" ") }
        )))
    }

    /// The owner string of the caller: the principal claim, or with a tenant claim
    /// configured `<tenant length>:<tenant>/<principal>` (the length keeps it unambiguous).
    /// 401 when the request was not authenticated or lacks a claim; 400 when a claim is
    /// longer than [`crate::limits`] allows.
    pub fn caller(&self, request: &Request) -> Result<String, ApiError> {
        let claims = claims_of(request).ok_or_else(ApiError::unauthenticated)?;
        let claim = |name: &str| {
            claims
                .get(name)
                .map(String::as_str)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(ApiError::unauthenticated)
        };
        // Over-long claims are refused here, on every route, because the owner is an
        // index key of the subscriptions table (see `crate::limits`).
        let within = |name: &str, value: &str, limit: usize| {
            crate::limits::within(&format!("the '{name}' claim"), value, limit).map_err(ApiError::invalid)
        };
        let principal = claim(&self.principal_claim)?;
        within(&self.principal_claim, principal, crate::limits::MAX_PRINCIPAL_BYTES)?;
        match &self.tenant_claim {
            None => Ok(principal.to_owned()),
            Some(tenant_claim) => {
                let tenant = claim(tenant_claim)?;
                within(tenant_claim, tenant, crate::limits::MAX_TENANT_BYTES)?;
                Ok(format!("{}:{tenant}/{principal}", tenant.len()))
            }
        }
    }
}
