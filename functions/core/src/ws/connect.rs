//! `$connect`: accept, or bind with `?token=` before the upgrade completes.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chrono::{DateTime, Utc};
use lambda_http::http::HeaderValue;

use super::{Binder, Connection, response};
use crate::fhir::OperationOutcome;
use crate::http::ApiError;
use crate::store::{BindingStore, SubscriptionStore, TokenStore};

const SEC_WEBSOCKET_PROTOCOL: &str = "sec-websocket-protocol";

/// Answers `$connect`.
#[derive(Debug)]
pub struct ConnectHandler<S, T, B> {
    binder: Binder<S, T, B>,
    management_endpoint: Option<String>,
    subprotocols: Vec<String>,
}

impl<S: SubscriptionStore, T: TokenStore, B: BindingStore> ConnectHandler<S, T, B> {
    /// `management_endpoint` overrides the endpoint derived from events; `subprotocols`
    /// are the `Sec-WebSocket-Protocol` values this server accepts.
    pub fn new(binder: Binder<S, T, B>, management_endpoint: Option<String>, subprotocols: Vec<String>) -> Self {
        Self { binder, management_endpoint, subprotocols }
    }

    /// Without a token: 200. With `?token=`: 200 after writing the bindings (handshakes
    /// follow the first frame), 401 for a bad, forged, expired or revoked token, 403 for
    /// a good token whose subscriptions cannot be bound. Echoes the first offered
    /// subprotocol that is accepted.
    pub async fn handle(&self, event: &ApiGatewayWebsocketProxyRequest, now: DateTime<Utc>) -> ApiGatewayProxyResponse {
        let Some(connection) = Connection::from_event(event, self.management_endpoint.as_deref()) else {
            tracing::warn!("refused connect: the event has no connection id or endpoint");
            return response(400, None);
        };
        let mut answer = match event.query_string_parameters.first("token") {
            None => response(200, None),
            Some(token) => match self.binder.bind(token, &connection, now).await {
                Ok(bound) => {
                    tracing::info!(connection_id = connection.id, subscriptions = bound.len(), "bound at connect");
                    response(200, None)
                }
                Err(rejection) => {
                    let error = ApiError::from(rejection);
                    tracing::info!(
                        connection_id = connection.id,
                        status = error.status.as_u16(),
                        reason = error.message,
                        "refused connect"
                    );
                    let outcome = OperationOutcome::error(error.code, error.message);
                    response(error.status.as_u16(), Some(&outcome))
                }
            },
        };
        if answer.status_code == 200
            && let Some(protocol) = self.accepted_subprotocol(event)
            && let Ok(value) = HeaderValue::from_str(&protocol)
        {
            answer.headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        answer
    }

    fn accepted_subprotocol(&self, event: &ApiGatewayWebsocketProxyRequest) -> Option<String> {
        let offered = event.headers.get_all(SEC_WEBSOCKET_PROTOCOL);
        offered
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .find(|protocol| self.subprotocols.iter().any(|accepted| accepted == protocol))
            .map(str::to_owned)
    }
}
