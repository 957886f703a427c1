//! A client of FHIR topic-based subscriptions over WebSockets: R5, and R4 / R4B with the
//! Subscriptions Backport IG, against fhir-ws or any server that implements
//! `$get-ws-binding-token`, `bind-with-token` and `$events`.
//!
//! It hands the app each event **exactly once, in event-number order per subscription**,
//! across socket drops, token expiry, half-open sockets and redeliveries, as long as the
//! server still holds the events it missed (fhir-ws: `EVENT_RETENTION_SECONDS`, 7 days
//! by default); events the server no longer holds are reported once as
//! [`Error::EventsUnavailable`], and delivery goes on after them. The server itself only
//! promises at least once.
//!
//! What it does: gets a binding token (instance level for one subscription, type level
//! for several, all on one socket), connects to the `websocket-url` the server returns,
//! sends `bind-with-token`, renews the token on the open socket at four fifths of its
//! lifetime, reconnects with capped exponential backoff and jitter, gives up on a socket
//! silent for twice the heartbeat period, and fills every gap that a handshake, heartbeat
//! or event number shows with `$events` before anything newer.
//!
//! The protocol it speaks is described in fhir-ws's guide (`docs/src/protocol.md`), and
//! both clients in `docs/src/clients.md`.
//!
//! # Usage
//!
//! ```no_run
//! use futures::StreamExt as _;
//! use fhir_ws_client::{Client, SubscriptionRequest};
//!
//! # async fn run() -> Result<(), fhir_ws_client::Error> {
//! let mut notifications = Client::builder("http://127.0.0.1:8080/R4")
//!     .access_token(|| async { Ok(std::env::var("FHIR_TOKEN").unwrap_or_default()) })
//!     .create(SubscriptionRequest {
//!         heartbeat_period: Some(60),
//!         ..SubscriptionRequest::new("http://example.org/topics/encounter-start")
//!     })
//!     .subscribe()?
//!     .notifications();
//! while let Some(item) = notifications.next().await {
//!     match item {
//!         Ok(n) => println!("#{} {}", n.event_number, n.focus.unwrap_or_default()),
//!         Err(error) if error.is_fatal() => return Err(error),
//!         Err(gap) => eprintln!("{gap}"), // events past the server's retention
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The notifications are read from any version's Bundle into one shape:
//!
//! ```
//! use fhir_ws_client::Notification;
//! use serde_json::json;
//!
//! let r4 = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
//!     "resourceType": "Parameters", "parameter": [
//!         {"name": "subscription", "valueReference": {"reference": "Subscription/abc"}},
//!         {"name": "type", "valueCode": "event-notification"},
//!         {"name": "notification-event", "part": [
//!             {"name": "event-number", "valueString": "42"},
//!             {"name": "focus", "valueReference": {"reference": "Encounter/e1"}}]}]}}]});
//! let notifications = Notification::from_bundle(r4);
//! assert_eq!(notifications.len(), 1);
//! let n = &notifications[0];
//! assert_eq!((n.subscription.as_str(), n.event_number, n.focus.as_deref()), ("abc", 42, Some("Encounter/e1")));
//! ```
//!
//! # Layout
//!
//! - [`client`]: the builder, the [`Subscriber`] stream and the connection loop;
//! - [`sequence`]: event numbers: deliver, drop a repeat, or fill a gap first;
//! - [`shapes`]: the R4, R4B and R5 shapes read and written;
//! - `http`: `metadata`, Subscription create and read, `$get-ws-binding-token`, `$events`;
//! - [`error`]: what can go wrong, typed, with the server's `OperationOutcome`.

pub mod client;
pub mod error;
mod http;
pub mod sequence;
pub mod shapes;

pub use client::{Client, ClientBuilder, Subscriber, Timing, Update};
pub use error::Error;
pub use http::{BindingToken, TokenSource};
pub use shapes::{FhirVersion, Notification, Status, StatusEvent, SubscriptionRequest};
