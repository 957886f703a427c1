//! Configuration from the environment, as `template.yaml` sets it for each function.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `SUBSCRIPTIONS_TABLE` | all but ws-disconnect | subscriptions table name |
//! | `TOKENS_TABLE` | get-ws-binding-token, ws-connect, ws-default | tokens table name |
//! | `WEBSOCKET_URL` | get-ws-binding-token, subscription-api | `wss://` URL returned as `websocket-url` (and stated in `metadata`) |
//! | `TOKEN_SIGNING_KEYS_SECRET` | get-ws-binding-token, ws-connect, ws-default | id (ARN) of the Secrets Manager secret holding the signing keys, read at cold start and again at runtime (the template sets this) |
//! | `TOKEN_SIGNING_KEYS` | get-ws-binding-token, ws-connect, ws-default | instead of the secret: `keyid:secret[,keyid:secret…]` (first signs), or the secret's JSON (local stack, tests) |
//! | `TOKEN_LIFETIME_SECONDS` | get-ws-binding-token | token lifetime, default 1800 (60–86400) |
//! | `PRINCIPAL_CLAIM` | HTTP functions | JWT claim naming the caller, default `sub` |
//! | `TENANT_CLAIM` | HTTP functions | optional JWT claim naming the caller's tenant |
//! | `AUTHORIZATION_MODE` | HTTP functions | `owner` (default: ownership only) or `smart` (SMART on FHIR scopes too) |
//! | `MAX_NOTIFICATION_CONTENT` | subscription-api | the most a notification may carry: `empty`, `id-only` or `full-resource` (default); Subscriptions asking for more are refused |
//! | `SMART_PATIENT_CLAIM` | HTTP functions | the JWT claim naming the launch patient in `smart` mode, default `patient` |
//! | `BINDINGS_TABLE` | ws-*, subscription-api, get-ws-binding-token | bindings table name (the HTTP functions remove bindings when a token is revoked or a subscription ends) |
//! | `COUNTERS_TABLE` | ws-default | event counters table name |
//! | `WEBSOCKET_MANAGEMENT_ENDPOINT` | ws-connect, ws-default | optional Management API endpoint; default `https://{domainName}/{stage}` of the event |
//! | `WEBSOCKET_SUBPROTOCOLS` | ws-connect | optional comma list of accepted `Sec-WebSocket-Protocol` values |
//! | `WEBSOCKET_ALLOWED_ORIGINS` | ws-connect | optional comma list of browser origins (`https://app.example.org`, `*`, `loopback`) `$connect` accepts; unset or empty: no `Origin` check |
//! | `FHIR_BASE_URL` | fanout | base URL of the FHIR server the events' resources live on |
//! | `COUNTERS_TABLE` | subscription-api (and the delivery functions) | event counters table name |
//! | `EVENTS_TABLE` | subscription-api, fanout | event history table name |
//! | `EVENT_RETENTION_SECONDS` | fanout, relay | how long events stay answerable by `$events` (and the relay remembers upstream events), default 604800 (7 days) |
//! | `UPSTREAM_TABLE` | relay, fanout | the upstream ledger table name (the fan-out relays notification Bundles found on its queue) |
//! | `EVENTS_QUEUE_URL` | relay, fanout | URL of the SQS queue the fan-out reads (the fan-out puts references to later delivery pages there; unset: one worker delivers every page) |
//! | `DELIVERY_PAGE_SIZE` | fanout | bindings per delivery page, 1 to 10000, default 1000 |
//! | `MANAGEMENT_API_RATE` | fanout | account-wide Management API posts a second all fan-out instances keep under (0 or unset: unpaced) |
//! | `FANOUT_CONCURRENCY` | fanout | most fan-out instances at once (the event source's maximum concurrency); each paces at `MANAGEMENT_API_RATE` / this, default 1 |
//! | `EVENT_FHIR_VERSION` | fanout, subscription-api | FHIR version of the resources in events that name none (`R4`, `R4B`, `R5`; default `R5`); topics are loaded for it |
//! | `DEAD_LETTER_QUEUE_URL` | fanout | URL of the events queue's dead-letter queue, where invalid events go at once with their reason (unset: SQS's redrive moves them) |
//! | `RELAY_SECRETS_SECRET` | relay | id (ARN) of the Secrets Manager secret holding the relay secrets (JSON `{"secrets": "s1[,s2…]"}`), read at cold start and again at runtime (the template sets this) |
//! | `RELAY_SECRETS` | relay | instead of the secret: comma-separated secrets upstream servers send as `Authorization: Bearer …` (local stack, tests) |

