//! The `fhir-ws` client: talks to the HTTP API and the WebSocket API like any FHIR
//! client would (locally or against a deployed stack), plus the local SQS stand-in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fhir_ws_core::fhir::version::FhirVersion;
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
    /// TLS for `wss://` could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The trusted roots (`SSL_CERT_FILE`) are unusable.
    #[error("{0}")]
    Roots(#[from] fhir_ws_core::config::ConfigError),
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
        let mut resource = match self.version {
            FhirVersion::R5 => {
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
                resource
            }
            FhirVersion::R4 | FhirVersion::R4B => {
                let ig = fhir_ws_core::fhir::backport::IG_STRUCTURE_DEFINITIONS;
                let mut resource = json!({
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "fhir-ws subscribe",
                    "criteria": topic,
                    "channel": {
                        "type": "websocket",
                        "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": format!("{ig}backport-payload-content"), "valueCode": content}]},
                    },
                });
                if let Some(period) = heartbeat_period {
                    resource["channel"]["extension"] =
                        json!([{"url": format!("{ig}backport-heartbeat-period"), "valueUnsignedInt": period}]);
                }
                resource
            }
        };
        if !filters.is_empty() {
            let ig = fhir_ws_core::fhir::backport::IG_STRUCTURE_DEFINITIONS;
            if self.version == FhirVersion::R5 {
                let mut filter_by = Vec::new();
                for criteria in filters {
                    filter_by.extend(
                        fhir_ws_core::fhir::backport::subscription::parse_filter_criteria(criteria)
                            .map_err(ClientError::Unexpected)?,
                    );
                }
                resource["filterBy"] = serde_json::to_value(filter_by).unwrap_or_default();
            } else {
                let extensions: Vec<Value> = filters
                    .iter()
                    .map(|c| json!({"url": format!("{ig}backport-filter-criteria"), "valueString": c}))
                    .collect();
                resource["_criteria"] = json!({ "extension": extensions });
            }
        }
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

/// Reads the operation's output Parameters (`token`, `expiration`, `websocket-url`).
fn read_binding_token(parameters: &Value) -> Result<BindingToken, ClientError> {
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

/// What [`subscribe`] hands its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A frame from the socket, as the server sent it (text).
    Frame(String),
    /// Events that were missed, fetched with `$events` (its `query-event` Bundle).
    Replayed(Value),
    /// The connection was lost; the client is reconnecting.
    Reconnecting(String),
}

/// Follows one subscription's event numbers to notice missed events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTracker {
    /// The highest event number shown (or accounted for) so far.
    last: Option<u64>,
    /// Numbers at or below `last` that a fill did not get. An event is numbered a moment
    /// before it is recorded, so a handshake can announce a number `$events` does not
    /// have yet; its live notification is then still shown when it comes.
    unresolved: std::collections::BTreeSet<u64>,
}

/// Gaps wider than this are not remembered as unresolved: they are events past
/// retention, not a race with the recording of one.
const MAX_UNRESOLVED_GAP: u64 = 1000;

/// What to do with an event notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStep {
    /// Show it.
    Show,
    /// Already shown (a redelivery): drop it.
    Skip,
    /// Fetch `since..=until` with `$events` first, then show it.
    FillThenShow {
        /// First missed number.
        since: u64,
        /// Last missed number.
        until: u64,
    },
}

impl EventTracker {
    /// A tracker that has seen events up to `last` already (`None`: nothing yet, so the
    /// first handshake sets the start).
    pub fn after(last: Option<u64>) -> Self {
        Self { last, unresolved: std::collections::BTreeSet::new() }
    }

    /// A handshake or heartbeat reported `count` events so far: the range missed since the
    /// last one shown, if any. The first status only sets the starting point.
    pub fn on_status(&mut self, count: u64) -> Option<(u64, u64)> {
        match self.last {
            None => {
                self.last = Some(count);
                None
            }
            Some(last) if count > last => Some((last + 1, count)),
            Some(_) => None,
        }
    }

    /// An event numbered `number` arrived.
    pub fn on_event(&mut self, number: u64) -> EventStep {
        match self.last {
            Some(_) if self.unresolved.remove(&number) => EventStep::Show,
            Some(last) if number <= last => EventStep::Skip,
            Some(last) if number > last + 1 => EventStep::FillThenShow { since: last + 1, until: number - 1 },
            _ => EventStep::Show,
        }
    }

