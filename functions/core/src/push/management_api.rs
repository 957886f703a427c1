//! [`Pusher`] over `aws-sdk-apigatewaymanagement`: SigV4-signed `PostToConnection` and
//! `DeleteConnection` calls.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, SdkError};
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;

use super::{PushError, Pusher};

/// Longest a single post may take.
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Posts through the Management API. One SDK client per endpoint, built on first use
/// and kept for the life of the Lambda instance (clients share one connection pool).
#[derive(Debug)]
pub struct ManagementApiPusher {
    config: SdkConfig,
    clients: Mutex<HashMap<String, Client>>,
}

impl ManagementApiPusher {
    /// A pusher using the shared SDK configuration (credentials, region, retries).
    pub fn new(config: &SdkConfig) -> Self {
        Self { config: config.clone(), clients: Mutex::new(HashMap::new()) }
    }

    fn client(&self, callback_url: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry(callback_url.to_owned())
            .or_insert_with(|| {
                // Retries are ours (`post_with_retry`, with jitter and a 410 short-cut), so
                // the SDK makes one attempt, bounded in time.
                let config = aws_sdk_apigatewaymanagement::config::Builder::from(&self.config)
                    .endpoint_url(callback_url)
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(ATTEMPT_TIMEOUT).build())
                    .build();
                Client::from_conf(config)
            })
            .clone()
    }
}

fn classify(error: SdkError<PostToConnectionError, HttpResponse>) -> PushError {
    let status = error.raw_response().map(|response| response.status().as_u16());
    match error.as_service_error() {
        Some(e) if e.is_gone_exception() => return PushError::Gone,
        Some(e) if e.is_limit_exceeded_exception() => return PushError::Throttled,
        _ => {}
    }
    match status {
        // Endpoints that answer with a bare status (no error type) still mean the same.
        Some(410) => PushError::Gone,
        Some(429) => PushError::Throttled,
        _ => PushError::Failed(DisplayErrorContext(&error).to_string()),
    }
}

impl Pusher for ManagementApiPusher {
    async fn post(&self, callback_url: &str, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        self.client(callback_url)
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn close(&self, callback_url: &str, connection_id: &str) -> Result<(), PushError> {
        let result = self.client(callback_url).delete_connection().connection_id(connection_id).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.raw_response().map(|response| response.status().as_u16()) {
                Some(410) => Err(PushError::Gone),
                Some(429) => Err(PushError::Throttled),
                _ => Err(PushError::Failed(DisplayErrorContext(&error).to_string())),
            },
        }
    }
}
