//! The mirror's counters, kept in memory and logged periodically at `info` (the metrics
//! issue exposes them later).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Counters since the server started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered from the cache.
    pub hits: AtomicU64,
    /// Requests that needed the upstream's content.
    pub misses: AtomicU64,
    /// Requests sent upstream (tokens and redirects included).
    pub upstream_requests: AtomicU64,
    /// Upstream requests that failed (no answer, 429, 5xx, refused).
    pub upstream_errors: AtomicU64,
    /// Blob bytes received from upstreams.
    pub bytes_fetched: AtomicU64,
    /// Cached content served because the upstream could not be asked.
    pub stale_serves: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// [`Stats::hits`].
    pub hits: u64,
    /// [`Stats::misses`].
    pub misses: u64,
    /// [`Stats::upstream_requests`].
    pub upstream_requests: u64,
    /// [`Stats::upstream_errors`].
    pub upstream_errors: u64,
    /// [`Stats::bytes_fetched`].
    pub bytes_fetched: u64,
    /// [`Stats::stale_serves`].
    pub stale_serves: u64,
}

impl Stats {
    pub(super) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn upstream_request(&self) {
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn fetched(&self, bytes: u64) {
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(super) fn stale(&self) {
        self.stale_serves.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            hits: get(&self.hits),
            misses: get(&self.misses),
            upstream_requests: get(&self.upstream_requests),
            upstream_errors: get(&self.upstream_errors),
            bytes_fetched: get(&self.bytes_fetched),
            stale_serves: get(&self.stale_serves),
        }
    }

    /// Logs the counters every `interval` when they changed, until `cancel`.
    pub async fn log_periodically(
        self: std::sync::Arc<Self>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let mut last = Snapshot::default();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let now = self.snapshot();
            if now != last {
                tracing::info!(
                    hits = now.hits,
                    misses = now.misses,
                    upstream_requests = now.upstream_requests,
                    upstream_errors = now.upstream_errors,
                    bytes_fetched = now.bytes_fetched,
                    stale_serves = now.stale_serves,
                    "mirror counters"
                );
                last = now;
            }
        }
    }
}
