//! The `fhir-ws` client: talks to the HTTP API and the WebSocket API like any FHIR
//! client would (locally or against a deployed stack), plus the local SQS stand-in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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
}

/// A token from `$get-ws-binding-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingToken {
    /// The token.
    pub token: String,
    /// When it expires.
    pub expiration: DateTime<Utc>,
    /// Where to connect.
    pub websocket_url: String,
}

/// The HTTP side of a server, as one principal.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    bearer: String,
    http: reqwest::Client,
}

impl Api {
    /// `base` is the FHIR base URL (e.g. `http://127.0.0.1:8080`), `bearer` the token sent
    /// as `Authorization: Bearer …`.
    pub fn new(base: &str, bearer: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), bearer: bearer.to_owned(), http: reqwest::Client::new() }
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
        let mut resource = json!({
            "resourceType": "Subscription",
            "status": "requested",
            "topic": topic,
            "channelType": {"system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type", "code": "websocket"},
            "content": content,
        });
        if let Some(period) = heartbeat_period {
            resource["heartbeatPeriod"] = json!(period);
        }
        let created = self.send(self.http.post(format!("{}/Subscription", self.base)).json(&resource)).await?;
        created["id"].as_str().map(str::to_owned).ok_or_else(|| ClientError::Unexpected(created.to_string()))
    }

    /// Calls `Subscription/{id}/$get-ws-binding-token`.
    pub async fn binding_token(&self, subscription_id: &str) -> Result<BindingToken, ClientError> {
        let url = format!("{}/Subscription/{subscription_id}/$get-ws-binding-token", self.base);
        let parameters = self.send(self.http.post(url)).await?;
        let value = |name: &str, key: &str| {
            parameters["parameter"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == name))
                .and_then(|p| p[key].as_str())
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Unexpected(format!("no {name} in {parameters}")))
        };
        let expiration = value("expiration", "valueDateTime")?;
        Ok(BindingToken {
            token: value("token", "valueString")?,
            expiration: DateTime::parse_from_rfc3339(&expiration)
                .map_err(|_| ClientError::Unexpected(expiration.clone()))?
                .with_timezone(&Utc),
            websocket_url: value("websocket-url", "valueUrl")?,
        })
    }

    /// Sends an event to the local SQS stand-in (`POST /local/events`).
    pub async fn notify(&self, event: &Value) -> Result<Value, ClientError> {
        let response = self.http.post(format!("{}/local/events", self.base)).json(event).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ClientError::Refused { status: status.as_u16(), message: body.to_string() });
        }
        Ok(body)
    }
}

/// Binds to `subscription_id` and hands every frame to `on_frame` until the server
/// closes the connection. Gets a fresh token and binds again when four fifths of the
/// token's lifetime have passed, so the binding never lapses.
pub async fn subscribe(api: &Api, subscription_id: &str, mut on_frame: impl FnMut(&str)) -> Result<(), ClientError> {
    let mut token = api.binding_token(subscription_id).await?;
    let (socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await?;
    let (mut write, mut read) = socket.split();
    write.send(Message::text(format!("bind-with-token {}", token.token))).await?;
    loop {
        let left = (token.expiration - Utc::now()).to_std().unwrap_or_default();
        let refresh_in = (left * 4 / 5).max(Duration::from_secs(1));
        tokio::select! {
            frame = read.next() => match frame {
                Some(Ok(Message::Text(text))) => on_frame(text.as_str()),
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            },
            () = tokio::time::sleep(refresh_in) => {
                token = api.binding_token(subscription_id).await?;
                write.send(Message::text(format!("bind-with-token {}", token.token))).await?;
                tracing::info!(expires = %token.expiration, "token refreshed and bound again");
            }
        }
    }
}

/// One line describing a notification frame, for people watching a terminal.
pub fn describe(frame: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(frame) else { return frame.to_owned() };
    let status = &value["entry"][0]["resource"];
    match value["resourceType"].as_str() {
        Some("Bundle") => {
            let kind = status["type"].as_str().unwrap_or("?");
            let subscription = status["subscription"]["reference"].as_str().unwrap_or("?");
            match status["notificationEvent"][0]["eventNumber"].as_str() {
                Some(number) => {
                    let focus = status["notificationEvent"][0]["focus"]["reference"].as_str().unwrap_or("(no focus)");
                    format!("{kind} #{number} for {subscription}: {focus}")
                }
                None => format!(
                    "{kind} for {subscription} (events so far: {})",
                    status["eventsSinceSubscriptionStart"].as_str().unwrap_or("?")
                ),
            }
        }
        Some("OperationOutcome") => format!("error: {}", value["issue"][0]["diagnostics"].as_str().unwrap_or("?")),
        _ => frame.to_owned(),
    }
}
