//! The FHIR versions served: R4 (4.0.1) and R4B (4.3.0) through the Subscriptions
//! Backport IG, and R5 (5.0.0). How a request selects one: [`crate::http::requested_version`].
//!
//! A request selects its version in either of two ways FHIR defines, or both if they
//! agree:
//! - a base-path segment per version: `[base]/R4/Subscription…`, `[base]/R4B/…`,
//!   `[base]/R5/…` (the segment directly before `Subscription`, `SubscriptionTopic` or
//!   `metadata`);
//! - the `fhirVersion` parameter of the FHIR media type in `Content-Type` (for a body) or
//!   `Accept`: `application/fhir+json; fhirVersion=4.0` (`4.0`, `4.3`, `5.0`, or the full
//!   version such as `4.0.1`).
//!
//! Neither: R5, the unversioned base. A version this server does not serve (`fhirVersion=3.0`,
//! a `/R3/` or `/STU3/` segment) is refused: 406 for `Accept`, 415 for `Content-Type`, 404
//! for a path, each an `OperationOutcome` naming the versions served; a path and a media
//! type that disagree are a 400.
//!
//! The template and the local stack route `/{fhirVersion}/Subscription…` and
//! `/{fhirVersion}/metadata` to the same functions as the unversioned paths; a
//! `fhirVersion` path segment that names no served version is a 404.
//!
//! What a version changes: the shape of every resource read or written (Subscription,
//! status resources, notification and `$events` Bundles, `metadata`), by
//! [`crate::fhir::backport`]. A subscription keeps the version it was created in: it is
//! read, updated, searched and queried (`$status`, `$events`) at that version's base only,
//! and every frame it receives on a socket is in that version.

/// A FHIR version this server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FhirVersion {
    /// FHIR R4, 4.0.1 (Subscriptions Backport IG).
    R4,
    /// FHIR R4B, 4.3.0 (Subscriptions Backport IG).
    R4B,
    /// FHIR R5, 5.0.0.
    R5,
}

/// The versions served, as refusal messages list them.
pub const SERVED: &str = "R4 (fhirVersion=4.0), R4B (4.3) and R5 (5.0)";

impl FhirVersion {
    /// Every version served.
    pub const ALL: [Self; 3] = [Self::R4, Self::R4B, Self::R5];

    /// The base-path segment, e.g. `R4B`.
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::R4 => "R4",
            Self::R4B => "R4B",
            Self::R5 => "R5",
        }
    }

    /// The `fhirVersion` media-type parameter value, e.g. `4.3`.
    pub fn mime_version(self) -> &'static str {
        match self {
            Self::R4 => "4.0",
            Self::R4B => "4.3",
            Self::R5 => "5.0",
        }
    }

    /// The full version, as `CapabilityStatement.fhirVersion` states it.
    pub fn full_version(self) -> &'static str {
        match self {
            Self::R4 => "4.0.1",
            Self::R4B => "4.3.0",
            Self::R5 => "5.0.0",
        }
    }

    /// The version a `fhirVersion` parameter value names (`4.0` or `4.0.1`, …).
    pub fn from_mime_version(value: &str) -> Option<Self> {
        let value = value.trim().trim_matches('"');
        Self::ALL.into_iter().find(|v| value == v.mime_version() || value == v.full_version())
    }

    /// The version a base-path segment names (`R4`, `R4B`, `R5`, any case).
    pub fn from_path_segment(segment: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| segment.eq_ignore_ascii_case(v.path_segment()))
    }
}

/// The `fhirVersion` parameter of a media type (or a header's comma-separated list of
/// them), if one has it: `application/fhir+json; fhirVersion=4.0` gives `4.0`.
pub fn fhir_version_parameter(media_types: &str) -> Option<&str> {
    media_types.split(',').flat_map(|media| media.split(';').skip(1)).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim().eq_ignore_ascii_case("fhirVersion").then_some(value.trim())
    })
}

/// One value for each FHIR version served (what is read once per version, such as a
/// topic's criteria against that version's search parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct PerVersion<T>([T; 3]);

impl<T> PerVersion<T> {
    /// The value `make` gives for each version.
    pub fn from_fn(make: impl FnMut(FhirVersion) -> T) -> Self {
        Self(FhirVersion::ALL.map(make))
    }

    /// The value for `version`.
    pub fn get(&self, version: FhirVersion) -> &T {
        let index = match version {
            FhirVersion::R4 => 0,
            FhirVersion::R4B => 1,
            FhirVersion::R5 => 2,
        };
        &self.0[index]
    }
}

impl std::str::FromStr for FhirVersion {
    type Err = String;

    /// Reads a version as a path segment (`R4`, `R4B`, `R5`) or a version number (`4.0`,
    /// `4.0.1`, `4.3`, `4.3.0`, `5.0`, `5.0.0`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_path_segment(text.trim())
            .or_else(|| Self::from_mime_version(text))
            .ok_or_else(|| format!("'{text}' is not a FHIR version served here; one of {SERVED}"))
    }
}
