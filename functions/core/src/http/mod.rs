//! HTTP plumbing shared by the HTTP API functions: errors as `OperationOutcome`
//! responses, the caller's identity, request bodies and FHIR paths.

pub mod cors;
mod error;
mod identity;
mod request;
mod version;

pub use error::ApiError;
pub use identity::{AuthorizationMode, IdentityConfig};
pub use request::{FhirPath, IGNORED_QUERY_PARAMETERS, fhir_path, json_body, operation_inputs, origin, path_segments};
pub use version::{VERSION_PATH_PARAMETER, request_version, requested_version};

use lambda_http::http::{HeaderName, HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::fhir::FHIR_JSON;

/// Largest request body accepted, in bytes (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A response with a FHIR JSON body.
pub fn fhir_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    match serde_json::to_string(body) {
        Ok(json) => {
            let mut response = Response::new(Body::Text(json));
            *response.status_mut() = status;
            set_header(&mut response, header::CONTENT_TYPE, &format!("{FHIR_JSON}; charset=utf-8"));
            response
        }
        Err(error) => ApiError::internal(&error).into_response(),
    }
}

/// A response with no body (e.g. 204 after a delete).
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

/// Sets a header; values come from this server (ids, URLs, numbers), so an invalid one
/// can only be a bug, and is dropped rather than failing the whole response.
pub fn set_header(response: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}
