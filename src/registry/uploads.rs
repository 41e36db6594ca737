//! Blob uploads: sessions, chunks, commit, mounts and the purge of abandoned sessions.
//!
//! A session's state (repository, bytes received, sha256 state) lives in the metadata
//! store and its bytes in storage, so an upload continues after a restart. The digest is
//! computed while the bytes stream in; on commit it is compared with the client's, and only
//! a match makes the blob visible. Requests on one session are serialised by the metadata
//! store's [`LockKey::Upload`] lock; a commit holds [`LockKey::Blob`] of the digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::api::Uploads;
use super::context::RequestContext;
use super::pieces::pieces;
use super::{Registry, RegistryError};
use crate::metadata::{LockGuard, LockKey, UploadSession, now};
use crate::notify::{EventAction, Target};
use crate::oci::{Algorithm, Digest, Hasher, RepositoryName};
use crate::storage::buffers::BufferPool;
use crate::storage::{ByteStream, StorageError, UploadKey};

/// The algorithm hashed while bytes arrive (what every client uses).
const STREAMING_ALGORITHM: Algorithm = Algorithm::Sha256;

/// A chunk's position, from a `Content-Range: <start>-<end>` header (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRange {
    /// Offset of the chunk's first byte.
    pub start: u64,
    /// Offset of its last byte.
    pub end: u64,
}

impl ChunkRange {
    /// Parses `start-end`, also accepting the `bytes ` / `bytes=` prefixes and a `/total`
    /// suffix some clients send. `None` for anything else: an open end, an end before the
    /// start, or a range whose length does not fit in 64 bits.
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim();
        let spec = spec
            .strip_prefix("bytes=")
            .or_else(|| spec.strip_prefix("bytes "))
            .unwrap_or(spec);
        let spec = spec.split('/').next()?;
        let (start, end) = spec.split_once('-')?;
        let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
        end.checked_sub(start)?.checked_add(1)?;
        Some(ChunkRange { start, end })
    }

    fn len(self) -> u64 {
        self.end - self.start + 1
    }
}

/// Request bodies are copied into pieces of this size before hashing and writing, so
/// per-piece costs (queue hand-offs, wake-ups, writes) stay small whatever chunk sizes the
/// client's transfer encoding produces.
const PIECE_SIZE: u32 = 1024 * 1024;

/// Bytes of a request body held in memory at most: pieces being received, waiting for or
/// in the hasher, waiting for or in the store's writer. A piece holds its share until it
/// is both hashed and written, so this bounds an upload's memory whatever the disk or the
/// CPU does (the store adds its own, bounded, buffers: see [`crate::storage::BlobStore::upload_append`]).
const UPLOAD_BUDGET: usize = 4 * PIECE_SIZE as usize;

/// Piece buffers kept between requests, by all uploads together (at most 8 MiB, resident).
/// A push in many `PATCH`es then reuses them instead of faulting in and zeroing four fresh
/// MiB per request: 8 % of the server's CPU in a chunked push of 8 MiB `PATCH`es.
const SPARE_PIECES: usize = 8;

/// The buffers of every upload's pieces (each request takes from them within its budget).
fn piece_buffers() -> Arc<BufferPool> {
    static POOL: std::sync::LazyLock<Arc<BufferPool>> =
        std::sync::LazyLock::new(|| BufferPool::keeping(PIECE_SIZE as usize, SPARE_PIECES));
    POOL.clone()
}

/// A hasher running on a blocking thread, fed chunks through a bounded queue, so hashing
/// overlaps with receiving and writing.
struct BackgroundHasher {
    feed: mpsc::Sender<Bytes>,
    task: JoinHandle<Hasher>,
}

impl BackgroundHasher {
    fn start(mut hasher: Hasher) -> Self {
        // Every piece of the budget may wait here; the budget, not the queue, bounds memory.
        let (feed, mut chunks) = mpsc::channel::<Bytes>(UPLOAD_BUDGET / PIECE_SIZE as usize);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = chunks.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });
        BackgroundHasher { feed, task }
    }

    /// The hasher after every chunk fed so far.
    async fn finish(self) -> Result<Hasher, RegistryError> {
        drop(self.feed);
        self.task
            .await
            .map_err(|e| RegistryError::Storage(StorageError::Io(std::io::Error::other(e))))
    }
}

fn key(session: &UploadSession) -> UploadKey {
    UploadKey {
        repository: session.repository.clone(),
        id: session.id,
    }
}

