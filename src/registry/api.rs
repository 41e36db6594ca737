//! The registry's operations as the HTTP layer calls them: four interfaces, one per
//! resource, the way Distribution splits its blob, manifest and tag services. [`Registry`]
//! implements them over the local stores; a layer with the same interfaces can wrap it (the
//! pull-through mirror: answer from the local registry, fetch from upstream on a miss and
//! store what it fetched) and the HTTP layer does not change. Every operation receives the
//! [`RequestContext`]: who is calling, what the request needs, its id.
//!
//! [`Registry`]: super::Registry

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use super::RegistryError;
use super::blobs::{BlobAnswer, RangeRequest};
use super::context::RequestContext;
use super::listing::{Page, PageRequest};
use super::manifests::PushedManifest;
use super::search::{SearchPage, SearchRequest};
use super::uploads::ChunkRange;
use crate::metadata::{StoredManifest, UploadSession};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::storage::ByteStream;

/// Reading and deleting blobs.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// Size of a blob the repository may serve.
    async fn stat_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, RegistryError>;

    /// A blob (or the requested range) as a stream, or a URL to fetch it from.
    async fn read_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobAnswer, RegistryError>;

    /// Removes a blob from a repository (the bytes stay until the collector runs).
    async fn delete_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), RegistryError>;
}

/// Blob uploads: sessions, chunks, commits and cross-repository mounts.
#[async_trait]
pub trait Uploads: Send + Sync {
    /// Opens a new upload session.
    async fn start_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
    ) -> Result<UploadSession, RegistryError>;

    /// Links a blob the registry already has into `repository` (from `from` if given, else
    /// from anywhere); `None` when there is nothing to mount.
    async fn mount_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, RegistryError>;

    /// The session `id`, which must belong to `repository`.
    async fn upload_status(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
    ) -> Result<UploadSession, RegistryError>;

    /// Appends a chunk (`range` given) or a stream (`range` absent) to a session.
    async fn upload_chunk(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
        range: Option<ChunkRange>,
        body: ByteStream<'_>,
    ) -> Result<UploadSession, RegistryError>;

    /// Completes a session, with an optional final chunk, if the bytes match `digest`.
    async fn finish_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
        digest: &Digest,
        final_chunk: Option<(Option<ChunkRange>, ByteStream<'_>)>,
    ) -> Result<(), RegistryError>;

    /// A single-request upload.
    async fn upload_whole(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        body: ByteStream<'_>,
    ) -> Result<(), RegistryError>;

    /// Cancels a session and discards its bytes.
    async fn cancel_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
    ) -> Result<(), RegistryError>;
}

/// Manifests and their tags.
#[async_trait]
pub trait Manifests: Send + Sync {
    /// Validates and stores a manifest pushed to `reference`, tagging it with the reference
    /// (when a tag) and `extra_tags`.
    async fn put_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest, RegistryError>;

    /// A manifest by tag or digest, exactly as pushed.
    async fn get_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError>;

    /// Deletes a tag (only the tag) or a manifest by digest (with its tags).
    async fn delete_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<(), RegistryError>;
}

/// Listings: tags, the catalog, referrers.
#[async_trait]
pub trait Listings: Send + Sync {
    /// A page of the repository's tags.
    async fn list_tags(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        page: PageRequest<'_>,
    ) -> Result<Page, RegistryError>;

    /// A page of the catalog, holding only repositories the caller may pull.
    async fn list_repositories(
        &self,
        cx: &RequestContext,
        page: PageRequest<'_>,
    ) -> Result<Page, RegistryError>;

    /// A page of the repository names containing a term (`docker search`), holding and
    /// counting only repositories the caller may pull.
    async fn search_repositories(
        &self,
        cx: &RequestContext,
        request: &SearchRequest,
    ) -> Result<SearchPage, RegistryError>;

    /// The referrers of `subject` as an OCI image index (JSON bytes).
    async fn referrers(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>, RegistryError>;
}

/// Everything the HTTP layer asks of a registry.
pub trait RegistryApi: Blobs + Uploads + Manifests + Listings {}

impl<T: Blobs + Uploads + Manifests + Listings> RegistryApi for T {}

/// A registry as the HTTP layer holds it.
pub type SharedRegistry = Arc<dyn RegistryApi>;
