//! Notifications (webhooks) as Distribution sends them (`notifications.endpoints`).
//!
//! The registry services ([`crate::registry`]) call [`Notifier::record`] after an operation
//! committed (a manifest or blob pushed, pulled, mounted or deleted), so every entry point,
//! the mirror included, emits the same events. `record` renders the event once
//! ([`event`]), drops it for the endpoints that ignore its action or media type, and
//! inserts one row per endpoint into the metadata database's queue in one transaction:
//! the only work on the request path, and none at all without endpoints (no `Notifier`).
//! A task per endpoint ([`delivery`]) claims queued rows in order, POSTs them, and deletes
//! them once the receiver answered 2xx; a slow or dead receiver only delays its own
//! queue. The queue survives restarts and is shared by replicas on one PostgreSQL database
//! (claims are leases, see [`crate::metadata::MetadataStore::claim_events`]).

pub mod config;
pub mod delivery;
pub mod event;

use std::sync::Arc;

use tokio::sync::Notify;

pub use self::config::{EndpointSettings, NotificationSettings};
pub use self::event::{EventAction, SourceRecord, Target};
use crate::metadata::{MetadataError, MetadataStore, NewEvent};
use crate::registry::context::RequestContext;

/// Request extension set when notifications are on: only then does `http::classify` record
/// each request's facts ([`crate::registry::context::RequestFacts`]), which events report
/// and nothing else reads.
#[derive(Clone, Copy, Debug)]
pub struct Notifying;

/// Records events for the configured endpoints. Shared by the services and the delivery
/// tasks.
pub struct Notifier {
    metadata: Arc<dyn MetadataStore>,
    settings: NotificationSettings,
    source: SourceRecord,
    /// One per endpoint (in `settings.endpoints`' order): wakes its delivery task.
    wake: Vec<Arc<Notify>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("endpoints", &self.settings.endpoints.len())
            .field("source", &self.source)
            .finish()
    }
}

impl Notifier {
    /// The notifier for `settings`, or `None` without enabled endpoints. Events queued for
    /// endpoints no longer configured (removed, or now disabled) are dropped here.
    /// `http_addr` is `http.addr` (its port goes into `source.addr`).
    pub async fn start(
        metadata: Arc<dyn MetadataStore>,
        settings: &NotificationSettings,
        http_addr: &str,
    ) -> Result<Option<Arc<Notifier>>, MetadataError> {
        let names: Vec<&str> = settings.endpoints.iter().map(|e| e.name.as_str()).collect();
        let dropped = metadata.drop_events_except(&names).await?;
        if dropped > 0 {
            tracing::warn!(
                count = dropped,
                "dropped queued notification events of endpoints no longer configured"
            );
        }
        if settings.endpoints.is_empty() {
            return Ok(None);
        }
        let source = SourceRecord {
            addr: source_addr(http_addr),
            instance_id: uuid::Uuid::new_v4().to_string(),
        };
        tracing::info!(endpoints = ?names, instance = %source.instance_id, "sending notifications");
        Ok(Some(Arc::new(Notifier {
            metadata,
            wake: settings
                .endpoints
                .iter()
                .map(|_| Arc::new(Notify::new()))
                .collect(),
            settings: settings.clone(),
            source,
        })))
    }

    /// This process's instance id (`source.instanceID`, and the owner of its claims).
    pub fn instance_id(&self) -> &str {
        &self.source.instance_id
    }

    /// Queues the event `action` on `target` for every endpoint that wants it. Called after
    /// the operation committed; a failure to queue is logged (the operation stands).
    /// Operations without an HTTP request behind them (the mirror's own cache fills) emit
    /// nothing.
    pub async fn record(&self, cx: &RequestContext, action: EventAction, target: Target<'_>) {
        let wanted: Vec<usize> = self
            .settings
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| wants(e, action, &target))
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let Some(payload) = event::render(
            cx,
            action,
            &target,
            &self.source,
            self.settings.include_references,
        ) else {
            return;
        };
        let rows: Vec<NewEvent<'_>> = wanted
            .iter()
            .map(|&i| NewEvent {
                endpoint: &self.settings.endpoints[i].name,
                repository: target.repository().as_str(),
                payload: &payload,
            })
            .collect();
        match self.metadata.enqueue_events(&rows).await {
            Ok(()) => {
                for i in wanted {
                    self.wake[i].notify_one();
                }
            }
            Err(e) => tracing::warn!(
                request = %cx.id,
                action = action.as_str(),
                repository = %target.repository(),
                error = %e,
                "could not queue a notification event; it is not sent"
            ),
        }
    }
}

/// Whether `endpoint` wants the event (`ignore.actions`, `ignore.mediatypes`,
/// `ignoredmediatypes`).
fn wants(endpoint: &EndpointSettings, action: EventAction, target: &Target<'_>) -> bool {
    if endpoint
        .ignored_actions
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action.as_str()))
    {
        return false;
    }
    !target
        .media_type()
        .is_some_and(|m| endpoint.ignored_media_types.iter().any(|i| i == m))
}

/// `source.addr`: this host's name and the port of `http.addr`, as Distribution reports it.
fn source_addr(http_addr: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    match http_addr.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() => format!("{host}:{port}"),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Digest, RepositoryName};

    #[test]
    fn ignore_lists_filter_by_action_and_media_type() {
        let endpoint = EndpointSettings {
            name: "a".into(),
            url: "http://x".into(),
            headers: vec![],
            timeout: config::DEFAULT_TIMEOUT,
            threshold: 1,
            backoff: config::DEFAULT_BACKOFF,
            ignored_media_types: vec![event::BLOB_MEDIA_TYPE.into()],
            ignored_actions: vec!["pull".into()],
        };
        let repo = RepositoryName::parse("a/b").unwrap();
        let digest = Digest::of(crate::oci::Algorithm::Sha256, b"x");
        let blob = Target::blob(&repo, &digest, 1);
        let manifest = Target::manifest(
            &repo,
            &digest,
            "application/vnd.oci.image.manifest.v1+json",
            b"{}",
        );
        assert!(!wants(&endpoint, EventAction::Push, &blob));
        assert!(wants(&endpoint, EventAction::Push, &manifest));
        assert!(!wants(&endpoint, EventAction::Pull, &manifest));
        assert!(wants(
            &endpoint,
            EventAction::Delete,
            &Target::deleted_blob(&repo, &digest)
        ));
        assert!(source_addr("0.0.0.0:5000").ends_with(":5000"));
    }
}