    /// Everything up to `number` has been shown (or reported missing).
    pub fn shown(&mut self, number: u64) {
        self.last = Some(self.last.map_or(number, |last| last.max(number)));
    }

    /// A fill of `since..=until` got the events numbered `got`: the range counts as shown,
    /// and the numbers it lacked stay showable (for a small gap).
    pub fn filled(&mut self, since: u64, until: u64, got: &[u64]) {
        if until.saturating_sub(since) < MAX_UNRESOLVED_GAP {
            self.unresolved.extend((since..=until).filter(|n| !got.contains(n)));
        }
        self.shown(until);
    }
}

/// One event of a status resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusEvent {
    /// `eventNumber` (`event-number` in R4).
    pub number: Option<u64>,
    /// The focus reference, if sent.
    pub focus: Option<String>,
}

/// What a client reads from a status resource, whatever its version: an R5 or R4B
/// `SubscriptionStatus`, or the R4 `Parameters` of the Backport IG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusView {
    /// Notification type (`handshake`, `event-notification`, …).
    pub kind: String,
    /// The subscription reference.
    pub subscription: String,
    /// The subscription's status.
    pub status: String,
    /// The topic, if sent.
    pub topic: Option<String>,
    /// `eventsSinceSubscriptionStart`.
    pub count: Option<u64>,
    /// The events, in order.
    pub events: Vec<StatusEvent>,
}

impl StatusView {
    /// Reads a status resource; `None` when it is neither shape.
    pub fn read(resource: &Value) -> Option<Self> {
        let number = |v: &Value| v.as_str().and_then(|t| t.parse::<u64>().ok());
        let text = |v: &Value| v.as_str().map(str::to_owned);
        match resource["resourceType"].as_str()? {
            "SubscriptionStatus" => Some(Self {
                kind: text(&resource["type"]).unwrap_or_default(),
                subscription: text(&resource["subscription"]["reference"]).unwrap_or_default(),
                status: text(&resource["status"]).unwrap_or_default(),
                topic: text(&resource["topic"]),
                count: number(&resource["eventsSinceSubscriptionStart"]),
                events: resource["notificationEvent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| StatusEvent { number: number(&e["eventNumber"]), focus: text(&e["focus"]["reference"]) })
                    .collect(),
            }),
            "Parameters" => {
                let parameters = resource["parameter"].as_array()?;
                let value = |list: &[Value], name: &str| -> Value {
                    list.iter()
                        .find(|p| p["name"] == name)
                        .and_then(|p| {
                            p.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v.clone())
                        })
                        .unwrap_or(Value::Null)
                };
                let events = parameters
                    .iter()
                    .filter(|p| p["name"] == "notification-event")
                    .map(|event| {
                        let parts = event["part"].as_array().map(Vec::as_slice).unwrap_or_default();
                        StatusEvent {
                            number: number(&value(parts, "event-number")),
                            focus: text(&value(parts, "focus")["reference"]),
                        }
                    })
                    .collect();
                Some(Self {
                    kind: text(&value(parameters, "type"))?,
                    subscription: text(&value(parameters, "subscription")["reference"]).unwrap_or_default(),
                    status: text(&value(parameters, "status")).unwrap_or_default(),
                    topic: text(&value(parameters, "topic")),
                    count: number(&value(parameters, "events-since-subscription-start")),
                    events,
                })
            }
            _ => None,
        }
    }

    /// The status resource (first entry) of a notification or `$events` Bundle.
    pub fn of_bundle(bundle: &Value) -> Option<Self> {
        Self::read(&bundle["entry"][0]["resource"])
    }
}

/// A warning the server attached to an `$events` answer: `Bundle.issues` in R5, the
/// status entry's `response.outcome` in R4 and R4B.
fn bundle_warning(bundle: &Value) -> Option<&str> {
    bundle["issues"]["issue"][0]["diagnostics"]
        .as_str()
        .or_else(|| bundle["entry"][0]["response"]["outcome"]["issue"][0]["diagnostics"].as_str())
}

/// The status of a notification frame: its type, event count and first event number.
fn frame_status(frame: &str) -> Option<(String, Option<u64>, Option<u64>)> {
    let value: Value = serde_json::from_str(frame).ok()?;
    let view = StatusView::of_bundle(&value)?;
    let first = view.events.first().and_then(|e| e.number);
    Some((view.kind, view.count, first))
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

/// How long to wait before reconnecting after the `attempt`-th failure in a row.
fn reconnect_delay(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(5)).min(Duration::from_secs(5))
}

