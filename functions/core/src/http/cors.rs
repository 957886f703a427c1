//! Browser apps on other origins: which origins may call us, and what a cross-origin
//! request may use. One place for the lists the template's `CorsConfiguration`, the local
//! stack's CORS layer and the WebSocket API's `Origin` check all follow (a test compares
//! the template with these constants).
//!
//! Browsers cannot put an `Authorization` header on a WebSocket (the reason binding tokens
//! exist), but they can on `fetch`, so a browser app calls the HTTP API cross-origin and
//! needs CORS there. On the WebSocket API a browser always sends `Origin`; other clients
//! usually do not, and could send anything, so an origin allow-list there protects users'
//! browsers from other sites' pages, not the server from clients: tokens still decide.

/// Methods the HTTP API's routes use.
pub const ALLOWED_METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
/// Request headers a browser app sends (lower case, as preflights list them).
pub const ALLOWED_HEADERS: [&str; 4] = ["authorization", "content-type", "if-match", "accept"];
/// Response headers a browser app may read beyond the CORS-safelisted ones.
pub const EXPOSED_HEADERS: [&str; 3] = ["etag", "location", "retry-after"];
/// How long a browser may cache a preflight answer, unless configured otherwise.
pub const DEFAULT_MAX_AGE_SECONDS: u32 = 600;

/// Origins allowed to call from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    /// Any origin (`*`): only when explicitly chosen.
    any: bool,
    /// Any `http(s)://localhost`, `127.0.0.1` or `[::1]` origin, whatever its port
    /// (`loopback`: a development default for the local stack).
    loopback: bool,
    /// Exact origins (`scheme://host[:port]`, lower case).
    exact: Vec<String>,
}

impl AllowedOrigins {
    /// No origin at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads a comma-separated list of entries: `*`, `loopback`, or origins such as
    /// `https://app.example.org`. Empty (or only `none`) allows none.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry {
                "*" => allowed.any = true,
                "loopback" => allowed.loopback = true,
                "none" => {}
                origin => allowed.exact.push(normalized(origin)?),
            }
        }
        Ok(allowed)
    }

    /// True when none is allowed.
    pub fn is_empty(&self) -> bool {
        !self.any && !self.loopback && self.exact.is_empty()
    }

    /// True when any origin is allowed (`*`).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether a request with this `Origin` header may go on.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Ok(origin) = normalized(origin) else { return false };
        (self.loopback && is_loopback(&origin)) || self.exact.contains(&origin)
    }
}

/// `scheme://host[:port]` in lower case, or why it is not an origin.
fn normalized(origin: &str) -> Result<String, String> {
    let lower = origin.trim().to_ascii_lowercase();
    let Some((scheme, authority)) = lower.split_once("://") else {
        return Err(format!("{origin} is not an origin (scheme://host[:port])"));
    };
    let valid_authority = !authority.is_empty()
        && authority.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        && !authority.starts_with(':');
    if !matches!(scheme, "http" | "https") || !valid_authority {
        return Err(format!("{origin} is not an http(s) origin without a path"));
    }
    Ok(lower)
}

fn is_loopback(origin: &str) -> bool {
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    let host = if authority.starts_with('[') {
        authority.split_once(']').map_or(authority, |(h, _)| h).trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_match_whole_origins_only() {
        let allowed = AllowedOrigins::parse("https://app.example.org, http://127.0.0.1:5173").unwrap();
        assert!(allowed.allows("https://app.example.org"));
        assert!(allowed.allows("HTTPS://App.Example.org"), "origins compare case-insensitively");
        assert!(allowed.allows("http://127.0.0.1:5173"));
        assert!(!allowed.allows("http://127.0.0.1:5174"));
        assert!(!allowed.allows("https://app.example.org.evil.test"));
        assert!(!allowed.allows("http://app.example.org"), "scheme matters");
        assert!(!allowed.allows("null"));
        assert!(!allowed.allows(""));
    }

    #[test]
    fn loopback_any_and_none() {
        let loopback = AllowedOrigins::parse("loopback").unwrap();
        for origin in ["http://localhost:3000", "http://127.0.0.1:8080", "https://localhost", "http://[::1]:9000"] {
            assert!(loopback.allows(origin), "{origin}");
        }
        for origin in ["http://localhost.evil.test", "http://127.0.0.2:80", "https://example.org", "null"] {
            assert!(!loopback.allows(origin), "{origin}");
        }
        let any = AllowedOrigins::parse("*").unwrap();
        assert!(any.allows_any() && any.allows("https://anything.example"));
        for none in ["", "none", " , "] {
            let parsed = AllowedOrigins::parse(none).unwrap();
            assert!(parsed.is_empty() && !parsed.allows("http://localhost:1"), "{none:?}");
        }
    }

    #[test]
    fn entries_that_are_not_origins_are_refused() {
        for bad in ["example.org", "https://example.org/app", "ftp://example.org", "https://", "https://a b"] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
