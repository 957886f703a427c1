//! `$connect`: accept, or bind with `?token=` before the upgrade completes.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use chrono::{DateTime, Utc};
use lambda_http::http::HeaderValue;

use super::{Binder, Connection, response};
use crate::fhir::{IssueType, OperationOutcome};
use crate::http::ApiError;
use crate::http::cors::AllowedOrigins;
use crate::store::{BindingStore, SubscriptionStore, TokenStore};

const SEC_WEBSOCKET_PROTOCOL: &str = "sec-websocket-protocol";
const ORIGIN: &str = "origin";

/// Answers `$connect`.
#[derive(Debug)]
pub struct ConnectHandler<S, T, B> {
    binder: Binder<S, T, B>,
    management_endpoint: Option<String>,
    subprotocols: Vec<String>,
    allowed_origins: AllowedOrigins,
}

impl<S: SubscriptionStore, T: TokenStore, B: BindingStore> ConnectHandler<S, T, B> {
    /// `management_endpoint` overrides the endpoint derived from events; `subprotocols`
    /// are the `Sec-WebSocket-Protocol` values this server accepts.
    pub fn new(binder: Binder<S, T, B>, management_endpoint: Option<String>, subprotocols: Vec<String>) -> Self {
        Self { binder, management_endpoint, subprotocols, allowed_origins: AllowedOrigins::none() }
    }

    /// Refuses, with 403, an upgrade whose `Origin` header names an origin not in
    /// `origins`; an empty list (the default) checks nothing. A request without `Origin`
    /// (not a browser) is not refused for it: it can send any header it likes.
    pub fn with_allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.allowed_origins = origins;
        self
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
        if let Some(origin) = self.refused_origin(event) {
            tracing::info!(connection_id = connection.id, origin, status = 403, "refused connect: origin not allowed");
            let outcome = OperationOutcome::error(IssueType::Forbidden, format!("origin {origin} may not connect"));
            return response(403, Some(&outcome));
        }
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

    /// The `Origin` the allow-list refuses, if it does.
    fn refused_origin(&self, event: &ApiGatewayWebsocketProxyRequest) -> Option<String> {
        if self.allowed_origins.is_empty() {
            return None;
        }
        let origin = event.headers.get(ORIGIN)?;
        let origin = String::from_utf8_lossy(origin.as_bytes());
        // Echoed in the refusal and the log: a real origin is short.
        (!self.allowed_origins.allows(&origin)).then(|| origin.chars().take(256).collect())
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
