//! Listings: tags of a repository, the catalog of repositories, referrers of a manifest.
//! All come from indexed metadata queries, never from a walk of storage.

use serde_json::{Map, Value, json};

use async_trait::async_trait;

use super::api::Listings;
use super::context::{Action, RequestContext};
use super::search::{SearchPage, SearchRequest};
use super::{Registry, RegistryError};
use crate::metadata::Names;
use crate::oci::manifest::media_type;
use crate::oci::{Digest, RepositoryName};

/// One page of a paginated listing.
#[derive(Debug)]
pub struct Page {
    /// The entries, in byte-wise order.
    pub entries: Names,
    /// The `last` value of the next page, when there is one.
    pub next_last: Option<String>,
    /// The page size used (for the next page's `n`).
    pub limit: u32,
}

/// Which page a client asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageRequest<'a> {
    /// The last entry of the previous page (`last`).
    pub last: Option<&'a str>,
    /// The page size asked for (`n`); absent means the registry's maximum.
    pub n: Option<u64>,
}

impl<'a> PageRequest<'a> {
    /// From the `n` and `last` query parameters.
    pub fn parse(n: Option<&str>, last: Option<&'a str>) -> Result<Self, RegistryError> {
        let n = match n {
            None | Some("") => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                RegistryError::PaginationNumberInvalid(n.chars().take(50).collect())
            })?),
        };
        Ok(PageRequest { last, n })
    }

    /// The page size: as asked, capped at `max`.
    fn limit(&self, max: u32) -> u32 {
        self.n.map_or(max, |n| n.min(u64::from(max)) as u32)
    }
}

/// Repositories read at a time while filtering the catalog for a restricted caller.
const CATALOG_BATCH: u32 = 500;

fn page(mut entries: Names, limit: u32) -> Page {
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_last = if more {
        entries.last().map(str::to_string)
    } else {
        None
    };
    Page {
        entries,
        next_last,
        limit,
    }
}

#[async_trait]
impl Listings for Registry {
    async fn list_tags(
        &self,
        _cx: &RequestContext,
        repository: &RepositoryName,
        request: PageRequest<'_>,
    ) -> Result<Page, RegistryError> {
        let limit = request.limit(self.settings.tags_max);
        // One more than asked, to know whether there is a next page.
        let entries = self
            .metadata
            .list_tags(repository, request.last, limit.saturating_add(1))
            .await?
            .ok_or(RegistryError::NameUnknown)?;
        Ok(page(entries, limit))
    }

    async fn list_repositories(
        &self,
        cx: &RequestContext,
        request: PageRequest<'_>,
    ) -> Result<Page, RegistryError> {
        let limit = request.limit(self.settings.catalog_max_entries);
        if limit == 0 {
            return Ok(Page {
                entries: Names::default(),
                next_last: None,
                limit,
            });
        }
        if !cx.is_restricted() {
            let entries = self
                .metadata
                .list_repositories(request.last, limit.saturating_add(1))
                .await?;
            return Ok(page(entries, limit));
        }
        // Only what the caller may pull: read batches of the catalog until the page (plus
        // one entry, to know whether there is a next page) is full or the catalog ends.
        let want = limit as usize + 1;
        let mut entries = Vec::new();
        let mut last = request.last.map(str::to_string);
        loop {
            let batch = self
                .metadata
                .list_repositories(last.as_deref(), CATALOG_BATCH)
                .await?;
            let ended = batch.len() < CATALOG_BATCH as usize;
            last = batch.last().map(str::to_string);
            entries.extend(
                batch
                    .iter()
                    .filter(|name| {
                        RepositoryName::parse(name).is_ok_and(|name| cx.may(&name, Action::Pull))
                    })
                    .map(str::to_string),
            );
            if entries.len() >= want || ended {
                break;
            }
        }
        entries.truncate(want);
        Ok(page(entries.into_iter().collect(), limit))
    }

    async fn search_repositories(
        &self,
        cx: &RequestContext,
        request: &SearchRequest,
    ) -> Result<SearchPage, RegistryError> {
        self.search(cx, request).await
    }

    async fn referrers(
        &self,
        _cx: &RequestContext,
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
        let size = |n| PageRequest::parse(n, None).map(|p| p.limit(100));
        assert_eq!(size(None).unwrap(), 100);
        assert_eq!(size(Some("")).unwrap(), 100);
        assert_eq!(size(Some("5")).unwrap(), 5);
        assert_eq!(size(Some("5000")).unwrap(), 100);
        assert_eq!(size(Some("0")).unwrap(), 0);
        assert!(size(Some("-1")).is_err());
        assert!(size(Some("x")).is_err());
    }

    #[test]
    fn pages_know_if_more_follow() {
        let p = page(Names::from_joined("a\nb\nc".into()), 2);
        assert_eq!(p.entries.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.next_last.as_deref(), Some("b"));
        let p = page(Names::from_joined("a\nb".into()), 2);
        assert_eq!(p.next_last, None);
    }
}