/// `body`, failing (and setting `over`) once more than `allowed` bytes have passed.
fn limited(body: ByteStream<'_>, allowed: u64, over: Arc<AtomicBool>) -> ByteStream<'_> {
    let mut seen = 0u64;
    Box::pin(body.map(move |chunk| {
        let bytes = chunk?;
        seen = seen.saturating_add(bytes.len() as u64);
        if seen > allowed {
            over.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(
                "the blob exceeds uploads.maxblobsize",
            ));
        }
        Ok(bytes)
    }))
}

#[async_trait]
impl Uploads for Registry {
    async fn start_upload(
        &self,
        _cx: &RequestContext,
        repository: &RepositoryName,
    ) -> Result<UploadSession, RegistryError> {
        self.check_writable()?;
        let session = UploadSession {
            id: Uuid::new_v4(),
            repository: repository.clone(),
            size: 0,
            hash_state: Some(Hasher::new(STREAMING_ALGORITHM).save()),
            started_at: now(),
        };
        // The collector does not remove the repository between its staging area and row.
        let _repository = self
            .metadata
            .lock(LockKey::Repository(repository.clone()))
            .await?;
        self.storage.upload_start(&key(&session)).await?;
        self.metadata.create_upload(&session).await?;
        Ok(session)
    }

    async fn mount_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, RegistryError> {
        self.check_writable()?;
        let mounted = self.metadata.mount_blob(repository, digest, from).await?;
        if let Some(size) = mounted {
            let target = Target::blob(repository, digest, size).mounted_from(from);
            self.notify(cx, EventAction::Mount, target).await;
        }
        Ok(mounted)
    }

    async fn upload_status(
        &self,
        _cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
    ) -> Result<UploadSession, RegistryError> {
        match self.metadata.upload(id).await? {
            Some(session) if &session.repository == repository => Ok(session),
            _ => Err(RegistryError::BlobUploadUnknown),
        }
    }

    async fn upload_chunk(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
        range: Option<ChunkRange>,
        body: ByteStream<'_>,
    ) -> Result<UploadSession, RegistryError> {
        self.check_writable()?;
        let _guard = self.lock_upload(id).await?;
        let session = self.upload_status(cx, repository, id).await?;
        let (session, _) = self.append(session, range, body).await?;
        Ok(session)
    }

    /// Completes a session: appends the optional final chunk, verifies `digest` and makes
    /// the blob visible in the repository. On a digest mismatch the session is discarded.
    async fn finish_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
        digest: &Digest,
        final_chunk: Option<(Option<ChunkRange>, ByteStream<'_>)>,
    ) -> Result<(), RegistryError> {
        self.check_writable()?;
        let _guard = self.lock_upload(id).await?;
        let session = self.upload_status(cx, repository, id).await?;
        let (session, hasher) = match final_chunk {
            Some((range, body)) => self.append(session, range, body).await?,
            None => {
                let hasher = self.resume_hasher(&session).await?;
                (session, hasher)
            }
        };
        // Durable and whole first (slow, no lock held; object storage can read the bytes
        // back only now, for a digest of another algorithm).
        self.storage
            .upload_seal(&key(&session), session.size)
            .await?;
        let actual = if digest.algorithm() == STREAMING_ALGORITHM {
            hasher.finish()
        } else {
            self.rehash(&session, digest.algorithm()).await?.finish()
        };
        if &actual != digest {
            self.discard(&session).await?;
            return Err(RegistryError::digest_mismatch(digest, &actual));
        }
        // Verified: place the bytes (a server-side copy on S3), still without a lock; then,
        // holding the digest's lock (so the collector cannot remove the bytes in between),
        // the final step in storage and the rows in one short metadata transaction.
        self.storage
            .upload_publish(&key(&session), session.size, digest)
            .await?;
        {
            let _blob = self.metadata.lock(LockKey::Blob(digest.clone())).await?;
            self.storage
                .upload_commit(&key(&session), session.size, digest)
                .await?;
            self.metadata.complete_upload(&session, digest).await?;
        }
        // Staging left behind (object storage removes it here, outside the lock) is only
        // litter: the blob is committed, so a failure is logged, not reported.
        if let Err(e) = self.storage.upload_abort(&key(&session)).await {
            tracing::warn!(upload = %session.id, error = %e, "could not remove a committed upload's staging area; the collector will");
        }
        let target = Target::blob(repository, digest, session.size);
        self.notify(cx, EventAction::Push, target).await;
        Ok(())
    }

    async fn upload_whole(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        body: ByteStream<'_>,
    ) -> Result<(), RegistryError> {
        let session = self.start_upload(cx, repository).await?;
        self.finish_upload(cx, repository, &session.id, digest, Some((None, body)))
            .await
    }

