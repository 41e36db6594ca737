//! The web UI's reads (`crate::ui`): pages of repositories and tags, a manifest with its
//! layers, image configuration and referrers, registry-wide totals and what the garbage
//! collector would reclaim. Only what the caller may pull is shown: every list is filtered
//! by [`RequestContext::may`], and a repository the caller may not pull is "unknown", as
//! through the API. Reads go through the two stores like every service: metadata through
//! [`BrowseMetadata`] (indexed, paginated queries), image configurations (blobs) through the
//! blob store, bounded in size. The collector's estimate is the collector's own plan
//! ([`crate::gc::plan::plan`]) over a metadata snapshot, computed when asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::RegistryError;
use super::context::{Action, RequestContext};
use crate::metadata::browse::{ManifestFacts, RepositorySummary, TagSummary, Totals};
use crate::metadata::{MetadataBackend, Referrer, StoredManifest, now};
use crate::oci::{Digest, RepositoryName};
use crate::storage::BlobStore;

/// The largest image configuration read (bytes); a larger one is not shown.
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// Image configurations kept in memory (they are immutable by digest).
const CONFIG_CACHE_ENTRIES: usize = 512;

/// Repositories read per query while filtering for a restricted caller.
const FILTER_BATCH: u32 = 500;

/// Image configurations read at once for a page of tags.
const CONFIG_READS: usize = 8;

/// A page of a list, with the key of the next one.
#[derive(Debug)]
pub struct Listed<T> {
    /// The entries, in byte-wise order of their names.
    pub items: Vec<T>,
    /// `last` of the next page, when there is one.
    pub next: Option<String>,
}

/// A tag with its platforms.
#[derive(Debug)]
pub struct TagView {
    /// The tag and its manifest.
    pub tag: TagSummary,
    /// `os/architecture[/variant]` of the image, or of each image of an index.
    pub platforms: Vec<String>,
}

