//! CORS for the local stack's HTTP routes, as API Gateway applies a `CorsConfiguration`:
//! preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered
//! here without reaching any function or the authorizer stand-in, and every other answer
//! to an allowed origin, errors included, carries `Access-Control-Allow-Origin` so a
//! browser app can read our `OperationOutcome`s. The lists come from
//! [`fhir_ws_core::http::cors`], the same the template declares.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir_ws_core::fhir::{IssueType, OperationOutcome};
use fhir_ws_core::http::cors::{ALLOWED_HEADERS, ALLOWED_METHODS, AllowedOrigins, EXPOSED_HEADERS};

/// The local stack's CORS policy.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Origins whose scripts may call the HTTP API.
    pub origins: AllowedOrigins,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    pub max_age_seconds: u32,
}

/// Adds the CORS headers for `origin` when it is allowed.
pub(crate) async fn layer(State(policy): State<Arc<CorsPolicy>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin else { return next.run(request).await };
    let allowed = policy.origins.allows(&origin);
    if is_preflight(request.method(), request.headers()) {
        return preflight(&policy, &origin, allowed);
    }
    let mut response = next.run(request).await;
    if allowed {
        allow(response.headers_mut(), &policy, &origin);
        let exposed = EXPOSED_HEADERS.join(", ");
        if let Ok(value) = HeaderValue::from_str(&exposed) {
            response.headers_mut().insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
        }
    }
    response
}

fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// 204 with what a cross-origin request may use, or 403 for an origin not allowed (the
/// browser then refuses the request it was about to make).
fn preflight(policy: &CorsPolicy, origin: &str, allowed: bool) -> Response {
    if !allowed {
        tracing::info!(origin, "refused CORS preflight: origin not allowed");
        let outcome = OperationOutcome::error(IssueType::Forbidden, "this origin may not call the API");
        let body = serde_json::to_string(&outcome).unwrap_or_default();
        return (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/fhir+json")], body).into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    allow(headers, policy, origin);
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS.join(", ")),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS.join(", ")),
        (header::ACCESS_CONTROL_MAX_AGE, policy.max_age_seconds.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// `Access-Control-Allow-Origin` (the origin itself, or `*` when any is allowed) and
/// `Vary: Origin`, since the answer depends on it.
fn allow(headers: &mut HeaderMap, policy: &CorsPolicy, origin: &str) {
    let value = if policy.origins.allows_any() { "*" } else { origin };
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}