    async fn cancel_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
    ) -> Result<(), RegistryError> {
        self.check_writable()?;
        let _guard = self.lock_upload(id).await?;
        let session = self.upload_status(cx, repository, id).await?;
        self.discard(&session).await
    }
}

impl Registry {
    /// Discards every session started more than `max_age_secs` ago; returns how many.
    /// A session that cannot be discarded is logged and left for the next purge; the others
    /// still go.
    pub async fn purge_uploads(&self, max_age_secs: i64) -> Result<usize, RegistryError> {
        let stale = self.metadata.stale_uploads(now() - max_age_secs).await?;
        let mut removed = 0;
        for session in &stale {
            let _guard = self.lock_upload(&session.id).await?;
            match self.discard(session).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(
                    upload = %session.id,
                    repository = %session.repository,
                    error = %e,
                    "could not discard an abandoned upload; the next purge retries"
                ),
            }
        }
        Ok(removed)
    }

    async fn lock_upload(&self, id: &Uuid) -> Result<LockGuard, RegistryError> {
        Ok(self.metadata.lock(LockKey::Upload(*id)).await?)
    }

    async fn discard(&self, session: &UploadSession) -> Result<(), RegistryError> {
        self.storage.upload_abort(&key(session)).await?;
        self.metadata.delete_upload(&session.id).await?;
        Ok(())
    }

    /// Streams `body` into the session's staging area while hashing it, then records the
    /// new size and hash state. Must be called with the session's lock held.
    async fn append(
        &self,
        mut session: UploadSession,
        range: Option<ChunkRange>,
        body: ByteStream<'_>,
    ) -> Result<(UploadSession, Hasher), RegistryError> {
        if let Some(range) = range
            && range.start != session.size
        {
            return Err(RegistryError::ChunkOutOfOrder { size: session.size });
        }
        // `uploads.maxblobsize`: the body fails once it would grow the blob past the limit
        // (the session stays as it was, as after a cut body).
        let over_limit = Arc::new(AtomicBool::new(false));
        let body = match self.settings.max_blob_size {
            Some(limit) => limited(body, limit.saturating_sub(session.size), over_limit.clone()),
            None => body,
        };
        // Hash on a thread of its own while the bytes stream on to storage.
        let hasher = BackgroundHasher::start(self.resume_hasher(&session).await?);
        let feed = hasher.feed.clone();
        let hashing = pieces(body, piece_buffers(), UPLOAD_BUDGET).then(move |chunk| {
            let feed = feed.clone();
            async move {
                if let Ok(bytes) = &chunk {
                    // If the hashing thread is gone, the digest will not match: still safe.
                    let _ = feed.send(bytes.clone()).await;
                }
                chunk
            }
        });
        let appended = self
            .storage
            .upload_append(&key(&session), session.size, Box::pin(hashing))
            .await;
        let hasher = hasher.finish().await?;
        if over_limit.load(Ordering::Relaxed) {
            return Err(RegistryError::BlobTooLarge {
                limit: self.settings.max_blob_size.unwrap_or_default(),
            });
        }
        let written = appended?;
        if let Some(range) = range
            && written != range.len()
        {
            return Err(RegistryError::ContentRangeInvalid(format!(
                "{}-{} announced {} bytes, the body held {written}",
                range.start,
                range.end,
                range.len()
            )));
        }
        let new_size = session.size + written;
        let state = hasher.save();
        if !self
            .metadata
            .advance_upload(&session.id, session.size, new_size, Some(&state))
            .await?
        {
            return Err(RegistryError::BlobUploadUnknown);
        }
        session.size = new_size;
        session.hash_state = Some(state);
        Ok((session, hasher))
    }

    /// The sha256 state after the session's bytes: saved, or recomputed from storage.
    async fn resume_hasher(&self, session: &UploadSession) -> Result<Hasher, RegistryError> {
        let saved = session
            .hash_state
            .as_deref()
            .and_then(|state| Hasher::restore(STREAMING_ALGORITHM, state));
        match saved {
            Some(hasher) => Ok(hasher),
            None => self.rehash(session, STREAMING_ALGORITHM).await,
        }
    }

    /// Hashes the session's staged bytes from storage.
    async fn rehash(
        &self,
        session: &UploadSession,
        algorithm: Algorithm,
    ) -> Result<Hasher, RegistryError> {
        let mut hasher = Hasher::new(algorithm);
        let mut stream = self
            .storage
            .upload_read(&key(session), session.size)
            .await?;
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => StorageError::StagingShort {
                    expected: session.size,
                    actual: read,
                },
                _ => StorageError::Io(e),
            })?;
            read += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if read != session.size {
            return Err(StorageError::StagingShort {
                expected: session.size,
                actual: read,
            }
            .into());
        }
        Ok(hasher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::api::Blobs;
    use crate::registry::context::Access;

    fn cx() -> RequestContext {
        RequestContext::anonymous("test".into(), Access::Base)
    }

    /// `bytes` as a request body arriving in 1 MiB chunks, as fast as memory goes.
    fn body(bytes: &Bytes) -> ByteStream<'static> {
        let chunks: Vec<std::io::Result<Bytes>> = bytes
            .chunks(1 << 20)
            .map(|c| Ok(bytes.slice_ref(c)))
            .collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    fn patterned(len: usize) -> Bytes {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Each chunk's size is recorded by the time it is answered, and the final `PUT` finds
    /// the hash state that verifies the whole blob.
    #[tokio::test]
    async fn chunks_are_recorded_before_their_answer_and_the_blob_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::in_dir_for_tests(dir.path()).await;
        let repo = RepositoryName::parse("chunks/one").unwrap();
        let data = patterned(3 * 8 * 1024 * 1024 + 5);
        let digest = Digest::of(STREAMING_ALGORITHM, &data);
        let session = registry.start_upload(&cx(), &repo).await.unwrap();
        let mut sent = 0;
        for chunk in data.chunks(8 * 1024 * 1024) {
            let chunk = data.slice_ref(chunk);
            let range = ChunkRange {
                start: sent,
                end: sent + chunk.len() as u64 - 1,
            };
            let after = registry
                .upload_chunk(&cx(), &repo, &session.id, Some(range), body(&chunk))
                .await
                .unwrap();
            sent += chunk.len() as u64;
            assert_eq!(after.size, sent);
            let status = registry
                .upload_status(&cx(), &repo, &session.id)
                .await
                .unwrap();
            assert_eq!(status.size, sent);
        }
        registry
            .finish_upload(&cx(), &repo, &session.id, &digest, None)
            .await
            .unwrap();
        assert_eq!(
            registry.stat_blob(&cx(), &repo, &digest).await.unwrap(),
            data.len() as u64
        );
    }

    /// A session whose hash state is missing is hashed again from its staged bytes, and
    /// still verifies; a wrong digest is still refused.
    #[tokio::test]
    async fn a_session_without_its_hash_state_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::in_dir_for_tests(dir.path()).await;
        let repo = RepositoryName::parse("chunks/two").unwrap();
        let data = patterned(9 * 1024 * 1024 + 3);
        let (head, tail) = (data.slice(..5 * 1024 * 1024), data.slice(5 * 1024 * 1024..));
        for (digest, verifies) in [
            (Digest::of(STREAMING_ALGORITHM, &data), true),
            (Digest::of(STREAMING_ALGORITHM, &head), false),
        ] {
            let session = registry.start_upload(&cx(), &repo).await.unwrap();
            registry
                .upload_chunk(&cx(), &repo, &session.id, None, body(&head))
                .await
                .unwrap();
            {
                // Forget the chunk's hash state.
                let _lock = registry.lock_upload(&session.id).await.unwrap();
                let size = head.len() as u64;
                assert!(
                    registry
                        .metadata
                        .advance_upload(&session.id, size, size, None)
                        .await
                        .unwrap()
                );
            }
            let finished = registry
                .finish_upload(
                    &cx(),
                    &repo,
                    &session.id,
                    &digest,
                    Some((None, body(&tail))),
                )
                .await;
            assert_eq!(finished.is_ok(), verifies, "{finished:?}");
        }
    }

    #[test]
    fn chunk_ranges_parse() {
        assert_eq!(
            ChunkRange::parse("0-99"),
            Some(ChunkRange { start: 0, end: 99 })
        );
        assert_eq!(
            ChunkRange::parse("bytes 5-9/10"),
            Some(ChunkRange { start: 5, end: 9 })
        );
        assert_eq!(
            ChunkRange::parse("bytes=5-9"),
            Some(ChunkRange { start: 5, end: 9 })
        );
        assert_eq!(ChunkRange::parse("9-5"), None);
        assert_eq!(ChunkRange::parse("x-5"), None);
        assert_eq!(ChunkRange::parse("0-"), None);
        assert_eq!(ChunkRange::parse("-5"), None);
        assert_eq!(ChunkRange::parse("0-18446744073709551615"), None);
        assert_eq!(ChunkRange::parse("0-18446744073709551616"), None);
        assert_eq!(ChunkRange::parse(""), None);
    }
}
