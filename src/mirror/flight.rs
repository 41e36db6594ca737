//! Blob downloads from an upstream, one per digest at a time (single flight), streamed to
//! every client that asks while they run.
//!
//! A download is a task of its own (it finishes even if the client that started it goes
//! away). It writes the upstream's bytes to a staging file in the mirror's own directory and
//! publishes how many are written through a `watch` channel; every client (the first one
//! too) reads the staging file up to that length, so all of them stream while it downloads.
//! At the same time the bytes go through the local registry's ordinary upload path
//! (`start_upload`, then `finish_upload` fed from a channel), which hashes them, makes them
//! durable, checks the digest and only then commits the blob (bytes first, then one short
//! metadata transaction, under the digest's lock). So a half-written or mismatching blob is
//! never visible as committed: the upload is cancelled and nothing is stored. Clients get the
//! last byte only once the blob is committed locally (so after the digest check): a client
//! never receives a whole blob whose digest is wrong (its response is cut instead), and one
//! that has received a whole blob finds it in the cache when it asks again.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::stats::Stats;
use super::upstream::{Upstream, UpstreamError};
use crate::oci::{Digest, Hasher, RepositoryName};
use crate::registry::api::Uploads;
use crate::registry::blobs::{BlobRead, RangeRequest};
use crate::registry::context::{Access, Action, RequestContext};
use crate::registry::{Registry, RegistryError};
use crate::storage::ByteStream;

/// Bytes read from the staging file per piece sent to a client.
const READ_PIECE: usize = 256 * 1024;
/// Bytes gathered before they are written to the staging file and published (one write and
/// one hand-off to the clients per piece, not per network read).
const WRITE_PIECE: usize = 512 * 1024;

/// Where a download stands.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Asking the upstream.
    Connecting,
    /// Receiving: `written` of `size` bytes are in the staging file.
    Streaming {
        /// The blob's size (the upstream's `Content-Length`).
        size: u64,
        /// Bytes in the staging file.
        written: u64,
    },
    /// The blob is committed in the local registry.
    Committed {
        /// Its size.
        size: u64,
    },
    /// The download failed; nothing was stored.
    Failed(UpstreamError),
}

