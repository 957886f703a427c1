//! `fhir-ws serve`: API Gateway (HTTP API, WebSocket API, Management API), SQS and the
//! heartbeat schedule, stood in for by one HTTP server on 127.0.0.1, in front of the same
//! core handlers the Lambdas run.

mod connections;
mod console;
mod cors;
mod events;
mod faults;
mod http_api;
mod management;
mod websocket;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use fhir_ws_core::config::{
    BindingTokenConfig, EventHistoryConfig, EventsConfig, RelayConfig, SubscriptionApiConfig, WebSocketConfig,
};
use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::heartbeat::Heartbeat;
use fhir_ws_core::http::AuthorizationMode;
use fhir_ws_core::http::cors::AllowedOrigins;
use fhir_ws_core::ops::SubscriptionService;
use fhir_ws_core::ops::binding_token::BindingTokenOperation;
use fhir_ws_core::relay::{Relay, RelaySecrets};
use fhir_ws_core::revocation::{Revocation, Revoker};
use fhir_ws_core::store::dynamodb::{
    DynamoBindingStore, DynamoCounterStore, DynamoEventStore, DynamoSubscriptionStore, DynamoTokenStore,
    DynamoUpstreamStore,
};
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore, SubscriptionStore, TokenStore, UpstreamStore};
use fhir_ws_core::topics::TopicRegistry;
use fhir_ws_core::ws::{Binder, ConnectHandler, MessageHandler};
use fhir_ws_fhirpath::FhirPath;
use tokio::net::TcpListener;

pub use connections::Connections;
pub use cors::CorsPolicy;

/// Stage name of the local WebSocket API; the Management API lives under `/local`.
pub const STAGE: &str = "local";
/// Largest HTTP request body accepted (API Gateway HTTP APIs take 10 MB).
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// The SMART scopes of the default local users alice and bob (`--authorization smart`
/// reads them; `owner` mode ignores them): every resource, every interaction.
pub const LOCAL_USER_SCOPES: &str = "openid fhirUser user/*.cruds";
/// The default patient-level user: its token, principal, launch patient and scopes.
pub const LOCAL_PATIENT_USER: (&str, &str, &str, &str) =
    ("patient-token", "patient", "example", "openid fhirUser launch/patient patient/*.rs patient/Subscription.cruds");

/// One local user: what the authorizer stand-in puts in the request's claims.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LocalUser {
    /// The principal (`sub`).
    pub sub: String,
    /// The `scope` claim (space-separated).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The launch patient (`patient` claim), if any.
    #[serde(default)]
    pub patient: Option<String>,
    /// The `fhirUser` claim, if any.
    #[serde(default, rename = "fhirUser")]
    pub fhir_user: Option<String>,
}

fn default_scope() -> String {
    LOCAL_USER_SCOPES.to_owned()
}

impl LocalUser {
    /// A user with the default scopes.
    pub fn new(principal: &str) -> Self {
        Self { sub: principal.to_owned(), scope: default_scope(), patient: None, fhir_user: None }
    }

    /// The JWT claims a real authorizer would hand the functions for this user's token.
    pub fn claims(&self) -> serde_json::Value {
        let mut claims = serde_json::json!({"sub": self.sub, "iss": "fhir-ws-local", "scope": self.scope});
        if let Some(patient) = &self.patient {
            claims["patient"] = serde_json::json!(patient);
        }
        if let Some(fhir_user) = &self.fhir_user {
            claims["fhirUser"] = serde_json::json!(fhir_user);
        }
        claims
    }
}

/// The local stand-in for the JWT authorizer: static bearer tokens mapped to users.
/// Local only; the template always uses the real JWT authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Users(HashMap<String, LocalUser>);

impl Default for Users {
    /// `alice-token` → `alice` and `bob-token` → `bob` (each with `user/*.cruds`), and
    /// `patient-token` → `patient`, a patient-level app for Patient `example`.
    fn default() -> Self {
        let (token, principal, patient, scope) = LOCAL_PATIENT_USER;
        let mut users = HashMap::from([
            ("alice-token".to_owned(), LocalUser::new("alice")),
            ("bob-token".to_owned(), LocalUser::new("bob")),
        ]);
        users.insert(
            token.to_owned(),
            LocalUser {
                sub: principal.to_owned(),
                scope: scope.to_owned(),
                patient: Some(patient.to_owned()),
                fhir_user: Some(format!("Patient/{patient}")),
            },
        );
        Self(users)
    }
}

