//! The pull-through mirror (`proxy`): a layer with the registry's interfaces
//! ([`crate::registry::api`]) around the local [`Registry`], as Distribution's proxy wraps
//! its blob and manifest stores. Requests for a mirrored repository are answered from the
//! local registry when it has the content, else fetched from the upstream, stored through
//! the local registry's own paths (so cached content is ordinary content: listed, deletable,
//! collected) and served.
//!
//! One concern per file: [`route`] (which upstream, which local name), [`upstream`] (the
//! HTTP client: token flow, redirects, timeouts), [`flight`] (blob downloads: single flight,
//! streamed to every client while they run, committed through the upload path), [`stats`]
//! (counters). Manifests are handled here:
//! - by digest: local, else fetched, checked against the digest, stored;
//! - by tag: local if revalidated within `proxy.tagrevalidate`; else one `HEAD` upstream
//!   compares `Docker-Content-Digest` with the cached one, and only a changed tag is fetched
//!   (by digest) and re-tagged;
//! - concurrent misses of one manifest fetch it once (a lock per repository and reference).
//!
//! When the upstream is down, times out or answers `429`/`5xx`, cached tags and content are
//! served (with a warning); content never cached fails with `503 UNAVAILABLE` saying the
//! upstream is unreachable. Pushes to a mirrored name are refused (`405 UNSUPPORTED`); names
//! matching `proxy.local` are ordinary local repositories.

mod flight;
mod route;
pub mod stats;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use self::flight::{Flights, Followed, Job};
use self::route::{Route, Routes};
use self::stats::Stats;
use self::upstream::{Upstream, UpstreamError};
pub use self::upstream::{UpstreamSettings, default_url};
use crate::auth::rules::Glob;
use crate::metadata::{Origin, StoredManifest, UploadSession};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::registry::api::{Blobs, Listings, Manifests, Uploads};
use crate::registry::blobs::{BlobAnswer, RangeRequest};
use crate::registry::context::{Access, Action, RequestContext};
use crate::registry::listing::{Page, PageRequest};
use crate::registry::manifests::PushedManifest;
use crate::registry::search::{SearchPage, SearchRequest};
use crate::registry::uploads::ChunkRange;
use crate::registry::{Registry, RegistryError};
use crate::storage::ByteStream;

/// The refusal of a push to a mirrored repository.
const PUSH_REFUSED: &str = "this repository is a pull-through cache of an upstream registry: pushes are refused (proxy.local names the repositories that accept them)";

/// The `proxy` section, checked.
#[derive(Clone, Debug)]
pub struct MirrorSettings {
    /// `proxy.remoteurl` and its credentials.
    pub default: Option<UpstreamSettings>,
    /// `proxy.upstreams`: by registry host (lowercase).
    pub upstreams: Vec<(String, UpstreamSettings)>,
    /// `proxy.local`: repository patterns.
    pub local: Vec<String>,
    /// `proxy.tagrevalidate`.
    pub tag_revalidate: Duration,
}

impl MirrorSettings {
    /// Checks the local patterns.
    pub fn new(
        default: Option<UpstreamSettings>,
        upstreams: Vec<(String, UpstreamSettings)>,
        local: &[String],
        tag_revalidate: Duration,
    ) -> Result<Self, String> {
        for pattern in local {
            Glob::new(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))?;
        }
        Ok(MirrorSettings {
            default,
            upstreams,
            local: local.to_vec(),
            tag_revalidate,
        })
    }
}

