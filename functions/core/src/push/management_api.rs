//! [`Pusher`] for the API Gateway Management API: `PostToConnection` as our own signed
//! request ([`super::signed_post`], the fan-out's hot path), `DeleteConnection` through
//! `aws-sdk-apigatewaymanagement` (rare: revocations and closes).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;

use super::signed_post::SignedPoster;
use super::{ATTEMPT_TIMEOUT, PushError, Pusher};

/// Posts and closes through the Management API. For closes, one SDK client per endpoint,
/// built on first use and kept for the life of the Lambda instance.
#[derive(Debug)]
pub struct ManagementApiPusher {
    config: SdkConfig,
    clients: Mutex<HashMap<String, Client>>,
    poster: SignedPoster,
}

impl ManagementApiPusher {
    /// A pusher using the shared SDK configuration (credentials, region, clock).
    pub fn new(config: &SdkConfig) -> Self {
        Self { config: config.clone(), clients: Mutex::new(HashMap::new()), poster: SignedPoster::new(config) }
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

impl Pusher for ManagementApiPusher {
    async fn post(&self, callback_url: &str, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        self.poster.post(callback_url, connection_id, payload).await
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
