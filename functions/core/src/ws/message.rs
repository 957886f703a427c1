//! `$default`: every client frame after the connection is open.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::protocol::{ClientMessage, ProtocolError, parse, pong};
use super::{Binder, Connection, response};
use crate::delivery::{Delivery, DeliveryError};
use crate::fhir::{IssueSeverity, IssueType, NotificationType, OperationOutcome};
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::push::{PushError, Pusher};
use crate::store::{BindingStore, CounterStore, SubscriptionStore, TokenStore};

/// Answers `$default`.
#[derive(Debug)]
pub struct MessageHandler<S, T, B, C, P> {
    binder: Binder<S, T, B>,
    delivery: Delivery<S, B, C, P>,
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
    S: SubscriptionStore + Clone,
    T: TokenStore,
    B: BindingStore + Clone,
    C: CounterStore,
    P: Pusher,
{
    /// `management_endpoint` overrides the endpoint derived from events.
    pub fn new(binder: Binder<S, T, B>, counters: C, pusher: P, management_endpoint: Option<String>) -> Self {
        let delivery = Delivery::new(binder.subscriptions().clone(), binder.bindings().clone(), counters, pusher);
        Self { binder, delivery, management_endpoint }
    }

    /// Sends handshakes still owed to the connection, then reads the frame and answers
    /// it: handshakes after a bind, `pong` for `ping`, an `OperationOutcome` for anything
    /// that fails. A failed message changes nothing and never closes the connection.
    pub async fn handle(&self, event: &ApiGatewayWebsocketProxyRequest, now: DateTime<Utc>) -> ApiGatewayProxyResponse {
        let Some(connection) = Connection::from_event(event, self.management_endpoint.as_deref()) else {
            tracing::warn!("message event without a connection id or endpoint");
            return response(400, None);
        };
        let metrics = Metrics::new("ws-default");
        if !self.send_pending_handshakes(&connection, now, &metrics).await {
            return response(200, None);
        }
        let reply = match read_frame(event) {
            Err(error) => {
                tracing::info!(connection_id = connection.id, %error, "refused message");
                Reply::Outcome(protocol_outcome(&error))
            }
            Ok(message) => self.act(message, &connection, now, &metrics).await,
        };
        let frame = match reply {
            Reply::Nothing => None,
            Reply::Text(text) => Some(text),
            Reply::Outcome(outcome) => serde_json::to_string(&outcome).ok(),
        };
        if let Some(frame) = frame {
            // A failure is logged and counted by `post`; a gone connection is forgotten.
            let _ = self.delivery.post(&connection.callback_url, &connection.id, frame.as_bytes(), &metrics).await;
        }
        metrics.emit(now);
        response(200, None)
    }

    async fn act(
        &self,
        message: ClientMessage,
        connection: &Connection,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Reply {
        match message {
            ClientMessage::Ping(dialect) => Reply::Text(pong(dialect)),
            ClientMessage::Bind(token) => match self.binder.bind(&token, connection, now).await {
                Ok(bound) => {
                    tracing::info!(connection_id = connection.id, subscriptions = bound.len(), "bound");
                    self.send_pending_handshakes(connection, now, metrics).await;
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
    async fn send_pending_handshakes(&self, connection: &Connection, now: DateTime<Utc>, metrics: &Metrics) -> bool {
        let bindings = match self.binder.bindings().bindings_of_connection(&connection.id).await {
            Ok(bindings) => bindings,
            Err(error) => {
                tracing::error!(connection_id = connection.id, %error, "could not read bindings");
                return true;
            }
        };
        let owed = bindings.iter().filter(|b| b.handshake_pending && b.expires_at > now.timestamp());
        for binding in owed {
            match self.delivery.send_status(binding, NotificationType::Handshake, now, metrics).await {
                Ok(()) => {}
                Err(DeliveryError::Push(PushError::Gone)) => return false,
                // Left pending: the next frame or the heartbeat run tries again.
                Err(error) => tracing::warn!(connection_id = connection.id, %error, "handshake not sent"),
            }
        }
        true
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
