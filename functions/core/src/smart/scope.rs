//! SMART App Launch resource scopes, read from an access token's scope list.
//!
//! - **v2** (SMART App Launch 2.x): `<patient|user|system>/<Type|*>.<permissions>[?query]`,
//!   the permissions a non-empty subset of `c r u d s` written in that order (`rs`,
//!   `cruds`), and an optional query of `name=value` pairs joined by `&` (granular scopes:
//!   `patient/Observation.rs?category=http://…|laboratory`).
//! - **v1**: `<patient|user|system>/<Type|*>.<read|write|*>`, read as v2's `rs`, `cud` and
//!   `cruds`.
//!
//! **Which wins when a token holds both**: the v2 ones. A server that issues v2 scopes
//! often adds the v1 ones for older clients, and a v1 `.read` would otherwise widen a
//! granular v2 scope (`patient/Observation.read` next to
//! `patient/Observation.rs?category=vital-signs`). So when any v2 resource scope is present,
//! the v1 resource scopes are not used (and the log says so).
//!
//! A scope that looks like a resource scope (it starts with `patient/`, `user/` or
//! `system/`) but does not read is ignored and logged: it never widens access. Other
//! scopes (`openid`, `fhirUser`, `launch/patient`, `offline_access`, …) are not about
//! resources and are left alone.

use std::fmt;

/// Whose data a scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The patient in the launch context (`patient/`).
    Patient,
    /// What the signed-in user may access (`user/`).
    User,
    /// A backend service, no user (`system/`).
    System,
}

impl Context {
    fn read(text: &str) -> Option<Self> {
        match text {
            "patient" => Some(Self::Patient),
            "user" => Some(Self::User),
            "system" => Some(Self::System),
            _ => None,
        }
    }

    /// The scope prefix (`patient`, `user`, `system`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }
}

/// One interaction a scope permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `c`: create.
    Create,
    /// `r`: read.
    Read,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search.
    Search,
}

impl Permission {
    /// Every permission, in the order scopes write them.
    pub const ALL: [Self; 5] = [Self::Create, Self::Read, Self::Update, Self::Delete, Self::Search];

    /// Its letter (`c`, `r`, `u`, `d`, `s`).
    pub fn letter(self) -> char {
        match self {
            Self::Create => 'c',
            Self::Read => 'r',
            Self::Update => 'u',
            Self::Delete => 'd',
            Self::Search => 's',
        }
    }

    fn from_letter(letter: char) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.letter() == letter)
    }
}

/// A set of permissions (`cruds` and its subsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// Whether `permission` is in the set.
    pub fn has(self, permission: Permission) -> bool {
        self.0 & (1 << permission as u8) != 0
    }

    fn with(self, permission: Permission) -> Self {
        Self(self.0 | (1 << permission as u8))
    }

    /// The set of these permissions.
    pub fn of(permissions: &[Permission]) -> Self {
        permissions.iter().fold(Self::default(), |set, p| set.with(*p))
    }

    /// Reads v2's letters: a non-empty subset of `cruds`, in that order, each once.
    fn read_v2(text: &str) -> Option<Self> {
        let mut set = Self::default();
        let mut last = None;
        for letter in text.chars() {
            let permission = Permission::from_letter(letter)?;
            if last.is_some_and(|previous| previous >= permission) {
                return None;
            }
            last = Some(permission);
            set = set.with(permission);
        }
        (set.0 != 0).then_some(set)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Permission::ALL.into_iter().filter(|p| self.has(*p)).try_for_each(|p| write!(f, "{}", p.letter()))
    }
}

/// Which SMART version's syntax a scope is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `.read`, `.write`, `.*`.
    V1,
    /// `.cruds` and its subsets, with an optional query.
    V2,
}

/// One resource scope, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    /// Whose data.
    pub context: Context,
    /// The resource type, or `None` for `*`.
    pub resource_type: Option<String>,
    /// What it permits.
    pub permissions: Permissions,
    /// Granular restrictions (`?category=…`): search parameters every resource must match.
    pub restrictions: Vec<(String, String)>,
    /// How it was written.
    pub syntax: Syntax,
}

