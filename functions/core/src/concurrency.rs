//! Running many futures with a bound on how many are in flight: the store's routing
//! queries, the fan-out's subscriptions and posts, and the heartbeat's visits all need it,
//! so it lives below all of them.

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

/// Runs `futures` with at most `limit` in flight; returns their outputs (in completion
/// order).
pub async fn bounded<F: Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    let mut outputs = Vec::with_capacity(futures.len());
    let mut in_flight = FuturesUnordered::new();
    for future in futures {
        if in_flight.len() >= limit.max(1)
            && let Some(output) = in_flight.next().await
        {
            outputs.push(output);
        }
        in_flight.push(future);
    }
    while let Some(output) = in_flight.next().await {
        outputs.push(output);
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_the_limit_run_at_once() {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let futures: Vec<_> = (0..20)
            .map(|n| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    n
                }
            })
            .collect();
        let mut outputs = bounded(futures, 3).await;
        outputs.sort_unstable();
        assert_eq!(outputs, (0..20).collect::<Vec<_>>());
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