use chrono::TimeDelta;

use crate::http::IdentityConfig;
use crate::http::cors::AllowedOrigins;
use crate::store::dynamodb::{DynamoBindingStore, DynamoCounterStore, DynamoSubscriptionStore};
use std::sync::Arc;

use crate::fhir::version::FhirVersion;
use crate::secret::SecretStore;
use crate::token::{KeyRing, KeyRingError};
use crate::topics::TopicRegistry;

/// Default token lifetime: 30 minutes.
pub const DEFAULT_TOKEN_LIFETIME_SECONDS: i64 = 30 * 60;
/// Allowed token lifetimes, in seconds.
const TOKEN_LIFETIME_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;

/// A configuration problem, reported at cold start (the function refuses to start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable has a value we cannot use.
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
    /// The signing keys (`TOKEN_SIGNING_KEYS`, or the secret) could not be read or parsed
    /// (the message never contains a secret).
    #[error("the signing keys are unusable: {0}")]
    Keys(#[from] KeyRingError),
}

/// Where configuration values come from: the process environment in Lambda,
/// a map in tests and in the local stack.
pub trait Source {
    /// The value of `name`, if set and not empty.
    fn value(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn value(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn value(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.trim().is_empty())
    }
}

/// The value of a variable that must be set.
pub fn required(source: &impl Source, name: &'static str) -> Result<String, ConfigError> {
    source.value(name).ok_or(ConfigError::Missing(name))
}

/// The claims that identify callers, and how they are authorized (`AUTHORIZATION_MODE`:
/// `owner`, the default, or `smart`; `SMART_PATIENT_CLAIM`, default `patient`).
pub fn identity(source: &impl Source) -> Result<IdentityConfig, ConfigError> {
    let mode = source
        .value("AUTHORIZATION_MODE")
        .map_or(Ok(crate::http::AuthorizationMode::Owner), |text| text.parse())
        .map_err(|e| ConfigError::Invalid("AUTHORIZATION_MODE", e))?;
    Ok(IdentityConfig {
        principal_claim: source.value("PRINCIPAL_CLAIM").unwrap_or_else(|| "sub".to_owned()),
        tenant_claim: source.value("TENANT_CLAIM"),
        mode,
        grant_claims: crate::smart::GrantClaims {
            patient: source.value("SMART_PATIENT_CLAIM").unwrap_or_else(|| "patient".to_owned()),
        },
    })
}

/// Configuration of the `subscription-api` function (the Subscription API, `$status`,
/// `$events` and `metadata`).
#[derive(Debug, Clone)]
pub struct SubscriptionApiConfig {
    /// Subscriptions table name.
    pub subscriptions_table: String,
    /// Counters table name (`eventsSinceSubscriptionStart`).
    pub counters_table: String,
    /// Event history table name (`$events`).
    pub events_table: String,
    /// Bindings table name (bindings of ended subscriptions are removed).
    pub bindings_table: String,
    /// The WebSocket URL, stated in the CapabilityStatement.
    pub websocket_url: String,
    /// Caller identity claims.
    pub identity: IdentityConfig,
    /// The SubscriptionTopics deployed with the stack (`infra/topics/`).
    pub topics: crate::topics::TopicRegistry,
    /// The most a notification may carry (`MAX_NOTIFICATION_CONTENT`, default
    /// `full-resource`): Subscriptions asking for more are refused.
    pub max_content: crate::fhir::ContentLevel,
}

impl SubscriptionApiConfig {
    /// Reads the configuration.
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            subscriptions_table: required(source, "SUBSCRIPTIONS_TABLE")?,
            counters_table: required(source, "COUNTERS_TABLE")?,
            events_table: required(source, "EVENTS_TABLE")?,
            bindings_table: required(source, "BINDINGS_TABLE")?,
            websocket_url: websocket_url(source)?,
            identity: identity(source)?,
            topics: deployed_topics(event_fhir_version(source)?)?,
            max_content: max_notification_content(source)?,
        })
    }
}

