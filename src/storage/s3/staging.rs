//! An upload in progress on S3. Its bytes go into one multipart upload at
//! `_uploads/<uuid>/data`, continued by every PATCH of the session; bytes that do not yet
//! fill a part wait in a small "tail" object until the next request brings more.
//!
//! Objects under `_uploads/<uuid>/`:
//!
//! ```text
//! multipart        the multipart upload id, written before its first part
//! state/<offset>   JSON: the parts (ETag, size) and tail length after <offset> bytes
//! tail/<offset>    the bytes after the last part, when <offset> bytes were received
//! data             the sealed upload (the completed multipart upload)
//! ```
//!
//! State and tail are keyed by offset and never overwritten: the registry passes the
//! offset its metadata recorded, so a request that died after writing storage but before
//! recording metadata leaves the previous state intact and usable.

use std::io;

use bytes::{Buf, Bytes};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::storage::buffers::BufferPool;
use crate::storage::{ByteStream, StorageError};

/// Parts of one request uploaded at the same time (each holds a part in memory, and one
/// more is being filled).
const PARTS_IN_FLIGHT: usize = 2;

/// What was received so far, as stored in `state/<offset>`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The multipart upload, once one was started.
    multipart: Option<String>,
    /// Uploaded parts, in order.
    parts: Vec<Part>,
    /// Bytes in the tail object.
    tail: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Part {
    etag: String,
    size: u64,
}

impl State {
    fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>() + self.tail
    }
}

/// The staging area of one upload.
pub(super) struct Staging<'a> {
    store: &'a AmazonS3,
    /// For the multipart completion, which the server answers only when done.
    slow: &'a AmazonS3,
    prefix: String,
    part_size: u64,
}

impl<'a> Staging<'a> {
    /// The staging area under `prefix` (`.../_uploads/<uuid>`), cutting parts of at least
    /// `part_size` bytes.
    pub(super) fn new(
        store: &'a AmazonS3,
        slow: &'a AmazonS3,
        prefix: String,
        part_size: u64,
    ) -> Self {
        Staging {
            store,
            slow,
            prefix,
            part_size,
        }
    }

