//! Retrying posts that were throttled or failed, with exponential backoff and full jitter.

use std::time::Duration;

use super::{PushError, Pusher};

/// How often and how patiently to retry a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Upper bound of the first pause; doubles with each retry.
    pub base_delay: Duration,
    /// Upper bound of any pause.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts, pauses drawn from up to 50, 100, 200 ms: about a third of a
    /// second at worst, well inside a Lambda timeout, enough to ride out a burst.
    fn default() -> Self {
        Self { attempts: 4, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1-based): uniform in `[0, min(max, base·2^(retry-1))]`
    /// ("full jitter"), so many posts retried at once spread out.
    pub fn pause(&self, retry: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

/// What a post with retries came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostOutcome {
    /// The last attempt's result.
    pub result: Result<(), PushError>,
    /// How many retries were made (0 when the first attempt settled it).
    pub retries: u32,
}

/// Posts, retrying throttled (429) and failed posts as the policy says. A 410 Gone is
/// final at once: retrying cannot bring a connection back.
pub async fn post_with_retry<P: Pusher>(
    pusher: &P,
    policy: &RetryPolicy,
    callback_url: &str,
    connection_id: &str,
    payload: &[u8],
) -> PostOutcome {
    let mut retries = 0;
    loop {
        match pusher.post(callback_url, connection_id, payload).await {
            Err(PushError::Throttled | PushError::Failed(_)) if retries + 1 < policy.attempts => {
                retries += 1;
                tokio::time::sleep(policy.pause(retries)).await;
            }
            result => return PostOutcome { result, retries },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_under_the_cap() {
        let policy =
            RetryPolicy { attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(300) };
        for _ in 0..200 {
            assert!(policy.pause(1) <= Duration::from_millis(100));
            assert!(policy.pause(2) <= Duration::from_millis(200));
            assert!(policy.pause(5) <= Duration::from_millis(300));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| policy.pause(3)).collect();
        assert!(spread.len() > 10, "jittered, not fixed");
    }
}