/// Binds to `subscription_id` and hands everything received to `on_received` until the
/// server refuses the subscription or `on_received` is dropped with the task. Gets a fresh
/// token and binds again when four fifths of the token's lifetime have passed, so the
/// binding never lapses. When the connection drops it reconnects (with a fresh token)
/// and binds again. Event numbers are followed: a gap (after a reconnect, or an event
/// arriving out of sequence) is filled with `$events` before anything newer is handed
/// on, and repeats of events already handed on are dropped, so each retained event
/// arrives exactly once, in order. With `seen_up_to`, events after that number are
/// replayed first (a client resuming where an earlier run stopped).
pub async fn subscribe(
    api: &Api,
    subscription_id: &str,
    seen_up_to: Option<u64>,
    mut on_received: impl FnMut(&Received),
) -> Result<(), ClientError> {
    let mut tracker = EventTracker::after(seen_up_to);
    let mut failures = 0;
    // Built once: the roots may come from a file, and every reconnect uses the same.
    let roots = fhir_ws_core::aws::trusted_roots(&fhir_ws_core::config::ProcessEnv)?;
    let connector = crate::tls::websocket_connector(&roots)?;
    loop {
        match connection(api, subscription_id, &connector, &mut tracker, &mut on_received).await {
            Ok(()) => failures = 0,
            // The server refusing the token or the subscription is final; the network is not.
            Err(error @ ClientError::Refused { .. }) => return Err(error),
            Err(error) => {
                failures += 1;
                tracing::debug!(%error, failures, "connection failed");
            }
        }
        on_received(&Received::Reconnecting(format!(
            "connection lost; reconnecting to Subscription/{subscription_id}"
        )));
        tokio::time::sleep(reconnect_delay(failures)).await;
    }
}

