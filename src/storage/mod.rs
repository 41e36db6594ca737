//! Blob storage: where bytes live. The [`BlobStore`] trait is what the registry services
//! use; [`filesystem`] implements it over a local directory in Distribution's layout
//! ([`layout`]), [`s3`] over an S3 bucket with Distribution's S3 keys. Uploads are appended
//! in order at a known offset and become visible under their digest only on commit.

pub mod filesystem;
pub mod layout;
pub mod s3;

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use crate::oci::{Digest, RepositoryName};

/// A stream of bytes read from or written to storage.
pub type ByteStream<'a> = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The blob or upload is not in storage.
    #[error("not found in storage")]
    NotFound,
    /// The staged upload holds fewer bytes than its session says were received
    /// (a crash of the whole machine can do this); the upload has to start again.
    #[error("staged upload holds {actual} bytes, its session expects {expected}")]
    StagingShort {
        /// Bytes the session recorded.
        expected: u64,
        /// Bytes found.
        actual: u64,
    },
    /// The client's body stream failed mid-way.
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    /// Any other I/O failure of the backend.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// The storage service failed or could not be reached (after retries): S3 down,
    /// throttling, 5xx answers, timeouts. Worth retrying later.
    #[error("storage backend unavailable: {0}")]
    Backend(String),
    /// Staged bytes cannot be read back before the upload is sealed (parts of an S3
    /// multipart upload).
    #[error("the staged upload cannot be read back before it is complete")]
    Unreadable,
}

/// Where an upload in progress is staged.
#[derive(Clone, Debug)]
pub struct UploadKey {
    /// Repository the upload belongs to.
    pub repository: RepositoryName,
    /// Session id.
    pub id: Uuid,
}

/// A committed blob found by walking storage (for the garbage collector).
#[derive(Clone, Debug)]
pub struct StoredBlob {
    /// Its digest (from its path).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// A staging area found by walking storage (for the garbage collector).
#[derive(Clone, Debug)]
pub struct StagedUpload {
    /// Where it is.
    pub key: UploadKey,
    /// When it was last written.
    pub modified: SystemTime,
}

/// Storage for content-addressed blobs and the uploads that produce them.
///
/// Invariant: a blob is visible under its digest only after all its bytes are durably
/// written and verified; a partly written blob is never visible.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A short description for logs, e.g. `filesystem:/var/lib/registry`.
    fn describe(&self) -> String;

    /// Checks that storage answers (logged at startup; the server starts either way).
    async fn probe(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Size of the committed blob, `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Streams `range` of a committed blob (the caller checked it against the size).
    async fn read(
        &self,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<ByteStream<'static>, StorageError>;

    /// A URL the client may fetch the committed blob from directly (a presigned object
    /// storage URL), when the store offers one and is configured to.
    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    /// Stores a small blob whole (used for manifests), atomically.
    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError>;

    /// Removes a committed blob; absent is not an error. Only the garbage collector calls this.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Creates the staging area of a new upload.
    async fn upload_start(&self, key: &UploadKey) -> Result<(), StorageError>;

    /// Appends `body` to the staged upload, whose first `offset` bytes are the ones already
    /// accepted (anything staged beyond them, left by an interrupted request, is discarded).
    /// Returns how many bytes `body` held.
    async fn upload_append(
        &self,
        key: &UploadKey,
        offset: u64,
        body: ByteStream<'_>,
    ) -> Result<u64, StorageError>;

    /// Streams the first `len` staged bytes (to rebuild a hash state that was not saved, or
    /// to hash with another algorithm after [`BlobStore::upload_seal`]).
    async fn upload_read(
        &self,
        key: &UploadKey,
        len: u64,
    ) -> Result<ByteStream<'static>, StorageError>;

    /// Makes the first `size` staged bytes durable where they are (the slow part of a
    /// commit, done before any lock is taken).
    async fn upload_seal(&self, key: &UploadKey, size: u64) -> Result<(), StorageError>;

    /// Places the sealed, verified upload under `digest` where that is slow (a server-side
    /// copy in object storage), before any lock is taken. [`BlobStore::upload_commit`] must
    /// still check the result is there. A no-op where commit is a cheap rename.
    async fn upload_publish(
        &self,
        _key: &UploadKey,
        _size: u64,
        _digest: &Digest,
    ) -> Result<(), StorageError> {
        Ok(())
    }

    /// Makes the sealed upload the blob `digest` (already verified by the caller). Called
    /// holding the metadata store's lock on `digest`, just before the metadata transaction
    /// that records the blob (never inside it), so the garbage collector, which holds the
    /// same lock while it removes a blob, never sees the bytes without their row. Must check
    /// the bytes are really there (they may have been collected since an earlier publish).
    /// The staging area stays: the caller removes it with [`BlobStore::upload_abort`].
    async fn upload_commit(
        &self,
        key: &UploadKey,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError>;

    /// Discards a staged upload; absent is not an error.
    async fn upload_abort(&self, key: &UploadKey) -> Result<(), StorageError>;

    /// Every committed blob in storage, whether or not metadata knows it.
    async fn list_blobs(&self) -> Result<Vec<StoredBlob>, StorageError>;

    /// Every upload staging area in storage, whether or not metadata knows it.
    async fn list_uploads(&self) -> Result<Vec<StagedUpload>, StorageError>;

    /// Removes directories left empty under the repositories and blobs trees that were last
    /// changed more than `min_age` ago (no-op where storage has no directories).
    async fn prune_empty_directories(&self, min_age: Duration) -> Result<(), StorageError>;
}

/// Regroups a byte stream into pieces of at least `size` bytes (the last may be smaller).
/// Pieces already that large pass through without a copy.
pub fn coalesce(body: ByteStream<'_>, size: usize) -> ByteStream<'_> {
    struct State<'a> {
        body: ByteStream<'a>,
        buffer: bytes::BytesMut,
        done: bool,
    }
    let state = State {
        body,
        buffer: bytes::BytesMut::new(),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut state| async move {
            while !state.done {
                match state.body.next().await {
                    Some(Ok(chunk)) if state.buffer.is_empty() && chunk.len() >= size => {
                        return Some((Ok(chunk), state));
                    }
                    Some(Ok(chunk)) => {
                        if state.buffer.capacity() == 0 {
                            state.buffer.reserve(size);
                        }
                        state.buffer.extend_from_slice(&chunk);
                        if state.buffer.len() >= size {
                            let piece = state.buffer.split().freeze();
                            return Some((Ok(piece), state));
                        }
                    }
                    Some(Err(e)) => {
                        state.done = true;
                        return Some((Err(e), state));
                    }
                    None => state.done = true,
                }
            }
            if state.buffer.is_empty() {
                None
            } else {
                let piece = state.buffer.split().freeze();
                Some((Ok(piece), state))
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn coalesces_small_chunks_and_passes_large_ones() {
        let parts: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"cd")),
            Ok(Bytes::from_static(b"efghij")),
            Ok(Bytes::from_static(b"k")),
        ];
        let body: ByteStream<'static> = Box::pin(futures_util::stream::iter(parts));
        let pieces: Vec<Bytes> = coalesce(body, 4).map(|p| p.unwrap()).collect().await;
        assert_eq!(
            pieces,
            vec![
                Bytes::from_static(b"abcd"),
                Bytes::from_static(b"efghij"),
                Bytes::from_static(b"k")
            ]
        );
    }
}
