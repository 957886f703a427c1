//! The `fhir-ws` command-line client: the HTTP API as any FHIR client calls it (create,
//! `$status`, `$events`, binding tokens, the relay, the local SQS stand-in), and
//! `subscribe`, a thin user of the `fhir-ws-client` crate, which does the WebSocket side
//! (binding, renewal, reconnects, gap replay, exactly-once delivery).

use fhir_ws_client::{Client, Status, SubscriptionRequest, Update};
use fhir_ws_core::fhir::version::FhirVersion;
use futures::StreamExt as _;
use serde_json::{Value, json};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP call failed.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error (its OperationOutcome diagnostics).
    #[error("the server answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// An answer did not have the expected shape.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// TLS for `wss://` could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The trusted roots (`SSL_CERT_FILE`) are unusable.
    #[error("{0}")]
    Roots(#[from] fhir_ws_core::config::ConfigError),
    /// The subscriber gave up (the server refused the token or the Subscription).
    #[error("{0}")]
    Subscriber(#[from] fhir_ws_client::Error),
}

pub use fhir_ws_client::BindingToken;

/// The HTTP side of a server, as one principal speaking one FHIR version.
#[derive(Debug, Clone)]
pub struct Api {
    /// The server as given (the local events endpoint hangs off it).
    server: String,
    /// The FHIR base of the version spoken: the server for R5, `…/R4` or `…/R4B` otherwise.
    base: String,
    version: FhirVersion,
    bearer: String,
    http: reqwest::Client,
}

impl Api {
    /// `server` is the server's base URL (e.g. `http://127.0.0.1:8080`), `bearer` the token
    /// sent as `Authorization: Bearer …`; the client speaks R5 at that base.
    pub fn new(server: &str, bearer: &str) -> Self {
        let server = server.trim_end_matches('/').to_owned();
        Self {
            base: server.clone(),
            server,
            version: FhirVersion::R5,
            bearer: bearer.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The same client speaking `version`: R4 and R4B at the server's `/R4` and `/R4B`
    /// bases (Backport IG shapes), R5 at the server's own base.
    pub fn in_version(mut self, version: FhirVersion) -> Self {
        self.version = version;
        self.base = match version {
            FhirVersion::R5 => self.server.clone(),
            other => format!("{}/{}", self.server, other.path_segment()),
        };
        self
    }

    /// The FHIR version spoken.
    pub fn version(&self) -> FhirVersion {
        self.version
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request
            .bearer_auth(&self.bearer)
            .header("accept", "application/fhir+json")
            .header("content-type", "application/fhir+json")
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["issue"][0]["diagnostics"].as_str().unwrap_or("no details").to_owned();
            return Err(ClientError::Refused { status: status.as_u16(), message });
        }
        Ok(body)
    }

    /// Creates a websocket Subscription to `topic`; returns its id.
    pub async fn create_subscription(
        &self,
        topic: &str,
        content: &str,
        heartbeat_period: Option<u32>,
    ) -> Result<String, ClientError> {
        self.create_filtered_subscription(topic, content, heartbeat_period, &[]).await
    }

    /// Creates a websocket Subscription to `topic` with filters written as the Backport
    /// IG's filter criteria (`Encounter?patient=Patient/123`; in R5 they become `filterBy`
    /// entries); returns its id.
    pub async fn create_filtered_subscription(
        &self,
        topic: &str,
        content: &str,
        heartbeat_period: Option<u32>,
        filters: &[String],
    ) -> Result<String, ClientError> {
        let request = SubscriptionRequest {
            filters: filters.to_vec(),
            content: Some(content.to_owned()),
            heartbeat_period,
            reason: Some("fhir-ws subscribe".to_owned()),
            ..SubscriptionRequest::new(topic)
        };
        let version = match self.version {
            FhirVersion::R4 => fhir_ws_client::FhirVersion::R4,
            FhirVersion::R4B => fhir_ws_client::FhirVersion::R4B,
            FhirVersion::R5 => fhir_ws_client::FhirVersion::R5,
        };
        let resource = request.resource(version)?;
        let created = self.send(self.http.post(format!("{}/Subscription", self.base)).json(&resource)).await?;
        created["id"].as_str().map(str::to_owned).ok_or_else(|| ClientError::Unexpected(created.to_string()))
    }

    /// Calls `Subscription/{id}/$get-ws-binding-token`.
    pub async fn binding_token(&self, subscription_id: &str) -> Result<BindingToken, ClientError> {
        let url = format!("{}/Subscription/{subscription_id}/$get-ws-binding-token", self.base);
        read_binding_token(&self.send(self.http.post(url)).await?)
    }

    /// Calls `Subscription/$get-ws-binding-token` (type level) for several of the
    /// caller's subscriptions: one token, and one connection, for all of them.
    pub async fn binding_token_for(&self, subscription_ids: &[&str]) -> Result<BindingToken, ClientError> {
        let ids: Vec<Value> = subscription_ids.iter().map(|id| json!({"name": "id", "valueId": id})).collect();
        let parameters = json!({"resourceType": "Parameters", "parameter": ids});
        let url = format!("{}/Subscription/$get-ws-binding-token", self.base);
        read_binding_token(&self.send(self.http.post(url).json(&parameters)).await?)
    }

    /// Posts a notification Bundle to the relay endpoint (`POST /relay[?topic=…]`), as an
    /// upstream FHIR server would; the bearer token is the relay secret. Returns the
    /// relay's `OperationOutcome`.
    pub async fn relay(&self, bundle: &Value, topic: Option<&str>) -> Result<Value, ClientError> {
        let mut url = format!("{}/relay", self.server);
        if let Some(topic) = topic {
            let encoded = percent_encoding::utf8_percent_encode(topic, percent_encoding::NON_ALPHANUMERIC);
            url.push_str(&format!("?topic={encoded}"));
        }
        self.send(self.http.post(url).json(bundle)).await
    }

    /// Sends an event to the local SQS stand-in (`POST /local/events`).
    pub async fn notify(&self, event: &Value) -> Result<Value, ClientError> {
        let response = self.http.post(format!("{}/local/events", self.server)).json(event).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ClientError::Refused { status: status.as_u16(), message: body.to_string() });
        }
        Ok(body)
    }
}

