//! Reading requests: JSON bodies with their limits, and FHIR REST paths.

use lambda_http::Request;
use lambda_http::http::header;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;

use super::{ApiError, MAX_BODY_BYTES};

/// Media types accepted for FHIR JSON bodies (the last one is the DSTU2-era spelling
/// some clients still send).
const JSON_MEDIA_TYPES: [&str; 3] = ["application/fhir+json", "application/json", "application/json+fhir"];

/// Parses the request body as JSON into `T`, or `None` when the body is empty.
/// Refuses bodies over 64 KiB (413), bodies that are not FHIR JSON by their
/// `Content-Type` (415) and JSON that does not parse or fit `T` (400).
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<Option<T>, ApiError> {
    let bytes: &[u8] = request.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the request body is {} bytes; the limit is {MAX_BODY_BYTES}",
            bytes.len()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !JSON_MEDIA_TYPES.contains(&media_type.as_str()) {
        let shown = if content_type.is_empty() { "(none)" } else { content_type.as_str() };
        return Err(ApiError::unsupported_media_type(shown));
    }
    serde_json::from_slice(bytes).map(Some).map_err(|error| {
        if error.is_data() {
            ApiError::invalid(format!("the body does not have the expected shape: {error}"))
        } else {
            ApiError::structure(format!("the body is not valid JSON: {error}"))
        }
    })
}

/// A request path split at its `Subscription` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirPath {
    /// Absolute service base URL, e.g. `https://api.example.org/fhir`.
    pub base: String,
    /// Decoded segments after `Subscription`, e.g. `["123", "$get-ws-binding-token"]`.
    pub rest: Vec<String>,
}

/// Splits the request path at its first `Subscription` segment. Whatever precedes it
/// (a custom-domain base path, a stage) becomes part of the base URL. 404 when the
/// path has no `Subscription` segment or a segment is not valid percent-encoded UTF-8.
pub fn fhir_path(request: &Request) -> Result<FhirPath, ApiError> {
    let uri = request.uri();
    let mut segments = Vec::new();
    for raw in uri.path().split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::not_found("the request path is not valid UTF-8"))?;
        segments.push(decoded.into_owned());
    }
    let position = segments
        .iter()
        .position(|s| s == "Subscription")
        .ok_or_else(|| ApiError::not_found(format!("no route for {}", uri.path())))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    let scheme = uri.scheme_str().unwrap_or("https");
    let prefix: String = segments[..position].iter().map(|s| format!("/{s}")).collect();
    Ok(FhirPath { base: format!("{scheme}://{host}{prefix}"), rest: segments.split_off(position + 1) })
}
