//! Logging set-up for the functions: what `lambda_runtime`'s default subscriber does —
//! the level from Lambda's `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`), text or, with
//! `AWS_LAMBDA_LOG_FORMAT=JSON`, JSON lines on stdout, no timestamps (CloudWatch adds
//! them) — without its `RUST_LOG` directive parser (`EnvFilter`), whose regex engine was
//! the largest single dependency left in every bootstrap. One level for everything is what
//! Lambda's own log-level control offers anyway.

use tracing::level_filters::LevelFilter;

use crate::config::Source;

/// Installs the subscriber for this process. Call once, first thing in `main`.
pub fn init(source: &impl Source) {
    let level = level(source);
    let json = source.value("AWS_LAMBDA_LOG_FORMAT").is_some_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_target(false).without_time().with_max_level(level);
    // A second call (a test, a library user) keeps the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// The level `AWS_LAMBDA_LOG_LEVEL` or else `RUST_LOG` names; INFO when neither names
/// one. Lambda's `FATAL` is ERROR here (tracing has no level above it).
pub fn level(source: &impl Source) -> LevelFilter {
    let named = source.value("AWS_LAMBDA_LOG_LEVEL").or_else(|| source.value("RUST_LOG"));
    match named.as_deref().map(|name| name.trim().to_ascii_uppercase()).as_deref() {
        Some("TRACE") => LevelFilter::TRACE,
        Some("DEBUG") => LevelFilter::DEBUG,
        Some("WARN") => LevelFilter::WARN,
        Some("ERROR" | "FATAL") => LevelFilter::ERROR,
        Some("OFF") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_lambda_log_level_wins_over_rust_log() {
        assert_eq!(level(&with(&[("AWS_LAMBDA_LOG_LEVEL", "debug"), ("RUST_LOG", "error")])), LevelFilter::DEBUG);
        assert_eq!(level(&with(&[("RUST_LOG", "warn")])), LevelFilter::WARN);
        assert_eq!(level(&with(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")])), LevelFilter::ERROR);
        assert_eq!(level(&with(&[("AWS_LAMBDA_LOG_LEVEL", "TRACE")])), LevelFilter::TRACE);
    }

    #[test]
    fn anything_else_is_info() {
        assert_eq!(level(&with(&[])), LevelFilter::INFO);
        assert_eq!(level(&with(&[("RUST_LOG", "fhir_ws_core=debug,hyper=warn")])), LevelFilter::INFO);
        assert_eq!(level(&with(&[("AWS_LAMBDA_LOG_LEVEL", "loud")])), LevelFilter::INFO);
    }
}
