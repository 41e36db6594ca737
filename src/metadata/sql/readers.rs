//! The connections reads run on. sqlx's pool tests every connection it takes back (a
//! `ping`): for SQLite that is a round trip to the connection's worker thread after every
//! query, as much hand-off work as a small query itself (measured: a tenth of the CPU of
//! a `tags/list` answer). A connection to a database file in this process cannot go stale,
//! so for SQLite [`Readers::kept`] holds the reader connections here between queries and
//! never gives them back to the pool until the store closes; PostgreSQL's connections can
//! break with the server or the network, so they go through the pool, tested, as before
//! ([`Readers::pooled`]).

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The read connections of a store.
pub(crate) struct Readers {
    pool: AnyPool,
    kept: Option<Kept>,
}

/// Connections taken from the pool once and kept between reads.
pub(crate) struct Kept {
    /// One permit per connection that may be out at once (the pool's size).
    permits: Semaphore,
    /// Idle connections; `None` once the store closes (connections go back to the pool).
    idle: Mutex<Option<Vec<PoolConnection<Any>>>>,
}

impl Readers {
    /// Every read takes a connection from `pool` and gives it back.
    pub(crate) fn pooled(pool: AnyPool) -> Self {
        Readers { pool, kept: None }
    }

    /// Reads keep up to all of `pool`'s connections between queries. Only for connections
    /// that cannot go stale, and not for a pool another user shares (the connections kept
    /// here never return to it while the store is open).
    pub(crate) fn kept(pool: AnyPool) -> Self {
        let connections = pool.options().get_max_connections() as usize;
        Readers {
            pool,
            kept: Some(Kept {
                permits: Semaphore::new(connections),
                idle: Mutex::new(Some(Vec::new())),
            }),
        }
    }

    /// The pool, for `migrate-metadata` and nothing else: with kept connections, the pool
    /// may have none left to give (every read, snapshot transactions included, goes
    /// through [`Readers::get`]).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for one read.
    pub(crate) async fn get(&self) -> Result<Reader<'_>, sqlx::Error> {
        let Some(kept) = &self.kept else {
            return Ok(Reader::Pooled(self.pool.acquire().await?));
        };
        let permit = kept
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = kept
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(Vec::pop);
        // With a permit, fewer than the pool's size are out, so the pool has one to give.
        let conn = match idle {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(Reader::Kept {
            conn: Some(conn),
            home: kept,
            _permit: permit,
        })
    }

    /// Gives the kept connections back and closes the pool.
    pub(crate) async fn close(&self) {
        if let Some(kept) = &self.kept {
            kept.permits.close();
            let idle = kept
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            drop(idle); // back to the pool, which closes them below
        }
        self.pool.close().await;
    }
}

/// A connection lent for one read: `&mut *reader` is an executor.
pub(crate) enum Reader<'a> {
    Pooled(PoolConnection<Any>),
    Kept {
        /// Always `Some` until dropped.
        conn: Option<PoolConnection<Any>>,
        home: &'a Kept,
        _permit: SemaphorePermit<'a>,
    },
}

impl Deref for Reader<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Reader::Pooled(conn) => conn,
            Reader::Kept { conn, .. } => conn.as_ref().expect("present until dropped"),
        }
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Reader::Pooled(conn) => conn,
            Reader::Kept { conn, .. } => conn.as_mut().expect("present until dropped"),
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Reader::Kept { conn, home, .. } = self
            && let Some(conn) = conn.take()
        {
            let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
            match idle.as_mut() {
                Some(idle) => idle.push(conn),
                // Closed: back to the pool, outside the lock.
                None => {
                    drop(idle);
                    drop(conn);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::metadata::MetadataStore;
    use crate::metadata::collector::CollectorMetadata;
    use crate::oci::RepositoryName;

    /// Every reader connection kept after a burst of reads, a snapshot transaction (what
    /// `ferry-gc` and the UI's estimate take) must still find a connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_after_a_burst_of_reads_finds_a_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::metadata::sqlite::open(&dir.path().join("m.db"))
            .await
            .unwrap();
        let name = RepositoryName::parse("a/b").unwrap();
        let reads = (0..32).map(|_| store.repository_exists(&name));
        for exists in futures_util::future::join_all(reads).await {
            assert!(!exists.unwrap());
        }
        let snapshot = tokio::time::timeout(Duration::from_secs(60), store.snapshot())
            .await
            .expect("the snapshot got a connection")
            .unwrap();
        assert!(snapshot.repositories.is_empty());
        tokio::time::timeout(Duration::from_secs(60), store.close())
            .await
            .expect("closing gives the kept connections back");
    }
}
