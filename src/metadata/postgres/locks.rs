//! The lock contract ([`crate::metadata::locks`]) across replicas: PostgreSQL session
//! advisory locks. A key is first locked within the process ([`ProcessLocks`], so a
//! process's own tasks queue without holding connections), then `pg_advisory_lock` is taken
//! on a connection of the lock pool that stays with the guard. Dropping the guard unlocks
//! and returns the connection; if that cannot be done (the task was cancelled while it
//! waited, the unlock failed), the connection is closed instead, and PostgreSQL releases a
//! closed session's locks, as it does for a replica that dies. Every kind of key crosses
//! processes here, upload sessions too: any replica may receive a session's next request.

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::metadata::MetadataError;
use crate::metadata::locks::{LockGuard, LockKey, MetadataLocks, ProcessLocks};

/// Advisory locks on a pool of connections kept for them.
pub(super) struct AdvisoryLocks {
    pool: PgPool,
    process: ProcessLocks,
}

/// The advisory lock id of `key`: the first 8 bytes of a SHA-256 of its kind and value, the
/// same in every replica and every build (unlike `std`'s hasher).
fn lock_id(key: &LockKey) -> i64 {
    let mut hash = Sha256::new();
    match key {
        LockKey::Blob(digest) => {
            hash.update(b"ferry blob\0");
            hash.update(digest.to_string().as_bytes());
        }
        LockKey::Repository(name) => {
            hash.update(b"ferry repository\0");
            hash.update(name.as_str().as_bytes());
        }
        LockKey::Upload(id) => {
            hash.update(b"ferry upload\0");
            hash.update(id.as_bytes());
        }
        LockKey::Collector => hash.update(b"ferry collector\0"),
    }
    let bytes = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(first)
}

/// A lock connection on its way to holding a lock: closed if dropped before
/// [`Pending::held`] (a cancelled wait may still get the lock on the server).
struct Pending(Option<PoolConnection<Postgres>>);

impl Pending {
    fn conn(&mut self) -> &mut PoolConnection<Postgres> {
        self.0
            .as_mut()
            .expect("a pending lock connection is present until taken")
    }

    fn held(mut self, id: i64, local: LockGuard) -> LockGuard {
        LockGuard::of(AdvisoryGuard {
            conn: self.0.take(),
            id,
            local: Some(local),
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// How long closing waits for locks being released.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A held advisory lock; released when dropped. The process's own lock on the key is let
/// go only after the server's, so the next task of this process to take the key never
/// waits on the server for this one's release.
struct AdvisoryGuard {
    conn: Option<PoolConnection<Postgres>>,
    id: i64,
    local: Option<LockGuard>,
}

impl Drop for AdvisoryGuard {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let id = self.id;
        let local = self.local.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked: Result<(bool,), _> =
                        sqlx::query_as("SELECT pg_advisory_unlock($1)")
                            .bind(id)
                            .fetch_one(&mut *conn)
                            .await;
                    if !matches!(unlocked, Ok((true,))) {
                        tracing::warn!(id, "advisory unlock failed; closing its connection");
                        conn.close_on_drop();
                    }
                    drop(conn);
                    drop(local);
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

impl AdvisoryLocks {
    pub(super) fn new(pool: PgPool) -> Self {
        AdvisoryLocks {
            pool,
            process: ProcessLocks::default(),
        }
    }

    async fn connection(&self) -> Result<Pending, MetadataError> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| MetadataError::Lock(format!("no connection for a lock: {e}")))?;
        Ok(Pending(Some(conn)))
    }
}

#[async_trait]
impl MetadataLocks for AdvisoryLocks {
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError> {
        let local = MetadataLocks::lock(&self.process, key.clone()).await?;
        let id = lock_id(&key);
        let mut pending = self.connection().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(id)
            .execute(&mut **pending.conn())
            .await?;
        Ok(pending.held(id, local))
    }

    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError> {
        let Some(local) = MetadataLocks::try_lock(&self.process, key.clone()).await? else {
            return Ok(None);
        };
        let id = lock_id(&key);
        let mut pending = self.connection().await?;
        let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(id)
            .fetch_one(&mut **pending.conn())
            .await?;
        if !taken {
            // Nothing held on the server: the connection goes back to the pool.
            if let Some(conn) = pending.0.take() {
                drop(conn);
            }
            return Ok(None);
        }
        Ok(Some(pending.held(id, local)))
    }

    /// A guard releases its server lock on a task of its own (`Drop` cannot wait): closing
    /// the pool waits until those tasks have given their connections back, so `ferry-gc`
    /// never exits with its collector lock still held by a connection the server has not
    /// yet seen close (the next collection would find it busy). Bounded, in case a lock is
    /// still held somewhere at shutdown.
    async fn close_locks(&self) {
        if tokio::time::timeout(CLOSE_WAIT, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!("advisory locks still held at shutdown; closing without them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_and_distinct_by_kind() {
        let digest: crate::oci::Digest =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap();
        let a = lock_id(&LockKey::Blob(digest.clone()));
        assert_eq!(a, lock_id(&LockKey::Blob(digest)));
        assert_ne!(lock_id(&LockKey::Collector), a);
        let name = crate::oci::RepositoryName::parse("a/b").unwrap();
        assert_ne!(lock_id(&LockKey::Repository(name)), a);
    }
}