/// One connection: bind, then read until it closes (`Ok`) or fails.
async fn connection(
    api: &Api,
    subscription_id: &str,
    connector: &tokio_tungstenite::Connector,
    tracker: &mut EventTracker,
    on_received: &mut impl FnMut(&Received),
) -> Result<(), ClientError> {
    let mut token = api.binding_token(subscription_id).await?;
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        token.websocket_url.as_str(),
        None,
        false,
        Some(connector.clone()),
    )
    .await?;
    let (mut write, mut read) = socket.split();
    write.send(Message::text(format!("bind-with-token {}", token.token))).await?;
    loop {
        let left = (token.expiration - Utc::now()).to_std().unwrap_or_default();
        let refresh_in = (left * 4 / 5).max(Duration::from_secs(1));
        tokio::select! {
            frame = read.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    handle_frame(api, subscription_id, text.as_str(), tracker, on_received).await?;
                }
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

/// Hands on one frame, filling any gap it reveals first and dropping repeats.
async fn handle_frame(
    api: &Api,
    subscription_id: &str,
    frame: &str,
    tracker: &mut EventTracker,
    on_received: &mut impl FnMut(&Received),
) -> Result<(), ClientError> {
    let Some((kind, count, number)) = frame_status(frame) else {
        on_received(&Received::Frame(frame.to_owned()));
        return Ok(());
    };
    match (kind.as_str(), number) {
        ("event-notification", Some(number)) => match tracker.on_event(number) {
            EventStep::Skip => return Ok(()),
            EventStep::Show => {}
            EventStep::FillThenShow { since, until } => {
                fill(api, subscription_id, since, until, tracker, on_received).await?;
            }
        },
        _ => {
            if let Some((since, until)) = count.and_then(|count| tracker.on_status(count)) {
                on_received(&Received::Frame(frame.to_owned()));
                return fill(api, subscription_id, since, until, tracker, on_received).await;
            }
        }
    }
    on_received(&Received::Frame(frame.to_owned()));
    if let Some(number) = number {
        tracker.shown(number);
    }
    Ok(())
}

/// Fetches `since..=until` with `$events` and hands on each answer.
async fn fill(
    api: &Api,
    subscription_id: &str,
    since: u64,
    until: u64,
    tracker: &mut EventTracker,
    on_received: &mut impl FnMut(&Received),
) -> Result<(), ClientError> {
    let mut got = Vec::new();
    for page in api.events(subscription_id, since, until).await? {
        let events = StatusView::of_bundle(&page).map(|view| view.events).unwrap_or_default();
        got.extend(events.iter().filter_map(|e| e.number));
        on_received(&Received::Replayed(page));
    }
    tracker.filled(since, until, &got);
    Ok(())
}

/// Lines describing what was received, for people watching a terminal: one per frame,
/// one per replayed event (marked `(replayed)`), plus any warning the server added.
pub fn describe_received(received: &Received) -> Vec<String> {
    match received {
        Received::Frame(frame) => vec![describe(frame)],
        Received::Reconnecting(message) => vec![message.clone()],
        Received::Replayed(bundle) => {
            let view = StatusView::of_bundle(bundle).unwrap_or_default();
            let mut lines: Vec<String> = view
                .events
                .iter()
                .map(|event| {
                    let number = event.number.map_or("?".to_owned(), |n| n.to_string());
                    let focus = event.focus.as_deref().unwrap_or("(no focus)");
                    format!("event-notification #{number} for {}: {focus} (replayed)", view.subscription)
                })
                .collect();
            if let Some(warning) = bundle_warning(bundle) {
                lines.push(format!("warning: {warning}"));
            }
            lines
        }
    }
}

/// One line describing a notification frame, for people watching a terminal.
pub fn describe(frame: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(frame) else { return frame.to_owned() };
    let status = &value["entry"][0]["resource"];
    match value["resourceType"].as_str() {
        Some("Bundle") => {
            let Some(view) = StatusView::read(status) else { return frame.to_owned() };
            match view.events.first() {
                Some(event) => format!(
                    "{} #{} for {}: {}",
                    view.kind,
                    event.number.map_or("?".to_owned(), |n| n.to_string()),
                    view.subscription,
                    event.focus.as_deref().unwrap_or("(no focus)")
                ),
                None => format!(
                    "{} for {} (events so far: {})",
                    view.kind,
                    view.subscription,
                    view.count.map_or("?".to_owned(), |n| n.to_string())
                ),
            }
        }
        Some("OperationOutcome") => format!("error: {}", value["issue"][0]["diagnostics"].as_str().unwrap_or("?")),
        _ => frame.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_fills_gaps_and_drops_repeats() {
        let mut tracker = EventTracker::default();
        assert_eq!(tracker.on_status(3), None, "the first handshake only sets the start");
        assert_eq!(tracker.on_event(4), EventStep::Show);
        tracker.shown(4);
        assert_eq!(tracker.on_event(4), EventStep::Skip, "a redelivery");
        assert_eq!(tracker.on_event(7), EventStep::FillThenShow { since: 5, until: 6 });
        tracker.shown(6);
        tracker.shown(7);
        assert_eq!(tracker.on_status(7), None);
        assert_eq!(tracker.on_status(9), Some((8, 9)), "a handshake after a reconnect reveals a gap");
        tracker.shown(9);
        assert_eq!(tracker.on_event(10), EventStep::Show);
        assert_eq!(EventTracker::default().on_event(5), EventStep::Show, "nothing to compare with yet");
    }

    #[test]
    fn numbers_a_fill_did_not_get_are_still_shown_once_when_they_arrive() {
        let mut tracker = EventTracker::default();
        assert_eq!(tracker.on_status(1), None);
        assert_eq!(tracker.on_status(4), Some((2, 4)));
        // Event 4 was numbered but not yet recorded when $events answered.
        tracker.filled(2, 4, &[2, 3]);
        assert_eq!(tracker.on_event(3), EventStep::Skip);
        assert_eq!(tracker.on_event(4), EventStep::Show);
        tracker.shown(4);
        assert_eq!(tracker.on_event(4), EventStep::Skip, "only once");
        // A wide gap is retention, not a race: nothing is remembered.
        tracker.filled(5, 5_000, &[]);
        assert_eq!(tracker.on_event(6), EventStep::Skip);
    }

    #[test]
    fn replayed_events_are_described_one_line_each() {
        let bundle = json!({"resourceType": "Bundle", "entry": [{"resource": {
            "resourceType": "SubscriptionStatus", "type": "query-event", "subscription": {"reference": "Subscription/s"},
            "notificationEvent": [{"eventNumber": "2", "focus": {"reference": "E/1"}}, {"eventNumber": "3"}]}}],
            "issues": {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "events 1 are gone"}]}});
        assert_eq!(
            describe_received(&Received::Replayed(bundle)),
            [
                "event-notification #2 for Subscription/s: E/1 (replayed)",
                "event-notification #3 for Subscription/s: (no focus) (replayed)",
                "warning: events 1 are gone",
            ]
        );
    }
}
