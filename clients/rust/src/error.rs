//! What can go wrong, typed: the caller tells a refusal it must act on from a network
//! failure the client retries by itself, and gets the server's `OperationOutcome`.

use serde_json::Value;

/// Every error the client reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered an HTTP request with an error status.
    #[error("{method} {url} answered {status}{}", said(.outcome.as_ref()))]
    Http {
        /// The request's method.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's `OperationOutcome`, when it sent one.
        outcome: Option<Value>,
    },
    /// The request or the socket failed on the network (retried by the client).
    #[error("network: {0}")]
    Network(String),
    /// The server sent an `OperationOutcome` frame (a refused bind): the client binds
    /// again with a fresh token.
    #[error("the server refused{}", said(Some(.outcome)))]
    Refused {
        /// The frame.
        outcome: Value,
    },
    /// The server answered something that is not the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Events the app has not seen are no longer held by the server (past its
    /// retention): they cannot be delivered. Delivery goes on after them.
    #[error("Subscription/{subscription}: events {since}-{until} are not held by the server any more{}", said(.outcome.as_ref()))]
    EventsUnavailable {
        /// The subscription's id.
        subscription: String,
        /// First event number lost.
        since: u64,
        /// Last event number lost.
        until: u64,
        /// The server's warning, when it gave one.
        outcome: Option<Value>,
    },
    /// The client was built without what it needs.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again cannot help: the server refused the credentials, the
    /// token request or the Subscription (a 4xx other than 408 and 429), answered
    /// outside the protocol, or the client is misconfigured.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Http { status, .. } => (400..500).contains(status) && *status != 408 && *status != 429,
            Error::Protocol(_) | Error::Config(_) => true,
            Error::Network(_) | Error::Refused { .. } | Error::EventsUnavailable { .. } => false,
        }
    }

    /// The server's `OperationOutcome`, when the error carries one.
    pub fn outcome(&self) -> Option<&Value> {
        match self {
            Error::Http { outcome, .. } | Error::EventsUnavailable { outcome, .. } => outcome.as_ref(),
            Error::Refused { outcome } => Some(outcome),
            _ => None,
        }
    }
}

/// `: <diagnostics>` of an OperationOutcome, or nothing.
fn said(outcome: Option<&Value>) -> String {
    let text = outcome.map(outcome_text).unwrap_or_default();
    if text.is_empty() { String::new() } else { format!(": {text}") }
}

/// The diagnostics (or details texts) of an OperationOutcome's issues.
pub(crate) fn outcome_text(outcome: &Value) -> String {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|issue| issue["diagnostics"].as_str().or_else(|| issue["details"]["text"].as_str()))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<reqwest::Error> for Error {
    fn from(error: reqwest::Error) -> Self {
        Error::Network(error.to_string())
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::Network(format!("WebSocket: {error}"))
    }
}
