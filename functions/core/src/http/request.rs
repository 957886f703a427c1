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
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::structure(format!("the body is not valid JSON: {error}")))?;
    crate::fhir::structure::check(&value)
        .map_err(|message| ApiError::structure(format!("the body is not valid FHIR JSON: {message}")))?;
    serde_json::from_value(value)
        .map(Some)
        .map_err(|error| ApiError::invalid(format!("the body does not have the expected shape: {error}")))
}

/// A request path split at its `Subscription` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirPath {
    /// Absolute service base URL, e.g. `https://api.example.org/fhir`.
    pub base: String,
    /// Decoded segments after `Subscription`, e.g. `["123", "$get-ws-binding-token"]`.
    pub rest: Vec<String>,
}

/// The request path's segments, percent-decoded; 404 when one is not valid UTF-8.
pub fn path_segments(request: &Request) -> Result<Vec<String>, ApiError> {
    request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|raw| {
            percent_decode_str(raw)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| ApiError::not_found("the request path is not valid UTF-8"))
        })
        .collect()
}

/// Splits the request path at its first `Subscription` segment. Whatever precedes it
/// (a custom-domain base path, a stage) becomes part of the base URL. 404 when the
/// path has no `Subscription` segment or a segment is not valid percent-encoded UTF-8.
pub fn fhir_path(request: &Request) -> Result<FhirPath, ApiError> {
    let uri = request.uri();
    let mut segments = path_segments(request)?;
    let position = segments
        .iter()
        .position(|s| s == "Subscription")
        .ok_or_else(|| ApiError::not_found(format!("no route for {}", uri.path())))?;
    let prefix: String = segments[..position].iter().map(|s| format!("/{s}")).collect();
    Ok(FhirPath { base: format!("{}{prefix}", origin(request)), rest: segments.split_off(position + 1) })
}

/// `scheme://host` of the request, as the client addressed it (the Host header when the
/// URI has no authority; `https` unless the URI says otherwise).
pub fn origin(request: &Request) -> String {
    let uri = request.uri();
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{}://{host}", uri.scheme_str().unwrap_or("https"))
}

/// Query parameters of the FHIR REST API that operations accept and that change nothing
/// here.
pub const IGNORED_QUERY_PARAMETERS: [&str; 2] = ["_format", "_pretty"];

/// The inputs of an operation call as `(name, text)` pairs, in order: from the query
/// string for GET, from a `Parameters` body for POST (an empty POST body falls back to
/// the query string). Primitive values are read from any `value[x]` (numbers become
/// their decimal text). Names outside `known` are refused (400), as are parameters
/// without a primitive value.
pub fn operation_inputs(request: &Request, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    use lambda_http::RequestExt as _;
    let unknown = |name: &str| {
        ApiError::invalid(format!("unknown parameter '{name}'; this operation takes {}", known.join(", ")))
    };
    if request.method() == lambda_http::http::Method::POST
        && let Some(parameters) = json_body::<crate::fhir::Parameters>(request)?
    {
        if parameters.resource_type != "Parameters" {
            return Err(ApiError::invalid(format!(
                "the body must be a Parameters resource, not {}",
                parameters.resource_type
            )));
        }
        let mut inputs = Vec::with_capacity(parameters.parameter.len());
        for parameter in &parameters.parameter {
            if !known.contains(&parameter.name.as_str()) {
                return Err(unknown(&parameter.name));
            }
            let value = parameter
                .value
                .iter()
                .find(|(key, _)| key.starts_with("value"))
                .and_then(|(_, value)| match value {
                    serde_json::Value::String(text) => Some(text.clone()),
                    serde_json::Value::Number(number) => Some(number.to_string()),
                    serde_json::Value::Bool(flag) => Some(flag.to_string()),
                    _ => None,
                })
                .ok_or_else(|| ApiError::invalid(format!("parameter '{}' needs a primitive value", parameter.name)))?;
            inputs.push((parameter.name.clone(), value));
        }
        return Ok(inputs);
    }
    let query = request.query_string_parameters();
    let mut inputs: Vec<(String, String)> = Vec::new();
    for (name, _) in query.iter() {
        if IGNORED_QUERY_PARAMETERS.contains(&name) || inputs.iter().any(|(seen, _)| seen == name) {
            continue;
        }
        if !known.contains(&name) {
            return Err(unknown(name));
        }
        for value in query.all(name).unwrap_or_default() {
            inputs.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(inputs)
}
