//! The metadata store's lock contract: what the registry services and the garbage collector
//! hold while they change bytes in storage, so that no metadata transaction is ever open
//! during a storage call.
//!
//! - [`LockKey::Blob`]: held while a digest's bytes are placed or checked in storage and the
//!   row that records them is written (an upload's commit, a manifest push), and while the
//!   collector removes a blob's row and then its bytes (or bytes no row describes). So the
//!   collector never removes bytes a row is about to name, and a push never records bytes the
//!   collector is removing. Held briefly: never across a client's request body.
//! - [`LockKey::Repository`]: held while a repository may come into or go out of existence in
//!   storage (a new upload's staging area; the collector removing an empty repository).
//! - [`LockKey::Upload`]: held for each request on an upload session (across its body), so two
//!   requests never write one staging area at once.
//! - [`LockKey::Collector`]: one collection at a time (taken with [`MetadataLocks::try_lock`]).
//!
//! Locks are exclusive and not re-entrant. A guard releases its lock when dropped, also when
//! the task holding it is cancelled (with PostgreSQL, other processes see the release a
//! moment later: the unlock is sent by a task); a process that dies releases all of its
//! locks. A
//! PostgreSQL store implements the same contract with advisory locks held on a connection
//! (`metadata::postgres::locks`).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex, Weak};

use async_trait::async_trait;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::MetadataError;
use crate::oci::{Digest, RepositoryName};

/// What a lock protects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A digest's bytes and the row that records them.
    Blob(Digest),
    /// A repository's existence (its row and its storage area).
    Repository(RepositoryName),
    /// One upload session.
    Upload(Uuid),
    /// The garbage collector: one at a time.
    Collector,
}

impl LockKey {
    /// A short stable name of the key's kind and a hash of its value.
    fn shard_name(&self, shards: u64) -> String {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        let shard = hasher.finish() % shards;
        match self {
            LockKey::Blob(_) => format!("blob-{shard:03}.lock"),
            LockKey::Repository(_) => format!("repository-{shard:03}.lock"),
            LockKey::Upload(_) => format!("upload-{shard:03}.lock"),
            LockKey::Collector => "collector.lock".to_string(),
        }
    }
}

/// A held lock; dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    _parts: Vec<Box<dyn Send + Sync>>,
}

impl LockGuard {
    /// A guard whose release is `part`'s drop.
    pub(crate) fn of(part: impl Send + Sync + 'static) -> LockGuard {
        LockGuard {
            _parts: vec![Box::new(part)],
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// The locks of a metadata store.
#[async_trait]
pub trait MetadataLocks: Send + Sync {
    /// Waits for the lock on `key`.
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError>;

    /// Takes the lock on `key` if nobody holds it; `None` if somebody does.
    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError>;

    /// On shutdown, once the process is done with its locks: waits until every lock let go
    /// is also released where it is kept, so that a process exiting next leaves none held
    /// for the next one to find. Nothing to wait for by default.
    async fn close_locks(&self) {}
}

/// Locks within one process: an async mutex per key, forgotten when nobody holds it.
#[derive(Default)]
pub struct ProcessLocks(SyncMutex<HashMap<LockKey, Weak<Mutex<()>>>>);

impl ProcessLocks {
    fn mutex(&self, key: LockKey) -> Arc<Mutex<()>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() > 1024 {
            map.retain(|_, lock| lock.strong_count() > 0);
        }
        match map.get(&key).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                let lock = Arc::new(Mutex::new(()));
                map.insert(key, Arc::downgrade(&lock));
                lock
            }
        }
    }

    async fn lock(&self, key: LockKey) -> OwnedMutexGuard<()> {
        self.mutex(key).lock_owned().await
    }

    fn try_lock(&self, key: LockKey) -> Option<OwnedMutexGuard<()>> {
        self.mutex(key).try_lock_owned().ok()
    }
}

/// Locks shared by every process on one machine: [`ProcessLocks`] first (so a process
/// queues its own tasks without blocking threads), then an exclusive `flock` on a file in
/// `dir`, which the kernel releases when the process dies. Keys are spread over a fixed
/// number of files per kind, so unrelated keys rarely share one; upload sessions, whose
/// locks are held across whole request bodies, are locked within the process only (one
/// server per SQLite database; the collector removes only sessions older than the purge
/// age, and a request on a removed session fails cleanly).
pub struct FileLocks {
    dir: PathBuf,
    process: ProcessLocks,
}

/// Files per key kind.
const SHARDS: u64 = 256;

impl FileLocks {
    /// Locks kept as files in `dir` (created when missing).
    pub fn new(dir: &Path) -> Result<Self, MetadataError> {
        std::fs::create_dir_all(dir).map_err(lock_error)?;
        Ok(FileLocks {
            dir: dir.to_path_buf(),
            process: ProcessLocks::default(),
        })
    }

    fn crosses_processes(key: &LockKey) -> bool {
        !matches!(key, LockKey::Upload(_))
    }

    async fn file_lock(
        &self,
        key: &LockKey,
        wait: bool,
    ) -> Result<Option<FlockGuard>, MetadataError> {
        let path = self.dir.join(key.shard_name(SHARDS));
        Ok(flock(&path, wait).await?.map(FlockGuard))
    }
}

/// An exclusive `flock` on the file `path` (created when missing), taken on a blocking
/// thread: waiting for it (`wait`), or `None` when another holder has it. Released when the
/// returned file is closed, also by the kernel when the process dies.
pub async fn flock(path: &Path, wait: bool) -> Result<Option<std::fs::File>, MetadataError> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || -> std::io::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        if wait {
            file.lock()?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        Ok(Some(file))
    })
    .await
    .map_err(|e| lock_error(std::io::Error::other(e)))?
    .map_err(|e| MetadataError::Lock(format!("{shown}: {e}")))
}

/// An exclusive `flock`, released when the file is closed.
struct FlockGuard(#[allow(dead_code)] std::fs::File);

fn lock_error(e: std::io::Error) -> MetadataError {
    MetadataError::Lock(e.to_string())
}

#[async_trait]
impl MetadataLocks for FileLocks {
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError> {
        let local = self.process.lock(key.clone()).await;
        let mut parts: Vec<Box<dyn Send + Sync>> = vec![Box::new(local)];
        if Self::crosses_processes(&key)
            && let Some(file) = self.file_lock(&key, true).await?
        {
            parts.push(Box::new(file));
        }
        Ok(LockGuard { _parts: parts })
    }

    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError> {
        let Some(local) = self.process.try_lock(key.clone()) else {
            return Ok(None);
        };
        let mut parts: Vec<Box<dyn Send + Sync>> = vec![Box::new(local)];
        if Self::crosses_processes(&key) {
            match self.file_lock(&key, false).await? {
                Some(file) => parts.push(Box::new(file)),
                None => return Ok(None),
            }
        }
        Ok(Some(LockGuard { _parts: parts }))
    }
}

#[async_trait]
impl MetadataLocks for ProcessLocks {
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError> {
        let local = ProcessLocks::lock(self, key).await;
        Ok(LockGuard {
            _parts: vec![Box::new(local)],
        })
    }

    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError> {
        Ok(ProcessLocks::try_lock(self, key).map(|local| LockGuard {
            _parts: vec![Box::new(local)],
        }))
    }
}
