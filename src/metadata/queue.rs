//! The notification queue's rows as the metadata store hands them over
//! ([`super::MetadataStore::enqueue_events`] and the methods after it): events waiting for
//! delivery to one endpoint, in the order they were recorded.

/// An event to queue for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// The endpoint's `name`.
    pub endpoint: &'a str,
    /// The repository the event is about (delivery is ordered per repository).
    pub repository: &'a str,
    /// The event as the receiver gets it (JSON text).
    pub payload: &'a str,
}

/// A queued event, claimed for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Its place in the queue (increasing in the order events were recorded).
    pub id: i64,
    /// The repository it is about.
    pub repository: String,
    /// The event (JSON text).
    pub payload: String,
}

/// A claim on queued events: who holds it and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease<'a> {
    /// The endpoint whose events are claimed.
    pub endpoint: &'a str,
    /// The claiming process (its instance id).
    pub owner: &'a str,
    /// Now, in Unix milliseconds: leases that ended before are free.
    pub now_ms: i64,
    /// Until when the claimed rows are held (Unix milliseconds).
    pub until_ms: i64,
}
