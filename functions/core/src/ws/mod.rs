//! The WebSocket API's handlers: `$connect`, `$default` and `$disconnect`.
//!
//! Each takes the `ApiGatewayWebsocketProxyRequest` API Gateway sends and answers an
//! `ApiGatewayProxyResponse`. Replies to a client (handshakes, `pong`, error
//! `OperationOutcome`s) are posted through the Management API, since a `$default`
//! integration's return value only reaches clients with a route response configured.
//!
//! **Handshakes after `$connect`.** API Gateway will not deliver posts to a connection
//! before `$connect` has returned, so a bind made with `?token=` at `$connect` only
//! writes its bindings, marked `handshakePending`. The owed handshakes are sent when the
//! connection's first frame reaches `$default` (any frame, `ping` included), before that
//! frame is answered; see `MessageHandler`. (The heartbeat function, a later issue,
//! will flush them too.) Handshakes are therefore at-least-once: a binding stays pending
//! until its handshake was posted.

mod connect;
mod disconnect;
mod message;
pub mod protocol;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, Utc};
use lambda_http::http::{HeaderValue, header};

pub use connect::ConnectHandler;
pub use disconnect::disconnect;
pub use message::MessageHandler;

use crate::config::WebSocketConfig;
use crate::fhir::{OperationOutcome, SubscriptionState};
use crate::store::dynamodb::{DynamoBindingStore, DynamoSubscriptionStore, DynamoTokenStore};
use crate::store::{Binding, BindingStore, StoreError, StoredSubscription, SubscriptionStore, TokenStore};
use crate::token::verify::{TokenRejection, verify};
use crate::token::{KeyRing, decode};

/// The connection an event came from, and where to post to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// API Gateway connection id.
    pub id: String,
    /// Management API endpoint: the configured one, or `https://{domainName}/{stage}`.
    pub callback_url: String,
}

impl Connection {
    /// Reads the connection id and the Management API endpoint from an event. The
    /// configured endpoint wins (needed behind custom domains); `None` when the event
    /// lacks what is needed or its connection id is longer than any API Gateway gives.
    pub fn from_event(event: &ApiGatewayWebsocketProxyRequest, configured_endpoint: Option<&str>) -> Option<Self> {
        let context = &event.request_context;
        // API Gateway's ids are 16 characters; anything over the limit is not one of them.
        let id = context
            .connection_id
            .clone()
            .filter(|id| !id.is_empty() && id.len() <= crate::limits::MAX_CONNECTION_ID_BYTES)?;
        let callback_url = match configured_endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => {
                let domain = context.domain_name.as_deref().filter(|d| !d.is_empty())?;
                match context.stage.as_deref().filter(|s| !s.is_empty()) {
                    Some(stage) => format!("https://{domain}/{stage}"),
                    None => format!("https://{domain}"),
                }
            }
        };
        Some(Self { id, callback_url })
    }
}

/// An answer to API Gateway; for `$connect` a non-2xx status refuses the connection.
pub(crate) fn response(status: u16, body: Option<&OperationOutcome>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    if let Some(outcome) = body {
        response.body = serde_json::to_string(outcome).ok().map(Body::Text);
        response.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    }
    response
}

impl Binder<DynamoSubscriptionStore, DynamoTokenStore, DynamoBindingStore> {
    /// A binder over the DynamoDB tables named in `config`, through one shared client.
    pub fn on_dynamodb(client: &aws_sdk_dynamodb::Client, config: &WebSocketConfig) -> Self {
        Self::new(
            DynamoSubscriptionStore::new(client.clone(), &config.subscriptions_table),
            DynamoTokenStore::new(client.clone(), &config.tokens_table),
            DynamoBindingStore::new(client.clone(), &config.bindings_table),
            config.keys.clone(),
        )
    }
}

/// Verifies tokens and writes bindings: shared by `$connect` (`?token=`) and `$default`.
#[derive(Debug)]
pub struct Binder<S, T, B> {
    subscriptions: S,
    tokens: T,
    bindings: B,
    keys: KeyRing,
}

impl<S: SubscriptionStore, T: TokenStore, B: BindingStore> Binder<S, T, B> {
    /// A binder over these stores, verifying with `keys`.
    pub fn new(subscriptions: S, tokens: T, bindings: B, keys: KeyRing) -> Self {
        Self { subscriptions, tokens, bindings, keys }
    }

    /// The subscriptions store.
    pub fn subscriptions(&self) -> &S {
        &self.subscriptions
    }

    /// The bindings store.
    pub fn bindings(&self) -> &B {
        &self.bindings
    }