impl Users {
    /// Adds `token` for `principal`, with the default scopes.
    pub fn add(&mut self, token: &str, principal: &str) {
        self.0.insert(token.to_owned(), LocalUser::new(principal));
    }

    /// Adds every user of a users file: a JSON object from bearer token to
    /// `{"sub", "scope", "patient", "fhirUser"}` (`scope` defaults to `user/*.cruds`).
    pub fn add_file(&mut self, text: &str) -> Result<(), String> {
        let users: HashMap<String, LocalUser> =
            serde_json::from_str(text).map_err(|e| format!("the users file does not read: {e}"))?;
        self.0.extend(users);
        Ok(())
    }

    /// Every (principal, token, user), ordered by principal, then token.
    pub fn by_principal(&self) -> Vec<(&str, &str, &LocalUser)> {
        let mut users: Vec<(&str, &str, &LocalUser)> =
            self.0.iter().map(|(t, u)| (u.sub.as_str(), t.as_str(), u)).collect();
        users.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        users
    }

    /// The user of an `Authorization: Bearer <token>` value.
    pub fn user(&self, authorization: Option<&str>) -> Option<&LocalUser> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.0.get(token)
    }
}

/// How to run the local stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// DynamoDB-compatible endpoint; `None` keeps everything in memory.
    pub dynamodb_endpoint: Option<String>,
    /// Bearer tokens accepted by the authorizer stand-in.
    pub users: Users,
    /// `keyid:secret[,…]`; `None` makes a random key for this run.
    pub signing_keys: Option<String>,
    /// Token lifetime, in seconds.
    pub token_lifetime_seconds: i64,
    /// Pause between heartbeat runs.
    pub heartbeat_every: Duration,
    /// Base URL of the FHIR server events refer to.
    pub fhir_base_url: String,
    /// How long events stay answerable by `$events`, in seconds.
    pub event_retention_seconds: i64,
    /// The `websocket-url` clients are given, when they reach the WebSocket API through
    /// something else (a proxy, a tunnel): the template's `PublicWebSocketUrl`.
    /// `None`: `ws://127.0.0.1:<port>/ws`.
    pub public_websocket_url: Option<String>,
    /// Secrets upstream FHIR servers send to `POST /relay` (comma-separated);
    /// `None`: [`LOCAL_RELAY_SECRET`].
    pub relay_secrets: Option<String>,
    /// SubscriptionTopics to serve and evaluate; `None`: those compiled in from
    /// `infra/topics/`, as the Lambdas have. Load them for [`Options::event_fhir_version`].
    pub topics: Option<TopicRegistry>,
    /// The FHIR version of the resources in events that name none (the template's
    /// `EventFhirVersion`).
    pub event_fhir_version: FhirVersion,
    /// Most WebSockets open at once; further upgrades are refused with 503 (each costs a
    /// file descriptor and about 20 KiB).
    pub max_connections: usize,
    /// Browser origins whose scripts may call the HTTP routes (CORS).
    pub cors: CorsPolicy,
    /// Browser origins `$connect` accepts (`WEBSOCKET_ALLOWED_ORIGINS`); empty: no check.
    pub websocket_origins: String,
    /// `owner` or `smart` (the template's `AuthorizationMode`).
    pub authorization: AuthorizationMode,
    /// Serve `POST /local/faults`, which drops, freezes or repeats frames of a
    /// subscription's connections (for testing clients); off by default.
    pub fault_injection: bool,
}

/// Default of [`Options::max_connections`]: within a common 20,000-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 15_000;

/// CORS origins of a local stack started without `--cors-origin`: pages served from any
/// port of this machine (a front-end dev server), nothing else.
pub const DEFAULT_CORS_ORIGINS: &str = "loopback";

/// The relay secret of a local stack started without one (it listens on 127.0.0.1 only).
pub const LOCAL_RELAY_SECRET: &str = "local-relay-secret-0123456789abcdef";

