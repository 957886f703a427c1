//! The client: a builder, and a [`Subscriber`] stream fed by one task that runs the
//! connection loop (token, connect, bind, renew, watch heartbeats, reconnect) and puts
//! each subscription's events in number order, filling gaps with `$events`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt as _, Stream, StreamExt as _};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

use crate::Error;
use crate::http::{Api, BindingToken, TokenSource};
use crate::sequence::{Sequence, Step};
use crate::shapes::{FhirVersion, Notification, Status, SubscriptionRequest, heartbeat_period_of};

/// How the client paces itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Share of a token's lifetime after which it is renewed (0.8).
    pub renew_at: f64,
    /// Ceiling of the first reconnect delay (500 ms); doubles per failure in a row.
    pub initial_delay: Duration,
    /// Largest reconnect delay (30 s).
    pub max_delay: Duration,
    /// Heartbeat periods without any frame before the socket counts as dead (2).
    pub heartbeat_grace: u32,
    /// How often a number missing from `$events` is asked for again (8).
    pub missing_event_retries: u32,
    /// Pause between those asks (250 ms).
    pub missing_event_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            renew_at: 0.8,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            heartbeat_grace: 2,
            missing_event_retries: 8,
            missing_event_delay: Duration::from_millis(250),
        }
    }
}

/// What the client reports besides errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// An event, exactly once and in number order per subscription.
    Notification(Notification),
    /// A handshake, heartbeat or other status frame.
    Status(Status),
    /// The Subscription asked for was created.
    Created {
        /// Its id.
        subscription: String,
    },
    /// A subscription is bound on a new socket (its handshake arrived).
    Bound {
        /// Its id.
        subscription: String,
    },
    /// The token was renewed and the socket bound again.
    Renewed {
        /// When the new token expires.
        expiration: DateTime<Utc>,
    },
    /// The socket is gone; the client reconnects.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The client waits before reconnecting.
    Reconnecting {
        /// Failures in a row so far.
        attempt: u32,
        /// How long it waits.
        delay: Duration,
    },
}

/// What to follow: existing subscriptions, or one to create.
#[derive(Debug, Clone)]
enum Target {
    Existing(Vec<String>),
    Create(SubscriptionRequest),
}

/// Builds a [`Subscriber`].
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    token: Option<TokenSource>,
    target: Option<Target>,
    version: Option<FhirVersion>,
    since: HashMap<String, u64>,
    timing: Timing,
    http: Option<reqwest::Client>,
    connector: Option<Connector>,
}

/// The entry point: `Client::builder(base)…subscribe()`.
#[derive(Debug, Clone, Copy)]
pub struct Client;

impl Client {
    /// A builder for the FHIR base `base_url` (the server's, or its `…/R4` or `…/R4B`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token: None,
            target: None,
            version: None,
            since: HashMap::new(),
            timing: Timing::default(),
            http: None,
            connector: None,
        }
    }
}

impl ClientBuilder {
    /// A fixed bearer token.
    pub fn bearer(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.access_token(move || {
            let token = token.clone();
            async move { Ok(token) }
        })
    }

    /// A function giving the bearer token for each request (refreshing it as needed).
    pub fn access_token<F, Fut>(mut self, source: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, Error>> + Send + 'static,
    {
        self.token = Some(Arc::new(move || Box::pin(source())));
        self
    }

    /// Binds these existing Subscriptions (one socket, one type-level token for several).
    pub fn subscriptions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.target = Some(Target::Existing(ids.into_iter().map(Into::into).collect()));
        self
    }

    /// Creates this Subscription first, then binds it.
    pub fn create(mut self, request: SubscriptionRequest) -> Self {
        self.target = Some(Target::Create(request));
        self
    }

