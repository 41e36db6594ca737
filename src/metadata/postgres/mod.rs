//! The metadata store on PostgreSQL (`database.url`), shared by any number of replicas:
//! connecting, migrating and the lock contract; the queries are [`super::sql`]'s.
//!
//! Three bounded pools per process: writers (every transaction `SERIALIZABLE`, so
//! concurrent writes from any replicas are equivalent to some serial order, as SQLite's
//! single writer makes them; a refused one is retried by [`super::sql`]), readers (single
//! statements at `READ COMMITTED`; the collector's snapshot is `REPEATABLE READ`), and the
//! connections that hold advisory locks ([`locks`]).

mod locks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

use super::MetadataError;
use super::sql::{Dialect, Readers, Snapshots, SqlStore};

/// The PostgreSQL migrations in `migrations/postgres/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the first connection may take at startup before the server refuses to start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which PostgreSQL database, and how many connections to it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database?sslmode=...` (libpq's URL form).
    pub url: String,
    /// Connections per pool (writers, readers, lock holders), each.
    pub max_connections: u32,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &redacted(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `url` without its password, for logs and errors.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("****"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// The error for a database that cannot be reached, naming it without its password.
fn unreachable(url: &str, e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Database(format!("cannot connect to {}: {e}", redacted(url)))
}

/// A connection idle at least this long is pinged before it is lent.
const RECHECK_IDLE: Duration = Duration::from_secs(1);

/// Pools that test a connection before lending it only when it sat idle for
/// [`RECHECK_IDLE`] (a restarted server or a proxy's idle cut shows then): sqlx's default
/// pings before every lend, a network round trip on top of each query's own.
fn checked_when_idle(options: AnyPoolOptions) -> AnyPoolOptions {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= RECHECK_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Connects to the database, applies pending migrations and opens the pools.
pub async fn open(settings: &PostgresSettings) -> Result<SqlStore, MetadataError> {
    let url = &settings.url;
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| MetadataError::Database(format!("database.url: {e}")))?;
    // One connection first, bounded in time: a clear error at startup, not a pool timeout.
    let first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| unreachable(url, format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(url, e))?;
    drop(first);
    let lock_pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(|e| unreachable(url, e))?;
    // sqlx holds an advisory lock while it migrates: replicas starting at once queue.
    MIGRATOR.run(&lock_pool).await?;

    sqlx::any::install_default_drivers();
    let any = AnyConnectOptions::from_str(url)
        .map_err(|e| MetadataError::Database(format!("database.url: {e}")))?;
    let writer = checked_when_idle(AnyPoolOptions::new())
        .max_connections(settings.max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Also the single statements outside explicit transactions (the collector's
                // conditional deletes): all writers take part in serializable checking.
                conn.execute("SET default_transaction_isolation = 'serializable'")
                    .await?;
                Ok(())
            })
        })
        .connect_with(any.clone())
        .await
        .map_err(|e| unreachable(url, e))?;
    let reader = checked_when_idle(AnyPoolOptions::new())
        .max_connections(settings.max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(any)
        .await
        .map_err(|e| unreachable(url, e))?;
    Ok(SqlStore::new(
        Dialect::Postgres,
        writer,
        Readers::pooled(reader),
        Arc::new(locks::AdvisoryLocks::new(lock_pool)),
        Snapshots::Unsupported(
            "ferry backup copies blobs only with a PostgreSQL database: back the database up \
             with pg_dump (or your database service's backups) first, then the blobs",
        ),
    ))
}
