//! What the garbage collector needs from metadata: a consistent snapshot to plan from,
//! and deletions that re-check, inside their own transaction, that the thing is still
//! garbage (so a push racing the collector wins). Bytes are removed by the collector itself,
//! after the row, holding [`super::LockKey::Blob`] of the digest throughout.

use async_trait::async_trait;

use super::{MetadataError, MetadataStore};
use crate::oci::Digest;

/// A manifest as the collector sees it.
#[derive(Clone, Debug)]
pub struct ManifestRow {
    /// Repository id.
    pub repository: i64,
    /// Digest.
    pub digest: String,
    /// Size of its bytes.
    pub size: u64,
    /// Unix seconds of the push.
    pub created_at: i64,
    /// Subject digest, if any.
    pub subject: Option<String>,
}

/// A reference from a manifest to a blob or child manifest.
#[derive(Clone, Debug)]
pub struct ReferenceRow {
    /// Repository id.
    pub repository: i64,
    /// The referring manifest.
    pub manifest: String,
    /// The referenced content.
    pub child: String,
    /// `config`, `layer` or `manifest`.
    pub kind: String,
}

/// A blob linked into a repository.
#[derive(Clone, Debug)]
pub struct LinkRow {
    /// Repository id.
    pub repository: i64,
    /// Blob digest.
    pub digest: String,
    /// Unix seconds of the link.
    pub created_at: i64,
}

/// A committed blob.
#[derive(Clone, Debug)]
pub struct BlobRow {
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix seconds of the last upload, link, mount or read check.
    pub last_used: i64,
}

/// Everything the collector plans from, read in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `(id, name)` of every repository.
    pub repositories: Vec<(i64, String)>,
    /// Every manifest.
    pub manifests: Vec<ManifestRow>,
    /// `(repository, manifest digest)` of every tag.
    pub tags: Vec<(i64, String)>,
    /// Every manifest reference.
    pub references: Vec<ReferenceRow>,
    /// Every repository link.
    pub links: Vec<LinkRow>,
    /// Every blob.
    pub blobs: Vec<BlobRow>,
    /// Repository names with upload sessions.
    pub uploading: Vec<String>,
}

/// Metadata operations of the garbage collector.
#[async_trait]
pub trait CollectorMetadata: MetadataStore {
    /// A consistent snapshot of the metadata.
    async fn snapshot(&self) -> Result<Snapshot, MetadataError>;

    /// Deletes an untagged manifest if, inside the transaction, it is still older than
    /// `cutoff`, untagged, no manifest lists it as a child, and its subject (if any) is
    /// neither tagged nor a child.
    async fn delete_manifest_if_unreachable(
        &self,
        repository: i64,
        digest: &str,
        cutoff: i64,
    ) -> Result<bool, MetadataError>;

    /// Removes a repository link if, inside the transaction, no manifest of the repository
    /// references the blob and neither the link nor the blob was used since `cutoff`.
    async fn delete_link_if_unreferenced(
        &self,
        repository: i64,
        digest: &str,
        cutoff: i64,
    ) -> Result<bool, MetadataError>;

    /// Deletes a blob's row if, inside the transaction, nothing links or references it and
    /// it was not used since `cutoff`. Returns its size when deleted. The caller holds
    /// [`super::LockKey::Blob`] of `digest` and removes the bytes before releasing it.
    async fn delete_blob_if_garbage(
        &self,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<Option<u64>, MetadataError>;

    /// Deletes a repository with no manifests, links or uploads left.
    async fn delete_repository_if_empty(&self, repository: i64) -> Result<bool, MetadataError>;

    /// Deletes (with their tags) the manifests the pull-through mirror cached whose TTL
    /// passed: last pulled more than their `cache_ttl` before `now`. In one transaction;
    /// returns `(repository, digest)` of each (with `dry_run`: what would go, deleting
    /// nothing). What they referenced is then ordinary garbage. A backend without cache
    /// expiry deletes nothing.
    async fn expire_cached_manifests(
        &self,
        _now: i64,
        _dry_run: bool,
    ) -> Result<Vec<(String, String)>, MetadataError> {
        Ok(Vec::new())
    }
}
