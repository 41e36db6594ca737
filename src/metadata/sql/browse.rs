//! [`BrowseMetadata`] for both databases: the web UI's pages, each one indexed query
//! (repositories by their unique name, tags by `(repository_id, name)`, a manifest's
//! references by `(repository_id, manifest_digest, kind, ...)`). Sums are cast to
//! `BIGINT` (PostgreSQL's `SUM` of `BIGINT` is `NUMERIC`, which the `Any` driver does not
//! read); the substring test is the one [`Dialect`] difference.

use async_trait::async_trait;

use super::{Dialect, SqlStore, parse_digest, size_from_db};
use crate::metadata::MetadataError;
use crate::metadata::browse::{
    BrowseMetadata, ManifestFacts, RepositorySummary, TagSummary, Totals,
};
use crate::oci::{Digest, RepositoryName};

/// The page of repositories below, with `$contains` the database's substring position
/// function (`instr` / `strpos`, both `(haystack, needle)`, 0 when absent).
macro_rules! repository_page {
    ($contains:literal) => {
        concat!(
            "SELECT r.name,
               (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
               (SELECT MAX(m.created_at) FROM manifests m WHERE m.repository_id = r.id)
             FROM repositories r
             WHERE r.name > $1 AND ",
            $contains,
            "(r.name, $2) > 0
             AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
                  OR EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id))
             ORDER BY r.name LIMIT $3"
        )
    };
}

impl Dialect {
    /// A page of repositories holding content whose name contains `$2`, after `$1`.
    fn browse_repository_page(self) -> &'static str {
        match self {
            Dialect::Sqlite => repository_page!("instr"),
            Dialect::Postgres => repository_page!("strpos"),
        }
    }
}

/// A page of tags with their manifests and the bytes those reference (own config and
/// layers; for an index, its children's).
const TAG_PAGE: &str = "SELECT t.name, t.manifest_digest, m.media_type, t.updated_at, m.payload,
   CAST((SELECT COALESCE(SUM(b.size), 0) FROM manifest_references mr
           JOIN blobs b ON b.digest = mr.child_digest
         WHERE mr.repository_id = t.repository_id AND mr.manifest_digest = t.manifest_digest
           AND mr.kind <> 'manifest') AS BIGINT),
   CAST((SELECT COALESCE(SUM(b.size), 0) FROM manifest_references c
           JOIN manifest_references mr
             ON mr.repository_id = c.repository_id AND mr.manifest_digest = c.child_digest
           JOIN blobs b ON b.digest = mr.child_digest
         WHERE c.repository_id = t.repository_id AND c.manifest_digest = t.manifest_digest
           AND c.kind = 'manifest' AND mr.kind <> 'manifest') AS BIGINT)
 FROM tags t
 JOIN repositories r ON r.id = t.repository_id
 JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
 WHERE r.name = $1 AND t.name > $2
 ORDER BY t.name LIMIT $3";

/// One row of [`TAG_PAGE`].
type TagRow = (String, String, String, i64, Vec<u8>, i64, i64);

#[async_trait]
impl BrowseMetadata for SqlStore {
    async fn browse_repositories(
        &self,
        query: &str,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RepositorySummary>, MetadataError> {
        let query = query.to_lowercase();
        let rows: Vec<(String, i64, Option<i64>)> =
            sqlx::query_as(self.dialect.browse_repository_page())
                .bind(last.unwrap_or(""))
                .bind(query.as_str())
                .bind(i64::from(limit))
                .fetch_all(&mut *self.reader.get().await?)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, tags, last_push)| RepositorySummary {
                name,
                tags: size_from_db(tags),
                last_push,
            })
            .collect())
    }

    async fn browse_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagSummary>, MetadataError> {
        let rows: Vec<TagRow> = sqlx::query_as(TAG_PAGE)
            .bind(repository.as_str())
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader.get().await?)
            .await?;
        rows.into_iter()
            .map(
                |(name, digest, media_type, updated_at, payload, own, children)| {
                    Ok(TagSummary {
                        name,
                        digest: parse_digest(&digest)?,
                        media_type,
                        updated_at,
                        payload,
                        content_size: size_from_db(own).saturating_add(size_from_db(children)),
                    })
                },
            )
            .collect()
    }

    async fn manifest_facts(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        max_tags: u32,
    ) -> Result<Option<ManifestFacts>, MetadataError> {
        let digest = digest.to_string();
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT m.repository_id, m.created_at FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository.as_str())
        .bind(&digest)
        .fetch_optional(&mut *self.reader.get().await?)
        .await?;
        let Some((repository_id, pushed_at)) = row else {
            return Ok(None);
        };
        let tags: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM tags WHERE repository_id = $1 AND manifest_digest = $2
             ORDER BY name LIMIT $3",
        )
        .bind(repository_id)
        .bind(&digest)
        .bind(i64::from(max_tags))
        .fetch_all(&mut *self.reader.get().await?)
        .await?;
        Ok(Some(ManifestFacts {
            pushed_at,
            tags: tags.into_iter().map(|(t,)| t).collect(),
        }))
    }

    async fn totals(&self) -> Result<Totals, MetadataError> {
        let (repositories, manifests, tags, blobs, blob_bytes): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM repositories), (SELECT COUNT(*) FROM manifests),
                   (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM blobs),
                   CAST((SELECT COALESCE(SUM(size), 0) FROM blobs) AS BIGINT)",
            )
            .fetch_one(&mut *self.reader.get().await?)
            .await?;
        Ok(Totals {
            repositories: size_from_db(repositories),
            manifests: size_from_db(manifests),
            tags: size_from_db(tags),
            blobs: size_from_db(blobs),
            blob_bytes: size_from_db(blob_bytes),
        })
    }
}
