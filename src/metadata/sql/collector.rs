//! [`CollectorMetadata`] over SQL, for both dialects.

use async_trait::async_trait;
use sqlx::Connection;

use super::{SqlStore, retrying, size_from_db};
use crate::metadata::MetadataError;
use crate::metadata::collector::{
    BlobRow, CollectorMetadata, LinkRow, ManifestRow, ReferenceRow, Snapshot,
};
use crate::oci::Digest;

/// Whether `digest` is tagged or listed as a child in the repository (inside `tx`).
async fn rooted(
    tx: &mut sqlx::AnyConnection,
    repository: i64,
    digest: &str,
) -> Result<bool, MetadataError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM tags WHERE repository_id = $1 AND manifest_digest = $2)
         OR EXISTS (SELECT 1 FROM manifest_references WHERE repository_id = $1 AND kind = 'manifest' AND child_digest = $2)",
    )
    .bind(repository)
    .bind(digest)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.is_some())
}

#[async_trait]
impl CollectorMetadata for SqlStore {
    async fn snapshot(&self) -> Result<Snapshot, MetadataError> {
        // On a read connection like any read (a kept SQLite reader is not in the pool).
        let mut reader = self.reader.get().await?;
        let mut tx = reader.begin_with(self.dialect.begin_snapshot()).await?;
        let repositories = sqlx::query_as("SELECT id, name FROM repositories")
            .fetch_all(&mut *tx)
            .await?;
        let manifests: Vec<(i64, String, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT repository_id, digest, size, created_at, subject FROM manifests",
        )
        .fetch_all(&mut *tx)
        .await?;
        let tags = sqlx::query_as("SELECT repository_id, manifest_digest FROM tags")
            .fetch_all(&mut *tx)
            .await?;
        let references: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT repository_id, manifest_digest, child_digest, kind FROM manifest_references",
        )
        .fetch_all(&mut *tx)
        .await?;
        let links: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT repository_id, digest, created_at FROM repository_blobs")
                .fetch_all(&mut *tx)
                .await?;
        let blobs: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT digest, size, last_used FROM blobs")
                .fetch_all(&mut *tx)
                .await?;
        let uploading: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT repository FROM uploads")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Snapshot {
            repositories,
            manifests: manifests
                .into_iter()
                .map(
                    |(repository, digest, size, created_at, subject)| ManifestRow {
                        repository,
                        digest,
                        size: size_from_db(size),
                        created_at,
                        subject,
                    },
                )
                .collect(),
            tags,
            references: references
                .into_iter()
                .map(|(repository, manifest, child, kind)| ReferenceRow {
                    repository,
                    manifest,
                    child,
                    kind,
                })
                .collect(),
            links: links
                .into_iter()
                .map(|(repository, digest, created_at)| LinkRow {
                    repository,
                    digest,
                    created_at,
                })
                .collect(),
            blobs: blobs
                .into_iter()
                .map(|(digest, size, last_used)| BlobRow {
                    digest,
                    size: size_from_db(size),
                    last_used,
                })
                .collect(),
            uploading: uploading.into_iter().map(|(r,)| r).collect(),
        })
    }

    async fn expire_cached_manifests(
        &self,
        now: i64,
        dry_run: bool,
    ) -> Result<Vec<(String, String)>, MetadataError> {
        let expired: Vec<(i64, String, String)> = retrying(move || async move {
            let mut tx = self.begin().await?;
            let expired: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT m.repository_id, r.name, m.digest FROM manifests m
                   JOIN repositories r ON r.id = m.repository_id
                 WHERE m.last_pulled IS NOT NULL AND m.cache_ttl IS NOT NULL
                   AND m.last_pulled + m.cache_ttl < $1",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            if !dry_run {
                for (repository, _, digest) in &expired {
                    sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                        .bind(repository)
                        .bind(digest)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Ok(expired)
        })
        .await?;
        Ok(expired
            .into_iter()
            .map(|(_, name, digest)| (name, digest))
            .collect())
    }

    async fn delete_manifest_if_unreachable(
        &self,
        repository: i64,
        digest: &str,
        cutoff: i64,
    ) -> Result<bool, MetadataError> {
        retrying(move || async move {
            let mut tx = self.begin().await?;
            let row: Option<(i64, Option<String>)> = sqlx::query_as(
                "SELECT created_at, subject FROM manifests WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repository)
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((created_at, subject)) = row else {
                return Ok(false);
            };
            if created_at >= cutoff || rooted(&mut tx, repository, digest).await? {
                return Ok(false);
            }
            if let Some(subject) = subject
                && rooted(&mut tx, repository, &subject).await?
            {
                return Ok(false);
            }
            sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repository)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn delete_link_if_unreferenced(
        &self,
        repository: i64,
        digest: &str,
        cutoff: i64,
    ) -> Result<bool, MetadataError> {
        let done = self.write_one(
            "DELETE FROM repository_blobs AS rb WHERE rb.repository_id = $1 AND rb.digest = $2 AND rb.created_at < $3
             AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                             WHERE mr.repository_id = $1 AND mr.child_digest = $2 AND mr.kind IN ('config', 'layer'))
             AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = $2 AND b.last_used >= $3)",
            |q| q.bind(repository).bind(digest).bind(cutoff),
        )
        .await?;
        Ok(done > 0)
    }

    async fn delete_blob_if_garbage(
        &self,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<Option<u64>, MetadataError> {
        let digest = &digest.to_string();
        let row: Option<(i64,)> = retrying(move || async move {
            sqlx::query_as(
            "DELETE FROM blobs AS b WHERE b.digest = $1 AND b.last_used < $2
             AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = $1)
             AND NOT EXISTS (SELECT 1 FROM manifest_references WHERE child_digest = $1 AND kind IN ('config', 'layer'))
             AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = $1)
             RETURNING size",
            )
            .bind(digest)
            .bind(cutoff)
            .fetch_optional(&self.writer)
            .await
            .map_err(MetadataError::from)
        })
        .await?;
        Ok(row.map(|(size,)| size_from_db(size)))
    }

    async fn delete_repository_if_empty(&self, repository: i64) -> Result<bool, MetadataError> {
        let done = self
            .write_one(
                "DELETE FROM repositories AS r WHERE r.id = $1
             AND NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = $1)
             AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = $1)
             AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.repository = r.name)",
                |q| q.bind(repository),
            )
            .await?;
        Ok(done > 0)
    }
}
