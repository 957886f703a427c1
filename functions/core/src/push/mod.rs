//! Sending frames to WebSocket connections, and closing them: the [`Pusher`] port and its
//! adapter for the API Gateway Management API (`POST` and `DELETE @connections/{id}`).

mod management_api;
pub mod pace;
mod retry;
mod signed_post;

use std::future::Future;

pub use management_api::ManagementApiPusher;
pub use pace::Pacer;
pub use retry::{PostOutcome, RetryPolicy, post_with_retry};

/// Longest one call to the Management API may take, from connecting to the last byte of
/// the answer; retries are ours ([`post_with_retry`]).
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a post to a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// 410: the connection no longer exists; its bindings should be deleted.
    #[error("the connection is gone")]
    Gone,
    /// 429: throttled, or the client's buffer is full; retry later.
    #[error("throttled by the Management API")]
    Throttled,
    /// Anything else (detail for logs only).
    #[error("post failed: {0}")]
    Failed(String),
}

/// Posts one frame to one connection.
pub trait Pusher: Send + Sync {
    /// Posts `payload` as one text frame to `connection_id`, through the Management API
    /// endpoint `callback_url` (`https://{domain}/{stage}`).
    fn post(
        &self,
        callback_url: &str,
        connection_id: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), PushError>> + Send;

    /// Closes the connection (`DeleteConnection`); [`PushError::Gone`] if it was closed already.
    fn close(&self, callback_url: &str, connection_id: &str) -> impl Future<Output = Result<(), PushError>> + Send;
}

impl<P: Pusher> Pusher for std::sync::Arc<P> {
    fn post(
        &self,
        callback_url: &str,
        connection_id: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), PushError>> + Send {
        (**self).post(callback_url, connection_id, payload)
    }

    fn close(&self, callback_url: &str, connection_id: &str) -> impl Future<Output = Result<(), PushError>> + Send {
        (**self).close(callback_url, connection_id)
    }
}