impl Default for Options {
    fn default() -> Self {
        Self {
            dynamodb_endpoint: None,
            users: Users::default(),
            signing_keys: None,
            token_lifetime_seconds: 1800,
            heartbeat_every: Duration::from_secs(60),
            fhir_base_url: "http://localhost:8080/fhir".to_owned(),
            event_retention_seconds: fhir_ws_core::config::DEFAULT_EVENT_RETENTION_SECONDS,
            public_websocket_url: None,
            relay_secrets: None,
            topics: None,
            event_fhir_version: FhirVersion::R5,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            cors: CorsPolicy {
                origins: AllowedOrigins::parse(DEFAULT_CORS_ORIGINS).unwrap_or_default(),
                max_age_seconds: fhir_ws_core::http::cors::DEFAULT_MAX_AGE_SECONDS,
            },
            websocket_origins: String::new(),
            authorization: AuthorizationMode::Owner,
            fault_injection: false,
        }
    }
}

/// Why the local stack stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Configuration the core refused.
    #[error("configuration: {0}")]
    Config(#[from] fhir_ws_core::config::ConfigError),
    /// The DynamoDB tables could not be set up.
    #[error(transparent)]
    Tables(#[from] crate::tables::TablesError),
    /// The listener failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The store types of one back end.
pub(crate) trait Backend: Send + Sync + 'static {
    type Subscriptions: SubscriptionStore + Clone + 'static;
    type Tokens: TokenStore + Clone + 'static;
    type Bindings: BindingStore + Clone + 'static;
    type Counters: CounterStore + Clone + 'static;
    type Events: EventStore + Clone + 'static;
    type Upstream: UpstreamStore + Clone + 'static;

    /// Deletes the items whose TTL attribute has passed, for a store that has no TTL
    /// process of its own (DynamoDB deletes them itself); how many went.
    fn forget_expired(_gateway: &Gateway<Self>, _now: i64) -> usize
    where
        Self: Sized,
    {
        0
    }
}

/// One back end's stores, one per table.
type StoresOf<K> = (
    <K as Backend>::Subscriptions,
    <K as Backend>::Tokens,
    <K as Backend>::Bindings,
    <K as Backend>::Counters,
    <K as Backend>::Events,
    <K as Backend>::Upstream,
);

/// The embedded store.
pub(crate) struct Memory;
impl Backend for Memory {
    type Subscriptions = Arc<MemoryStore>;
    type Tokens = Arc<MemoryStore>;
    type Bindings = Arc<MemoryStore>;
    type Counters = Arc<MemoryStore>;
    type Events = Arc<MemoryStore>;
    type Upstream = Arc<MemoryStore>;

    fn forget_expired(gateway: &Gateway<Self>, now: i64) -> usize {
        // One MemoryStore holds every table; the bindings handle is as good as any.
        gateway.bindings.forget_expired(now)
    }
}

/// A DynamoDB-compatible server.
pub(crate) struct Dynamo;
impl Backend for Dynamo {
    type Subscriptions = DynamoSubscriptionStore;
    type Tokens = DynamoTokenStore;
    type Bindings = DynamoBindingStore;
    type Counters = DynamoCounterStore;
    type Events = DynamoEventStore;
    type Upstream = DynamoUpstreamStore;
}

/// The fan-out over one back end's stores, with the relay's ledger.
type FanOutOf<K> = FanOut<
    <K as Backend>::Subscriptions,
    <K as Backend>::Bindings,
    <K as Backend>::Counters,
    <K as Backend>::Events,
    Connections,
    <K as Backend>::Upstream,
>;

/// Every handler, wired as the template wires the Lambdas.
pub(crate) struct Gateway<K: Backend> {
    pub(crate) api: SubscriptionService<K::Subscriptions, K::Counters, K::Events>,
    pub(crate) operation: BindingTokenOperation<K::Subscriptions, K::Tokens>,
    pub(crate) connect: ConnectHandler<K::Subscriptions, K::Tokens, K::Bindings>,
    pub(crate) message: MessageHandler<K::Subscriptions, K::Tokens, K::Bindings, K::Counters, Connections>,
    pub(crate) bindings: K::Bindings,
    pub(crate) fanout: FanOutOf<K>,
    /// The relay function's ledger and secrets; its queue is the fan-out above.
    pub(crate) relay: Relay<K::Upstream>,
    pub(crate) relay_secrets: RelaySecrets,
    pub(crate) heartbeat: Heartbeat<K::Subscriptions, K::Bindings, K::Counters, Connections>,
    /// Open sockets; also the functions' [`fhir_ws_core::push::Pusher`] (in process).
    pub(crate) connections: Connections,
    /// One permit per open (or opening) WebSocket: past [`Options::max_connections`],
    /// upgrades are refused with 503.
    pub(crate) capacity: Arc<tokio::sync::Semaphore>,
    pub(crate) users: Users,
    /// `127.0.0.1:<port>`, the Host of every synthesized event.
    pub(crate) host: String,
    /// The web console's Content-Security-Policy (it names the WebSocket API).
    pub(crate) console_policy: String,
}

/// Runs the local stack on `listener` until `shutdown` completes, then closes every
/// WebSocket and returns.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let address = listener.local_addr()?;
    let host = format!("127.0.0.1:{}", address.port());
    let keys = options
        .signing_keys
        .clone()
        .unwrap_or_else(|| format!("local:{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()));
    // The same configuration loaders as the Lambdas, fed what the template would set.
    let environment: HashMap<&str, String> = HashMap::from([
        ("SUBSCRIPTIONS_TABLE", "SubscriptionsTable".to_owned()),
        ("TOKENS_TABLE", "TokensTable".to_owned()),
        ("BINDINGS_TABLE", "BindingsTable".to_owned()),
        ("COUNTERS_TABLE", "CountersTable".to_owned()),
        ("EVENTS_TABLE", "EventsTable".to_owned()),
        ("EVENT_RETENTION_SECONDS", options.event_retention_seconds.to_string()),
        ("WEBSOCKET_URL", options.public_websocket_url.clone().unwrap_or_else(|| format!("ws://{host}/ws"))),
        ("WEBSOCKET_MANAGEMENT_ENDPOINT", format!("http://{host}/{STAGE}")),
        ("TOKEN_SIGNING_KEYS", keys),
        ("TOKEN_LIFETIME_SECONDS", options.token_lifetime_seconds.to_string()),
        ("UPSTREAM_TABLE", "UpstreamTable".to_owned()),
        ("EVENTS_QUEUE_URL", format!("http://{host}/{STAGE}/events")),
        ("RELAY_SECRETS", options.relay_secrets.clone().unwrap_or_else(|| LOCAL_RELAY_SECRET.to_owned())),
        ("WEBSOCKET_ALLOWED_ORIGINS", options.websocket_origins.clone()),
        ("EVENT_FHIR_VERSION", options.event_fhir_version.path_segment().to_owned()),
        (
            "AUTHORIZATION_MODE",
            match options.authorization {
                AuthorizationMode::Owner => "owner",
                AuthorizationMode::Smart => "smart",
            }
            .to_owned(),
        ),
    ]);
    let source = |name: &str| environment.get(name).cloned();
    let mut configs = Configs {
        api: SubscriptionApiConfig::load(&source)?,
        operation: BindingTokenConfig::load(&source)?,
        websocket: WebSocketConfig::load(&source)?,
        history: EventHistoryConfig::load(&source)?,
        relay: RelayConfig::load(&source)?,
        events: EventsConfig::load(&source)?,
    };
    if let Some(topics) = &options.topics {
        configs.api.topics = topics.clone();
    }
    let aws = sdk_config(options.dynamodb_endpoint.as_deref()).await?;
    if options.dynamodb_endpoint.is_some() {
        let client = aws_sdk_dynamodb::Client::new(&aws);
        for table in crate::tables::ensure_tables(&client).await? {
            tracing::info!(table, "created table");
        }
        let stores = (
            DynamoSubscriptionStore::new(client.clone(), "SubscriptionsTable"),
            DynamoTokenStore::new(client.clone(), "TokensTable"),
            DynamoBindingStore::new(client.clone(), "BindingsTable"),
            DynamoCounterStore::new(client.clone(), "CountersTable"),
            DynamoEventStore::new(client.clone(), "EventsTable"),
            DynamoUpstreamStore::new(client, "UpstreamTable"),
        );
        let gateway = build::<Dynamo>(stores, &configs, &options, host);
        run(listener, gateway, &options, shutdown).await
    } else {
        let store = Arc::new(MemoryStore::new());
        let stores = (store.clone(), store.clone(), store.clone(), store.clone(), store.clone(), store);
        let gateway = build::<Memory>(stores, &configs, &options, host);
        run(listener, gateway, &options, shutdown).await
    }
}

struct Configs {
    api: SubscriptionApiConfig,
    operation: BindingTokenConfig,
    websocket: WebSocketConfig,
    history: EventHistoryConfig,
    relay: RelayConfig,
    events: EventsConfig,
}

/// SDK configuration: local credentials and region unless the environment has them,
/// and the DynamoDB endpoint when one is given.
async fn sdk_config(dynamodb_endpoint: Option<&str>) -> Result<aws_config::SdkConfig, ServeError> {
    let mut loader = fhir_ws_core::aws::sdk_config_loader(&fhir_ws_core::config::ProcessEnv)?;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "fhir-ws-local",
        ));
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        loader = loader.region(aws_config::Region::new("us-east-1"));
    }
    let config = loader.load().await;
    match dynamodb_endpoint {
        // Only DynamoDB goes to the given endpoint; the Management API client keeps its own.
        Some(endpoint) => Ok(config.into_builder().endpoint_url(endpoint).build()),
        None => Ok(config),
    }
}