/// `MAX_NOTIFICATION_CONTENT`: `empty`, `id-only` or `full-resource` (the default).
fn max_notification_content(source: &impl Source) -> Result<crate::fhir::ContentLevel, ConfigError> {
    let Some(text) = source.value("MAX_NOTIFICATION_CONTENT") else {
        return Ok(crate::fhir::ContentLevel::FullResource);
    };
    serde_json::from_value(serde_json::Value::String(text.trim().to_owned())).map_err(|_| {
        ConfigError::Invalid("MAX_NOTIFICATION_CONTENT", "must be empty, id-only or full-resource".to_owned())
    })
}

/// `EVENT_FHIR_VERSION`: the FHIR version of the resources in events that name none
/// (default R5).
pub fn event_fhir_version(source: &impl Source) -> Result<FhirVersion, ConfigError> {
    source
        .value("EVENT_FHIR_VERSION")
        .map_or(Ok(FhirVersion::R5), |text| text.parse().map_err(|e| ConfigError::Invalid("EVENT_FHIR_VERSION", e)))
}

/// The SubscriptionTopics compiled in from `infra/topics/`, loaded for events in `version`.
fn deployed_topics(version: FhirVersion) -> Result<TopicRegistry, ConfigError> {
    Ok(TopicRegistry::deployed(version).map_err(|e| ConfigError::Invalid("infra/topics", e))?.clone())
}

/// What the `fanout` function knows about the events it reads.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// The FHIR version of resources in events that name none (`EVENT_FHIR_VERSION`).
    pub fhir_version: FhirVersion,
    /// The SubscriptionTopics deployed with the stack, loaded for that version.
    pub topics: TopicRegistry,
    /// Where invalid events go (`DEAD_LETTER_QUEUE_URL`), if set.
    pub dead_letter_queue_url: Option<String>,
    /// The events queue, where references to later delivery pages go (`EVENTS_QUEUE_URL`).
    pub events_queue_url: Option<String>,
    /// Bindings per delivery page (`DELIVERY_PAGE_SIZE`); `None`: the fan-out's default.
    pub page_size: Option<usize>,
    /// Account-wide Management API posts a second (`MANAGEMENT_API_RATE`; 0: unpaced).
    pub management_api_rate: f64,
    /// Most fan-out instances at once (`FANOUT_CONCURRENCY`).
    pub concurrency: u32,
}

/// Allowed `DELIVERY_PAGE_SIZE`s.
const PAGE_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;

/// A number variable within `range`, or `default` when unset.
fn number_in<T>(
    source: &impl Source,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match source.value(name) {
        None => Ok(default),
        Some(text) => text.trim().parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            ConfigError::Invalid(name, format!("must be a number from {} to {}", range.start(), range.end()))
        }),
    }
}

impl EventsConfig {
    /// Reads the configuration.
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        let fhir_version = event_fhir_version(source)?;
        Ok(Self {
            fhir_version,
            topics: deployed_topics(fhir_version)?,
            dead_letter_queue_url: source.value("DEAD_LETTER_QUEUE_URL"),
            events_queue_url: source.value("EVENTS_QUEUE_URL").filter(|url| !url.trim().is_empty()),
            page_size: source
                .value("DELIVERY_PAGE_SIZE")
                .map(|_| number_in(source, "DELIVERY_PAGE_SIZE", PAGE_SIZE_RANGE, 0))
                .transpose()?,
            management_api_rate: number_in(source, "MANAGEMENT_API_RATE", 0.0..=1_000_000.0, 0.0)?,
            concurrency: number_in(source, "FANOUT_CONCURRENCY", 1..=1000, 1)?,
        })
    }
}

/// `WEBSOCKET_URL`: where clients open the WebSocket (`ws://` or `wss://`).
fn websocket_url(source: &impl Source) -> Result<String, ConfigError> {
    let url = required(source, "WEBSOCKET_URL")?;
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        return Err(ConfigError::Invalid("WEBSOCKET_URL", "must start with wss:// or ws://".to_owned()));
    }
    Ok(url)
}

/// Default retention of the event history: 7 days.
pub const DEFAULT_EVENT_RETENTION_SECONDS: i64 = 7 * 24 * 60 * 60;
/// Allowed retentions, in seconds (a minute to a year).
const EVENT_RETENTION_RANGE: std::ops::RangeInclusive<i64> = 60..=366 * 24 * 60 * 60;

