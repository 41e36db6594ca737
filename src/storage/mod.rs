//! Blob storage: where bytes live. The [`BlobStore`] trait is what the registry services
//! use; [`filesystem`] implements it over a local directory in Distribution's layout
//! ([`layout`]), [`s3`] over an S3 bucket with Distribution's S3 keys. Uploads are appended
//! in order at a known offset and become visible under their digest only on commit.

mod append;
pub(crate) mod buffers;
pub mod filesystem;
pub mod layout;
pub mod s3;
pub mod tree;
mod writeback;

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

    /// Where a committed blob's bytes are, for people and backups: a file path, or an
    /// object's `s3://bucket/key`.
    fn blob_location(&self, digest: &Digest) -> String;

    /// The store's identity (the marker `docker/registry/v2/ferry-store-id` under the
    /// root), `None` when the store has none yet.
    async fn read_store_id(&self) -> Result<Option<String>, StorageError>;

    /// Writes `id` as the store's identity unless the store has one already; returns the
    /// identity the store holds afterwards (the existing one, if another process was first).
    async fn write_store_id(&self, id: &str) -> Result<String, StorageError>;

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
    ///
    /// The caller may limit the bytes it has handed over and not yet seen dropped (the
    /// registry does: `registry::pieces`), so a store must never wait for more of `body`
    /// while it keeps chunks it was given: it writes them, or copies them into buffers
    /// of its own, whose size it bounds.
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

    /// The sub-directories and files directly below `dir` of Distribution's repositories
    /// tree ([`tree`]); none when `dir` is absent. For `ferry import`.
    async fn tree_entries(&self, dir: &str) -> Result<tree::TreeEntries, StorageError>;

    /// Every file below `dir` of the repositories tree, recursively, as paths relative to
    /// `dir`, sorted; none when `dir` is absent.
    async fn tree_files(&self, dir: &str) -> Result<Vec<String>, StorageError>;

    /// A file of the repositories tree; `None` when absent or larger than
    /// [`tree::MAX_TREE_FILE`].
    async fn tree_read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError>;
}

/// The first `n` bytes of `bytes`, leaving the rest; all of it (and an empty `bytes` that
/// no longer keeps its memory alive) when that is all there is.
fn split_front(bytes: &mut Bytes, n: usize) -> Bytes {
    if n >= bytes.len() {
        std::mem::take(bytes)
    } else {
        bytes.split_to(n)
    }
}

/// Regroups a byte stream into pieces of exactly `size` bytes (the last may be smaller),
/// so a piece never occupies more memory than `size`. A chunk's whole pieces are passed on
/// as slices of it; what is left of it is copied before the next chunk is awaited, so no
/// chunk is kept while waiting for more (see [`BlobStore::upload_append`]).
pub fn coalesce(body: ByteStream<'_>, size: usize) -> ByteStream<'_> {
    struct State<'a> {
        body: ByteStream<'a>,
        /// A piece being joined from the ends of chunks: fewer than `size` bytes, in a
        /// buffer of capacity `size` once used.
        joined: Vec<u8>,
        /// What is left of the last chunk.
        rest: Bytes,
        done: bool,
    }
    let size = size.max(1);
    let state = State {
        body,
        joined: Vec::new(),
        rest: Bytes::new(),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut state| async move {
            loop {
                if state.joined.is_empty() && state.rest.len() >= size {
                    return Some((Ok(split_front(&mut state.rest, size)), state));
                }
                if !state.rest.is_empty() {
                    let n = (size - state.joined.len()).min(state.rest.len());
                    if state.joined.capacity() == 0 {
                        state.joined.reserve_exact(size);
                    }
                    state
                        .joined
                        .extend_from_slice(&split_front(&mut state.rest, n));
                    if state.joined.len() == size {
                        let piece = Bytes::from(std::mem::take(&mut state.joined));
                        return Some((Ok(piece), state));
                    }
                }
                if state.done {
                    break;
                }
                match state.body.next().await {
                    Some(Ok(chunk)) => state.rest = chunk,
                    Some(Err(e)) => {
                        state.done = true;
                        state.joined = Vec::new();
                        return Some((Err(e), state));
                    }
                    None => state.done = true,
                }
            }
            (!state.joined.is_empty())
                .then(|| Bytes::from(std::mem::take(&mut state.joined)))
                .map(|piece| (Ok(piece), state))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn coalesced(parts: &[&'static [u8]], size: usize) -> Vec<Bytes> {
        let parts: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        let body: ByteStream<'static> = Box::pin(futures_util::stream::iter(parts));
        coalesce(body, size).map(|p| p.unwrap()).collect().await
    }

    #[tokio::test]
    async fn coalesces_into_pieces_of_one_size() {
        assert_eq!(
            coalesced(&[b"ab", b"cd", b"efghij", b"", b"k"], 4).await,
            vec![&b"abcd"[..], b"efgh", b"ijk"]
        );
        assert_eq!(
            coalesced(&[b"abcdefghij", b"kl"], 4).await,
            vec![&b"abcd"[..], b"efgh", b"ijkl"]
        );
        assert_eq!(coalesced(&[b"abc"], 4).await, vec![&b"abc"[..]]);
        assert!(coalesced(&[], 4).await.is_empty());
    }

    #[tokio::test]
    async fn passes_whole_pieces_without_copying() {
        static CHUNK: &[u8] = b"abcdefghij";
        let pieces = coalesced(&[CHUNK], 4).await;
        assert_eq!(pieces[0].as_ptr(), CHUNK.as_ptr());
        assert_eq!(pieces[1].as_ptr(), CHUNK[4..].as_ptr());
        assert_eq!(pieces[2], &b"ij"[..]);
    }
}
