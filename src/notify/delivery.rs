//! Delivery: one task per endpoint, started and stopped with the server.
//!
//! Each round the task claims the oldest queued events of its endpoint (at most
//! [`BATCH`], per repository in order; see `MetadataStore::claim_events`) under a lease
//! that outlives one request, POSTs them in one envelope, and deletes them when the
//! receiver answered 2xx. A failure keeps them queued and the same events (with any newer
//! ones) go again: at once while fewer than `threshold` attempts failed in a row, then
//! every `backoff` until one succeeds (Distribution's breaker). An event is deleted only
//! after its receiver accepted it, so nothing is lost across a restart; it is sent twice
//! only if the process dies between the receiver's answer and the delete (or the receiver
//! answers after the lease ended, which the lease's margin over `timeout` rules out).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::event::{ENVELOPE_MEDIA_TYPE, envelope};
use super::{EndpointSettings, Notifier};
use crate::metadata::{Lease, MetadataStore, QueuedEvent};

/// Events per request at most.
pub const BATCH: u32 = 32;

/// How often an idle task looks at the queue without being woken (events queued by
/// another replica, leases that ended).
const POLL: Duration = Duration::from_secs(1);

/// How much longer than one request's `timeout` a claim is held.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How often the queue is cut to `queuelimit`.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("the receiver answered {0}")]
    Status(reqwest::StatusCode),
}

impl Notifier {
    /// Starts one delivery task per endpoint on `tracker`; they stop at `cancel` (a request
    /// in flight is finished first), letting go of their claims.
    pub fn spawn_delivery(self: &Arc<Self>, tracker: &TaskTracker, cancel: CancellationToken) {
        for (i, endpoint) in self.settings.endpoints.iter().enumerate() {
            let task = Delivery {
                metadata: self.metadata.clone(),
                endpoint: endpoint.clone(),
                owner: self.source.instance_id.clone(),
                wake: self.wake[i].clone(),
                queue_limit: self.settings.queue_limit,
            };
            tracker.spawn(task.run(cancel.clone()));
        }
    }
}

struct Delivery {
    metadata: Arc<dyn MetadataStore>,
    endpoint: EndpointSettings,
    owner: String,
    wake: Arc<Notify>,
    queue_limit: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Delivery {
    async fn run(self, cancel: CancellationToken) {
        let name = self.endpoint.name.as_str();
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(endpoint = name, error = %e, "cannot build the notification client; no events are sent to this endpoint");
                return;
            }
        };
        let mut failures: u32 = 0;
        let mut trimmed_at: Option<tokio::time::Instant> = None;
        while !cancel.is_cancelled() {
            if trimmed_at.is_none_or(|t| t.elapsed() >= TRIM_EVERY) {
                self.trim().await;
                trimmed_at = Some(tokio::time::Instant::now());
            }
            // An idle queue costs a read, not a write (SQLite has one writer).
            match self.metadata.queued_events(name).await {
                Ok(0) => {
                    self.pause(&cancel, POLL).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(endpoint = name, error = %e, "cannot read the notification queue");
                    self.pause(&cancel, POLL).await;
                    continue;
                }
            }
            let now = now_ms();
            let lease = Lease {
                endpoint: name,
                owner: &self.owner,
                now_ms: now,
                until_ms: now.saturating_add(millis(self.endpoint.timeout + LEASE_MARGIN)),
            };
            let events = match self.metadata.claim_events(lease, BATCH).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(endpoint = name, error = %e, "cannot read the notification queue");
                    self.pause(&cancel, POLL).await;
                    continue;
                }
            };
            if events.is_empty() {
                self.pause(&cancel, POLL).await;
                continue;
            }
            // A request in flight is finished even at shutdown (bounded by `timeout`), so
            // the receiver never gets events that stay queued.
            match self.send(&client, &events).await {
                Ok(()) => {
                    failures = 0;
                    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
                    if let Err(e) = self.metadata.ack_events(name, &self.owner, &ids).await {
                        tracing::warn!(endpoint = name, error = %e, "delivered notification events could not be removed from the queue; they will be sent again");
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures >= self.endpoint.threshold {
                        if failures == self.endpoint.threshold {
                            tracing::warn!(endpoint = name, url = %self.endpoint.url, error = %e, failures, backoff = ?self.endpoint.backoff, "notification endpoint failing; retrying every backoff");
                        } else {
                            tracing::debug!(endpoint = name, error = %e, failures, "notification delivery failed");
                        }
                        self.pause(&cancel, self.endpoint.backoff).await;
                    } else {
                        tracing::debug!(endpoint = name, error = %e, failures, "notification delivery failed; retrying");
                    }
                }
            }
        }
        if let Err(e) = self.metadata.release_events(&self.owner).await {
            tracing::warn!(endpoint = name, error = %e, "could not release claimed notification events; they are sent after their lease ends");
        }
    }

    /// Waits `wait`, or less when events are queued here or the server stops.
    async fn pause(&self, cancel: &CancellationToken, wait: Duration) {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = self.wake.notified(), if wait == POLL => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    async fn trim(&self) {
        match self
            .metadata
            .trim_events(&self.endpoint.name, self.queue_limit)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                endpoint = %self.endpoint.name,
                dropped = n,
                limit = self.queue_limit,
                "notification queue full (notifications.queuelimit): dropped the oldest events"
            ),
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint.name, error = %e, "cannot trim the notification queue")
            }
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        for (name, value) in &self.endpoint.headers {
            // Checked when the configuration was read.
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            headers.append(name, value);
        }
        reqwest::Client::builder()
            .timeout(self.endpoint.timeout)
            .default_headers(headers)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        events: &[QueuedEvent],
    ) -> Result<(), DeliveryError> {
        let body = envelope(events.iter().map(|e| e.payload.as_str()));
        let response = client
            .post(&self.endpoint.url)
            .header(CONTENT_TYPE, ENVELOPE_MEDIA_TYPE)
            .body(body)
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(response.status()))
        }
    }
}