fn build<K: Backend>(
    (subscriptions, tokens, bindings, counters, events, upstream): StoresOf<K>,
    configs: &Configs,
    options: &Options,
    host: String,
) -> Arc<Gateway<K>> {
    let websocket = &configs.websocket;
    let binder = || Binder::new(subscriptions.clone(), tokens.clone(), bindings.clone(), websocket.keys.clone());
    let relay = Relay::new(upstream, configs.relay.retention);
    let connections = if options.fault_injection { Connections::keeping_last_frames() } else { Connections::default() };
    let pusher = || connections.clone();
    let revoker: Arc<dyn Revocation> = Arc::new(Revoker::new(bindings.clone(), pusher()));
    Arc::new(Gateway {
        api: SubscriptionService::new(
            subscriptions.clone(),
            counters.clone(),
            events.clone(),
            revoker.clone(),
            &configs.api,
        ),
        operation: BindingTokenOperation::new(subscriptions.clone(), tokens.clone(), revoker, &configs.operation),
        connect: ConnectHandler::new(binder(), websocket.management_endpoint.clone(), websocket.subprotocols.clone())
            .with_allowed_origins(websocket.allowed_origins.clone()),
        message: MessageHandler::new(binder(), counters.clone(), pusher(), websocket.management_endpoint.clone()),
        fanout: FanOut::new(
            subscriptions.clone(),
            bindings.clone(),
            counters.clone(),
            EventHistory { store: events, retention: configs.history.retention },
            pusher(),
            &options.fhir_base_url,
        )
        .with_relay(relay.clone())
        .with_event_version(configs.events.fhir_version)
        .with_topics(configs.api.topics.clone(), Some(FhirPath::shared())),
        relay,
        relay_secrets: configs.relay.secrets.clone(),
        heartbeat: Heartbeat::new(subscriptions, bindings.clone(), counters, pusher()),
        bindings,
        connections,
        capacity: Arc::new(tokio::sync::Semaphore::new(options.max_connections)),
        users: options.users.clone(),
        host,
        console_policy: console::content_security_policy(&configs.operation.websocket_url),
    })
}