    /// Verifies `token` fully and binds `connection` to each of its subscriptions until
    /// the token expires (a rebind with a fresh token extends that), each with a
    /// handshake pending; moves `requested` subscriptions to `active`. Returns the
    /// subscriptions as they now are. Nothing is written when verification fails, and
    /// nothing is left when the token turns out to have been revoked meanwhile.
    pub async fn bind(
        &self,
        token: &str,
        connection: &Connection,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredSubscription>, TokenRejection> {
        self.keys.refresh_for(token).await;
        let verified = verify(token, &self.keys, now, &self.tokens, &self.subscriptions).await?;
        let rows: Vec<Binding> = verified
            .subscriptions
            .iter()
            .map(|subscription| Binding {
                connection_id: connection.id.clone(),
                subscription_id: subscription.id().to_owned(),
                token_id: verified.claims.token_id.clone(),
                owner: verified.claims.owner.clone(),
                callback_url: connection.callback_url.clone(),
                bound_at: now.timestamp(),
                expires_at: verified.claims.expires_at,
                last_message_at: now.timestamp(),
                handshake_pending: true,
                heartbeat_period: subscription.resource().heartbeat_period,
                // Due at once: if no frame arrives to flush the handshake, the heartbeat run sends it.
                heartbeat_due_at: Some(now.timestamp()),
                grant: verified.grant.clone(),
            })
            .collect();
        self.bindings.put_bindings(&rows).await?;
        // A revocation that ran between verifying and writing did not see these rows:
        // read the token again (strongly consistent) and take them back if it was revoked.
        let record = self.tokens.get_token(&verified.claims.token_id).await?;
        if record.is_none_or(|r| r.revoked) {
            self.bindings.delete_bindings(&connection.id, Some(&verified.claims.token_id)).await?;
            return Err(TokenRejection::Revoked);
        }
        let mut bound = Vec::with_capacity(verified.subscriptions.len());
        for subscription in verified.subscriptions {
            bound.push(self.activate(subscription, now).await?);
        }
        Ok(bound)
    }

    /// Deletes the bindings `token` made on this connection; returns how many. The token
    /// must be genuine and unexpired, but its subscriptions need not still be usable.
    pub async fn unbind(
        &self,
        token: &str,
        connection: &Connection,
        now: DateTime<Utc>,
    ) -> Result<usize, TokenRejection> {
        self.keys.refresh_for(token).await;
        let claims = decode(token, &self.keys, now)?;
        Ok(self.bindings.delete_bindings(&connection.id, Some(&claims.token_id)).await?)
    }

    /// Moves a `requested` subscription to `active` (a client has bound a channel).
    /// Retries once if a concurrent write changed the subscription.
    async fn activate(
        &self,
        subscription: StoredSubscription,
        now: DateTime<Utc>,
    ) -> Result<StoredSubscription, StoreError> {
        let mut current = subscription;
        for _ in 0..2 {
            if current.status() != SubscriptionState::Requested {
                return Ok(current);
            }
            let mut resource = current.resource().clone();
            resource.status = Some(SubscriptionState::Active);
            let active = current.next_version(resource, now);
            match self.subscriptions.replace(&active, current.version()).await {
                Ok(()) => return Ok(active),
                Err(StoreError::Conflict) => match self.subscriptions.get(current.id()).await? {
                    Some(latest) => current = latest,
                    None => return Ok(current),
                },
                Err(other) => return Err(other),
            }
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(domain: Option<&str>, stage: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
        let mut context = json!({
            "connectionId": "L0SM9cOFvHcCIhw=", "connectedAt": 1_795_586_400_000_i64,
            "requestTimeEpoch": 1_795_586_400_123_i64, "routeKey": "$default"
        });
        if let Some(domain) = domain {
            context["domainName"] = json!(domain);
        }
        if let Some(stage) = stage {
            context["stage"] = json!(stage);
        }
        serde_json::from_value(json!({ "requestContext": context, "isBase64Encoded": false }))
            .unwrap_or_else(|e| unreachable!("test event: {e}"))
    }

    #[test]
    fn the_endpoint_comes_from_configuration_or_from_the_event() {
        let from_event =
            Connection::from_event(&event(Some("abc.execute-api.eu-west-1.amazonaws.com"), Some("live")), None);
        assert_eq!(
            from_event.map(|c| c.callback_url),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com/live".to_owned())
        );
        let configured =
            Connection::from_event(&event(Some("ws.example.org"), Some("live")), Some("https://mgmt/live/"));
        assert_eq!(configured.map(|c| c.callback_url), Some("https://mgmt/live".to_owned()));
        assert_eq!(Connection::from_event(&event(None, Some("live")), None), None, "nothing to post to");
    }
}
