//! fhir-ws on one machine: the local gateway and the `fhir-ws` command-line client.
//! How to use them: the guide's `docs/src/getting-started.md`.
//!
//! `sam local start-api` cannot run WebSocket APIs, so this crate stands in for API
//! Gateway itself and calls the same core handlers the Lambdas call, with the same event
//! types, over the same stores.
//!
//! # Layout
//!
//! - [`gateway`] — `fhir-ws serve`: one HTTP server on 127.0.0.1 holding
//!   - the HTTP API (`/Subscription…`), turned into API Gateway HTTP API payload 2.0
//!     events, with a local stand-in for the JWT authorizer ([`gateway::Users`]);
//!   - the WebSocket API (`/ws`): a real WebSocket server whose connects, frames and
//!     closes become `ApiGatewayWebsocketProxyRequest` events;
//!   - the Management API (`POST/GET/DELETE /local/@connections/{id}`) for outside
//!     callers (the functions inside the server post to their sockets in process);
//!   - an SQS stand-in (`POST /local/events`) feeding the fan-out, and the heartbeat
//!     schedule;
//!   - the web console at `/` (`local/console/`, compiled in), a browser client of all
//!     of the above.
//! - [`tables`] — creates the DynamoDB tables of `template.yaml` when a DynamoDB endpoint
//!   is used instead of the embedded store.
//! - [`client`] — `fhir-ws subscribe` and `fhir-ws notify`.
//! - [`tls`] — the `wss://` connector the client uses for deployed stacks.
//! - [`cli`] — the command line.

pub mod cli;
pub mod client;
pub mod gateway;
pub mod tables;
pub mod tls;
