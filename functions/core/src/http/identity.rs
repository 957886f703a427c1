//! The caller's identity, read from the HTTP API JWT authorizer's claims.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt as _};

use super::ApiError;

/// Which JWT claims name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Claim holding the principal (default `sub`).
    pub principal_claim: String,
    /// Optional claim holding a tenant; when set, the owner is tenant-qualified.
    pub tenant_claim: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { principal_claim: "sub".to_owned(), tenant_claim: None }
    }
}

impl IdentityConfig {
    /// The owner string of the caller: the principal claim, or with a tenant claim
    /// configured `<tenant length>:<tenant>/<principal>` (the length keeps it unambiguous).
    /// 401 when the request was not authenticated or lacks a claim; 400 when a claim is
    /// longer than [`crate::limits`] allows.
    pub fn caller(&self, request: &Request) -> Result<String, ApiError> {
        let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
            return Err(ApiError::unauthenticated());
        };
        let claims = context
            .authorizer
            .as_ref()
            .and_then(|authorizer| authorizer.jwt.as_ref())
            .map(|jwt| &jwt.claims)
            .ok_or_else(ApiError::unauthenticated)?;
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
