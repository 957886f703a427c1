//! `$default`: every client frame after the connection is open.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::protocol::{ClientMessage, ProtocolError, parse, pong};
use super::{Binder, Connection, forget_connection, response};
use crate::access::bindable;
use crate::fhir::{IssueSeverity, IssueType, NotificationType, OperationOutcome};
use crate::http::ApiError;
use crate::notification::status_notification;
use crate::push::{PushError, Pusher};
use crate::store::{BindingStore, CounterStore, SubscriptionStore, TokenStore};

/// Answers `$default`.
#[derive(Debug)]
pub struct MessageHandler<S, T, B, C, P> {
    binder: Binder<S, T, B>,
    counters: C,
    pusher: P,
    management_endpoint: Option<String>,
}

/// What to send back for one client frame.
enum Reply {
    /// Nothing beyond the handshakes already sent.
    Nothing,
    /// A plain text frame (`pong`).
    Text(String),
    /// An `OperationOutcome` frame.
    Outcome(OperationOutcome),
}

impl<S, T, B, C, P> MessageHandler<S, T, B, C, P>
where
    S: SubscriptionStore,
    T: TokenStore,
    B: BindingStore,
    C: CounterStore,
    P: Pusher,
{
    /// `management_endpoint` overrides the endpoint derived from events.
    pub fn new(binder: Binder<S, T, B>, counters: C, pusher: P, management_endpoint: Option<String>) -> Self {
        Self { binder, counters, pusher, management_endpoint }
    }

    /// Sends handshakes still owed to the connection, then reads the frame and answers
    /// it: handshakes after a bind, `pong` for `ping`, an `OperationOutcome` for anything
    /// that fails. A failed message changes nothing and never closes the connection.
    pub async fn handle(&self, event: &ApiGatewayWebsocketProxyRequest, now: DateTime<Utc>) -> ApiGatewayProxyResponse {
        let Some(connection) = Connection::from_event(event, self.management_endpoint.as_deref()) else {
            tracing::warn!("message event without a connection id or endpoint");
            return response(400, None);
        };
        if !self.send_pending_handshakes(&connection, now).await {
            return response(200, None);
        }
        let reply = match read_frame(event) {
            Err(error) => {
                tracing::info!(connection_id = connection.id, %error, "refused message");
                Reply::Outcome(protocol_outcome(&error))
            }
            Ok(message) => self.act(message, &connection, now).await,
        };
        let frame = match reply {
            Reply::Nothing => None,
            Reply::Text(text) => Some(text),
            Reply::Outcome(outcome) => serde_json::to_string(&outcome).ok(),
        };
        if let Some(frame) = frame {
            self.post(&connection, frame.as_bytes()).await;
        }
        response(200, None)
    }

    async fn act(&self, message: ClientMessage, connection: &Connection, now: DateTime<Utc>) -> Reply {
        match message {
            ClientMessage::Ping(dialect) => Reply::Text(pong(dialect)),
            ClientMessage::Bind(token) => match self.binder.bind(&token, connection, now).await {
                Ok(bound) => {
                    tracing::info!(connection_id = connection.id, subscriptions = bound.len(), "bound");
                    self.send_pending_handshakes(connection, now).await;
                    Reply::Nothing
                }
                Err(rejection) => rejection_outcome(rejection, connection),
            },
            ClientMessage::Unbind(token) => match self.binder.unbind(&token, connection, now).await {
                Ok(count) => {
                    tracing::info!(connection_id = connection.id, bindings = count, "unbound");
                    Reply::Outcome(OperationOutcome::single(
                        IssueSeverity::Information,
                        IssueType::Informational,
                        format!("unbound {count} subscription(s) from this connection"),
                    ))
                }
                Err(rejection) => rejection_outcome(rejection, connection),
            },
        }
    }

    /// Posts a handshake for every unexpired binding of the connection that still owes
    /// one, and marks it sent. Returns false when the connection turned out to be gone.
    async fn send_pending_handshakes(&self, connection: &Connection, now: DateTime<Utc>) -> bool {
        let bindings = match self.binder.bindings().bindings_of_connection(&connection.id).await {
            Ok(bindings) => bindings,
            Err(error) => {
                tracing::error!(connection_id = connection.id, %error, "could not read bindings");
                return true;
            }
        };
        let owed = bindings.into_iter().filter(|b| b.handshake_pending && b.expires_at > now.timestamp());
        for binding in owed {
            let subscription = match self.binder.subscriptions().get(&binding.subscription_id).await {
                Ok(found) => match bindable(&binding.subscription_id, found, &binding.owner) {
                    Ok(subscription) => subscription,
                    // Deleted or switched off since the bind: nothing to shake hands about.
                    Err(_) => continue,
                },
                Err(error) => {
                    tracing::error!(%error, "could not read a subscription for its handshake");
                    continue;
                }
            };
            let events = match self.counters.events_since_start(subscription.id()).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::error!(%error, "could not read the event counter");
                    continue;
                }
            };
            let bundle = status_notification(NotificationType::Handshake, &subscription, events, now);
            let Ok(frame) = serde_json::to_vec(&bundle) else {
                continue;
            };
            if !self.post(connection, &frame).await {
                return false;
            }
            if let Err(error) =
                self.binder.bindings().record_message(&connection.id, subscription.id(), now.timestamp()).await
            {
                tracing::error!(%error, "could not mark a handshake sent; it will be sent again");
            }
        }
        true
    }

    /// Posts one frame. On 410 the connection's bindings are deleted and false returned.
    async fn post(&self, connection: &Connection, frame: &[u8]) -> bool {
        match self.pusher.post(&connection.callback_url, &connection.id, frame).await {
            Ok(()) => true,
            Err(PushError::Gone) => {
                if let Err(error) = forget_connection(self.binder.bindings(), &connection.id).await {
                    tracing::error!(connection_id = connection.id, %error, "could not forget a gone connection");
                }
                false
            }
            Err(error) => {
                tracing::warn!(connection_id = connection.id, %error, "could not post to the connection");
                true
            }
        }
    }
}

/// The frame's bytes: API Gateway base64-encodes binary frames.
fn read_frame(event: &ApiGatewayWebsocketProxyRequest) -> Result<ClientMessage, ProtocolError> {
    let body = event.body.as_deref().unwrap_or_default();
    if event.is_base64_encoded {
        let bytes = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| ProtocolError::NotText)?;
        parse(&bytes)
    } else {
        parse(body.as_bytes())
    }
}

fn protocol_outcome(error: &ProtocolError) -> OperationOutcome {
    let code = match error {
        ProtocolError::Empty | ProtocolError::MissingToken(_) => IssueType::Required,
        ProtocolError::TooLarge(_) => IssueType::TooCostly,
        ProtocolError::NotText | ProtocolError::InvalidJson(_) => IssueType::Structure,
        ProtocolError::UnknownCommand(_) => IssueType::NotSupported,
    };
    OperationOutcome::error(code, error.to_string())
}

fn rejection_outcome(rejection: crate::token::verify::TokenRejection, connection: &Connection) -> Reply {
    let error = ApiError::from(rejection);
    tracing::info!(connection_id = connection.id, reason = error.message, "refused token");
    Reply::Outcome(OperationOutcome::error(error.code, error.message))
}
