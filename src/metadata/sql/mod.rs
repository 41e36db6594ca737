//! [`MetadataStore`] written once in SQL for both backends, SQLite and PostgreSQL, over
//! sqlx's `Any` driver. The queries are the same text on both (numbered `$N` parameters,
//! `ON CONFLICT`, `RETURNING`, byte-wise text order); what differs is named in [`Dialect`]:
//! how a write transaction begins, how a consistent read snapshot begins, and how a page of
//! names is joined into one value. Opening a database (pragmas, URLs, migrations, locks)
//! is each backend's own module: [`super::sqlite`], [`super::postgres`].
//!
//! Write transactions are serialised by the database: SQLite's single writer
//! (`BEGIN IMMEDIATE` on a one-connection pool), PostgreSQL's `SERIALIZABLE` isolation on
//! every connection of the writer pool. Under `SERIALIZABLE` PostgreSQL may refuse one of
//! two conflicting transactions (SQLSTATE 40001, or 40P01 for a deadlock); [`retrying`]
//! runs such an operation again, so a client never sees the conflict. Every write method
//! is therefore a function that can run more than once.

mod browse;
mod collector;
mod events;
mod readers;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Connection, Executor, Transaction};
use sqlx::{AnyConnection, AnyPool};
use uuid::Uuid;

pub(crate) use readers::Readers;

use super::{
    Lease, LockGuard, LockKey, MetadataBackend, MetadataError, MetadataLocks, MetadataStore, Names,
    NewEvent, NewManifest, Origin, QueuedEvent, Referrer, SnapshotContents, StoredManifest,
    UploadSession, now,
};
use crate::oci::{Digest, ReferenceKind, RepositoryName, Tag};

/// How often at most a blob's `last_used` is refreshed by reads (seconds).
const TOUCH_INTERVAL: i64 = 60;

/// Attempts of a write that the database refused for a concurrent one.
const MAX_ATTEMPTS: u32 = 12;

/// What differs between the two SQL databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (WAL), one writer connection.
    Sqlite,
    /// PostgreSQL, `SERIALIZABLE` writers.
    Postgres,
}

impl Dialect {
    /// Begins a write transaction.
    fn begin_write(self) -> &'static str {
        match self {
            // Takes SQLite's write lock at once: a transaction that reads then writes never
            // fails to upgrade its lock half-way (another process, the collector).
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            // The writer pool's connections default to SERIALIZABLE (see postgres::open).
            Dialect::Postgres => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }

    /// Begins a read-only transaction that sees one consistent state throughout.
    fn begin_snapshot(self) -> &'static str {
        match self {
            // A WAL reader sees the database as of its first read until it ends.
            Dialect::Sqlite => "BEGIN",
            // READ COMMITTED (the default) would see each statement's own state.
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// One row if the repository exists, none if not: its cached list of every tag
    /// (`tag_lists`), or when there is none, the page of tags by query, both as names
    /// joined by newlines (the page `NULL` when empty). SQLite's separator is a literal
    /// newline, not `char(10)`, which it would call again for every row (a third of the
    /// query's time over 500 tags).
    fn tag_page(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT l.names, CASE WHEN l.names IS NULL THEN (SELECT group_concat(name, '\n') FROM (
                   SELECT t.name FROM tags t
                   WHERE t.repository_id = r.id AND t.name > $2 ORDER BY t.name LIMIT $3)) END
                 FROM repositories r LEFT JOIN tag_lists l ON l.repository_id = r.id
                 WHERE r.name = $1"
            }
            Dialect::Postgres => {
                "SELECT l.names, CASE WHEN l.names IS NULL THEN (SELECT string_agg(name, chr(10)) FROM (
                   SELECT t.name FROM tags t
                   WHERE t.repository_id = r.id AND t.name > $2 ORDER BY t.name LIMIT $3) AS page) END
                 FROM repositories r LEFT JOIN tag_lists l ON l.repository_id = r.id
                 WHERE r.name = $1"
            }
        }
    }

    /// Writes repository `$1`'s `tag_lists` row from its tags, unless it has more than
    /// 10,000: their list is then read from `tags` page by page, as writing it would cost
    /// every later tag write of the repository a pass over all of them (about a
    /// millisecond at 10,000). Run by the tag writes, in their transaction.
    ///
    /// `None` on PostgreSQL, which lists tags from `tags` only: under `SERIALIZABLE`, two
    /// tag pushes to one repository at once would each read the other's new tag as missing
    /// and be refused in turn (48 at once exhausted the retries in CI), and a list written
    /// outside the tag writes (by a complete listing) made the pushes beside it the victims
    /// instead. A row copied in by `ferry migrate-metadata` is still read, and its triggers
    /// delete it at the first change.
    fn write_tag_list(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => Some(
                "INSERT INTO tag_lists (repository_id, names)
                 SELECT $1, coalesce(group_concat(name, '\n' ORDER BY name), '') FROM (
                   SELECT name FROM tags WHERE repository_id = $1 ORDER BY name LIMIT 10001)
                 HAVING count(*) <= 10000",
            ),
            Dialect::Postgres => None,
        }
    }

    /// `SELECT <names joined by newlines>` over a page of repositories holding content.
    fn repository_page(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT group_concat(name, '\n') FROM (
                   SELECT r.name FROM repositories r
                   WHERE r.name > $1
                   AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
                        OR EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id))
                   ORDER BY r.name LIMIT $2) AS page"
            }
            Dialect::Postgres => {
                "SELECT string_agg(name, chr(10)) FROM (
                   SELECT r.name FROM repositories r
                   WHERE r.name > $1
                   AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
                        OR EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id))
                   ORDER BY r.name LIMIT $2) AS page"
            }
        }
    }
}

