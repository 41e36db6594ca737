//! What the web UI (`crate::ui`, through `crate::registry::browse`) reads: pages of
//! repositories and tags with what a person wants to see next to each name (counts, sizes,
//! push times), a manifest's tags, and registry-wide totals. Read-only, paginated by key
//! (byte-wise order, `last` exclusive, as the API's lists), each page one indexed query:
//! written once in SQL (`super::sql::browse`).

use async_trait::async_trait;

use super::{MetadataError, MetadataStore};
use crate::oci::{Digest, RepositoryName};

/// A repository in the UI's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositorySummary {
    /// Its name.
    pub name: String,
    /// How many tags it has.
    pub tags: u64,
    /// Unix seconds of its latest manifest push (`None`: only blobs so far).
    pub last_push: Option<i64>,
}

/// A tag in the UI's list of a repository's tags.
#[derive(Clone, Debug)]
pub struct TagSummary {
    /// The tag.
    pub name: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// That manifest's media type.
    pub media_type: String,
    /// Unix seconds when the tag was last pointed (pushed).
    pub updated_at: i64,
    /// The manifest's own bytes (for the platforms of an index, or an image's config).
    pub payload: Vec<u8>,
    /// Bytes of the content it references: config and layers, and for an index those of
    /// its children (layers shared by children counted once per child).
    pub content_size: u64,
}

/// A manifest's facts beyond its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFacts {
    /// Unix seconds of its (latest) push.
    pub pushed_at: i64,
    /// Tags pointing at it (at most the number asked for, in byte-wise order).
    pub tags: Vec<String>,
}

/// Registry-wide totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Repositories (with or without content).
    pub repositories: u64,
    /// Manifests (each repository's counted).
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Committed blobs (layers, configs and manifests' bytes), each counted once.
    pub blobs: u64,
    /// Their bytes: the store's size, as far as the metadata knows it.
    pub blob_bytes: u64,
}

/// The UI's read methods.
#[async_trait]
pub trait BrowseMetadata: MetadataStore {
    /// Up to `limit` repositories holding content (those `list_repositories` lists) whose
    /// name contains `query` (names are lower case; so is the query compared), after
    /// `last` in byte-wise order.
    async fn browse_repositories(
        &self,
        query: &str,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RepositorySummary>, MetadataError>;

    /// Up to `limit` tags of `repository` after `last`, in byte-wise order, with their
    /// manifests.
    async fn browse_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagSummary>, MetadataError>;

    /// A manifest's push time and up to `max_tags` of its tags; `None` when it is not in
    /// the repository.
    async fn manifest_facts(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        max_tags: u32,
    ) -> Result<Option<ManifestFacts>, MetadataError>;

    /// Registry-wide totals (counts over whole tables: for a page that asks for them, not
    /// for every page).
    async fn totals(&self) -> Result<Totals, MetadataError>;
}