/// Configuration of the event history the `fanout` function writes.
#[derive(Debug, Clone)]
pub struct EventHistoryConfig {
    /// Event history table name.
    pub events_table: String,
    /// How long records are kept and answered.
    pub retention: TimeDelta,
}

/// `EVENT_RETENTION_SECONDS`, or its default.
fn event_retention(source: &impl Source) -> Result<TimeDelta, ConfigError> {
    let seconds = match source.value("EVENT_RETENTION_SECONDS") {
        None => DEFAULT_EVENT_RETENTION_SECONDS,
        Some(text) => {
            text.trim().parse::<i64>().ok().filter(|s| EVENT_RETENTION_RANGE.contains(s)).ok_or_else(|| {
                ConfigError::Invalid("EVENT_RETENTION_SECONDS", "must be a whole number from 60 to 31622400".to_owned())
            })?
        }
    };
    Ok(TimeDelta::seconds(seconds))
}

impl EventHistoryConfig {
    /// Reads the configuration.
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self { events_table: required(source, "EVENTS_TABLE")?, retention: event_retention(source)? })
    }
}

/// Configuration of the `get-ws-binding-token` function.
#[derive(Debug, Clone)]
pub struct BindingTokenConfig {
    /// Subscriptions table name.
    pub subscriptions_table: String,
    /// Tokens table name.
    pub tokens_table: String,
    /// Bindings table name (a revoked token's bindings are removed).
    pub bindings_table: String,
    /// Returned as the `websocket-url` output parameter.
    pub websocket_url: String,
    /// Signing and verification keys.
    pub keys: KeyRing,
    /// How long issued tokens are valid.
    pub token_lifetime: TimeDelta,
    /// Caller identity claims.
    pub identity: IdentityConfig,
}

impl BindingTokenConfig {
    /// Reads the configuration with the keys given in `TOKEN_SIGNING_KEYS` (the local
    /// stack and tests).
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        Self::with_keys(source, KeyRing::parse(&required(source, "TOKEN_SIGNING_KEYS")?)?)
    }

    /// Reads the configuration as deployed: the keys from `TOKEN_SIGNING_KEYS`, or read
    /// from the secret `TOKEN_SIGNING_KEYS_SECRET` names in `secrets` (see [`signing_keys`]).
    pub async fn load_with_secrets(source: &impl Source, secrets: Arc<dyn SecretStore>) -> Result<Self, ConfigError> {
        Self::with_keys(source, signing_keys(source, secrets).await?)
    }

    fn with_keys(source: &impl Source, keys: KeyRing) -> Result<Self, ConfigError> {
        let websocket_url = websocket_url(source)?;
        let lifetime = match source.value("TOKEN_LIFETIME_SECONDS") {
            None => DEFAULT_TOKEN_LIFETIME_SECONDS,
            Some(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|seconds| TOKEN_LIFETIME_RANGE.contains(seconds))
                .ok_or_else(|| {
                    ConfigError::Invalid("TOKEN_LIFETIME_SECONDS", "must be a whole number from 60 to 86400".to_owned())
                })?,
        };
        Ok(Self {
            subscriptions_table: required(source, "SUBSCRIPTIONS_TABLE")?,
            tokens_table: required(source, "TOKENS_TABLE")?,
            bindings_table: required(source, "BINDINGS_TABLE")?,
            websocket_url,
            keys,
            token_lifetime: TimeDelta::seconds(lifetime),
            identity: identity(source)?,
        })
    }
}

/// The signing keys: `TOKEN_SIGNING_KEYS` as given (the local stack, tests, or a key
/// resolved at deploy time), else read from `secrets` at the id `TOKEN_SIGNING_KEYS_SECRET`
/// names, now (a function that cannot read it refuses to start) and again at runtime
/// ([`KeyRing::from_secret`]): rotation without a deploy.
pub async fn signing_keys(source: &impl Source, secrets: Arc<dyn SecretStore>) -> Result<KeyRing, ConfigError> {
    if let Some(spec) = source.value("TOKEN_SIGNING_KEYS") {
        return Ok(KeyRing::parse(&spec)?);
    }
    let Some(secret_id) = source.value("TOKEN_SIGNING_KEYS_SECRET") else {
        return Err(ConfigError::Missing("TOKEN_SIGNING_KEYS_SECRET (or TOKEN_SIGNING_KEYS)"));
    };
    Ok(KeyRing::from_secret(secrets, &secret_id).await?)
}

