//! Listings: tags of a repository, the catalog of repositories, referrers of a manifest.
//! All come from indexed metadata queries, never from a walk of storage.

use serde_json::{Map, Value, json};

use super::{Registry, RegistryError};
use crate::oci::manifest::media_type;
use crate::oci::{Digest, RepositoryName};

/// One page of a paginated listing.
#[derive(Debug)]
pub struct Page {
    /// The entries, in byte-wise order.
    pub entries: Vec<String>,
    /// The `last` value of the next page, when there is one.
    pub next_last: Option<String>,
    /// The page size used (for the next page's `n`).
    pub limit: u32,
}

/// Parses the `n` query parameter against a maximum page size: absent means the maximum,
/// larger values are capped.
pub fn page_size(n: Option<&str>, max: u32) -> Result<u32, RegistryError> {
    match n {
        None | Some("") => Ok(max),
        Some(n) => n
            .parse::<u64>()
            .map(|n| n.min(u64::from(max)) as u32)
            .map_err(|_| RegistryError::PaginationNumberInvalid(n.chars().take(50).collect())),
    }
}

fn page(mut entries: Vec<String>, limit: u32) -> Page {
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_last = if more { entries.last().cloned() } else { None };
    Page {
        entries,
        next_last,
        limit,
    }
}

impl Registry {
    /// A page of the repository's tags.
    pub async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Page, RegistryError> {
        if !self.metadata.repository_exists(repository).await? {
            return Err(RegistryError::NameUnknown);
        }
        if limit == 0 {
            return Ok(Page {
                entries: Vec::new(),
                next_last: None,
                limit,
            });
        }
        let entries = self.metadata.list_tags(repository, last, limit + 1).await?;
        Ok(page(entries, limit))
    }

    /// A page of the catalog: repositories holding at least one manifest.
    pub async fn list_repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Page, RegistryError> {
        if limit == 0 {
            return Ok(Page {
                entries: Vec::new(),
                next_last: None,
                limit,
            });
        }
        let entries = self.metadata.list_repositories(last, limit + 1).await?;
        Ok(page(entries, limit))
    }

    /// The referrers of `subject` as an OCI image index (JSON bytes).
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>, RegistryError> {
        let referrers = self
            .metadata
            .referrers(repository, subject, artifact_type)
            .await?;
        let manifests: Vec<Value> = referrers
            .into_iter()
            .map(|r| {
                let mut descriptor = Map::new();
                descriptor.insert("mediaType".into(), r.media_type.into());
                descriptor.insert("digest".into(), r.digest.into());
                descriptor.insert("size".into(), r.size.into());
                if let Some(artifact_type) = r.artifact_type {
                    descriptor.insert("artifactType".into(), artifact_type.into());
                }
                if let Some(annotations) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    descriptor.insert("annotations".into(), annotations);
                }
                Value::Object(descriptor)
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        });
        Ok(index.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None, 100).unwrap(), 100);
        assert_eq!(page_size(Some("5"), 100).unwrap(), 5);
        assert_eq!(page_size(Some("5000"), 100).unwrap(), 100);
        assert_eq!(page_size(Some("0"), 100).unwrap(), 0);
        assert!(page_size(Some("-1"), 100).is_err());
        assert!(page_size(Some("x"), 100).is_err());
    }

    #[test]
    fn pages_know_if_more_follow() {
        let p = page(vec!["a".into(), "b".into(), "c".into()], 2);
        assert_eq!(p.entries, ["a", "b"]);
        assert_eq!(p.next_last.as_deref(), Some("b"));
        let p = page(vec!["a".into(), "b".into()], 2);
        assert_eq!(p.next_last, None);
    }
}
