//! [`MetadataStore`] on SQLite (WAL). Writes go through a single-connection pool, so
//! writers queue in the process instead of spinning on SQLite's lock; reads use a pool of
//! their own. Write transactions start with `BEGIN IMMEDIATE`, so another process (the
//! garbage collector) is serialised with the server by SQLite itself.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

mod collector;
mod snapshot;

use super::locks::{FileLocks, flock};
use super::{
    LockGuard, LockKey, MetadataBackend, MetadataError, MetadataLocks, MetadataStore, NewManifest,
    Origin, Referrer, SnapshotContents, StoredManifest, UploadSession, now,
};
use crate::oci::{Digest, ReferenceKind, RepositoryName, Tag};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often at most a blob's `last_used` is refreshed by reads (seconds).
const TOUCH_INTERVAL: i64 = 60;

/// The SQLite metadata store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Flocks on files in `<database>.locks/`: the database's writer is never held across
    /// a storage call, so the lock contract needs locks of its own.
    locks: Arc<FileLocks>,
    /// The database file (`None` in memory).
    path: Option<PathBuf>,
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        MetadataError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for MetadataError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        MetadataError::Migrate(e.to_string())
    }
}

/// `<database>.<suffix>`, beside the database file.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn size_to_db(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

pub(crate) fn size_from_db(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

fn parse_digest(s: &str) -> Result<Digest, MetadataError> {
    s.parse()
        .map_err(|_| MetadataError::Corrupt(format!("digest {s:?}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, MetadataError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                MetadataError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let locks = Arc::new(FileLocks::new(&beside(path, "locks"))?);
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // Two processes starting at once on a new database would both find the schema
        // missing and both create it; the second fails. Migrations run under an exclusive
        // lock on a file beside the database, so the second waits and then finds them done.
        // (sqlx takes PostgreSQL's advisory lock for the same purpose; SQLite has none.)
        let lock = flock(&beside(path, "lock"), true).await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        drop(lock);
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            locks,
            path: Some(path.to_path_buf()),
        })
    }

    /// An in-memory database, for unit tests (its locks live in `lock_dir`).
    pub async fn in_memory(lock_dir: &Path) -> Result<Self, MetadataError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore {
            writer: pool.clone(),
            reader: pool,
            locks: Arc::new(FileLocks::new(lock_dir)?),
            path: None,
        })
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, MetadataError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Marks a blob as used now (for the collector's grace window).
    async fn touch_blob(&self, digest: &Digest) -> Result<(), MetadataError> {
        sqlx::query("UPDATE blobs SET last_used = ? WHERE digest = ?")
            .bind(now())
            .bind(digest.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Closes both pools (on shutdown).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

async fn repository_id(
    tx: &mut Transaction<'_, Sqlite>,
    name: &RepositoryName,
) -> Result<i64, MetadataError> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.as_str())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM repositories WHERE name = ?")
        .bind(name.as_str())
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

async fn link_in_tx(
    tx: &mut Transaction<'_, Sqlite>,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
) -> Result<(), MetadataError> {
    let now = now();
    let digest = digest.to_string();
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, last_used) VALUES (?, ?, ?, ?)
         ON CONFLICT (digest) DO UPDATE SET last_used = excluded.last_used",
    )
    .bind(&digest)
    .bind(size_to_db(size))
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let repo = repository_id(tx, repository).await?;
    sqlx::query("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .bind(repo)
        .bind(&digest)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Points `tag` of repository `repo` at the manifest `digest` (inside `tx`).
async fn set_tag(
    tx: &mut Transaction<'_, Sqlite>,
    repo: i64,
    tag: &Tag,
    digest: &str,
) -> Result<(), MetadataError> {
    sqlx::query(
        "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repository_id, name) DO UPDATE
         SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
    )
    .bind(repo)
    .bind(tag.as_str())
    .bind(digest)
    .bind(now())
    .execute(&mut **tx)
    .await?;
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
impl MetadataLocks for SqliteStore {
    async fn lock(&self, key: LockKey) -> Result<LockGuard, MetadataError> {
        self.locks.lock(key).await
    }

    async fn try_lock(&self, key: LockKey) -> Result<Option<LockGuard>, MetadataError> {
        self.locks.try_lock(key).await
    }
}

#[async_trait]
impl MetadataBackend for SqliteStore {
    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn snapshot_into(&self, path: &Path) -> Result<SnapshotContents, MetadataError> {
        let Some(source) = &self.path else {
            return Err(MetadataError::Database(
                "an in-memory database has no snapshot".into(),
            ));
        };
        snapshot::write(source, path).await
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT b.size, b.last_used FROM repositories r
             JOIN repository_blobs rb ON rb.repository_id = r.id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = ? AND rb.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
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
        let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = ?")
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|(s,)| size_from_db(s)))
    }

    async fn link_blobs(
        &self,
        repository: &RepositoryName,
        blobs: &[(Digest, u64)],
    ) -> Result<(), MetadataError> {
        let mut tx = self.begin().await?;
        for (digest, size) in blobs {
            link_in_tx(&mut tx, repository, digest, *size).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, MetadataError> {
        let mut tx = self.begin().await?;
        let size: Option<(i64,)> = match from {
            Some(from) => {
                sqlx::query_as(
                    "SELECT b.size FROM repositories r
                     JOIN repository_blobs rb ON rb.repository_id = r.id
                     JOIN blobs b ON b.digest = rb.digest
                     WHERE r.name = ? AND rb.digest = ?",
                )
                .bind(from.as_str())
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?
            }
            None => {
                sqlx::query_as("SELECT size FROM blobs WHERE digest = ?")
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
    }

    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError> {
        sqlx::query(
            "INSERT INTO uploads (id, repository, size, hash_state, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(session.id.to_string())
        .bind(session.repository.as_str())
        .bind(size_to_db(session.size))
        .bind(session.hash_state.as_deref())
        .bind(session.started_at)
        .bind(session.started_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn upload(&self, id: &Uuid) -> Result<Option<UploadSession>, MetadataError> {
        let row: Option<UploadRow> = sqlx::query_as(
            "SELECT id, repository, size, hash_state, started_at FROM uploads WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
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
        let done = sqlx::query(
            "UPDATE uploads SET size = ?, hash_state = ?, updated_at = ? WHERE id = ? AND size = ?",
        )
        .bind(size_to_db(to_size))
        .bind(hash_state)
        .bind(now())
        .bind(id.to_string())
        .bind(size_to_db(from_size))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_upload(
        &self,
        session: &UploadSession,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        let mut tx = self.begin().await?;
        link_in_tx(&mut tx, &session.repository, digest, session.size).await?;
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(session.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &Uuid) -> Result<bool, MetadataError> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn stale_uploads(
        &self,
        started_before: i64,
    ) -> Result<Vec<UploadSession>, MetadataError> {
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT id, repository, size, hash_state, started_at FROM uploads
             WHERE started_at < ? ORDER BY started_at",
        )
        .bind(started_before)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(upload_session).collect()
    }

    async fn put_manifest(
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
                        "SELECT size FROM manifests WHERE repository_id = ? AND digest = ?",
                    )
                    .bind(repo)
                    .bind(&child)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                ReferenceKind::Config | ReferenceKind::Layer => sqlx::query_as(
                    "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                         WHERE rb.repository_id = ? AND rb.digest = ?",
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
        // A push that references blobs is a use of them (the collector's grace window).
        for reference in manifest.references {
            if reference.kind != ReferenceKind::Manifest {
                sqlx::query("UPDATE blobs SET last_used = ? WHERE digest = ?")
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
            "INSERT INTO blobs (digest, size, created_at, last_used) VALUES (?, ?, ?, ?)
             ON CONFLICT (digest) DO UPDATE SET last_used = excluded.last_used",
        )
        .bind(&digest)
        .bind(size)
        .bind(now)
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        tx.commit().await?;
        Ok(())
    }

    async fn tag_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let mut tx = self.begin().await?;
        let repo: Option<(i64,)> = sqlx::query_as(
            "SELECT r.id FROM repositories r JOIN manifests m ON m.repository_id = r.id
             WHERE r.name = ? AND m.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((repo,)) = repo else {
            return Ok(false);
        };
        set_tag(&mut tx, repo, tag, &digest.to_string()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        let row = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.payload FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
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
             WHERE r.name = ? AND t.name = ?",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await?;
        stored_manifest(row)
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        // Tags and references go with it (ON DELETE CASCADE).
        let done = sqlx::query(
            "DELETE FROM manifests WHERE digest = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(tag.as_str())
        .bind(repository.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }

    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        // One row holding the page (see `joined_names`), not a row per tag.
        let (page,): (Option<String>,) = sqlx::query_as(
            "SELECT group_concat(name, char(10)) FROM (
               SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
               WHERE r.name = ? AND t.name > ? ORDER BY t.name LIMIT ?)",
        )
        .bind(repository.as_str())
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_one(&self.reader)
        .await?;
        Ok(joined_names(page))
    }

    async fn list_repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        // One row holding the page (see `joined_names`), not a row per repository.
        let (page,): (Option<String>,) = sqlx::query_as(
            "SELECT group_concat(name, char(10)) FROM (
               SELECT r.name FROM repositories r
               WHERE r.name > ?
               AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
                    OR EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id))
               ORDER BY r.name LIMIT ?)",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_one(&self.reader)
        .await?;
        Ok(joined_names(page))
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
             WHERE r.name = ? AND m.subject = ? AND (? IS NULL OR m.artifact_type = ?)
             ORDER BY m.created_at, m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.reader)
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
            sqlx::query_as("SELECT digest, size FROM blobs ORDER BY random() LIMIT ?")
                .bind(limit)
                .fetch_all(&self.reader)
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE manifests SET last_pulled = ?
             WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ?
               AND last_pulled IS NOT NULL",
        )
        .bind(now())
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn info(&self, key: &str) -> Result<Option<String>, MetadataError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM registry_info WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(v,)| v))
    }

    async fn set_info(&self, key: &str, value: &str) -> Result<(), MetadataError> {
        sqlx::query("INSERT INTO registry_info (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// A page of names that SQLite joined with newlines into one value (`NULL`: an empty
/// page), in byte-wise order. sqlx hands every result row from SQLite's worker thread to
/// the async side separately, a thread hand-off per row; one row per page costs one.
/// Repository names and tags are validated before they are stored and never contain a
/// newline. `group_concat` does not promise the subquery's order (and an `ORDER BY` inside
/// it makes SQLite sort again), so the page is sorted here: `str` orders byte-wise, as the
/// queries do.
fn joined_names(page: Option<String>) -> Vec<String> {
    let mut names: Vec<String> = match page {
        Some(names) if !names.is_empty() => names.split('\n').map(str::to_string).collect(),
        _ => Vec::new(),
    };
    names.sort_unstable();
    names
}