/// Configuration shared by the `ws-connect` and `ws-default` functions.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// Subscriptions table name.
    pub subscriptions_table: String,
    /// Tokens table name.
    pub tokens_table: String,
    /// Bindings table name.
    pub bindings_table: String,
    /// Verification keys (the same list the operation signs with).
    pub keys: KeyRing,
    /// Management API endpoint, when it cannot be derived from events (custom domains).
    pub management_endpoint: Option<String>,
    /// Accepted `Sec-WebSocket-Protocol` values.
    pub subprotocols: Vec<String>,
    /// Browser origins `$connect` accepts; empty: no `Origin` check.
    pub allowed_origins: AllowedOrigins,
}

impl WebSocketConfig {
    /// Reads the configuration with the keys given in `TOKEN_SIGNING_KEYS` (the local
    /// stack and tests).
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        Self::with_keys(source, KeyRing::parse(&required(source, "TOKEN_SIGNING_KEYS")?)?)
    }

    /// Reads the configuration as deployed: the keys from `TOKEN_SIGNING_KEYS`, or read
    /// from the secret `TOKEN_SIGNING_KEYS_SECRET` names in `secrets` (see [`signing_keys`]).
    pub async fn load_with_secrets(source: &impl Source, secrets: Arc<dyn SecretStore>) -> Result<Self, ConfigError> {
        Self::with_keys(source, signing_keys(source, secrets).await?)
    }

    fn with_keys(source: &impl Source, keys: KeyRing) -> Result<Self, ConfigError> {
        let management_endpoint = source.value("WEBSOCKET_MANAGEMENT_ENDPOINT");
        if let Some(endpoint) = &management_endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(ConfigError::Invalid("WEBSOCKET_MANAGEMENT_ENDPOINT", "must be an http(s) URL".to_owned()));
        }
        Ok(Self {
            subscriptions_table: required(source, "SUBSCRIPTIONS_TABLE")?,
            tokens_table: required(source, "TOKENS_TABLE")?,
            bindings_table: required(source, "BINDINGS_TABLE")?,
            keys,
            management_endpoint,
            subprotocols: source
                .value("WEBSOCKET_SUBPROTOCOLS")
                .map(|list| list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            allowed_origins: AllowedOrigins::parse(&source.value("WEBSOCKET_ALLOWED_ORIGINS").unwrap_or_default())
                .map_err(|reason| ConfigError::Invalid("WEBSOCKET_ALLOWED_ORIGINS", reason))?,
        })
    }
}

/// Configuration of the `fanout` and `heartbeat` functions.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Subscriptions table name.
    pub subscriptions_table: String,
    /// Bindings table name.
    pub bindings_table: String,
    /// Counters table name.
    pub counters_table: String,
}

impl DeliveryConfig {
    /// Reads the configuration.
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        Ok(Self {
            subscriptions_table: required(source, "SUBSCRIPTIONS_TABLE")?,
            bindings_table: required(source, "BINDINGS_TABLE")?,
            counters_table: required(source, "COUNTERS_TABLE")?,
        })
    }
}

impl DeliveryConfig {
    /// The three tables, through one shared DynamoDB client.
    pub fn dynamodb_stores(
        &self,
        client: &aws_sdk_dynamodb::Client,
    ) -> (DynamoSubscriptionStore, DynamoBindingStore, DynamoCounterStore) {
        (
            DynamoSubscriptionStore::new(client.clone(), &self.subscriptions_table),
            DynamoBindingStore::new(client.clone(), &self.bindings_table),
            DynamoCounterStore::new(client.clone(), &self.counters_table),
        )
    }
}

/// Configuration of the `relay` function; the fan-out reads `UPSTREAM_TABLE` too, for
/// notification Bundles that come on the queue directly.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Upstream table name (the relay's ledger).
    pub upstream_table: String,
    /// URL of the events queue the fan-out reads.
    pub events_queue_url: String,
    /// The secrets upstream servers authenticate with.
    pub secrets: crate::relay::RelaySecrets,
    /// How long the ledger remembers events (the event retention).
    pub retention: TimeDelta,
}

impl RelayConfig {
    /// Reads the configuration with the secrets given in `RELAY_SECRETS` (comma-separated
    /// secrets, or the secret's JSON `{"secrets": "…"}`): the local stack and tests.
    pub fn load(source: &impl Source) -> Result<Self, ConfigError> {
        let secrets = crate::relay::RelaySecrets::parse(&required(source, "RELAY_SECRETS")?)
            .map_err(|e| ConfigError::Invalid("RELAY_SECRETS", e))?;
        Self::with_secrets(source, secrets)
    }