/// What an image configuration says, for display.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    /// `os/architecture[/variant]`.
    pub platform: Option<String>,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.WorkingDir`.
    pub working_dir: Option<String>,
    /// `config.User`.
    pub user: Option<String>,
    /// `config.Labels`, sorted.
    pub labels: Vec<(String, String)>,
    /// `history`: `(created, created_by, empty_layer)`.
    pub history: Vec<(String, String, bool)>,
    /// `created`.
    pub created: Option<String>,
}

/// A descriptor in a manifest.
#[derive(Clone, Debug, Default)]
pub struct DescriptorView {
    /// Its digest (as written; shown, never trusted).
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// An index entry's platform.
    pub platform: Option<String>,
    /// Its annotations.
    pub annotations: Vec<(String, String)>,
}

/// A manifest as the UI shows it.
#[derive(Debug)]
pub struct ManifestView {
    /// The stored manifest.
    pub manifest: StoredManifest,
    /// Push time and tags.
    pub facts: ManifestFacts,
    /// Whether it is an index (its `manifests` are children).
    pub is_index: bool,
    /// An image's config descriptor.
    pub config_descriptor: Option<DescriptorView>,
    /// The image configuration, when it is a readable image configuration.
    pub config: Option<ImageConfig>,
    /// Why the configuration is not shown, when it is not.
    pub config_note: Option<String>,
    /// Layers, or an index's children.
    pub entries: Vec<DescriptorView>,
    /// `artifactType`.
    pub artifact_type: Option<String>,
    /// `subject` digest.
    pub subject: Option<String>,
    /// The manifest's annotations.
    pub annotations: Vec<(String, String)>,
    /// Manifests whose subject it is.
    pub referrers: Vec<Referrer>,
}

/// What `ferry-gc` would remove now.
#[derive(Clone, Debug, Default)]
pub struct Reclaim {
    /// Blobs and their bytes.
    pub blobs: u64,
    /// Bytes.
    pub bytes: u64,
    /// Repository links.
    pub links: u64,
    /// Manifests (with `--delete-untagged`).
    pub manifests: u64,
    /// Repositories left empty.
    pub repositories: u64,
}

/// The UI's service over the local stores.
pub struct Browser {
    metadata: Arc<dyn MetadataBackend>,
    storage: Arc<dyn BlobStore>,
    grace: Duration,
    configs: Mutex<HashMap<Digest, Arc<ImageConfig>>>,
}

impl Browser {
    /// A browser over the stores; `grace` is the collector's default grace window.
    pub fn new(
        metadata: Arc<dyn MetadataBackend>,
        storage: Arc<dyn BlobStore>,
        grace: Duration,
    ) -> Self {
        Browser {
            metadata,
            storage,
            grace,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// The collector's grace window the estimate uses.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A page of the repositories the caller may pull whose name contains `query`.
    pub async fn repositories(
        &self,
        cx: &RequestContext,
        query: &str,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Listed<RepositorySummary>, RegistryError> {
        let mut found = Vec::new();
        let mut after = last.map(str::to_string);
        let batch = if cx.is_restricted() {
            FILTER_BATCH.max(limit + 1)
        } else {
            limit + 1
        };
        loop {
            let rows = self
                .metadata
                .browse_repositories(query, after.as_deref(), batch)
                .await?;
            let ended = rows.len() < batch as usize;
            after = rows.last().map(|r| r.name.clone());
            found.extend(rows.into_iter().filter(|r| may_pull(cx, &r.name)));
            if ended || found.len() > limit as usize {
                break;
            }
        }
        Ok(listed(found, limit, |r| r.name.clone()))
    }

    /// A page of the repository's tags with their platforms; `NameUnknown` when the
    /// caller may not pull it.
    pub async fn tags(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Listed<TagView>, RegistryError> {
        check_pull(cx, repository)?;
        let rows = self
            .metadata
            .browse_tags(repository, last, limit + 1)
            .await?;
        if rows.is_empty() && last.is_none() && !self.metadata.repository_exists(repository).await?
        {
            return Err(RegistryError::NameUnknown);
        }
        let page = listed(rows, limit, |t| t.name.clone());
        let items = futures_util::stream::iter(page.items)
            .map(|tag| async move {
                let platforms = self.platforms(&tag.payload).await;
                TagView { tag, platforms }
            })
            .buffered(CONFIG_READS)
            .collect()
            .await;
        Ok(Listed {
            items,
            next: page.next,
        })
    }

    /// A manifest with what it references and what refers to it.
    pub async fn manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestView, RegistryError> {
        check_pull(cx, repository)?;
        let (Some(manifest), Some(facts)) = (
            self.metadata.manifest(repository, digest).await?,
            self.metadata
                .manifest_facts(repository, digest, 100)
                .await?,
        ) else {
            return Err(RegistryError::ManifestUnknown);
        };
        let parsed: Value = serde_json::from_slice(&manifest.payload).unwrap_or(Value::Null);
        let is_index = parsed.get("manifests").is_some_and(Value::is_array);
        let entries = parsed
            .get(if is_index { "manifests" } else { "layers" })
            .and_then(Value::as_array)
            .map(|list| list.iter().map(descriptor).collect())
            .unwrap_or_default();
        let config_descriptor = parsed.get("config").map(descriptor);
        let (config, config_note) = match &config_descriptor {
            Some(d) if is_image_config(&d.media_type) => match self.config(d).await {
                Ok(config) => (Some((*config).clone()), None),
                Err(why) => (None, Some(why)),
            },
            Some(d) => (
                None,
                Some(format!("not an image configuration ({})", d.media_type)),
            ),
            None => (None, None),
        };
        let referrers = self.metadata.referrers(repository, digest, None).await?;
        Ok(ManifestView {
            is_index,
            config_descriptor,
            config,
            config_note,
            entries,
            artifact_type: parsed
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_string),
            subject: parsed
                .get("subject")
                .and_then(|s| s.get("digest"))
                .and_then(Value::as_str)
                .map(str::to_string),
            annotations: string_map(parsed.get("annotations")),
            referrers,
            manifest,
            facts,
        })
    }

    /// Registry-wide totals.
    pub async fn totals(&self) -> Result<Totals, RegistryError> {
        Ok(self.metadata.totals().await?)
    }

    /// What `ferry-gc` would remove now, without and with `--delete-untagged`: the
    /// collector's plan over a fresh snapshot, with its default grace window.
    pub async fn reclaimable(&self) -> Result<(Reclaim, Reclaim), RegistryError> {
        let snapshot = self.metadata.snapshot().await?;
        let cutoff = now().saturating_sub(i64::try_from(self.grace.as_secs()).unwrap_or(0));
        let estimate = |delete_untagged| {
            let plan = crate::gc::plan::plan(&snapshot, delete_untagged, cutoff);
            Reclaim {
                blobs: plan.blobs.len() as u64,
                bytes: plan.blobs.iter().map(|(_, size)| size).sum(),
                links: plan.links.len() as u64,
                manifests: plan.manifests.len() as u64,
                repositories: plan.repositories.len() as u64,
            }
        };
        Ok((estimate(false), estimate(true)))
    }

    /// The platforms of a tag's manifest: an index's entries', or an image's config's.
    async fn platforms(&self, payload: &[u8]) -> Vec<String> {
        let Ok(parsed) = serde_json::from_slice::<Value>(payload) else {
            return Vec::new();
        };
        if let Some(children) = parsed.get("manifests").and_then(Value::as_array) {
            let mut platforms: Vec<String> = children
                .iter()
                .filter_map(|c| c.get("platform").and_then(platform))
                .collect();
            platforms.dedup();
            return platforms;
        }
        match parsed.get("config").map(descriptor) {
            Some(d) if is_image_config(&d.media_type) => self
                .config(&d)
                .await
                .ok()
                .and_then(|c| c.platform.clone())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// An image configuration, read through the blob store (at most
    /// [`MAX_CONFIG_SIZE`] bytes) and cached; the error says why it is not shown.
    async fn config(&self, d: &DescriptorView) -> Result<Arc<ImageConfig>, String> {
        let digest: Digest = d
            .digest
            .parse()
            .map_err(|_| "the config digest is invalid".to_string())?;
        if let Ok(cache) = self.configs.lock()
            && let Some(found) = cache.get(&digest)
        {
            return Ok(found.clone());
        }
        let size = self
            .metadata
            .blob_size(&digest)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the configuration blob is not in the registry".to_string())?;
        if size > MAX_CONFIG_SIZE {
            return Err(format!(
                "the configuration is {size} bytes, more than the {MAX_CONFIG_SIZE} shown"
            ));
        }
        let stream = self
            .storage
            .read(&digest, 0..size)
            .await
            .map_err(|e| e.to_string())?;
        let chunks: Vec<bytes::Bytes> = stream
            .take(64)
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let bytes: Vec<u8> = chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .take(MAX_CONFIG_SIZE as usize)
            .collect();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| "the configuration is not valid JSON".to_string())?;
        let config = Arc::new(image_config(&value));
        if let Ok(mut cache) = self.configs.lock() {
            if cache.len() >= CONFIG_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(digest, config.clone());
        }
        Ok(config)
    }
}

fn may_pull(cx: &RequestContext, name: &str) -> bool {
    !cx.is_restricted() || RepositoryName::parse(name).is_ok_and(|n| cx.may(&n, Action::Pull))
}

fn check_pull(cx: &RequestContext, repository: &RepositoryName) -> Result<(), RegistryError> {
    if cx.may(repository, Action::Pull) {
        Ok(())
    } else {
        Err(RegistryError::NameUnknown)
    }
}

/// Cuts `found` (up to `limit + 1` entries) to a page.
fn listed<T>(mut found: Vec<T>, limit: u32, name: impl Fn(&T) -> String) -> Listed<T> {
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next = if more { found.last().map(name) } else { None };
    Listed { items: found, next }
}

fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json"
    )
}

fn descriptor(v: &Value) -> DescriptorView {
    DescriptorView {
        digest: text(v.get("digest")).unwrap_or_default(),
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        media_type: text(v.get("mediaType")).unwrap_or_default(),
        platform: v.get("platform").and_then(platform),
        annotations: string_map(v.get("annotations")),
    }
}

/// `os/architecture[/variant]` of a platform object (an index entry's, or a config's).
fn platform(v: &Value) -> Option<String> {
    let os = text(v.get("os"))?;
    let arch = text(v.get("architecture"))?;
    Some(match text(v.get("variant")) {
        Some(variant) if !variant.is_empty() => format!("{os}/{arch}/{variant}"),
        _ => format!("{os}/{arch}"),
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON object of strings, sorted by key (other values shown as JSON).
fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

fn image_config(v: &Value) -> ImageConfig {
    let config = v.get("config");
    let field = |name: &str| config.and_then(|c| c.get(name));
    ImageConfig {
        platform: platform(v),
        env: strings(field("Env")),
        entrypoint: strings(field("Entrypoint")),
        cmd: strings(field("Cmd")),
        working_dir: text(field("WorkingDir")).filter(|s| !s.is_empty()),
        user: text(field("User")).filter(|s| !s.is_empty()),
        labels: string_map(field("Labels")),
        history: v
            .get("history")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .map(|entry| {
                        (
                            text(entry.get("created")).unwrap_or_default(),
                            text(entry.get("created_by")).unwrap_or_default(),
                            entry
                                .get("empty_layer")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        created: text(v.get("created")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_image_configuration_leniently() {
        let v: Value = serde_json::json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "config": {"Env": ["A=1"], "Cmd": ["sh"], "Labels": {"b": "2", "a": "<x>"}},
            "history": [{"created_by": "RUN x", "empty_layer": true}, 5]
        });
        let c = image_config(&v);
        assert_eq!(c.platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.labels[0], ("a".to_string(), "<x>".to_string()));
        assert_eq!(c.history.len(), 2);
        assert!(c.history[0].2);
        let empty = image_config(&serde_json::json!([1, 2]));
        assert!(empty.platform.is_none() && empty.env.is_empty());
    }
}
