//! The duration and failures of every call the registry services make into the blob store
//! and the metadata store, per operation: thin wrappers, put around the two stores by
//! `server.rs` when metrics are enabled, that forward each call unchanged and time it.
//! The stores and the services know nothing of them.
//!
//! **Every method is forwarded explicitly**, default methods too: a wrapper that left one
//! to its trait's default would silently replace the store's own implementation
//! (`touch_pulled`, `search_repositories`, `redirect_url`). A test holds this file to the
//! traits' method lists: a method added to `BlobStore` or `MetadataStore` must be
//! forwarded here.
//!
//! A call that returns a stream (`read`, `upload_read`) is timed until the stream is
//! returned; the bytes flowing afterwards are the request's, in the HTTP metrics.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use uuid::Uuid;

use crate::metadata::{
    LockGuard, LockKey, MetadataError, MetadataLocks, MetadataStore, Names, NewManifest, Referrer,
    StoredManifest, UploadSession,
};
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::tree::TreeEntries;
use crate::storage::{BlobStore, ByteStream, StagedUpload, StorageError, StoredBlob, UploadKey};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// Store call durations: from 100 µs (a cached SQLite read) to 1 minute (S3 retrying).
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 60.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The duration and failures of one store's operations.
#[derive(Clone, Debug)]
pub struct OperationMetrics {
    duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    errors: Family<OperationLabels, Counter>,
}

impl OperationMetrics {
    /// Registers `<prefix>_operation_duration_seconds` and `<prefix>_errors`.
    pub(super) fn register(registry: &mut Registry, prefix: &str, what: &str) -> Self {
        let duration = Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register(
            format!("{prefix}_operation_duration_seconds"),
            format!("Duration of the calls into {what}, by operation"),
            duration.clone(),
        );
        let errors = Family::default();
        registry.register(
            format!("{prefix}_errors"),
            format!("Calls into {what} that failed, by operation"),
            errors.clone(),
        );
        OperationMetrics { duration, errors }
    }

    fn record(&self, operation: &'static str, took: Duration, failed: bool) {
        let labels = OperationLabels { operation };
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// Awaits `$call`, records its duration and whether it failed (`$failed` judges the
/// error), and returns its result.
macro_rules! timed {
    ($self:ident, $operation:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        $self.metrics.record(
            $operation,
            started.elapsed(),
            result.as_ref().err().is_some_and(Failure::counts),
        );
        result
    }};
}

/// Which errors are the store's failures, not answers: a blob not found, or a client's
/// body that broke mid-way, is not a failure of storage; a manifest naming a blob the
/// repository lacks is not a failure of the database.
trait Failure {
    fn counts(&self) -> bool;
}

impl Failure for StorageError {
    fn counts(&self) -> bool {
        !matches!(self, StorageError::NotFound | StorageError::Body(_))
    }
}

impl Failure for MetadataError {
    fn counts(&self) -> bool {
        !matches!(
            self,
            MetadataError::MissingReference { .. } | MetadataError::SizeMismatch { .. }
        )
    }
}

/// A blob store whose calls are timed.
pub struct TimedBlobStore {
    inner: Arc<dyn BlobStore>,
    metrics: OperationMetrics,
}

impl TimedBlobStore {
    /// `inner`, timed into `metrics`.
    pub fn new(inner: Arc<dyn BlobStore>, metrics: OperationMetrics) -> Self {
        TimedBlobStore { inner, metrics }
    }
}

#[async_trait]
impl BlobStore for TimedBlobStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn probe(&self) -> Result<(), StorageError> {
        timed!(self, "probe", self.inner.probe())
    }

    fn blob_location(&self, digest: &Digest) -> String {
        self.inner.blob_location(digest)
    }

    async fn read_store_id(&self) -> Result<Option<String>, StorageError> {
        timed!(self, "read_store_id", self.inner.read_store_id())
    }

    async fn write_store_id(&self, id: &str) -> Result<String, StorageError> {
        timed!(self, "write_store_id", self.inner.write_store_id(id))
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        timed!(self, "stat", self.inner.stat(digest))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<ByteStream<'static>, StorageError> {
        timed!(self, "read", self.inner.read(digest, range))
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StorageError> {
        timed!(self, "redirect_url", self.inner.redirect_url(digest))
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        timed!(self, "put", self.inner.put(digest, bytes))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        timed!(self, "delete", self.inner.delete(digest))
    }

    async fn upload_start(&self, key: &UploadKey) -> Result<(), StorageError> {
        timed!(self, "upload_start", self.inner.upload_start(key))
    }

    async fn upload_append(
        &self,
        key: &UploadKey,
        offset: u64,
        body: ByteStream<'_>,
    ) -> Result<u64, StorageError> {
        timed!(
            self,
            "upload_append",
            self.inner.upload_append(key, offset, body)
        )
    }

    async fn upload_read(
        &self,
        key: &UploadKey,
        len: u64,
    ) -> Result<ByteStream<'static>, StorageError> {
        timed!(self, "upload_read", self.inner.upload_read(key, len))
    }