/// How a metadata snapshot (`ferry backup`) is taken.
#[derive(Clone, Debug)]
pub enum Snapshots {
    /// `VACUUM INTO` from this SQLite file.
    SqliteFile(PathBuf),
    /// Not by Ferry (an in-memory database; PostgreSQL, which has `pg_dump`): why.
    Unsupported(&'static str),
}

/// The metadata store over an SQL database.
#[derive(Clone)]
pub struct SqlStore {
    dialect: Dialect,
    writer: AnyPool,
    /// Shared by clones: the connections it keeps are the store's.
    reader: Arc<Readers>,
    locks: Arc<dyn MetadataLocks>,
    snapshots: Snapshots,
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && matches!(db.code().as_deref(), Some("40001" | "40P01"))
        {
            return MetadataError::Conflict(db.message().to_string());
        }
        MetadataError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for MetadataError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        MetadataError::Migrate(e.to_string())
    }
}

fn size_to_db(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

pub(crate) fn size_from_db(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest, MetadataError> {
    s.parse()
        .map_err(|_| MetadataError::Corrupt(format!("digest {s:?}")))
}

/// Runs `op` until it does not fail with [`MetadataError::Conflict`], at most
/// [`MAX_ATTEMPTS`] times, waiting a little longer after each refusal (with jitter, so two
/// replicas that collided do not collide again in step).
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, MetadataError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MetadataError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(MetadataError::Conflict(why)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, %why, "metadata write conflicted, retrying");
                let jitter = u64::from(Uuid::new_v4().as_bytes()[0] % 8);
                let wait = Duration::from_millis(u64::from(attempt) * 4 + jitter);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Binds a statement's parameters.
type Bind =
    dyn for<'q> Fn(Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> + Send + Sync;

/// See [`SqlStore::write_one_lazily`].
async fn write_lazily(
    writer: &AnyPool,
    dialect: Dialect,
    sql: &'static str,
    bind: &Bind,
) -> Result<u64, MetadataError> {
    let mut conn = writer.acquire().await?;
    match dialect {
        Dialect::Sqlite => {
            // `synchronous` belongs to the connection, not the transaction: in WAL mode,
            // NORMAL commits without syncing the log, and the next FULL commit's sync covers
            // this one too. Set back before the connection returns to the pool, or the
            // connection is closed: every other write must stay FULL.
            if let Err(e) = conn.execute("PRAGMA synchronous = NORMAL").await {
                conn.close_on_drop();
                return Err(e.into());
            }
            let done = bind(sqlx::query(sql)).execute(&mut *conn).await;
            if let Err(e) = conn.execute("PRAGMA synchronous = FULL").await {
                conn.close_on_drop();
                return Err(e.into());
            }
            Ok(done?.rows_affected())
        }
        Dialect::Postgres => {
            // `SET LOCAL` ends with the transaction, however it ends.
            let mut tx = conn.begin_with(dialect.begin_write()).await?;
            tx.execute("SET LOCAL synchronous_commit = off").await?;
            let done = bind(sqlx::query(sql)).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        }
    }
}

impl SqlStore {
    /// A store over open pools (`reader`'s pool may be `writer` itself, then pooled).
    pub(crate) fn new(
        dialect: Dialect,
        writer: AnyPool,
        reader: Readers,
        locks: Arc<dyn MetadataLocks>,
        snapshots: Snapshots,
    ) -> Self {
        SqlStore {
            dialect,
            writer,
            reader: Arc::new(reader),
            locks,
            snapshots,
        }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The writer and reader pools, for `ferry migrate-metadata` ([`super::migrate`]), which
    /// copies whole tables instead of going through the store's methods.
    pub(crate) fn pools(&self) -> (&AnyPool, &AnyPool) {
        (&self.writer, self.reader.pool())
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>, MetadataError> {
        Ok(self.writer.begin_with(self.dialect.begin_write()).await?)
    }

    /// Marks a blob as used now (for the collector's grace window); `last_used` only grows.
    async fn touch_blob(&self, digest: &Digest) -> Result<(), MetadataError> {
        let digest = digest.to_string();
        self.write_one(
            "UPDATE blobs SET last_used = $1 WHERE digest = $2 AND last_used < $1",
            |q| q.bind(now()).bind(&digest),
        )
        .await?;
        Ok(())
    }

    /// One statement on the writer pool, retried on conflict; the rows it changed.
    async fn write_one(
        &self,
        sql: &'static str,
        bind: impl Fn(Query<'_, Any, AnyArguments>) -> Query<'_, Any, AnyArguments>,
    ) -> Result<u64, MetadataError> {
        let bind = &bind;
        retrying(move || async move {
            Ok(bind(sqlx::query(sql))
                .execute(&self.writer)
                .await?
                .rows_affected())
        })
        .await
    }

    /// Like [`SqlStore::write_one`], but the database does not wait to make the change
    /// durable: a crash of the machine (not of the process) may lose it, never half of it.
    /// Only for what may fall back to an earlier state after such a crash: an upload's
    /// progress, whose bytes are not durable before its commit either (the session then
    /// resumes from the earlier size; staged bytes beyond it are cut off). Saves a flush of
    /// the database's log, an fsync, per `PATCH`: a quarter of a chunked push's time on a
    /// slow disk.
    async fn write_one_lazily<B>(&self, sql: &'static str, bind: B) -> Result<u64, MetadataError>
    where
        B: Fn(Query<'_, Any, AnyArguments>) -> Query<'_, Any, AnyArguments> + Send + Sync + 'static,
    {
        let bind = Arc::new(bind);
        retrying(|| {
            let (writer, dialect, bind) = (self.writer.clone(), self.dialect, bind.clone());
            async move {
                // Spawned, so that a request cancelled half-way can never hand the writer
                // connection back with SQLite's setting still relaxed.
                tokio::spawn(async move { write_lazily(&writer, dialect, sql, &*bind).await })
                    .await
                    .map_err(|e| MetadataError::Database(format!("lazy write: {e}")))?
            }
        })
        .await
    }

    /// Runs `sql` (a `DELETE` with the repository's id as `$1` and `key` as `$2`) in the
    /// repository named `repository`, then writes its cached tag list again if the delete
    /// removed tags: whether it deleted anything.
    async fn delete_in_repository(
        &self,
        repository: &RepositoryName,
        sql: &'static str,
        key: &str,
    ) -> Result<bool, MetadataError> {
        retrying(move || async move {
            let mut tx = self.begin().await?;
            let repo: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
                    .bind(repository.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((repo,)) = repo else {
                return Ok(false);
            };
            let done = sqlx::query(sql)
                .bind(repo)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done > 0 {
                remember_tag_list(&mut tx, self.dialect, repo).await?;
                tx.commit().await?;
            }
            Ok(done > 0)
        })
        .await
    }

    /// Closes both pools and the locks (on shutdown).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        self.locks.close_locks().await;
    }

    async fn put_manifest_once(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest<'_>,
    ) -> Result<(), MetadataError> {
        let mut tx = self.begin().await?;
        let repo = repository_id(&mut tx, repository).await?;
        for reference in manifest.references {
            let child = reference.digest.to_string();
            let actual: Option<(i64,)> = match reference.kind {
                ReferenceKind::Manifest => {
                    sqlx::query_as(
                        "SELECT size FROM manifests WHERE repository_id = $1 AND digest = $2",
                    )
                    .bind(repo)
                    .bind(&child)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                ReferenceKind::Config | ReferenceKind::Layer => sqlx::query_as(
                    "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                         WHERE rb.repository_id = $1 AND rb.digest = $2",
                )
                .bind(repo)
                .bind(&child)
                .fetch_optional(&mut *tx)
                .await?,
            };
            let Some((actual,)) = actual else {
                if manifest.origin != Origin::Pushed {
                    continue;
                }
                return Err(MetadataError::MissingReference {
                    digest: reference.digest.clone(),
                    kind: reference.kind.as_str(),
                });
            };
            if size_from_db(actual) != reference.size {
                return Err(MetadataError::SizeMismatch {
                    digest: reference.digest.clone(),
                    declared: reference.size,
                    actual: size_from_db(actual),
                });
            }
        }
        let now = now();
        // A push that references blobs is a use of them (the collector's grace window). Only
        // a later time is written: concurrent pushes over the same blobs within a second
        // then write the row once, instead of all but one failing to serialize (PostgreSQL).
        for reference in manifest.references {
            if reference.kind != ReferenceKind::Manifest {
                sqlx::query("UPDATE blobs SET last_used = $1 WHERE digest = $2 AND last_used < $1")
                    .bind(now)
                    .bind(reference.digest.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let digest = manifest.digest.to_string();
        let size = size_to_db(manifest.payload.len() as u64);
        // The manifest's own bytes are a blob too, stored by the caller before this.
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, last_used) VALUES ($1, $2, $3, $3)
             ON CONFLICT (digest) DO UPDATE SET last_used = excluded.last_used
             WHERE blobs.last_used < excluded.last_used",
        )
        .bind(&digest)
        .bind(size)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A cached manifest's TTL counts from now; a pushed one never expires.
        let (last_pulled, cache_ttl) = match manifest.origin {
            Origin::Pushed => (None, None),
            Origin::Cached { ttl_secs } => (Some(now), ttl_secs.map(size_to_db)),
        };
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, payload, created_at, last_pulled, cache_ttl)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at,
                 last_pulled = excluded.last_pulled, cache_ttl = excluded.cache_ttl",
        )
        .bind(repo)
        .bind(&digest)
        .bind(manifest.media_type)
        .bind(manifest.artifact_type)
        .bind(manifest.subject.map(|s| s.to_string()))
        .bind(manifest.annotations)
        .bind(size)
        .bind(manifest.payload)
        .bind(now)
        .bind(last_pulled)
        .bind(cache_ttl)
        .execute(&mut *tx)
        .await?;
        for reference in manifest.references {
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, kind)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(&digest)
            .bind(reference.digest.to_string())
            .bind(reference.kind.as_str())
            .execute(&mut *tx)
            .await?;
        }
        for tag in manifest.tags {
            set_tag(&mut tx, repo, tag, &digest).await?;
        }
        if !manifest.tags.is_empty() {
            remember_tag_list(&mut tx, self.dialect, repo).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn repository_id(
    conn: &mut AnyConnection,
    name: &RepositoryName,
) -> Result<i64, MetadataError> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.as_str())
    .bind(now())
    .execute(&mut *conn)
    .await?;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
        .bind(name.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}

async fn link_in_tx(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
) -> Result<(), MetadataError> {
    let now = now();
    let digest = digest.to_string();
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, last_used) VALUES ($1, $2, $3, $3)
         ON CONFLICT (digest) DO UPDATE SET last_used = excluded.last_used
             WHERE blobs.last_used < excluded.last_used",
    )
    .bind(&digest)
    .bind(size_to_db(size))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let repo = repository_id(conn, repository).await?;
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(repo)
    .bind(&digest)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Points `tag` of repository `repo` at the manifest `digest` (inside a transaction).
async fn set_tag(
    conn: &mut AnyConnection,
    repo: i64,
    tag: &Tag,
    digest: &str,
) -> Result<(), MetadataError> {
    sqlx::query(
        "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repository_id, name) DO UPDATE
         SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
    )
    .bind(repo)
    .bind(tag.as_str())
    .bind(digest)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes repository `repo`'s cached tag list (inside the transaction of a tag change), if
/// the change deleted it and the database keeps one ([`Dialect::write_tag_list`]): the
/// triggers of `tag_lists` delete it when a tag is created, removed or renamed, not when one
/// only moves to another manifest.
async fn remember_tag_list(
    conn: &mut AnyConnection,
    dialect: Dialect,
    repo: i64,
) -> Result<(), MetadataError> {
    let Some(write) = dialect.write_tag_list() else {
        return Ok(());
    };
    let cached: Option<(i64,)> =
        sqlx::query_as("SELECT repository_id FROM tag_lists WHERE repository_id = $1")
            .bind(repo)
            .fetch_optional(&mut *conn)
            .await?;
    if cached.is_none() {
        sqlx::query(write).bind(repo).execute(&mut *conn).await?;
    }
    Ok(())
}

/// An `uploads` row: id, repository, size, hash state, start time.
type UploadRow = (String, String, i64, Option<Vec<u8>>, i64);

fn upload_session(
    (id, repository, size, hash_state, started_at): UploadRow,
) -> Result<UploadSession, MetadataError> {
    Ok(UploadSession {
        id: Uuid::parse_str(&id)
            .map_err(|_| MetadataError::Corrupt(format!("upload id {id:?}")))?,
        repository: RepositoryName::parse(&repository)
            .map_err(|_| MetadataError::Corrupt(format!("repository {repository:?}")))?,
        size: size_from_db(size),
        hash_state,
        started_at,
    })
}

fn stored_manifest(
    row: Option<(String, String, Vec<u8>)>,
) -> Result<Option<StoredManifest>, MetadataError> {
    row.map(|(digest, media_type, payload)| {
        Ok(StoredManifest {
            digest: parse_digest(&digest)?,
            media_type,
            payload: Bytes::from(payload),
        })
    })
    .transpose()
}

#[async_trait]
impl MetadataLocks for SqlStore {
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError> {
        self.locks.lock(key).await
    }

    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError> {
        self.locks.try_lock(key).await
    }

    async fn close_locks(&self) {
        self.locks.close_locks().await;
    }
}

#[async_trait]
impl MetadataBackend for SqlStore {
    async fn close(&self) {
        SqlStore::close(self).await;
    }

    async fn snapshot_into(
        &self,
        path: &std::path::Path,
    ) -> Result<SnapshotContents, MetadataError> {
        match &self.snapshots {
            Snapshots::SqliteFile(source) => super::sqlite::snapshot::write(source, path).await,
            Snapshots::Unsupported(why) => Err(MetadataError::Database((*why).to_string())),
        }
    }
}

#[async_trait]
impl MetadataStore for SqlStore {
    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT b.size, b.last_used FROM repositories r
             JOIN repository_blobs rb ON rb.repository_id = r.id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *self.reader.get().await?)
        .await?;
        match row {
            Some((size, last_used)) => {
                if last_used < now() - TOUCH_INTERVAL {
                    self.touch_blob(digest).await?;
                }
                Ok(Some(size_from_db(size)))
            }
            None => Ok(None),
        }
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&mut *self.reader.get().await?)
            .await?;
        Ok(row.map(|(s,)| size_from_db(s)))
    }

    async fn link_blobs(
        &self,
        repository: &RepositoryName,
        blobs: &[(Digest, u64)],
    ) -> Result<(), MetadataError> {
        retrying(move || async move {
            let mut tx = self.begin().await?;
            for (digest, size) in blobs {
                link_in_tx(&mut tx, repository, digest, *size).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, MetadataError> {
        retrying(move || async move {
            let mut tx = self.begin().await?;
            let size: Option<(i64,)> = match from {
                Some(from) => {
                    sqlx::query_as(
                        "SELECT b.size FROM repositories r
                         JOIN repository_blobs rb ON rb.repository_id = r.id
                         JOIN blobs b ON b.digest = rb.digest
                         WHERE r.name = $1 AND rb.digest = $2",
                    )
                    .bind(from.as_str())
                    .bind(digest.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => {
                    sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
                        .bind(digest.to_string())
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
            let Some((size,)) = size else { return Ok(None) };
            let size = size_from_db(size);
            link_in_tx(&mut tx, repository, digest, size).await?;
            tx.commit().await?;
            Ok(Some(size))
        })
        .await
    }

    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let digest = digest.to_string();
        let done = self
            .write_one(
                "DELETE FROM repository_blobs WHERE digest = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
                |q| q.bind(&digest).bind(repository.as_str()),
            )
            .await?;
        Ok(done > 0)
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError> {
        let id = session.id.to_string();
        self.write_one(
            "INSERT INTO uploads (id, repository, size, hash_state, started_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
            |q| {
                q.bind(&id)
                    .bind(session.repository.as_str())
                    .bind(size_to_db(session.size))
                    .bind(session.hash_state.as_deref())
                    .bind(session.started_at)
            },
        )
        .await?;
        Ok(())
    }

    async fn upload(&self, id: &Uuid) -> Result<Option<UploadSession>, MetadataError> {
        let row: Option<UploadRow> = sqlx::query_as(
            "SELECT id, repository, size, hash_state, started_at FROM uploads WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.reader.get().await?)
        .await?;
        row.map(upload_session).transpose()
    }

    async fn advance_upload(
        &self,
        id: &Uuid,
        from_size: u64,
        to_size: u64,
        hash_state: Option<&[u8]>,
    ) -> Result<bool, MetadataError> {
        let id = id.to_string();
        let hash_state = hash_state.map(<[u8]>::to_vec);
        // Lazily: the staged bytes are made durable only by the upload's commit, too.
        let done = self
            .write_one_lazily(
                "UPDATE uploads SET size = $1, hash_state = $2, updated_at = $3
                 WHERE id = $4 AND size = $5",
                move |q| {
                    q.bind(size_to_db(to_size))
                        .bind(hash_state.clone())
                        .bind(now())
                        .bind(id.clone())
                        .bind(size_to_db(from_size))
                },
            )
            .await?;
        Ok(done == 1)
    }

    async fn complete_upload(
        &self,
        session: &UploadSession,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        retrying(move || async move {
            let mut tx = self.begin().await?;
            link_in_tx(&mut tx, &session.repository, digest, session.size).await?;
            sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(session.id.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &Uuid) -> Result<bool, MetadataError> {
        let id = id.to_string();
        let done = self
            .write_one("DELETE FROM uploads WHERE id = $1", |q| q.bind(&id))
            .await?;
        Ok(done > 0)
    }

    async fn stale_uploads(
        &self,
        started_before: i64,
    ) -> Result<Vec<UploadSession>, MetadataError> {
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT id, repository, size, hash_state, started_at FROM uploads
             WHERE started_at < $1 ORDER BY started_at",
        )
        .bind(started_before)
        .fetch_all(&mut *self.reader.get().await?)
        .await?;
        rows.into_iter().map(upload_session).collect()
    }

    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest<'_>,
    ) -> Result<(), MetadataError> {
        retrying(move || self.put_manifest_once(repository, manifest)).await
    }

    async fn tag_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let digest = &digest.to_string();
        retrying(move || async move {
            let mut tx = self.begin().await?;
            let repo: Option<(i64,)> = sqlx::query_as(
                "SELECT r.id FROM repositories r JOIN manifests m ON m.repository_id = r.id
                 WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repository.as_str())
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((repo,)) = repo else {
                return Ok(false);
            };
            set_tag(&mut tx, repo, tag, digest).await?;
            remember_tag_list(&mut tx, self.dialect, repo).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        let row = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.payload FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *self.reader.get().await?)
        .await?;
        stored_manifest(row)
    }

    async fn tagged_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        let row = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.payload FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&mut *self.reader.get().await?)
        .await?;
        stored_manifest(row)
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let digest = &digest.to_string();
        // Tags and references go with it (ON DELETE CASCADE).
        self.delete_in_repository(
            repository,
            "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
            digest,
        )
        .await
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError> {
        self.delete_in_repository(
            repository,
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
            tag.as_str(),
        )
        .await
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&mut *self.reader.get().await?)
            .await?;
        Ok(row.is_some())
    }

    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Names>, MetadataError> {
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(self.dialect.tag_page())
            .bind(repository.as_str())
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_optional(&mut *self.reader.get().await?)
            .await?;
        Ok(row.map(|row| match row {
            (Some(every), _) => Names::page_of(&every, last, limit as usize),
            (None, page) => Names::from_joined(page.unwrap_or_default()),
        }))
    }

    async fn list_repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Names, MetadataError> {
        let (page,): (Option<String>,) = sqlx::query_as(self.dialect.repository_page())
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_one(&mut *self.reader.get().await?)
            .await?;
        Ok(Names::from_joined(page.unwrap_or_default()))
    }

    async fn repository_description(
        &self,
        repository: &str,
    ) -> Result<Option<String>, MetadataError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT m.annotations
             FROM repositories r
             JOIN tags t ON t.repository_id = r.id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
             WHERE r.name = $1 AND m.annotations LIKE '%org.opencontainers.image.description%'
             ORDER BY t.updated_at DESC, t.name
             LIMIT 1",
        )
        .bind(repository)
        .fetch_optional(&mut *self.reader.get().await?)
        .await?;
        Ok(row.and_then(|(annotations,)| description_of(&annotations)))
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetadataError> {
        let rows: Vec<(String, String, i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
             ORDER BY m.created_at, m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&mut *self.reader.get().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(digest, media_type, size, artifact_type, annotations)| Referrer {
                    digest,
                    media_type,
                    size: size_from_db(size),
                    artifact_type,
                    annotations,
                },
            )
            .collect())
    }

    async fn sample_blobs(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetadataError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT digest, size FROM blobs ORDER BY random() LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&mut *self.reader.get().await?)
                .await?;
        rows.into_iter()
            .map(|(digest, size)| Ok((parse_digest(&digest)?, size_from_db(size))))
            .collect()
    }

    async fn touch_pulled(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        let digest = digest.to_string();
        self.write_one(
            "UPDATE manifests SET last_pulled = $1
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $2) AND digest = $3
               AND last_pulled IS NOT NULL",
            |q| q.bind(now()).bind(repository.as_str()).bind(&digest),
        )
        .await?;
        Ok(())
    }

    async fn enqueue_events(&self, events: &[NewEvent<'_>]) -> Result<(), MetadataError> {
        self.enqueue_events_sql(events).await
    }

    async fn claim_events(
        &self,
        lease: Lease<'_>,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, MetadataError> {
        self.claim_events_sql(lease, limit).await
    }

    async fn ack_events(
        &self,
        endpoint: &str,
        owner: &str,
        ids: &[i64],
    ) -> Result<u64, MetadataError> {
        self.ack_events_sql(endpoint, owner, ids).await
    }

    async fn release_events(&self, owner: &str) -> Result<u64, MetadataError> {
        self.release_events_sql(owner).await
    }

    async fn trim_events(&self, endpoint: &str, keep: u64) -> Result<u64, MetadataError> {
        self.trim_events_sql(endpoint, keep).await
    }

    async fn drop_events_except(&self, endpoints: &[&str]) -> Result<u64, MetadataError> {
        self.drop_events_except_sql(endpoints).await
    }

    async fn queued_events(&self, endpoint: &str) -> Result<u64, MetadataError> {
        self.queued_events_sql(endpoint).await
    }

    async fn info(&self, key: &str) -> Result<Option<String>, MetadataError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM registry_info WHERE key = $1")
                .bind(key)
                .fetch_optional(&mut *self.reader.get().await?)
                .await?;
        Ok(row.map(|(v,)| v))
    }

    async fn set_info(&self, key: &str, value: &str) -> Result<(), MetadataError> {
        self.write_one(
            "INSERT INTO registry_info (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            |q| q.bind(key).bind(value),
        )
        .await?;
        Ok(())
    }

    async fn init_info(&self, key: &str, value: &str) -> Result<String, MetadataError> {
        self.write_one(
            "INSERT INTO registry_info (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            |q| q.bind(key).bind(value),
        )
        .await?;
        // Whoever inserted first (this process or another replica) set the value.
        self.info(key).await?.ok_or_else(|| {
            MetadataError::Corrupt(format!("registry_info {key:?} vanished after its insert"))
        })
    }
}

/// The description annotation in a manifest's annotations JSON.
fn description_of(annotations: &str) -> Option<String> {
    let map: std::collections::HashMap<String, serde_json::Value> =
        serde_json::from_str(annotations).ok()?;
    map.get("org.opencontainers.image.description")?
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repositories with more tags than this have no cached tag list.
    const TAG_LIST_MAX: u32 = 10_000;

    #[test]
    fn the_tag_list_statements_stop_at_the_limit() {
        for sql in [Dialect::Sqlite, Dialect::Postgres]
            .into_iter()
            .filter_map(Dialect::write_tag_list)
        {
            assert!(
                sql.contains(&format!("LIMIT {}", TAG_LIST_MAX + 1)),
                "{sql}"
            );
            assert!(
                sql.contains(&format!("HAVING count(*) <= {TAG_LIST_MAX}")),
                "{sql}"
            );
        }
    }
}
