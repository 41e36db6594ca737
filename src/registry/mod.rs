//! The registry services: the rules of the distribution API, independent of HTTP.
//! [`api`] is the interface the HTTP layer calls (one trait per resource, each operation
//! given the [`context::RequestContext`]); [`Registry`] implements it over the local stores,
//! and a caching layer can implement it by wrapping a `Registry`. Each file owns one
//! resource: [`blobs`] (reads and deletes), [`uploads`] (sessions,
//! chunks, commit, mounts), [`manifests`] (validation, storage, tags), [`listing`] (tag
//! lists, catalog, referrers), [`search`] (`docker search`); [`pieces`] holds an upload's bytes in memory, within a
//! budget. They work through the two stores: [`crate::metadata`] for
//! facts and [`crate::storage`] for bytes, and never write metadata before the bytes it
//! describes are durable.

pub mod api;
pub mod blobs;
pub mod browse;
pub mod context;
mod error;
pub mod health;
pub mod listing;
pub mod manifests;
mod pieces;
pub mod search;
pub mod uploads;

use std::sync::Arc;

pub use api::{RegistryApi, SharedRegistry};
pub use error::RegistryError;

use crate::metadata::MetadataStore;
use crate::storage::BlobStore;

/// The behaviour switches of a registry (from the configuration).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `storage.delete.enabled`: allow deleting blobs, manifests and tags.
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`: refuse every write.
    pub read_only: bool,
    /// `catalog.maxentries`: most repositories per `_catalog` page.
    pub catalog_max_entries: u32,
    /// `tags.maxtags`: most tags per tag-list page.
    pub tags_max: u32,
    /// `uploads.maxblobsize` (Ferry's own): the largest blob an upload may grow to; `None`:
    /// no limit.
    pub max_blob_size: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            delete_enabled: false,
            read_only: false,
            catalog_max_entries: 1000,
            tags_max: 1000,
            max_blob_size: None,
        }
    }
}

/// The registry over the local stores. Cheap to clone (shared state is behind `Arc`s).
#[derive(Clone)]
pub struct Registry {
    /// Facts: repositories, blobs, manifests, tags, uploads.
    metadata: Arc<dyn MetadataStore>,
    /// Bytes: committed blobs and staged uploads.
    storage: Arc<dyn BlobStore>,
    /// Behaviour switches.
    settings: Settings,
    /// Notifications (`None`: no endpoints, nothing recorded).
    notifier: Option<Arc<crate::notify::Notifier>>,
}

impl Registry {
    /// A registry over the given stores.
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        storage: Arc<dyn BlobStore>,
        settings: Settings,
    ) -> Self {
        Registry {
            metadata,
            storage,
            settings,
            notifier: None,
        }
    }

    /// TEST ONLY: a registry over an in-memory database and a filesystem store under `dir`.
    #[cfg(test)]
    pub(crate) async fn in_dir_for_tests(dir: &std::path::Path) -> Self {
        let metadata = crate::metadata::sqlite::in_memory(&dir.join("locks"))
            .await
            .expect("an in-memory database");
        let storage = crate::storage::filesystem::FilesystemStore::new(dir.join("data"));
        Registry::new(Arc::new(metadata), Arc::new(storage), Settings::default())
    }

    /// This registry, recording events for `notifier`'s endpoints.
    pub fn with_notifier(self, notifier: Arc<crate::notify::Notifier>) -> Self {
        Registry {
            notifier: Some(notifier),
            ..self
        }
    }

    /// Records a notification event (after the operation committed); nothing without
    /// endpoints.
    async fn notify(
        &self,
        cx: &context::RequestContext,
        action: crate::notify::EventAction,
        target: crate::notify::Target<'_>,
    ) {
        if let Some(notifier) = &self.notifier {
            notifier.record(cx, action, target).await;
        }
    }

    /// The metadata store, for maintenance that works below the API (the collector, the
    /// importer, start-up checks).
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// The blob store, for maintenance that works below the API.
    pub fn storage(&self) -> &Arc<dyn BlobStore> {
        &self.storage
    }

    fn check_writable(&self) -> Result<(), RegistryError> {
        if self.settings.read_only {
            return Err(RegistryError::Unsupported(
                "the registry is in read-only mode",
            ));
        }
        Ok(())
    }

    fn check_deletable(&self) -> Result<(), RegistryError> {
        self.check_writable()?;
        if !self.settings.delete_enabled {
            return Err(RegistryError::Unsupported(
                "deletes are disabled (storage.delete.enabled: false)",
            ));
        }
        Ok(())
    }
}
