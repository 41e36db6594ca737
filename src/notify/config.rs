//! `notifications` as the server uses it: the enabled endpoints (disabled ones are left out
//! by the configuration) and the queue's settings. Read and checked in
//! `crate::config::notifications`.

use std::time::Duration;

/// Distribution's defaults for an endpoint's `timeout`, `threshold` and `backoff`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// See [`DEFAULT_TIMEOUT`].
pub const DEFAULT_THRESHOLD: u32 = 10;
/// See [`DEFAULT_TIMEOUT`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// `notifications.queuelimit` when unset: events kept per endpoint at most.
pub const DEFAULT_QUEUE_LIMIT: u64 = 100_000;

/// `notifications`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationSettings {
    /// The enabled endpoints (none: nothing is recorded at all).
    pub endpoints: Vec<EndpointSettings>,
    /// `events.includereferences`: manifest events list the manifest's references.
    pub include_references: bool,
    /// Ferry's `queuelimit`: the most events kept per endpoint; the oldest beyond it are
    /// dropped (with a warning), so a dead receiver cannot fill the disk.
    pub queue_limit: u64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            endpoints: Vec::new(),
            include_references: false,
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }
}

/// One enabled entry of `notifications.endpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSettings {
    /// `name`: identifies the endpoint (in logs, and its queued events).
    pub name: String,
    /// `url`: where events are POSTed (http or https).
    pub url: String,
    /// `headers`: sent with every request (a name may repeat).
    pub headers: Vec<(String, String)>,
    /// `timeout`: of one delivery request.
    pub timeout: Duration,
    /// `threshold`: failures in a row before backing off.
    pub threshold: u32,
    /// `backoff`: the wait between attempts once `threshold` failed in a row.
    pub backoff: Duration,
    /// `ignoredmediatypes` and `ignore.mediatypes`: events whose target has one of these
    /// media types are not sent.
    pub ignored_media_types: Vec<String>,
    /// `ignore.actions`: events with one of these actions are not sent.
    pub ignored_actions: Vec<String>,
}
