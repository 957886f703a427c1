//! Pacing posts to the Management API: API Gateway's callback quota is per account and
//! region (10,000 requests a second by default, shared by every API there), and a
//! 429 costs a retry. Each fan-out instance takes its share of a configured account-wide
//! rate ([`Pacer`]), so the instances together stay under it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate limit with a burst: at most `burst` worth of posts at once, then one every
/// `interval` (the generic cell rate algorithm: one instant to keep, no background task).
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    burst: Duration,
    /// When the bucket would be empty again if nothing more were sent.
    theoretical_arrival: Mutex<Instant>,
}

impl Pacer {
    /// `per_second` posts a second, as many at once as that rate makes in `burst` (at
    /// least one); `None` for a rate that is not positive (no pacing).
    pub fn new(per_second: f64, burst: Duration) -> Option<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        Some(Self {
            interval: Duration::from_secs_f64(1.0 / per_second),
            burst,
            theoretical_arrival: Mutex::new(Instant::now()),
        })
    }

    /// Posts a second it allows.
    pub fn per_second(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// Waits until one more post is allowed.
    pub async fn wait(&self) {
        let now = Instant::now();
        let ready_at = {
            let mut arrival = self.theoretical_arrival.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let start = (*arrival).max(now);
            *arrival = start + self.interval;
            // Up to `burst` posts may be ahead of the steady rate.
            (start + self.interval).checked_sub(self.burst.max(self.interval))
        };
        if let Some(ready_at) = ready_at.filter(|at| *at > now) {
            tokio::time::sleep_until(ready_at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn posts_beyond_the_burst_wait_for_the_rate() {
        let pacer = Pacer::new(100.0, Duration::from_millis(100)).unwrap_or_else(|| panic!("a positive rate paces"));
        let start = Instant::now();
        for _ in 0..10 {
            pacer.wait().await;
        }
        assert_eq!(Instant::now() - start, Duration::ZERO, "the burst goes at once");
        for _ in 0..50 {
            pacer.wait().await;
        }
        // 50 more at 100 a second: half a second (the clock is paused, so this is exact
        // up to the float interval's rounding).
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_millis(499) && waited <= Duration::from_millis(501), "{waited:?}");
        assert!(Pacer::new(0.0, Duration::from_secs(1)).is_none(), "0 means unpaced");
    }
}