    async fn upload_seal(&self, key: &UploadKey, size: u64) -> Result<(), StorageError> {
        timed!(self, "upload_seal", self.inner.upload_seal(key, size))
    }

    async fn upload_publish(
        &self,
        key: &UploadKey,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        timed!(
            self,
            "upload_publish",
            self.inner.upload_publish(key, size, digest)
        )
    }

    async fn upload_commit(
        &self,
        key: &UploadKey,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        timed!(
            self,
            "upload_commit",
            self.inner.upload_commit(key, size, digest)
        )
    }

    async fn upload_abort(&self, key: &UploadKey) -> Result<(), StorageError> {
        timed!(self, "upload_abort", self.inner.upload_abort(key))
    }

    async fn list_blobs(&self) -> Result<Vec<StoredBlob>, StorageError> {
        timed!(self, "list_blobs", self.inner.list_blobs())
    }

    async fn list_uploads(&self) -> Result<Vec<StagedUpload>, StorageError> {
        timed!(self, "list_uploads", self.inner.list_uploads())
    }

    async fn prune_empty_directories(&self, min_age: Duration) -> Result<(), StorageError> {
        timed!(
            self,
            "prune_empty_directories",
            self.inner.prune_empty_directories(min_age)
        )
    }

    async fn tree_entries(&self, dir: &str) -> Result<TreeEntries, StorageError> {
        timed!(self, "tree_entries", self.inner.tree_entries(dir))
    }

    async fn tree_files(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        timed!(self, "tree_files", self.inner.tree_files(dir))
    }

    async fn tree_read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        timed!(self, "tree_read", self.inner.tree_read(path))
    }
}

/// A metadata store whose calls are timed (lock waits too: `lock`, `try_lock`).
pub struct TimedMetadataStore {
    inner: Arc<dyn MetadataStore>,
    metrics: OperationMetrics,
}

impl TimedMetadataStore {
    /// `inner`, timed into `metrics`.
    pub fn new(inner: Arc<dyn MetadataStore>, metrics: OperationMetrics) -> Self {
        TimedMetadataStore { inner, metrics }
    }
}

#[async_trait]
impl MetadataLocks for TimedMetadataStore {
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError> {
        timed!(self, "lock", self.inner.lock(key))
    }

    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError> {
        timed!(self, "try_lock", self.inner.try_lock(key))
    }

    async fn close_locks(&self) {
        self.inner.close_locks().await;
    }
}

#[async_trait]
impl MetadataStore for TimedMetadataStore {
    async fn repository_description(
        &self,
        repository: &str,
    ) -> Result<Option<String>, MetadataError> {
        timed!(
            self,
            "repository_description",
            self.inner.repository_description(repository)
        )
    }

    async fn enqueue_events(
        &self,
        events: &[crate::metadata::NewEvent<'_>],
    ) -> Result<(), MetadataError> {
        timed!(self, "enqueue_events", self.inner.enqueue_events(events))
    }

    async fn claim_events(
        &self,
        lease: crate::metadata::Lease<'_>,
        limit: u32,
    ) -> Result<Vec<crate::metadata::QueuedEvent>, MetadataError> {
        timed!(self, "claim_events", self.inner.claim_events(lease, limit))
    }

    async fn ack_events(
        &self,
        endpoint: &str,
        owner: &str,
        ids: &[i64],
    ) -> Result<u64, MetadataError> {
        timed!(
            self,
            "ack_events",
            self.inner.ack_events(endpoint, owner, ids)
        )
    }

    async fn release_events(&self, owner: &str) -> Result<u64, MetadataError> {
        timed!(self, "release_events", self.inner.release_events(owner))
    }

    async fn trim_events(&self, endpoint: &str, keep: u64) -> Result<u64, MetadataError> {
        timed!(self, "trim_events", self.inner.trim_events(endpoint, keep))
    }

    async fn drop_events_except(&self, endpoints: &[&str]) -> Result<u64, MetadataError> {
        timed!(
            self,
            "drop_events_except",
            self.inner.drop_events_except(endpoints)
        )
    }

    async fn queued_events(&self, endpoint: &str) -> Result<u64, MetadataError> {
        timed!(self, "queued_events", self.inner.queued_events(endpoint))
    }

    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        timed!(
            self,
            "blob_in_repository",
            self.inner.blob_in_repository(repository, digest)
        )
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        timed!(self, "blob_size", self.inner.blob_size(digest))
    }

    async fn link_blobs(
        &self,
        repository: &RepositoryName,
        blobs: &[(Digest, u64)],
    ) -> Result<(), MetadataError> {
        timed!(self, "link_blobs", self.inner.link_blobs(repository, blobs))
    }

    async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, MetadataError> {
        timed!(
            self,
            "mount_blob",
            self.inner.mount_blob(repository, digest, from)
        )
    }

    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        timed!(
            self,
            "unlink_blob",
            self.inner.unlink_blob(repository, digest)
        )
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError> {
        timed!(self, "create_upload", self.inner.create_upload(session))
    }

