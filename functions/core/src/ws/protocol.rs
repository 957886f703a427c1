//! The client side of the WebSocket protocol: what a text frame from a client means.
//!
//! One frame = one message; leading and trailing whitespace is ignored. Two dialects:
//!
//! | text | JSON |
//! |---|---|
//! | `bind-with-token <token>`, `bind-with-token: <token>` | `{"type":"bind-with-token","payload":{"token":"…"}}` |
//! | `unbind-with-token <token>` (or `unbind-from-token`) | `{"type":"unbind-from-token","payload":{"token":"…"}}` (or `unbind-with-token`) |
//! | `ping` | `{"type":"ping"}` |

use serde_json::Value;

/// Longest client message read, in bytes; a token is at most 8 KiB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Which dialect a message used; replies use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Plain text commands.
    Text,
    /// JSON envelopes with `type` and `payload`.
    Json,
}

/// A client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Bind this connection to the token's subscriptions.
    Bind(String),
    /// Drop the bindings this token made on this connection.
    Unbind(String),
    /// Liveness check, answered `pong`.
    Ping(Dialect),
}

/// Why a message could not be understood. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Nothing but whitespace.
    #[error("the message is empty")]
    Empty,
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("the message is {0} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not UTF-8 text (e.g. a binary frame).
    #[error("the message is not UTF-8 text")]
    NotText,
    /// Starts like JSON but does not parse.
    #[error("the message is not valid JSON: {0}")]
    InvalidJson(String),
    /// A command this server does not know.
    #[error("unknown command '{0}'; expected bind-with-token, unbind-with-token or ping")]
    UnknownCommand(String),
    /// A bind or unbind without a token.
    #[error("'{0}' needs a token")]
    MissingToken(&'static str),
}

const BIND: &str = "bind-with-token";
const UNBIND: [&str; 2] = ["unbind-with-token", "unbind-from-token"];

/// Reads one client frame. `bytes` is the frame after any base64 decoding.
pub fn parse(bytes: &[u8]) -> Result<ClientMessage, ProtocolError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ProtocolError::NotText)?.trim();
    if text.is_empty() {
        return Err(ProtocolError::Empty);
    }
    if text.starts_with('{') {
        return parse_json(text);
    }
    let (command, rest) = split_command(text);
    match command {
        "ping" if rest.is_empty() => Ok(ClientMessage::Ping(Dialect::Text)),
        BIND => token(rest, BIND).map(ClientMessage::Bind),
        c if UNBIND.contains(&c) => token(rest, "unbind-with-token").map(ClientMessage::Unbind),
        other => Err(ProtocolError::UnknownCommand(shorten(other))),
    }
}

/// Splits `command[:] rest`, accepting `bind-with-token:tok`, `bind-with-token: tok`
/// and `bind-with-token tok`.
fn split_command(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| c == ':' || c.is_whitespace()).unwrap_or(text.len());
    let (command, rest) = text.split_at(end);
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim();
    (command, rest)
}

fn token(text: &str, command: &'static str) -> Result<String, ProtocolError> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(ProtocolError::MissingToken(command));
    }
    Ok(text.to_owned())
}

fn parse_json(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
    let token_in_payload = || {
        value
            .pointer("/payload/token")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    match kind {
        "ping" => Ok(ClientMessage::Ping(Dialect::Json)),
        BIND => token_in_payload().map(ClientMessage::Bind).ok_or(ProtocolError::MissingToken(BIND)),
        k if UNBIND.contains(&k) => {
            token_in_payload().map(ClientMessage::Unbind).ok_or(ProtocolError::MissingToken("unbind-from-token"))
        }
        other => Err(ProtocolError::UnknownCommand(shorten(other))),
    }
}

/// Echoes at most 40 characters of an unknown command back.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The `pong` answer in the dialect of the `ping`.
pub fn pong(dialect: Dialect) -> String {
    match dialect {
        Dialect::Text => "pong".to_owned(),
        Dialect::Json => r#"{"type":"pong"}"#.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(token: &str) -> Result<ClientMessage, ProtocolError> {
        Ok(ClientMessage::Bind(token.to_owned()))
    }

    #[test]
    fn reads_both_dialects() {
        assert_eq!(parse(b"bind-with-token abc"), bind("abc"));
        assert_eq!(parse(b"  bind-with-token:   abc \n"), bind("abc"));
        assert_eq!(parse(b"bind-with-token:abc"), bind("abc"));
        assert_eq!(parse(br#"{"type":"bind-with-token","payload":{"token":"abc"}}"#), bind("abc"));
        assert_eq!(parse(b"unbind-with-token abc"), Ok(ClientMessage::Unbind("abc".into())));
        assert_eq!(parse(b"unbind-from-token: abc"), Ok(ClientMessage::Unbind("abc".into())));
        assert_eq!(
            parse(br#"{"type":"unbind-from-token","payload":{"token":"abc"}}"#),
            Ok(ClientMessage::Unbind("abc".into()))
        );
        assert_eq!(parse(b"ping"), Ok(ClientMessage::Ping(Dialect::Text)));
        assert_eq!(parse(br#" {"type":"ping"} "#), Ok(ClientMessage::Ping(Dialect::Json)));
        assert_eq!(pong(Dialect::Json), r#"{"type":"pong"}"#);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert_eq!(parse(b"   "), Err(ProtocolError::Empty));
        assert_eq!(parse(&[b'a'; MAX_MESSAGE_BYTES + 1]), Err(ProtocolError::TooLarge(MAX_MESSAGE_BYTES + 1)));
        assert_eq!(parse(&[0x66, 0xff, 0xfe]), Err(ProtocolError::NotText));
        assert!(matches!(parse(b"{not json"), Err(ProtocolError::InvalidJson(_))));
        assert_eq!(parse(br#"{"type":"subscribe"}"#), Err(ProtocolError::UnknownCommand("subscribe".into())));
        assert_eq!(parse(br#"{"payload":{}}"#), Err(ProtocolError::UnknownCommand(String::new())));
        assert_eq!(parse(b"hello there"), Err(ProtocolError::UnknownCommand("hello".into())));
        assert_eq!(parse(b"bind-with-token"), Err(ProtocolError::MissingToken(BIND)));
        assert_eq!(parse(b"bind-with-token: a b"), Err(ProtocolError::MissingToken(BIND)));
        assert_eq!(
            parse(br#"{"type":"bind-with-token","payload":{"token":""}}"#),
            Err(ProtocolError::MissingToken(BIND))
        );
        assert_eq!(parse(b"ping now"), Err(ProtocolError::UnknownCommand("ping".into())));
    }
}
