//! Which FHIR version a request speaks (rules: [`crate::fhir::version`]).

use lambda_http::http::{StatusCode, header};
use lambda_http::{Request, RequestExt as _};

use super::ApiError;
use crate::fhir::IssueType;
use crate::fhir::version::{FhirVersion, SERVED, fhir_version_parameter};

/// Segments that name FHIR versions this server does not serve.
fn names_another_version(segment: &str) -> bool {
    let upper = segment.to_ascii_uppercase();
    ["DSTU1", "DSTU2", "STU3", "R2", "R3", "R6"].contains(&upper.as_str())
}

/// The version of a request from its path segments (decoded, in order) and its `Accept`
/// and `Content-Type` headers, by the rules in [`crate::fhir::version`].
pub fn requested_version(
    segments: &[String],
    accept: Option<&str>,
    content_type: Option<&str>,
) -> Result<FhirVersion, ApiError> {
    let anchor = segments.iter().position(|s| s == "Subscription" || s == "SubscriptionTopic" || s == "metadata");
    let segment = anchor.and_then(|at| at.checked_sub(1)).and_then(|before| segments.get(before));
    let from_path = match segment {
        Some(segment) if names_another_version(segment) => {
            return Err(ApiError::not_found(format!("FHIR {segment} is not served here; this server serves {SERVED}")));
        }
        Some(segment) => FhirVersion::from_path_segment(segment),
        None => None,
    };
    let mut from_media: Option<FhirVersion> = None;
    for (header, status) in [(content_type, StatusCode::UNSUPPORTED_MEDIA_TYPE), (accept, StatusCode::NOT_ACCEPTABLE)] {
        let Some(value) = header.and_then(fhir_version_parameter) else { continue };
        let version = FhirVersion::from_mime_version(value).ok_or_else(|| {
            ApiError::new(
                status,
                IssueType::NotSupported,
                format!("fhirVersion={value} is not served here; this server serves {SERVED}"),
            )
        })?;
        match from_media {
            Some(other) if other != version => {
                return Err(ApiError::invalid(format!(
                    "Content-Type asks for fhirVersion={} but Accept for fhirVersion={}",
                    other.mime_version(),
                    version.mime_version()
                )));
            }
            _ => from_media = Some(version),
        }
    }
    match (from_path, from_media) {
        (Some(path), Some(media)) if path != media => Err(ApiError::invalid(format!(
            "the base path /{} is FHIR {} but the media type asks for fhirVersion={}",
            path.path_segment(),
            path.mime_version(),
            media.mime_version()
        ))),
        (Some(version), _) | (None, Some(version)) => Ok(version),
        (None, None) => Ok(FhirVersion::R5),
    }
}

/// The name of the path parameter the versioned routes of the template carry
/// (`/{fhirVersion}/Subscription…`).
pub const VERSION_PATH_PARAMETER: &str = "fhirVersion";

/// The version `request` speaks: its path (and the `fhirVersion` path parameter of a
/// versioned route, which must name a served version), `Accept` and `Content-Type`.
pub fn request_version(request: &Request) -> Result<FhirVersion, ApiError> {
    if let Some(segment) = request.path_parameters_ref().and_then(|p| p.first(VERSION_PATH_PARAMETER))
        && FhirVersion::from_path_segment(segment).is_none()
    {
        return Err(ApiError::not_found(format!("FHIR {segment} is not served here; this server serves {SERVED}")));
    }
    let segments = super::path_segments(request)?;
    let text = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    requested_version(&segments, text(header::ACCEPT), text(header::CONTENT_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    fn version(segments: &str, accept: Option<&str>, content_type: Option<&str>) -> Result<FhirVersion, u16> {
        requested_version(&path(segments), accept, content_type).map_err(|e| e.status.as_u16())
    }

    #[test]
    fn the_path_or_the_media_type_selects_the_version() {
        assert_eq!(version("/Subscription", None, None), Ok(FhirVersion::R5), "the unversioned base is R5");
        assert_eq!(version("/fhir/Subscription/x", None, None), Ok(FhirVersion::R5), "a plain base path");
        assert_eq!(version("/R4/Subscription/x/$status", None, None), Ok(FhirVersion::R4));
        assert_eq!(version("/api/r4b/metadata", None, None), Ok(FhirVersion::R4B));
        assert_eq!(version("/R5/Subscription", None, None), Ok(FhirVersion::R5));
        assert_eq!(version("/R4/SubscriptionTopic/x", None, None), Ok(FhirVersion::R4));
        let r4 = Some("application/fhir+json; fhirVersion=4.0");
        assert_eq!(version("/Subscription", r4, None), Ok(FhirVersion::R4));
        assert_eq!(
            version("/Subscription", None, Some("application/fhir+json;fhirVersion=4.3.0")),
            Ok(FhirVersion::R4B)
        );
        assert_eq!(version("/R4/Subscription", r4, r4), Ok(FhirVersion::R4), "agreeing is fine");
        assert_eq!(version("/Subscription", Some("application/fhir+json, */*"), None), Ok(FhirVersion::R5));
    }

    #[test]
    fn other_versions_and_disagreements_are_refused() {
        assert_eq!(version("/Subscription", Some("application/fhir+json; fhirVersion=3.0"), None), Err(406));
        assert_eq!(version("/Subscription", None, Some("application/fhir+json; fhirVersion=1.0.2")), Err(415));
        assert_eq!(version("/STU3/Subscription", None, None), Err(404));
        assert_eq!(version("/R6/metadata", None, None), Err(404));
        assert_eq!(version("/R4/Subscription", Some("application/fhir+json; fhirVersion=5.0"), None), Err(400));
        let r4 = Some("application/fhir+json; fhirVersion=4.0");
        let r5 = Some("application/fhir+json; fhirVersion=5.0");
        assert_eq!(version("/Subscription", r4, r5), Err(400), "Accept and Content-Type disagree");
    }
}