    fn key(&self, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.prefix))
    }

    fn tail_key(&self, offset: u64) -> Path {
        self.key(&format!("tail/{offset}"))
    }

    fn data_key(&self) -> Path {
        self.key("data")
    }

    fn short(expected: u64) -> StorageError {
        StorageError::StagingShort {
            expected,
            actual: 0,
        }
    }

    /// The state after `offset` bytes.
    async fn load(&self, offset: u64) -> Result<State, StorageError> {
        if offset == 0 {
            return Ok(State::default());
        }
        let raw = match self.store.get(&self.key(&format!("state/{offset}"))).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(Self::short(offset)),
            Err(e) => return Err(e.into()),
        };
        let state: State = serde_json::from_slice(&raw)
            .map_err(|e| StorageError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        if state.size() != offset {
            return Err(StorageError::StagingShort {
                expected: offset,
                actual: state.size(),
            });
        }
        Ok(state)
    }

    async fn tail(&self, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        let bytes = match self.store.get(&self.tail_key(offset)).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(Self::short(offset)),
            Err(e) => return Err(e.into()),
        };
        if bytes.len() as u64 != len {
            return Err(StorageError::StagingShort {
                expected: offset,
                actual: offset - len + bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// The multipart upload of this session, started (and recorded) on first use.
    async fn multipart(&self, state: &mut State) -> Result<String, StorageError> {
        if let Some(id) = &state.multipart {
            return Ok(id.clone());
        }
        let marker = self.key("multipart");
        let id = match self.store.get(&marker).await {
            // Started by an earlier request that did not finish: continue it.
            Ok(result) => String::from_utf8_lossy(&result.bytes().await?).into_owned(),
            Err(object_store::Error::NotFound { .. }) => {
                let id = self.store.create_multipart(&self.data_key()).await?;
                self.store
                    .put(&marker, PutPayload::from(id.clone().into_bytes()))
                    .await?;
                id
            }
            Err(e) => return Err(e.into()),
        };
        state.multipart = Some(id.clone());
        Ok(id)
    }

    /// Appends `body` after the first `offset` bytes; returns how many bytes it held.
    ///
    /// The body's chunks are copied into the part being filled and let go at once (the
    /// caller may be waiting for them to be dropped), so the memory held is the parts:
    /// the one filling and [`PARTS_IN_FLIGHT`] uploading, `chunksize` bytes each.
    pub(super) async fn append(
        &self,
        offset: u64,
        mut body: ByteStream<'_>,
    ) -> Result<u64, StorageError> {
        let mut state = self.load(offset).await?;
        let part_size = usize::try_from(self.part_size)
            .map_err(|_| StorageError::Io(io::Error::other("chunksize exceeds memory")))?;
        // Parts are filled in buffers reused for the whole request (see `storage::buffers`).
        let parts = BufferPool::new(part_size);
        // The part being filled: the tail first (more than a part only if `chunksize` was
        // lowered since; then that part is larger).
        let mut part = None;
        if state.tail > 0 {
            let tail = self.tail(offset, state.tail).await?;
            part.get_or_insert_with(|| parts.take())
                .extend_from_slice(&tail);
        }
        let mut received = 0u64;
        let mut uploads = PartUploads::default();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(StorageError::Body)?;
            received += chunk.len() as u64;
            while !chunk.is_empty() {
                let filling = part.get_or_insert_with(|| parts.take());
                let n = part_size.saturating_sub(filling.len()).min(chunk.len());
                filling.extend_from_slice(&chunk[..n]);
                chunk.advance(n);
                if filling.len() >= part_size
                    && let Some(full) = part.take()
                {
                    let id = self.multipart(&mut state).await?;
                    let payload = PutPayload::from(parts.freeze(full, ()));
                    let index = state.parts.len() + uploads.started;
                    uploads.start(self.store, self.data_key(), id, index, payload);
                    while uploads.set.len() >= PARTS_IN_FLIGHT {
                        uploads.finish_one().await?;
                    }
                }
            }
        }
        state.parts.extend(uploads.finish_all().await?);
        if received == 0 {
            // An empty body changes nothing (no part can have started without new bytes).
            return Ok(0);
        }
        let new_offset = offset + received;
        let part = part.filter(|part| !part.is_empty());
        state.tail = part.as_ref().map_or(0, |part| part.len() as u64);
        if let Some(part) = part {
            let payload = PutPayload::from(parts.freeze(part, ()));
            self.store.put(&self.tail_key(new_offset), payload).await?;
        }
        let json = serde_json::to_vec(&state).map_err(|e| StorageError::Io(io::Error::other(e)))?;
        self.store
            .put(
                &self.key(&format!("state/{new_offset}")),
                PutPayload::from(json),
            )
            .await?;
        Ok(received)
    }

    /// Completes the multipart upload of the first `size` bytes into `data` (a no-op when
    /// everything is still in the tail, or when already sealed).
    pub(super) async fn seal(&self, size: u64) -> Result<(), StorageError> {
        let state = self.load(size).await?;
        let Some(id) = state.multipart.clone().filter(|_| !state.parts.is_empty()) else {
            return Ok(());
        };
        if self.sealed_size().await? == Some(size) {
            return Ok(());
        }
        let mut parts: Vec<PartId> = state
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        if state.tail > 0 {
            let tail = self.tail(size, state.tail).await?;
            let part = self
                .store
                .put_part(&self.data_key(), &id, parts.len(), tail.into())
                .await?;
            parts.push(part);
        }
        self.slow
            .complete_multipart(&self.data_key(), &id, parts)
            .await?;
        Ok(())
    }

    async fn sealed_size(&self) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.data_key()).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the sealed upload of `size` bytes is: `data`, the tail alone, or nowhere
    /// (zero bytes).
    pub(super) async fn sealed_source(&self, size: u64) -> Result<Option<Path>, StorageError> {
        let state = self.load(size).await?;
        Ok(if !state.parts.is_empty() {
            Some(self.data_key())
        } else if state.tail > 0 {
            Some(self.tail_key(size))
        } else {
            None
        })
    }

    /// An object holding the first `len` staged bytes, if they can be read back (parts of a
    /// multipart upload cannot before it is sealed).
    pub(super) async fn readable_source(&self, len: u64) -> Result<Option<Path>, StorageError> {
        if self.sealed_size().await?.is_some_and(|size| size >= len) {
            return Ok(Some(self.data_key()));
        }
        let state = self.load(len).await?;
        if !state.parts.is_empty() {
            return Err(StorageError::Unreadable);
        }
        Ok((state.tail > 0).then(|| self.tail_key(len)))
    }

    /// Aborts the multipart upload (if one was started and not completed) and deletes every
    /// object of the staging area.
    pub(super) async fn remove(&self) -> Result<(), StorageError> {
        match self.store.get(&self.key("multipart")).await {
            // A sealed upload's multipart upload is complete: nothing to abort.
            Ok(_) if self.sealed_size().await?.is_some() => {}
            Ok(result) => {
                let id = String::from_utf8_lossy(&result.bytes().await?).into_owned();
                match self.store.abort_multipart(&self.data_key(), &id).await {
                    // Already gone: S3 says 404 NoSuchUpload, some compatible stores 403.
                    Ok(())
                    | Err(
                        object_store::Error::NotFound { .. }
                        | object_store::Error::PermissionDenied { .. },
                    ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let prefix = Path::from(format!("{}/", self.prefix));
        let objects: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for object in objects {
            match self.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Part uploads running in the background while the request body streams in.
#[derive(Default)]
struct PartUploads {
    set: JoinSet<Result<(usize, Part), StorageError>>,
    done: Vec<(usize, Part)>,
    started: usize,
}

impl PartUploads {
    fn start(
        &mut self,
        store: &AmazonS3,
        key: Path,
        id: String,
        index: usize,
        payload: PutPayload,
    ) {
        let store = store.clone();
        let size = payload.content_length() as u64;
        self.started += 1;
        self.set.spawn(async move {
            let part = store.put_part(&key, &id, index, payload).await?;
            Ok((
                index,
                Part {
                    etag: part.content_id,
                    size,
                },
            ))
        });
    }

    async fn finish_one(&mut self) -> Result<(), StorageError> {
        if let Some(joined) = self.set.join_next().await {
            let done = joined.map_err(|e| StorageError::Io(io::Error::other(e)))??;
            self.done.push(done);
        }
        Ok(())
    }

    /// Waits for every part; returns them in order. Dropping `self` early aborts the rest.
    async fn finish_all(mut self) -> Result<Vec<Part>, StorageError> {
        while !self.set.is_empty() {
            self.finish_one().await?;
        }
        self.done.sort_by_key(|(index, _)| *index);
        Ok(self.done.into_iter().map(|(_, part)| part).collect())
    }
}