impl ResourceScope {
    /// Whether it covers resources of `kind` (its own type, or `*`).
    pub fn covers(&self, kind: &str) -> bool {
        self.resource_type.as_deref().is_none_or(|own| own == kind)
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.context.prefix(), self.resource_type.as_deref().unwrap_or("*"), self.permissions)?;
        for (index, (name, value)) in self.restrictions.iter().enumerate() {
            write!(f, "{}{name}={value}", if index == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// What reading one scope string gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A resource scope.
    Resource(ResourceScope),
    /// Not about resources (`openid`, `launch/patient`, …).
    Other,
    /// Looks like a resource scope but does not read; the message says why.
    Malformed(String),
}

/// Whether `name` is a resource type name (`Observation`), as FHIR writes them.
fn is_type_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Reads one scope string.
pub fn read(scope: &str) -> Read {
    let Some((prefix, rest)) = scope.split_once('/') else { return Read::Other };
    let Some(context) = Context::read(prefix) else { return Read::Other };
    let malformed = |why: &str| Read::Malformed(format!("scope '{scope}': {why}"));
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let Some((kind, permissions)) = body.rsplit_once('.') else {
        return malformed("expected Type.permissions");
    };
    let resource_type = match kind {
        "*" => None,
        name if is_type_name(name) => Some(name.to_owned()),
        _ => return malformed("not a resource type or *"),
    };
    let (permissions, syntax) = match permissions {
        "read" => (Permissions::of(&[Permission::Read, Permission::Search]), Syntax::V1),
        "write" => (Permissions::of(&[Permission::Create, Permission::Update, Permission::Delete]), Syntax::V1),
        "*" => (Permissions::of(&Permission::ALL), Syntax::V1),
        letters => match Permissions::read_v2(letters) {
            Some(set) => (set, Syntax::V2),
            None => return malformed("permissions must be read, write, * or a subset of cruds in that order"),
        },
    };
    let restrictions = match query {
        None => Vec::new(),
        Some(_) if syntax == Syntax::V1 => return malformed("v1 scopes take no query"),
        Some(query) => {
            let mut pairs = Vec::new();
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some((name, value)) if !name.is_empty() && !value.is_empty() => {
                        let decoded = percent_encoding::percent_decode_str(value).decode_utf8();
                        let Ok(value) = decoded else { return malformed("a query value is not UTF-8") };
                        pairs.push((name.to_owned(), value.into_owned()));
                    }
                    _ => return malformed("the query must be name=value pairs joined by &"),
                }
            }
            pairs
        }
    };
    Read::Resource(ResourceScope { context, resource_type, permissions, restrictions, syntax })
}

/// The resource scopes of a token's scope list, with v2 winning over v1 (see the module
/// docs); what is ignored is logged.
pub fn resource_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<ResourceScope> {
    let mut read_scopes = Vec::new();
    for scope in scopes {
        match read(scope) {
            Read::Resource(resource) => read_scopes.push(resource),
            Read::Other => {}
            Read::Malformed(why) => tracing::warn!(reason = why, "scope ignored"),
        }
    }
    if read_scopes.iter().any(|s| s.syntax == Syntax::V2) && read_scopes.iter().any(|s| s.syntax == Syntax::V1) {
        tracing::info!("the token holds SMART v1 and v2 resource scopes; the v2 ones are used");
        read_scopes.retain(|s| s.syntax == Syntax::V2);
    }
    read_scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> ResourceScope {
        match read(text) {
            Read::Resource(scope) => scope,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn reads_v1_and_v2_scopes_and_shows_them_as_v2() {
        for (text, shown) in [
            ("patient/Observation.rs", "patient/Observation.rs"),
            ("user/*.cruds", "user/*.cruds"),
            ("system/Patient.r", "system/Patient.r"),
            ("patient/Encounter.read", "patient/Encounter.rs"),
            ("user/Encounter.write", "user/Encounter.cud"),
            ("patient/*.*", "patient/*.cruds"),
            (
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            ),
            ("user/Observation.s?code=1234-5&status=final", "user/Observation.s?code=1234-5&status=final"),
        ] {
            assert_eq!(scope(text).to_string(), shown, "{text}");
        }
        let granular = scope("patient/Observation.rs?category=a%7Cb");
        assert_eq!(granular.restrictions, [("category".to_owned(), "a|b".to_owned())]);
        assert!(scope("user/*.r").covers("Anything") && !scope("user/Patient.r").covers("Encounter"));
    }

    #[test]
    fn malformed_resource_scopes_are_reported_and_other_scopes_left_alone() {
        for text in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Observation.x",
            "patient/Observation.",
            "patient/Observation",
            "patient/observation.rs",
            "user/Obs-ervation.rs",
            "patient/Observation.read?category=x",
            "patient/Observation.rs?category",
            "patient/Observation.rs?=x",
            "user/*.rs?a=%FF",
        ] {
            assert!(matches!(read(text), Read::Malformed(_)), "{text}: {:?}", read(text));
        }
        for text in ["openid", "fhirUser", "launch/patient", "launch", "offline_access", "admin/Patient.rs", ""] {
            assert_eq!(read(text), Read::Other, "{text}");
        }
    }

    #[test]
    fn v2_scopes_win_over_v1_in_one_token() {
        let both =
            resource_scopes(["patient/Observation.read", "patient/Observation.rs?category=vital-signs", "openid"]);
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].to_string(), "patient/Observation.rs?category=vital-signs");
        let v1_only = resource_scopes(["patient/Observation.read", "bogus/x", "patient/Encounter.zz"]);
        assert_eq!(v1_only.iter().map(ToString::to_string).collect::<Vec<_>>(), ["patient/Observation.rs"]);
    }
}
