//! fhir-ws core: everything the fhir-ws Lambda functions share.
//!
//! FHIR topic-based Subscriptions over WebSockets on AWS Lambda. The binaries under
//! `functions/` only read configuration, build clients once and hand each event to a
//! handler here, so the Lambdas, the local stack and the tests run the same code.
//!
//! The guide (`docs/`, `mdbook build docs`) explains the behaviour this crate implements;
//! its chapter for contributors, `docs/src/architecture.md`, has the layers of these
//! modules and where each concern lives; configuration: `docs/src/configuration.md`.
//!
//! # Layout
//!
//! - [`fhir`] — FHIR R5 JSON types (`Subscription`, `Parameters`, `OperationOutcome`,
//!   `Bundle`, `SubscriptionStatus`); unknown elements survive a round trip. Also the
//!   R4/R4B edges, the versions served, and the exact conversion of carried resources
//!   between versions (`fhir::convert`).
//! - [`token`] — binding tokens: HMAC-SHA256 signing with rotating key ids,
//!   constant-time verification, and [`token::verify`], the full check the WebSocket
//!   functions run on every bind.
//! - [`secret`] — values kept in a secret store (signing keys, relay secrets), read at
//!   cold start and again at runtime so rotation needs no deploy.
//! - [`access`] — the rule for who may bind to which subscription.
//! - [`smart`] — SMART on FHIR scopes and launch context, for `AuthorizationMode=smart`.
//! - [`store`] — storage ports (one trait per table: subscriptions, tokens, bindings,
//!   counters, event history, upstream ledger) with DynamoDB and in-memory adapters.
//! - [`http`] — request reading, caller identity, and errors as `OperationOutcome`s.
//! - [`limits`] — the sizes of client-supplied values checked before anything is stored.
//! - [`ops`] — the HTTP handlers: the Subscription API, `$status`, `$events`, `metadata`
//!   and `$get-ws-binding-token`.
//! - [`ws`] — the WebSocket handlers (`$connect`, `$default`, `$disconnect`), the client
//!   protocol, binding and unbinding.
//! - [`notification`] — notification Bundles (handshake, heartbeat, event, `$events`
//!   answers) and the event records they are built from.
//! - [`fanout`] — the event contract, filters, numbering and recording of events, their
//!   delivery to bound connections, and the dead-letter queue for invalid ones.
//! - [`relay`] — notifications from another FHIR server (R4, R4B, R5 rest-hook Bundles)
//!   turned into events: the relay endpoint, its secrets, its ledger and queue ports.
//! - [`revocation`] — taking bindings away when a token is revoked or a subscription ends,
//!   telling the connections why and closing those left with nothing.
//! - [`search`] — FHIR search semantics in memory (the R4, R4B and R5 base search
//!   parameters, each resource read with its own version's), for topic criteria and filters.
//! - [`topics`] — the SubscriptionTopics deployed with the stack (`infra/topics/`) and the
//!   Subscriptions they allow.
//! - [`heartbeat`] — heartbeats and owed handshakes on a schedule.
//! - [`push`] — posting frames to connections through the Management API, with retries.
//! - [`delivery`] — sending to bound connections: retries, 410 clean-up, status notifications.
//! - [`metrics`] — CloudWatch Embedded Metric Format lines.
//! - [`logging`] — the functions' log set-up (Lambda's log level and format).
//! - [`config`] — configuration from the environment `template.yaml` sets (values only);
//! - [`wiring`] — each function's parts built from that configuration (the composition root).
//! - [`aws`] — the AWS SDK configuration, with the one HTTP and TLS stack every function links.

pub mod access;
pub mod aws;
pub mod concurrency;
pub mod config;
pub mod delivery;
pub mod fanout;
pub mod fhir;
pub mod heartbeat;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod notification;
pub mod ops;
pub mod push;
pub mod relay;
pub mod revocation;
pub mod search;
pub mod secret;
pub mod smart;
pub mod store;
pub mod token;
pub mod topics;
pub mod wiring;
pub mod ws;