/// Reads the operation's output Parameters, as the client crate does.
fn read_binding_token(parameters: &Value) -> Result<BindingToken, ClientError> {
    BindingToken::from_parameters(parameters).map_err(|e| ClientError::Unexpected(e.to_string()))
}

impl Api {
    /// Calls `Subscription/{id}/$events` for `since..=until`, following `next` links;
    /// returns each answer Bundle in order.
    pub async fn events(&self, subscription_id: &str, since: u64, until: u64) -> Result<Vec<Value>, ClientError> {
        let mut url = Some(format!(
            "{}/Subscription/{subscription_id}/$events?eventsSinceNumber={since}&eventsUntilNumber={until}",
            self.base
        ));
        let mut pages = Vec::new();
        while let Some(next) = url.take() {
            let page = self.send(self.http.get(next)).await?;
            url = page["link"]
                .as_array()
                .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
                .and_then(|l| l["url"].as_str())
                .map(str::to_owned);
            pages.push(page);
        }
        Ok(pages)
    }

    /// Calls `Subscription/$status` (all of the caller's subscriptions) or
    /// `Subscription/{id}/$status`.
    pub async fn status(&self, subscription_id: Option<&str>) -> Result<Value, ClientError> {
        let url = match subscription_id {
            Some(id) => format!("{}/Subscription/{id}/$status", self.base),
            None => format!("{}/Subscription/$status", self.base),
        };
        self.send(self.http.get(url)).await
    }
}

/// Follows `subscription_id` with the `fhir-ws-client` crate (over `wss://` with the
/// functions' trusted roots) and hands each update to `on_update` until the server
/// refuses the token or the subscription. With `seen_up_to`, events after that number
/// are replayed first (a client resuming where an earlier run stopped).
pub async fn subscribe(
    api: &Api,
    subscription_id: &str,
    seen_up_to: Option<u64>,
    mut on_update: impl FnMut(&Result<Update, fhir_ws_client::Error>),
) -> Result<(), ClientError> {
    let roots = fhir_ws_core::aws::trusted_roots(&fhir_ws_core::config::ProcessEnv)?;
    let mut builder = Client::builder(&api.base)
        .bearer(&api.bearer)
        .subscriptions([subscription_id])
        .websocket_connector(crate::tls::websocket_connector(&roots)?)
        .http_client(api.http.clone());
    if let Some(seen) = seen_up_to {
        builder = builder.since(subscription_id, seen);
    }
    let mut updates = builder.subscribe()?;
    while let Some(update) = updates.next().await {
        on_update(&update);
        if let Err(error) = update
            && error.is_fatal()
        {
            return Err(error.into());
        }
    }
    Ok(())
}

/// Lines describing an update, for people watching a terminal: one per event (marked
/// `(replayed)` when it came from `$events`), one per handshake or heartbeat, a notice
/// when the connection is lost, a warning for events the server no longer holds.
/// Renewals, bindings and reconnect delays print nothing.
pub fn describe_update(update: &Result<Update, fhir_ws_client::Error>) -> Vec<String> {
    match update {
        Ok(Update::Notification(n)) => vec![format!(
            "{} #{} for Subscription/{}: {}{}",
            "event-notification",
            n.event_number,
            n.subscription,
            n.focus.as_deref().unwrap_or("(no focus)"),
            if n.replayed { " (replayed)" } else { "" }
        )],
        Ok(Update::Status(status)) => vec![describe_status(status)],
        Ok(Update::Disconnected { reason }) => vec![format!("connection lost ({reason}); reconnecting")],
        Ok(_) => Vec::new(),
        Err(error) => vec![format!("warning: {error}")],
    }
}

fn describe_status(status: &Status) -> String {
    format!(
        "{} for Subscription/{} (events so far: {})",
        status.kind,
        status.subscription,
        status.events_since_subscription_start.map_or("?".to_owned(), |n| n.to_string())
    )
}
