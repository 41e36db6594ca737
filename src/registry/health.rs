//! Readiness (`GET /health/ready`): whether the registry can serve now. The metadata
//! database must answer a query, and the blob store a read of its identity marker (a real
//! read, on the filesystem and on S3, of a file every store has once the server started).
//! Each check is bounded in time, so a hung store answers "not ready" instead of hanging
//! the probe.

use std::sync::Arc;
use std::time::Duration;

use super::Registry;
use crate::metadata::MetadataStore;
use crate::storage::BlobStore;

/// How long each check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The checks behind `/health/ready`.
#[derive(Clone)]
pub struct Readiness {
    metadata: Arc<dyn MetadataStore>,
    storage: Arc<dyn BlobStore>,
}

impl Readiness {
    /// The checks of `registry`'s stores.
    pub fn of(registry: &Registry) -> Self {
        Readiness {
            metadata: registry.metadata().clone(),
            storage: registry.storage().clone(),
        }
    }

    /// The parts that are not ready (empty: ready).
    pub async fn failing(&self) -> Vec<&'static str> {
        let metadata = tokio::time::timeout(CHECK_TIMEOUT, self.metadata.info("storage"));
        let storage = tokio::time::timeout(CHECK_TIMEOUT, self.storage.read_store_id());
        let (metadata, storage) = tokio::join!(metadata, storage);
        let mut failing = Vec::new();
        if !matches!(metadata, Ok(Ok(_))) {
            failing.push("metadata");
        }
        if !matches!(storage, Ok(Ok(Some(_)))) {
            failing.push("storage");
        }
        failing
    }
}