/// One download in progress.
pub struct Flight {
    /// The local repository it is stored into.
    pub local: RepositoryName,
    path: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// What a client following a download gets.
pub enum Followed {
    /// The bytes, streaming as they arrive.
    Read(BlobRead),
    /// The download finished before this client could open its staging file: the blob is
    /// committed; read it from the local registry.
    Committed,
}

/// Everything a download task needs.
pub struct Job {
    /// The upstream to fetch from.
    pub upstream: Arc<Upstream>,
    /// The repository's name upstream.
    pub remote: String,
    /// The registry to store into.
    pub registry: Registry,
    /// The local repository.
    pub local: RepositoryName,
    /// The blob.
    pub digest: Digest,
    /// The counters.
    pub stats: Arc<Stats>,
}

/// The downloads in progress, by digest.
pub struct Flights {
    staging: PathBuf,
    running: Mutex<HashMap<Digest, Arc<Flight>>>,
}

impl Flights {
    /// Downloads staged in `staging` (emptied now: what is there is left by a crash).
    pub fn new(staging: PathBuf) -> io::Result<Self> {
        match std::fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&staging)?;
        Ok(Flights {
            staging,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The download of `digest` in progress, if any (one that failed is over).
    pub fn get(&self, digest: &Digest) -> Option<Arc<Flight>> {
        self.running
            .lock()
            .ok()?
            .get(digest)
            .filter(|f| !f.failed())
            .cloned()
    }

    /// The size of `digest` if a download of it knows it.
    pub fn size_of(&self, digest: &Digest) -> Option<u64> {
        match &*self.get(digest)?.progress.borrow() {
            Progress::Streaming { size, .. } | Progress::Committed { size } => Some(*size),
            _ => None,
        }
    }

    /// The download of `job.digest`: the one in progress, or a new one started now.
    pub fn join_or_start(self: &Arc<Self>, job: Job) -> Arc<Flight> {
        let Ok(mut running) = self.running.lock() else {
            // A poisoned map (a panic elsewhere): download without sharing.
            return self.start(job);
        };
        if let Some(flight) = running.get(&job.digest)
            && !flight.failed()
        {
            return flight.clone();
        }
        let digest = job.digest.clone();
        let flight = self.start(job);
        running.insert(digest, flight.clone());
        flight
    }

    fn start(self: &Arc<Self>, job: Job) -> Arc<Flight> {
        let path = self.staging.join(format!(
            "{}-{}",
            job.digest.hex(),
            uuid::Uuid::new_v4().simple()
        ));
        let (tx, rx) = watch::channel(Progress::Connecting);
        let flight = Arc::new(Flight {
            local: job.local.clone(),
            path: path.clone(),
            progress: rx,
        });
        let flights = self.clone();
        let mine = flight.clone();
        tokio::spawn(async move {
            let digest = job.digest.clone();
            let outcome = download(&job, &path, &tx).await;
            match outcome {
                Ok(size) => {
                    tx.send_replace(Progress::Committed { size });
                }
                Err(e) => {
                    tracing::warn!(upstream = %job.upstream.name, repository = %job.remote, %digest, error = %e, "blob download failed; nothing stored");
                    tx.send_replace(Progress::Failed(e));
                }
            }
            // Gone from the map only once the blob is committed (or failed): a client that
            // does not find the download finds the blob.
            if let Ok(mut running) = flights.running.lock()
                && running.get(&digest).is_some_and(|f| Arc::ptr_eq(f, &mine))
            {
                running.remove(&digest);
            }
            // Clients that opened the file keep reading it after this.
            let _ = tokio::fs::remove_file(&path).await;
        });
        flight
    }
}

impl Flight {
    fn failed(&self) -> bool {
        matches!(&*self.progress.borrow(), Progress::Failed(_))
    }

    /// Streams `range` (or all) of the blob as it downloads.
    pub async fn follow(&self, range: Option<RangeRequest>) -> Result<Followed, RegistryError> {
        let mut progress = self.progress.clone();
        let size = loop {
            let now = progress.borrow_and_update().clone();
            match now {
                Progress::Connecting => {}
                Progress::Streaming { size, .. } | Progress::Committed { size } => break size,
                Progress::Failed(e) => return Err(error(e)),
            }
            if progress.changed().await.is_err() {
                return Err(RegistryError::UpstreamUnavailable(
                    "the download stopped".to_string(),
                ));
            }
        };
        let (range, partial) = match range {
            Some(request) => (
                request
                    .resolve(size)
                    .ok_or(RegistryError::RangeNotSatisfiable { size })?,
                true,
            ),
            None => (0..size, false),
        };
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            Err(_) if matches!(&*progress.borrow(), Progress::Committed { .. }) => {
                return Ok(Followed::Committed);
            }
            Err(e) => {
                return Err(RegistryError::Storage(crate::storage::StorageError::Io(e)));
            }
        };
        if range.start > 0 {
            file.seek(io::SeekFrom::Start(range.start))
                .await
                .map_err(|e| RegistryError::Storage(e.into()))?;
        }
        struct State {
            file: tokio::fs::File,
            pos: u64,
            end: u64,
            size: u64,
            progress: watch::Receiver<Progress>,
            done: bool,
        }
        let state = State {
            file,
            pos: range.start,
            end: range.end,
            size,
            progress,
            done: false,
        };
        let body: ByteStream<'static> =
            Box::pin(futures_util::stream::unfold(state, |mut s| async move {
                if s.done {
                    return None;
                }
                loop {
                    if s.pos >= s.end {
                        return None;
                    }
                    let now = s.progress.borrow_and_update().clone();
                    let available = match now {
                        Progress::Connecting => 0,
                        // The last byte waits for the digest check and the local commit:
                        // a client that has the whole blob finds it cached when it asks
                        // again, even if the upstream is gone by then.
                        Progress::Streaming { written, .. } => {
                            written.min(s.size.saturating_sub(1))
                        }
                        Progress::Committed { size } => size,
                        Progress::Failed(e) => {
                            s.done = true;
                            return Some((Err(io::Error::other(e.to_string())), s));
                        }
                    };
                    let limit = available.min(s.end);
                    if s.pos < limit {
                        let n = usize::try_from(limit - s.pos)
                            .unwrap_or(READ_PIECE)
                            .min(READ_PIECE);
                        let mut buf = BytesMut::zeroed(n);
                        return match s.file.read(&mut buf).await {
                            Ok(0) => {
                                s.done = true;
                                Some((Err(io::ErrorKind::UnexpectedEof.into()), s))
                            }
                            Ok(read) => {
                                buf.truncate(read);
                                s.pos += read as u64;
                                Some((Ok(buf.freeze()), s))
                            }
                            Err(e) => {
                                s.done = true;
                                Some((Err(e), s))
                            }
                        };
                    }
                    if s.progress.changed().await.is_err() {
                        // The task ended: its last word is in the channel; one more look.
                        let last = s.progress.borrow().clone();
                        if !matches!(last, Progress::Committed { .. }) {
                            s.done = true;
                            return Some((
                                Err(io::Error::other("the upstream download stopped")),
                                s,
                            ));
                        }
                    }
                }
            }));
        Ok(Followed::Read(BlobRead {
            size,
            range,
            partial,
            body,
        }))
    }
}

/// The registry error a client gets for a failed download.
pub fn error(e: UpstreamError) -> RegistryError {
    match e {
        UpstreamError::NotFound => RegistryError::BlobUnknown,
        UpstreamError::Unavailable(why) | UpstreamError::Invalid(why) => {
            RegistryError::UpstreamUnavailable(why)
        }
    }
}

/// Fetches the blob into the staging file and the local registry; returns its size once it
/// is committed.
async fn download(
    job: &Job,
    path: &PathBuf,
    progress: &watch::Sender<Progress>,
) -> Result<u64, UpstreamError> {
    let local_failure = |what: &str, e: &dyn std::fmt::Display| {
        UpstreamError::Unavailable(format!("storing the downloaded blob failed ({what}): {e}"))
    };
    let response = job.upstream.get_blob(&job.remote, &job.digest).await?;
    let size = response.content_length().ok_or_else(|| {
        UpstreamError::Invalid("the upstream sent a blob without Content-Length".to_string())
    })?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| local_failure("staging file", &e))?;
    progress.send_replace(Progress::Streaming { size, written: 0 });
    let (feed, chunks) = mpsc::channel::<io::Result<Bytes>>(4);
    let cx = RequestContext::anonymous(
        RequestContext::new_id(),
        Access::Repository {
            name: job.local.clone(),
            actions: &[Action::Pull, Action::Push],
        },
    );
    let store = async {
        let session = job.registry.start_upload(&cx, &job.local).await?;
        let body: ByteStream<'static> = Box::pin(futures_util::stream::unfold(
            chunks,
            |mut chunks| async move { chunks.recv().await.map(|chunk| (chunk, chunks)) },
        ));
        let stored = job
            .registry
            .finish_upload(
                &cx,
                &job.local,
                &session.id,
                &job.digest,
                Some((None, body)),
            )
            .await;
        if stored.is_err() {
            let _ = job
                .registry
                .cancel_upload(&cx, &job.local, &session.id)
                .await;
        }
        stored
    };
    let receive = async move {
        let mut hasher = Hasher::new(job.digest.algorithm());
        let mut written = 0u64;
        let mut received = 0u64;
        let mut pending = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = feed.send(Err(io::Error::other("upstream failed"))).await;
                    job.stats.upstream_error();
                    return Err(UpstreamError::Unavailable(format!(
                        "upstream {}: the blob download broke off after {received} of {size} bytes: {e}",
                        job.upstream.name
                    )));
                }
            };
            if received + chunk.len() as u64 > size {
                let _ = feed.send(Err(io::Error::other("too long"))).await;
                return Err(UpstreamError::Invalid(format!(
                    "the upstream sent more than the {size} bytes it announced"
                )));
            }
            hasher.update(&chunk);
            received += chunk.len() as u64;
            job.stats.fetched(chunk.len() as u64);
            pending.extend_from_slice(&chunk);
            if feed.send(Ok(chunk)).await.is_err() {
                return Err(local_failure("upload", &"the local upload stopped"));
            }
            if pending.len() >= WRITE_PIECE || received == size {
                // Flushed: tokio's file hands writes to a blocking thread, and clients may
                // read only what is really in the file.
                file.write_all(&pending)
                    .await
                    .map_err(|e| local_failure("staging file", &e))?;
                file.flush()
                    .await
                    .map_err(|e| local_failure("staging file", &e))?;
                written += pending.len() as u64;
                pending.clear();
                progress.send_replace(Progress::Streaming { size, written });
            }
        }
        if received != size || written != size {
            let _ = feed.send(Err(io::Error::other("short"))).await;
            return Err(UpstreamError::Unavailable(format!(
                "upstream {}: the blob download ended after {received} of {size} bytes",
                job.upstream.name
            )));
        }
        let actual = hasher.finish();
        if actual != job.digest {
            let _ = feed.send(Err(io::Error::other("digest mismatch"))).await;
            return Err(UpstreamError::Invalid(format!(
                "the upstream's blob {} has the digest {actual}",
                job.digest
            )));
        }
        file.flush()
            .await
            .map_err(|e| local_failure("staging file", &e))?;
        // Every byte is in the staging file; the last one goes to clients at the commit.
        progress.send_replace(Progress::Streaming { size, written });
        Ok(())
    };
    let (stored, received) = tokio::join!(store, receive);
    received?;
    stored.map_err(|e| local_failure("commit", &e))?;
    Ok(size)
}
