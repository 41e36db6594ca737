//! The metadata store on SQLite (WAL), for one node: opening the file and its locks; the
//! queries are [`super::sql`]'s. Writes go through a single-connection pool, so writers
//! queue in the process instead of spinning on SQLite's lock; reads use a pool of their
//! own. Write transactions start with `BEGIN IMMEDIATE`, so another process (the garbage
//! collector) is serialised with the server by SQLite itself.

pub(crate) mod snapshot;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Executor};

use super::MetadataError;
use super::locks::{FileLocks, flock};
use super::sql::{Dialect, Readers, Snapshots, SqlStore};

/// The SQLite migrations in `migrations/sqlite/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Reader connections (each a worker thread of sqlx's), kept between reads.
const READERS: u32 = 8;

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// `<database>.<suffix>`, beside the database file.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Settings every connection gets when it opens (the `Any` pools take a URL, which cannot
/// carry them).
fn pragmas(writer: bool) -> &'static str {
    if writer {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 30000;"
    } else {
        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;"
    }
}

/// A pool of at most `connections` on the database `options` names, each set up with
/// [`pragmas`].
async fn pool(
    options: AnyConnectOptions,
    connections: u32,
    writer: bool,
) -> Result<sqlx::AnyPool, MetadataError> {
    Ok(AnyPoolOptions::new()
        .max_connections(connections)
        // A connection to a file in this process cannot go stale, and the check would cost a
        // round trip to its worker thread before every query.
        .test_before_acquire(false)
        // An in-memory database lives as long as one of its connections.
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(pragmas(writer)).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

/// Opens (creating if needed) the database at `path` and applies pending migrations.
pub async fn open(path: &Path) -> Result<SqlStore, MetadataError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            MetadataError::Database(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let locks = Arc::new(FileLocks::new(&beside(path, "locks"))?);
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    // Two processes starting at once on a new database would both find the schema missing
    // and both create it; the second fails. Migrations run under an exclusive lock on a
    // file beside the database, so the second waits and then finds them done. (sqlx takes
    // PostgreSQL's advisory lock for the same purpose; SQLite has none.)
    let lock = flock(&beside(path, "lock"), true).await?;
    let migrations = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            options
                .clone()
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(BUSY_TIMEOUT),
        )
        .await?;
    let migrated = MIGRATOR.run(&migrations).await;
    migrations.close().await;
    migrated?;
    drop(lock);
    sqlx::any::install_default_drivers();
    let writer = pool(
        AnyConnectOptions::from_url(&options.to_url_lossy())?,
        1,
        true,
    )
    .await?;
    let read_only = options.read_only(true).to_url_lossy();
    let reader = pool(AnyConnectOptions::from_url(&read_only)?, READERS, false).await?;
    Ok(SqlStore::new(
        Dialect::Sqlite,
        writer,
        Readers::kept(reader),
        locks,
        Snapshots::SqliteFile(path.to_path_buf()),
    ))
}

/// An in-memory database, for unit tests (its locks live in `lock_dir`).
pub async fn in_memory(lock_dir: &Path) -> Result<SqlStore, MetadataError> {
    sqlx::any::install_default_drivers();
    let pool = pool(AnyConnectOptions::from_str("sqlite::memory:")?, 1, true).await?;
    MIGRATOR.run(&pool).await?;
    Ok(SqlStore::new(
        Dialect::Sqlite,
        pool.clone(),
        Readers::pooled(pool),
        Arc::new(FileLocks::new(lock_dir)?),
        Snapshots::Unsupported("an in-memory database has no snapshot"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataStore, UploadSession};

    async fn synchronous(store: &SqlStore) -> i64 {
        let (writer, _) = store.pools();
        let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(writer)
            .await
            .unwrap();
        level
    }

    /// An upload's progress is written without syncing the log; every other write still
    /// syncs it (`synchronous = FULL`, 2), whatever happened to the lazy write.
    #[tokio::test]
    async fn the_writer_stays_synchronous_after_lazy_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("registry.db")).await.unwrap();
        assert_eq!(synchronous(&store).await, 2);
        let session = UploadSession {
            id: uuid::Uuid::new_v4(),
            repository: crate::oci::RepositoryName::parse("team/app").unwrap(),
            size: 0,
            hash_state: None,
            started_at: 0,
        };
        store.create_upload(&session).await.unwrap();
        assert!(
            store
                .advance_upload(&session.id, 0, 7, Some(&[1]))
                .await
                .unwrap()
        );
        assert_eq!(synchronous(&store).await, 2);
        // A lost race changes nothing and leaves the setting as it was too.
        assert!(!store.advance_upload(&session.id, 0, 9, None).await.unwrap());
        assert_eq!(synchronous(&store).await, 2);
        let got = store.upload(&session.id).await.unwrap().unwrap();
        assert_eq!((got.size, got.hash_state), (7, Some(vec![1])));
    }
}