    async fn upload(&self, id: &Uuid) -> Result<Option<UploadSession>, MetadataError> {
        timed!(self, "upload", self.inner.upload(id))
    }

    async fn advance_upload(
        &self,
        id: &Uuid,
        from_size: u64,
        to_size: u64,
        hash_state: Option<&[u8]>,
    ) -> Result<bool, MetadataError> {
        timed!(
            self,
            "advance_upload",
            self.inner
                .advance_upload(id, from_size, to_size, hash_state)
        )
    }

    async fn complete_upload(
        &self,
        session: &UploadSession,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        timed!(
            self,
            "complete_upload",
            self.inner.complete_upload(session, digest)
        )
    }

    async fn delete_upload(&self, id: &Uuid) -> Result<bool, MetadataError> {
        timed!(self, "delete_upload", self.inner.delete_upload(id))
    }

    async fn stale_uploads(
        &self,
        started_before: i64,
    ) -> Result<Vec<UploadSession>, MetadataError> {
        timed!(
            self,
            "stale_uploads",
            self.inner.stale_uploads(started_before)
        )
    }

    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest<'_>,
    ) -> Result<(), MetadataError> {
        timed!(
            self,
            "put_manifest",
            self.inner.put_manifest(repository, manifest)
        )
    }

    async fn tag_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        timed!(
            self,
            "tag_manifest",
            self.inner.tag_manifest(repository, tag, digest)
        )
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        timed!(self, "manifest", self.inner.manifest(repository, digest))
    }

    async fn tagged_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        timed!(
            self,
            "tagged_manifest",
            self.inner.tagged_manifest(repository, tag)
        )
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        timed!(
            self,
            "delete_manifest",
            self.inner.delete_manifest(repository, digest)
        )
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError> {
        timed!(self, "delete_tag", self.inner.delete_tag(repository, tag))
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError> {
        timed!(
            self,
            "repository_exists",
            self.inner.repository_exists(repository)
        )
    }

    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Names>, MetadataError> {
        timed!(
            self,
            "list_tags",
            self.inner.list_tags(repository, last, limit)
        )
    }

    async fn list_repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Names, MetadataError> {
        timed!(
            self,
            "list_repositories",
            self.inner.list_repositories(last, limit)
        )
    }

    async fn search_repositories(
        &self,
        query: &str,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        timed!(
            self,
            "search_repositories",
            self.inner.search_repositories(query, last, limit)
        )
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetadataError> {
        timed!(
            self,
            "referrers",
            self.inner.referrers(repository, subject, artifact_type)
        )
    }

    async fn sample_blobs(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetadataError> {
        timed!(self, "sample_blobs", self.inner.sample_blobs(limit))
    }

    async fn touch_pulled(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        timed!(
            self,
            "touch_pulled",
            self.inner.touch_pulled(repository, digest)
        )
    }

    async fn info(&self, key: &str) -> Result<Option<String>, MetadataError> {
        timed!(self, "info", self.inner.info(key))
    }

    async fn set_info(&self, key: &str, value: &str) -> Result<(), MetadataError> {
        timed!(self, "set_info", self.inner.set_info(key, value))
    }

    async fn init_info(&self, key: &str, value: &str) -> Result<String, MetadataError> {
        timed!(self, "init_info", self.inner.init_info(key, value))
    }
}

#[cfg(test)]
mod tests {
    /// The names of the methods of `trait <name>` in `source`.
    fn trait_methods(source: &str, name: &str) -> Vec<String> {
        let start = source
            .find(&format!("pub trait {name}"))
            .unwrap_or_else(|| panic!("no trait {name}"));
        let body = &source[start..];
        let end = body.find("\n}\n").expect("the trait's end");
        body[..end]
            .lines()
            .map(str::trim_start)
            .filter_map(|line| {
                let rest = line
                    .strip_prefix("async fn ")
                    .or_else(|| line.strip_prefix("fn "))?;
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
                Some(rest[..end].to_string())
            })
            .collect()
    }

    /// Every method of the store traits is forwarded here (a default method left out
    /// would replace the store's own implementation with the default).
    #[test]
    fn every_store_method_is_forwarded() {
        let this = include_str!("stores.rs");
        let forwarded = |method: &str| {
            this.contains(&format!("async fn {method}(")) || this.contains(&format!("fn {method}("))
        };
        for (source, name) in [
            (include_str!("../storage/mod.rs"), "BlobStore"),
            (include_str!("../metadata/mod.rs"), "MetadataStore"),
            (include_str!("../metadata/locks.rs"), "MetadataLocks"),
        ] {
            let methods = trait_methods(source, name);
            assert!(methods.len() > 1, "{name}: {methods:?}");
            for method in methods {
                assert!(
                    forwarded(&method),
                    "{name}::{method} is not forwarded by metrics/stores.rs"
                );
            }
        }
    }
}