/// Why the mirror cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MirrorSetupError {
    /// An upstream client cannot be built.
    #[error("proxy: {0}")]
    Client(String),
    /// The staging directory cannot be prepared.
    #[error("proxy: the download staging directory {path} is not usable: {source}")]
    Staging {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Per-key async locks, removed when no one holds or waits for them.
#[derive(Default)]
struct KeyedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    async fn lock(&self, key: String) -> KeyedGuard<'_> {
        let lock = match self.0.lock() {
            Ok(mut map) => map.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        let guard = lock.clone().lock_owned().await;
        KeyedGuard {
            locks: self,
            key,
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        if let Ok(mut map) = self.locks.0.lock()
            && Arc::strong_count(&self.lock) == 2
        {
            map.remove(&self.key);
        }
    }
}

/// The mirror: the registry's interfaces around a local [`Registry`].
pub struct Mirror {
    inner: Registry,
    routes: Routes,
    tag_revalidate: Duration,
    /// When each cached `<repository>:<tag>` was last found current upstream.
    revalidated: Mutex<HashMap<String, Instant>>,
    manifest_locks: KeyedLocks,
    flights: Arc<Flights>,
    stats: Arc<Stats>,
    /// When each cached `<repository>@<digest>` was last recorded as pulled (for
    /// `proxy.ttl`; recorded at most once per [`TOUCH_INTERVAL`]).
    touched: Mutex<HashMap<String, Instant>>,
}

/// How often a pull of one cached manifest is written down.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

impl Mirror {
    /// A mirror over `inner`, staging downloads in `staging`.
    pub fn new(
        inner: Registry,
        settings: &MirrorSettings,
        staging: PathBuf,
    ) -> Result<Self, MirrorSetupError> {
        let stats = Arc::new(Stats::default());
        let client = |s: &UpstreamSettings| {
            Upstream::new(s.clone(), stats.clone())
                .map(Arc::new)
                .map_err(MirrorSetupError::Client)
        };
        let default = settings.default.as_ref().map(client).transpose()?;
        let by_host = settings
            .upstreams
            .iter()
            .map(|(host, s)| Ok((host.clone(), client(s)?)))
            .collect::<Result<Vec<_>, MirrorSetupError>>()?;
        let local = settings
            .local
            .iter()
            .filter_map(|p| Glob::new(p).ok())
            .collect();
        let flights =
            Flights::new(staging.clone()).map_err(|source| MirrorSetupError::Staging {
                path: staging,
                source,
            })?;
        Ok(Mirror {
            inner,
            routes: Routes::new(default, by_host, local),
            tag_revalidate: settings.tag_revalidate,
            revalidated: Mutex::new(HashMap::new()),
            manifest_locks: KeyedLocks::default(),
            flights: Arc::new(flights),
            stats,
            touched: Mutex::new(HashMap::new()),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    fn is_fresh(&self, key: &str) -> bool {
        self.revalidated
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .is_some_and(|at| at.elapsed() < self.tag_revalidate)
    }

    fn mark_fresh(&self, key: String) {
        if let Ok(mut map) = self.revalidated.lock() {
            map.insert(key, Instant::now());
        }
    }

    /// Records a pull of a cached manifest (its TTL counts from the last one), at most once
    /// per [`TOUCH_INTERVAL`] (or a tenth of the TTL, if shorter); a failure is logged, never
    /// the pull's. Nothing to record when the upstream's content never expires.
    async fn touch(&self, upstream: &Upstream, local: &RepositoryName, digest: &Digest) {
        let Some(ttl) = upstream.ttl else {
            return;
        };
        let interval = TOUCH_INTERVAL.min(ttl / 10);
        let key = format!("{local}@{digest}");
        let due = match self.touched.lock() {
            Ok(mut map) => {
                let due = map.get(&key).is_none_or(|at| at.elapsed() >= interval);
                if due {
                    if map.len() > 100_000 {
                        map.retain(|_, at| at.elapsed() < interval);
                    }
                    map.insert(key, Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if due && let Err(e) = self.inner.metadata().touch_pulled(local, digest).await {
            tracing::warn!(repository = %local, %digest, error = %e, "could not record a pull of a cached manifest");
        }
    }

    /// A context for the mirror's own writes into the local registry.
    fn own_context(local: &RepositoryName) -> RequestContext {
        RequestContext::anonymous(
            RequestContext::new_id(),
            Access::Repository {
                name: local.clone(),
                actions: &[Action::Pull, Action::Push],
            },
        )
    }

    /// Refuses writes to mirrored repositories; the name to use for local ones.
    fn writable(&self, cx: &RequestContext, name: &RepositoryName) -> Result<(), RegistryError> {
        match self.routes.route(cx, name)? {
            Route::Local => Ok(()),
            Route::Proxied { .. } => Err(RegistryError::Unsupported(PUSH_REFUSED)),
        }
    }

    /// The local repository holding `name`'s content (itself, or its cache).
    fn local_name(
        &self,
        cx: &RequestContext,
        name: &RepositoryName,
    ) -> Result<RepositoryName, RegistryError> {
        Ok(match self.routes.route(cx, name)? {
            Route::Local => name.clone(),
            Route::Proxied { local, .. } => local,
        })
    }

    /// A manifest by digest: local, else fetched, checked and stored.
    async fn manifest_by_digest(
        &self,
        cx: &RequestContext,
        upstream: &Upstream,
        local: &RepositoryName,
        remote: &str,
        digest: &Digest,
    ) -> Result<StoredManifest, RegistryError> {
        let reference = Reference::Digest(digest.clone());
        if let Some(found) = cached(self.inner.get_manifest(cx, local, &reference).await)? {
            self.stats.hit();
            return Ok(found);
        }
        let _one = self.manifest_locks.lock(format!("{local}@{digest}")).await;
        if let Some(found) = cached(self.inner.get_manifest(cx, local, &reference).await)? {
            self.stats.hit();
            return Ok(found);
        }
        self.stats.miss();
        self.fetch_manifest(upstream, local, remote, digest, None)
            .await
            .map_err(manifest_error)
    }

    /// Fetches the manifest `digest` from upstream, checks it and stores it (tagged `tag`).
    async fn fetch_manifest(
        &self,
        upstream: &Upstream,
        local: &RepositoryName,
        remote: &str,
        digest: &Digest,
        tag: Option<&Tag>,
    ) -> Result<StoredManifest, FetchError> {
        let fetched = upstream
            .get_manifest(remote, &digest.to_string())
            .await
            .map_err(FetchError::Upstream)?;
        let actual = Digest::of(digest.algorithm(), &fetched.body);
        if &actual != digest {
            return Err(FetchError::Upstream(UpstreamError::Invalid(format!(
                "upstream {}: the manifest {remote}@{digest} it sent has the digest {actual}",
                upstream.name
            ))));
        }
        self.store(
            upstream,
            local,
            digest,
            tag,
            fetched.content_type.as_deref(),
            fetched.body,
        )
        .await
        .map_err(FetchError::Local)
    }

    async fn store(
        &self,
        upstream: &Upstream,
        local: &RepositoryName,
        digest: &Digest,
        tag: Option<&Tag>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<StoredManifest, RegistryError> {
        let tags: Vec<Tag> = tag.into_iter().cloned().collect();
        let reference = Reference::Digest(digest.clone());
        self.inner
            .store_manifest(
                local,
                &reference,
                &tags,
                content_type,
                body,
                Origin::Cached {
                    ttl_secs: upstream.ttl.map(|d| d.as_secs()),
                },
            )
            .await?;
        self.inner
            .get_manifest(&Self::own_context(local), local, &reference)
            .await
    }

    /// A manifest by tag: cached and fresh, else revalidated with a `HEAD`; stale when the
    /// upstream cannot be asked.
    async fn manifest_by_tag(
        &self,
        cx: &RequestContext,
        upstream: &Upstream,
        local: &RepositoryName,
        remote: &str,
        tag: &Tag,
    ) -> Result<StoredManifest, RegistryError> {
        let reference = Reference::Tag(tag.clone());
        let key = format!("{local}:{tag}");
        if let Some(found) = cached(self.inner.get_manifest(cx, local, &reference).await)?
            && self.is_fresh(&key)
        {
            self.stats.hit();
            return Ok(found);
        }
        let _one = self.manifest_locks.lock(key.clone()).await;
        let cached_now = cached(self.inner.get_manifest(cx, local, &reference).await)?;
        if let Some(found) = &cached_now
            && self.is_fresh(&key)
        {
            self.stats.hit();
            return Ok(found.clone());
        }
        let result = self
            .revalidate(upstream, local, remote, tag, cached_now.as_ref())
            .await;
        match result {
            Ok(manifest) => {
                self.mark_fresh(key);
                Ok(manifest)
            }
            Err(FetchError::Upstream(UpstreamError::NotFound)) => {
                Err(RegistryError::ManifestUnknown)
            }
            Err(FetchError::Upstream(e)) => match cached_now {
                Some(found) => {
                    tracing::warn!(repository = %local, %tag, upstream = %upstream.name, error = %e, "upstream unavailable: serving the cached tag");
                    self.stats.stale();
                    Ok(found)
                }
                None => Err(manifest_error(FetchError::Upstream(e))),
            },
            Err(FetchError::Local(e)) => Err(e),
        }
    }

    async fn revalidate(
        &self,
        upstream: &Upstream,
        local: &RepositoryName,
        remote: &str,
        tag: &Tag,
        cached_now: Option<&StoredManifest>,
    ) -> Result<StoredManifest, FetchError> {
        let head = upstream
            .head_manifest(remote, tag.as_str())
            .await
            .map_err(FetchError::Upstream)?;
        match head {
            Some(digest) => {
                if let Some(found) = cached_now
                    && found.digest == digest
                {
                    self.stats.hit();
                    return Ok(found.clone());
                }
                self.stats.miss();
                let cx = Self::own_context(local);
                let by_digest = Reference::Digest(digest.clone());
                // Moved to a manifest already cached: only the tag changes.
                if let Some(found) = cached(self.inner.get_manifest(&cx, local, &by_digest).await)
                    .map_err(FetchError::Local)?
                {
                    self.inner
                        .metadata()
                        .tag_manifest(local, tag, &digest)
                        .await
                        .map_err(|e| FetchError::Local(e.into()))?;
                    return Ok(found);
                }
                self.fetch_manifest(upstream, local, remote, &digest, Some(tag))
                    .await
            }
            None => {
                // No digest in the HEAD answer: fetch by tag and trust what arrives.
                self.stats.miss();
                let fetched = upstream
                    .get_manifest(remote, tag.as_str())
                    .await
                    .map_err(FetchError::Upstream)?;
                let digest = Digest::of(crate::oci::Algorithm::Sha256, &fetched.body);
                if let Some(found) = cached_now
                    && found.digest == digest
                {
                    return Ok(found.clone());
                }
                self.store(
                    upstream,
                    local,
                    &digest,
                    Some(tag),
                    fetched.content_type.as_deref(),
                    fetched.body,
                )
                .await
                .map_err(FetchError::Local)
            }
        }
    }

    /// A blob this repository has not got: linked from elsewhere in the registry (once the
    /// upstream confirmed this repository has it), or downloaded (single flight).
    async fn fetch_blob(
        &self,
        cx: &RequestContext,
        upstream: &Arc<Upstream>,
        local: &RepositoryName,
        remote: &str,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobAnswer, RegistryError> {
        self.stats.miss();
        for _ in 0..2 {
            let running = self.flights.get(digest);
            let known = self.inner.metadata().blob_size(digest).await?.is_some();
            if running.as_ref().is_none_or(|f| &f.local != local) && (known || running.is_some()) {
                // Content another repository holds (or is downloading): only after the
                // upstream says this repository has it too.
                upstream
                    .head_blob(remote, digest)
                    .await
                    .map_err(flight::error)?;
            }
            if known && running.is_none() {
                self.inner
                    .mount_blob(&Self::own_context(local), local, digest, None)
                    .await?;
                return self.inner.read_blob(cx, local, digest, range).await;
            }
            let flight = self.flights.join_or_start(Job {
                upstream: upstream.clone(),
                remote: remote.to_string(),
                registry: self.inner.clone(),
                local: local.clone(),
                digest: digest.clone(),
                stats: self.stats.clone(),
            });
            match flight.follow(range).await? {
                Followed::Read(read) => return Ok(BlobAnswer::Bytes(read)),
                Followed::Committed if &flight.local == local => {
                    return self.inner.read_blob(cx, local, digest, range).await;
                }
                // Committed into another repository: link it (next round).
                Followed::Committed => {}
            }
        }
        Err(RegistryError::BlobUnknown)
    }
}

/// A lookup's result as "found or not", keeping real failures.
fn cached(
    result: Result<StoredManifest, RegistryError>,
) -> Result<Option<StoredManifest>, RegistryError> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(RegistryError::ManifestUnknown) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why fetching content failed: upstream, or storing it here.
enum FetchError {
    Upstream(UpstreamError),
    Local(RegistryError),
}

fn manifest_error(e: FetchError) -> RegistryError {
    match e {
        FetchError::Upstream(UpstreamError::NotFound) => RegistryError::ManifestUnknown,
        FetchError::Upstream(UpstreamError::Unavailable(why) | UpstreamError::Invalid(why)) => {
            RegistryError::UpstreamUnavailable(why)
        }
        FetchError::Local(e) => e,
    }
}

#[async_trait]
impl Blobs for Mirror {
    async fn stat_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        let Route::Proxied {
            upstream,
            local,
            remote,
        } = self.routes.route(cx, repository)?
        else {
            return self.inner.stat_blob(cx, repository, digest).await;
        };
        match self.inner.stat_blob(cx, &local, digest).await {
            Ok(size) => {
                self.stats.hit();
                return Ok(size);
            }
            Err(RegistryError::BlobUnknown) => {}
            Err(e) => return Err(e),
        }
        if let Some(size) = self
            .flights
            .get(digest)
            .filter(|f| f.local == local)
            .and_then(|_| self.flights.size_of(digest))
        {
            return Ok(size);
        }
        match upstream.head_blob(&remote, digest).await {
            Ok(size) => Ok(size),
            Err(e) => Err(flight::error(e)),
        }
    }

    async fn read_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobAnswer, RegistryError> {
        let Route::Proxied {
            upstream,
            local,
            remote,
        } = self.routes.route(cx, repository)?
        else {
            return self.inner.read_blob(cx, repository, digest, range).await;
        };
        match self.inner.read_blob(cx, &local, digest, range).await {
            Ok(answer) => {
                self.stats.hit();
                Ok(answer)
            }
            Err(RegistryError::BlobUnknown) => {
                self.fetch_blob(cx, &upstream, &local, &remote, digest, range)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let local = self.local_name(cx, repository)?;
        self.inner.delete_blob(cx, &local, digest).await
    }
}

#[async_trait]
impl Uploads for Mirror {
    async fn start_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
    ) -> Result<UploadSession, RegistryError> {
        self.writable(cx, repository)?;
        self.inner.start_upload(cx, repository).await
    }

    async fn mount_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, RegistryError> {
        self.writable(cx, repository)?;
        self.inner.mount_blob(cx, repository, digest, from).await
    }

    async fn upload_status(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
    ) -> Result<UploadSession, RegistryError> {
        self.writable(cx, repository)?;
        self.inner.upload_status(cx, repository, id).await
    }

    async fn upload_chunk(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
        range: Option<ChunkRange>,
        body: ByteStream<'_>,
    ) -> Result<UploadSession, RegistryError> {
        self.writable(cx, repository)?;
        self.inner
            .upload_chunk(cx, repository, id, range, body)
            .await
    }

    async fn finish_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
        digest: &Digest,
        final_chunk: Option<(Option<ChunkRange>, ByteStream<'_>)>,
    ) -> Result<(), RegistryError> {
        self.writable(cx, repository)?;
        self.inner
            .finish_upload(cx, repository, id, digest, final_chunk)
            .await
    }

    async fn upload_whole(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        body: ByteStream<'_>,
    ) -> Result<(), RegistryError> {
        self.writable(cx, repository)?;
        self.inner.upload_whole(cx, repository, digest, body).await
    }

    async fn cancel_upload(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        id: &Uuid,
    ) -> Result<(), RegistryError> {
        self.writable(cx, repository)?;
        self.inner.cancel_upload(cx, repository, id).await
    }
}

#[async_trait]
impl Manifests for Mirror {
    async fn put_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest, RegistryError> {
        self.writable(cx, repository)?;
        self.inner
            .put_manifest(cx, repository, reference, extra_tags, content_type, body)
            .await
    }

    async fn get_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let Route::Proxied {
            upstream,
            local,
            remote,
        } = self.routes.route(cx, repository)?
        else {
            return self.inner.get_manifest(cx, repository, reference).await;
        };
        let manifest = match reference {
            Reference::Digest(digest) => {
                self.manifest_by_digest(cx, &upstream, &local, &remote, digest)
                    .await
            }
            Reference::Tag(tag) => {
                self.manifest_by_tag(cx, &upstream, &local, &remote, tag)
                    .await
            }
        }?;
        self.touch(&upstream, &local, &manifest.digest).await;
        Ok(manifest)
    }

    async fn delete_manifest(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let local = self.local_name(cx, repository)?;
        self.inner.delete_manifest(cx, &local, reference).await
    }
}

#[async_trait]
impl Listings for Mirror {
    async fn list_tags(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        page: PageRequest<'_>,
    ) -> Result<Page, RegistryError> {
        let local = self.local_name(cx, repository)?;
        self.inner.list_tags(cx, &local, page).await
    }

    async fn list_repositories(
        &self,
        cx: &RequestContext,
        page: PageRequest<'_>,
    ) -> Result<Page, RegistryError> {
        self.inner.list_repositories(cx, page).await
    }

    async fn search_repositories(
        &self,
        cx: &RequestContext,
        request: &SearchRequest,
    ) -> Result<SearchPage, RegistryError> {
        self.inner.search_repositories(cx, request).await
    }

    async fn referrers(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>, RegistryError> {
        let local = self.local_name(cx, repository)?;
        self.inner
            .referrers(cx, &local, subject, artifact_type)
            .await
    }
}