    /// The base's FHIR version (read from its CapabilityStatement when creating without it).
    pub fn fhir_version(mut self, version: FhirVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// The last event number the app already has of `subscription`: later ones that the
    /// server still holds are replayed first.
    pub fn since(mut self, subscription: impl Into<String>, event_number: u64) -> Self {
        self.since.insert(subscription.into(), event_number);
        self
    }

    /// Pacing: renewal, backoff, watchdog, retries.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// The HTTP client to use (its TLS roots, proxies, timeouts).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The TLS connector for `wss://` (default: rustls on ring with Mozilla's roots).
    pub fn websocket_connector(mut self, connector: Connector) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Starts the client on the current Tokio runtime; its updates come out of the
    /// returned stream, which stops the client when dropped.
    pub fn subscribe(self) -> Result<Subscriber, Error> {
        let token =
            self.token.ok_or_else(|| Error::Config("no bearer token: call bearer or access_token".to_owned()))?;
        let target =
            self.target.ok_or_else(|| Error::Config("no subscription: call subscriptions or create".to_owned()))?;
        if matches!(&target, Target::Existing(ids) if ids.is_empty()) {
            return Err(Error::Config("no subscription ids".to_owned()));
        }
        let connector = match self.connector {
            Some(connector) => connector,
            None => default_connector()?,
        };
        let api = Api { base: self.base_url, http: self.http.unwrap_or_default(), token };
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut run = Run {
            api,
            connector,
            timing: self.timing,
            version: self.version,
            target,
            followed: Vec::new(),
            since: self.since,
            out: sender,
            attempt: 0,
        };
        let task = tokio::spawn(async move { run.run().await });
        Ok(Subscriber { receiver, task })
    }
}

/// rustls on ring with Mozilla's roots, set explicitly (see the crate's Cargo.toml).
fn default_connector() -> Result<Connector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// The client's updates: `Ok` for each [`Update`], `Err` for an error the app must know
/// about. [`Error::EventsUnavailable`] is followed by further updates; a fatal error
/// ([`Error::is_fatal`]) is the last item.
pub struct Subscriber {
    receiver: mpsc::UnboundedReceiver<Result<Update, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Only the notifications (and errors).
    pub fn notifications(self) -> impl Stream<Item = Result<Notification, Error>> + Send + Unpin {
        self.filter_map(|item| {
            futures::future::ready(match item {
                Ok(Update::Notification(notification)) => Some(Ok(notification)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
        })
    }
}

impl Stream for Subscriber {
    type Item = Result<Update, Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(context)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One followed subscription.
struct Followed {
    id: String,
    sequence: Sequence,
    heartbeat_period: Option<u32>,
    bound: bool,
}

/// The connection loop's state.
struct Run {
    api: Api,
    connector: Connector,
    timing: Timing,
    version: Option<FhirVersion>,
    target: Target,
    followed: Vec<Followed>,
    since: HashMap<String, u64>,
    out: mpsc::UnboundedSender<Result<Update, Error>>,
    attempt: u32,
}

/// Why a connection ended.
enum Ended {
    /// The socket closed or failed, or was given up on.
    Lost(String),
    /// The app dropped the stream.
    Stopped,
}

impl Run {
    /// Hands the app an update; false once it has stopped listening.
    fn emit(&self, update: Result<Update, Error>) -> bool {
        self.out.send(update).is_ok()
    }

    async fn run(&mut self) {
        loop {
            match self.connection().await {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Lost(reason)) => {
                    if !self.emit(Ok(Update::Disconnected { reason })) {
                        return;
                    }
                }
                Err(error) if error.is_fatal() => {
                    let _ = self.emit(Err(error));
                    return;
                }
                Err(error) => {
                    if !self.emit(Ok(Update::Disconnected { reason: error.to_string() })) {
                        return;
                    }
                }
            }
            for followed in &mut self.followed {
                followed.bound = false;
            }
            self.attempt += 1;
            let delay = backoff(&self.timing, self.attempt);
            if !self.emit(Ok(Update::Reconnecting { attempt: self.attempt, delay })) {
                return;
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Creates the Subscription if asked to, and learns each one's heartbeat period.
    async fn prepare(&mut self) -> Result<(), Error> {
        if let Target::Create(request) = &self.target {
            let version = match self.version {
                Some(version) => version,
                None => self.api.version().await?,
            };
            self.version = Some(version);
            let created = self.api.create(&request.resource(version)?).await?;
            let id = created["id"].as_str().unwrap_or_default().to_owned();
            self.followed.push(Followed {
                id: id.clone(),
                sequence: Sequence::after(self.since.get(&id).copied()),
                heartbeat_period: Some(heartbeat_period_of(&created).unwrap_or(0)),
                bound: false,
            });
            self.target = Target::Existing(vec![id.clone()]);
            self.emit(Ok(Update::Created { subscription: id }));
        }
        if let Target::Existing(ids) = &self.target
            && self.followed.is_empty()
        {
            self.followed = ids
                .iter()
                .map(|id| Followed {
                    id: id.clone(),
                    sequence: Sequence::after(self.since.get(id).copied()),
                    heartbeat_period: None,
                    bound: false,
                })
                .collect();
        }
        for index in 0..self.followed.len() {
            if self.followed[index].heartbeat_period.is_none() {
                let resource = self.api.read(&self.followed[index].id).await?;
                self.followed[index].heartbeat_period = Some(heartbeat_period_of(&resource).unwrap_or(0));
            }
        }
        Ok(())
    }

    fn ids(&self) -> Vec<String> {
        self.followed.iter().map(|f| f.id.clone()).collect()
    }

    /// No frame for this long: the socket is dead.
    fn watchdog(&self) -> Option<Duration> {
        let shortest = self.followed.iter().filter_map(|f| f.heartbeat_period).filter(|p| *p > 0).min()?;
        Some(Duration::from_secs(u64::from(shortest) * u64::from(self.timing.heartbeat_grace)))
    }

    fn renewal_in(&self, token: &BindingToken) -> Duration {
        let left = (token.expiration - Utc::now()).to_std().unwrap_or_default();
        left.mul_f64(self.timing.renew_at).max(Duration::from_secs(1))
    }

    /// One connection: bind, then read until it is lost.
    async fn connection(&mut self) -> Result<Ended, Error> {
        self.prepare().await?;
        let token = self.api.binding_token(&self.ids()).await?;
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            token.websocket_url.as_str(),
            None,
            false,
            Some(self.connector.clone()),
        )
        .await?;
        let (mut write, mut read) = socket.split();
        write.send(Message::text(format!("bind-with-token {}", token.token))).await?;
        let mut renew_at = Instant::now() + self.renewal_in(&token);
        let watchdog = self.watchdog();
        let far = Duration::from_secs(365 * 24 * 3600);
        let mut silent_at = Instant::now() + watchdog.unwrap_or(far);
        loop {
            tokio::select! {
                frame = read.next() => {
                    silent_at = Instant::now() + watchdog.unwrap_or(far);
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            match self.frame(text.as_str()).await {
                                Ok(true) => {}
                                Ok(false) => return Ok(Ended::Stopped),
                                Err(error @ Error::Refused { .. }) => {
                                    return Ok(Ended::Lost(error.to_string()));
                                }
                                Err(error) => return Err(error),
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let reason = frame.map_or("closed".to_owned(), |f| format!("closed ({} {})", u16::from(f.code), f.reason));
                            return Ok(Ended::Lost(reason));
                        }
                        None => return Ok(Ended::Lost("closed".to_owned())),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Ok(Ended::Lost(format!("WebSocket: {error}"))),
                    }
                }
                () = tokio::time::sleep_until(renew_at) => {
                    match self.api.binding_token(&self.ids()).await {
                        Ok(token) => {
                            write.send(Message::text(format!("bind-with-token {}", token.token))).await?;
                            renew_at = Instant::now() + self.renewal_in(&token);
                            if !self.emit(Ok(Update::Renewed { expiration: token.expiration })) {
                                return Ok(Ended::Stopped);
                            }
                        }
                        Err(error) if error.is_fatal() => return Err(error),
                        // Try again soon; if the token runs out first, the server ends the
                        // binding and the watchdog or the next handshake brings us back.
                        Err(_) => renew_at = Instant::now() + Duration::from_secs(1),
                    }
                }
                () = tokio::time::sleep_until(silent_at), if watchdog.is_some() => {
                    let seconds = watchdog.unwrap_or(far).as_secs();
                    return Ok(Ended::Lost(format!("no frame for {seconds} s (heartbeats stopped)")));
                }
            }
        }
    }

    /// Handles one frame; false once the app stopped listening.
    async fn frame(&mut self, text: &str) -> Result<bool, Error> {
        let Ok(message) = serde_json::from_str::<Value>(text) else { return Ok(true) };
        if message["resourceType"] == "OperationOutcome" {
            return Err(Error::Refused { outcome: message });
        }
        if message["resourceType"] != "Bundle" {
            return Ok(true);
        }
        let Some(status) = Status::of_bundle(&message) else { return Ok(true) };
        let Some(index) = self.followed.iter().position(|f| f.id == status.subscription) else { return Ok(true) };
        match status.kind.as_str() {
            "handshake" | "heartbeat" => {
                let count = status.events_since_subscription_start;
                let handshake = status.kind == "handshake";
                if !self.emit(Ok(Update::Status(status))) {
                    return Ok(false);
                }
                if handshake && !self.followed[index].bound {
                    self.followed[index].bound = true;
                    self.attempt = 0;
                    if !self.emit(Ok(Update::Bound { subscription: self.followed[index].id.clone() })) {
                        return Ok(false);
                    }
                }
                if let Some((since, until)) = count.and_then(|c| self.followed[index].sequence.on_status(c)) {
                    return self.replay(index, since, until).await;
                }
                Ok(true)
            }
            "event-notification" => {
                let mut notifications = Notification::from_bundle(message);
                notifications.sort_by_key(|n| n.event_number);
                for notification in notifications {
                    match self.followed[index].sequence.on_event(notification.event_number) {
                        Step::Skip => {}
                        Step::Deliver => {
                            if !self.deliver(index, notification) {
                                return Ok(false);
                            }
                        }
                        Step::FillThenDeliver { since, until } => {
                            if !self.replay(index, since, until).await? {
                                return Ok(false);
                            }
                            if notification.event_number > self.followed[index].sequence.last().unwrap_or(0)
                                && !self.deliver(index, notification)
                            {
                                return Ok(false);
                            }
                        }
                    }
                }
                Ok(true)
            }
            _ => Ok(true),
        }
    }

    fn deliver(&mut self, index: usize, notification: Notification) -> bool {
        self.followed[index].sequence.delivered(notification.event_number);
        self.emit(Ok(Update::Notification(notification)))
    }

    /// Hands the app `since..=until` from `$events`, in order. A number missing without
    /// a word from the server (an event numbered a moment before it is recorded) is asked
    /// for again a few times; numbers the server no longer holds, or that never appear,
    /// are reported as [`Error::EventsUnavailable`] and passed over.
    async fn replay(&mut self, index: usize, since: u64, until: u64) -> Result<bool, Error> {
        let id = self.followed[index].id.clone();
        let mut from = since;
        let mut attempt = 0;
        while from <= until {
            let answer = self.api.events(&id, from, until).await?;
            let mut by_number: HashMap<u64, Notification> = answer
                .notifications
                .into_iter()
                .filter(|n| n.subscription == id || n.subscription.is_empty())
                .map(|n| (n.event_number, n))
                .collect();
            let mut next = from;
            while next <= until {
                let Some(mut notification) = by_number.remove(&next) else { break };
                notification.replayed = true;
                if !self.deliver(index, notification) {
                    return Ok(false);
                }
                next += 1;
            }
            if next > until {
                return Ok(true);
            }
            if answer.warning.is_none() && attempt < self.timing.missing_event_retries {
                attempt += 1;
                from = next;
                tokio::time::sleep(self.timing.missing_event_delay).await;
                continue;
            }
            let last_lost = by_number.keys().filter(|n| **n > next).min().map_or(until, |held| held - 1);
            let error = Error::EventsUnavailable {
                subscription: id.clone(),
                since: next,
                until: last_lost,
                outcome: answer.warning,
            };
            if !self.emit(Err(error)) {
                return Ok(false);
            }
            self.followed[index].sequence.delivered(last_lost);
            from = last_lost + 1;
            attempt = 0;
        }
        Ok(true)
    }
}

/// The wait before reconnect `attempt`: a ceiling that doubles per failure up to
/// `max_delay`, and a random point between half of it and all of it (equal jitter).
fn backoff(timing: &Timing, attempt: u32) -> Duration {
    let ceiling = timing.initial_delay.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(timing.max_delay);
    ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let timing = Timing::default();
        for attempt in 1..=12 {
            let ceiling = (Duration::from_millis(500) * (1 << (attempt - 1))).min(Duration::from_secs(30));
            for _ in 0..50 {
                let delay = backoff(&timing, attempt);
                assert!(delay >= ceiling / 2 && delay <= ceiling, "attempt {attempt}: {delay:?} of {ceiling:?}");
            }
        }
    }
}