    /// Reads the configuration as deployed: the secrets from `RELAY_SECRETS`, or read from
    /// the secret `RELAY_SECRETS_SECRET` names in `store`, and again at runtime.
    pub async fn load_with_secrets(source: &impl Source, store: Arc<dyn SecretStore>) -> Result<Self, ConfigError> {
        if source.value("RELAY_SECRETS").is_some() {
            return Self::load(source);
        }
        let Some(secret_id) = source.value("RELAY_SECRETS_SECRET") else {
            return Err(ConfigError::Missing("RELAY_SECRETS_SECRET (or RELAY_SECRETS)"));
        };
        let secrets = crate::relay::RelaySecrets::from_secret(store, &secret_id)
            .await
            .map_err(|e| ConfigError::Invalid("RELAY_SECRETS_SECRET", e))?;
        Self::with_secrets(source, secrets)
    }

    fn with_secrets(source: &impl Source, secrets: crate::relay::RelaySecrets) -> Result<Self, ConfigError> {
        Ok(Self {
            upstream_table: required(source, "UPSTREAM_TABLE")?,
            events_queue_url: required(source, "EVENTS_QUEUE_URL")?,
            secrets,
            retention: event_retention(source)?,
        })
    }
}

/// `FHIR_BASE_URL`: the FHIR server's base URL, for absolute references in notifications.
pub fn fhir_base_url(source: &impl Source) -> Result<String, ConfigError> {
    let url = required(source, "FHIR_BASE_URL")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError::Invalid("FHIR_BASE_URL", "must be an http(s) URL".to_owned()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| map.get(name).cloned()
    }

    const FULL: [(&str, &str); 5] = [
        ("SUBSCRIPTIONS_TABLE", "subs"),
        ("TOKENS_TABLE", "tokens"),
        ("BINDINGS_TABLE", "bindings"),
        ("WEBSOCKET_URL", "wss://ws.example.org/live"),
        ("TOKEN_SIGNING_KEYS", "k1:0123456789abcdef0123456789abcdef"),
    ];

    #[test]
    fn loads_with_defaults() {
        let config = BindingTokenConfig::load(&env(&FULL));
        assert!(matches!(&config, Ok(c) if c.token_lifetime == TimeDelta::minutes(30)
            && c.identity.principal_claim == "sub" && c.tokens_table == "tokens"));
    }

    #[test]
    fn reports_missing_and_invalid_values() {
        let mut pairs = FULL.to_vec();
        pairs.retain(|(k, _)| *k != "TOKENS_TABLE");
        assert_eq!(BindingTokenConfig::load(&env(&pairs)).err(), Some(ConfigError::Missing("TOKENS_TABLE")));
        let mut pairs = FULL.to_vec();
        pairs.push(("TOKEN_LIFETIME_SECONDS", "5"));
        assert!(matches!(
            BindingTokenConfig::load(&env(&pairs)).err(),
            Some(ConfigError::Invalid("TOKEN_LIFETIME_SECONDS", _))
        ));
        let mut pairs = FULL.to_vec();
        pairs.push(("WEBSOCKET_URL", "https://nope"));
        assert!(matches!(BindingTokenConfig::load(&env(&pairs)).err(), Some(ConfigError::Invalid("WEBSOCKET_URL", _))));
    }

    #[test]
    fn event_retention_defaults_to_a_week_and_is_checked() {
        let config = EventHistoryConfig::load(&env(&[("EVENTS_TABLE", "events")]));
        assert!(matches!(&config, Ok(c) if c.retention == TimeDelta::days(7) && c.events_table == "events"));
        for bad in ["0", "59", "-5", "a week", "40000000"] {
            let config =
                EventHistoryConfig::load(&env(&[("EVENTS_TABLE", "events"), ("EVENT_RETENTION_SECONDS", bad)]));
            assert!(matches!(config.err(), Some(ConfigError::Invalid("EVENT_RETENTION_SECONDS", _))), "{bad}");
        }
        assert_eq!(EventHistoryConfig::load(&env(&[])).err(), Some(ConfigError::Missing("EVENTS_TABLE")));
    }
}