async fn run<K: Backend>(
    listener: TcpListener,
    gateway: Arc<Gateway<K>>,
    options: &Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let heartbeat_every = options.heartbeat_every;
    let mut router = Router::new()
        .route("/", get(console::index::<K>))
        .route("/console/users", get(console::users::<K>))
        .route("/console/{file}", get(console::asset::<K>))
        .route("/ws", get(websocket::upgrade::<K>))
        .route(
            &format!("/{STAGE}/@connections/{{id}}"),
            post(management::post::<K>).get(management::get::<K>).delete(management::delete::<K>),
        )
        .route(&format!("/{STAGE}/events"), post(events::publish::<K>));
    if options.fault_injection {
        router = router.route(&format!("/{STAGE}/faults"), post(faults::inject::<K>));
    }
    let router = router
        .fallback(http_api::handle::<K>)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn_with_state(Arc::new(options.cors.clone()), cors::layer))
        .with_state(gateway.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(events::heartbeat_schedule(gateway.clone(), heartbeat_every, stopped.clone()));
    let connections = gateway.connections.clone();
    let graceful = async move {
        shutdown.await;
        let _ = stop.send(true);
        // Open WebSockets would keep the server alive: close them, as a redeploy would.
        connections.close_all();
    };
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(graceful)
        .await?;
    heartbeat.abort();
    Ok(())
}
