//! Metadata: which repositories, blobs, manifests, tags and upload sessions exist.
//! [`MetadataStore`] is the interface the registry services use; [`sql`] implements it once
//! for both databases, [`sqlite`] (one node) and [`postgres`] (any number of replicas),
//! which open them; [`open`] opens the configured one. Every operation that must be atomic (a manifest and the check of what
//! it references, an upload's completion and the link of its blob) is one method, hence one
//! short transaction, and no method touches blob storage: the services place bytes first,
//! holding the store's [`locks`], then record them.

pub mod browse;
pub mod collector;
pub mod locks;
pub mod migrate;
pub mod names;
pub mod postgres;
pub mod queue;
pub mod sql;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

pub use self::locks::{LockGuard, LockKey, MetadataLocks};
pub use self::names::Names;
pub use self::queue::{Lease, NewEvent, QueuedEvent};
use crate::oci::manifest::ContentReference;
use crate::oci::{Digest, RepositoryName, Tag};

/// A metadata failure. Backend-neutral: a backend's own error is kept as text.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The database failed.
    #[error("metadata database error: {0}")]
    Database(String),
    /// The database refused a transaction for a concurrent one (PostgreSQL's serialization
    /// failure or deadlock): running it again may succeed. Reaches a caller only after the
    /// store's own retries ran out.
    #[error("metadata transaction conflicted with a concurrent one: {0}")]
    Conflict(String),
    /// The database is in use by something that must finish first (a migration, a lock
    /// held by another process) and did not within the wait.
    #[error("metadata lock error: {0}")]
    Lock(String),
    /// The schema migrations could not be applied.
    #[error("metadata database migration failed: {0}")]
    Migrate(String),
    /// A manifest references content its repository does not have.
    #[error("{kind} {digest} is not in the repository")]
    MissingReference {
        /// The missing content.
        digest: Digest,
        /// `config`, `layer` or `manifest`.
        kind: &'static str,
    },
    /// A manifest declares a size that differs from the stored content's.
    #[error("{digest} is {actual} bytes, the manifest says {declared}")]
    SizeMismatch {
        /// The content.
        digest: Digest,
        /// Size in the manifest.
        declared: u64,
        /// Size stored.
        actual: u64,
    },
    /// A row holds something that cannot be parsed back (a bug or a hand-edited database).
    #[error("metadata database holds an invalid value: {0}")]
    Corrupt(String),
}

/// An upload in progress.
#[derive(Clone, Debug)]
pub struct UploadSession {
    /// Session id (the `<uuid>` of the upload URL).
    pub id: Uuid,
    /// Repository it was opened in.
    pub repository: RepositoryName,
    /// Bytes received and staged so far.
    pub size: u64,
    /// Saved sha256 state after `size` bytes, when available.
    pub hash_state: Option<Vec<u8>>,
    /// Unix seconds when the session started.
    pub started_at: i64,
}

/// A manifest as stored: the exact pushed bytes and their media type.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// Digest of `payload`.
    pub digest: Digest,
    /// Media type it was pushed with.
    pub media_type: String,
    /// The pushed bytes.
    pub payload: Bytes,
}

/// A manifest being pushed, already parsed and validated in form.
#[derive(Debug)]
pub struct NewManifest<'a> {
    /// Digest of `payload`.
    pub digest: &'a Digest,
    /// Effective media type.
    pub media_type: &'a str,
    /// What the referrers API lists as its artifact type.
    pub artifact_type: Option<&'a str>,
    /// Subject digest.
    pub subject: Option<&'a Digest>,
    /// `annotations` JSON.
    pub annotations: Option<&'a str>,
    /// The exact bytes.
    pub payload: &'a [u8],
    /// Content it needs in the repository.
    pub references: &'a [ContentReference],
    /// Tags to point at it.
    pub tags: &'a [Tag],
    /// Pushed, or fetched by the pull-through mirror.
    pub origin: Origin,
}

/// Where a manifest comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Pushed: everything it references must already be in the repository.
    Pushed,
    /// Fetched from an upstream by the pull-through mirror: its blobs and children are
    /// fetched when a client asks for them, after it, so they need not be there yet. It
    /// expires `ttl_secs` after it was last pulled (`None`: never).
    Cached {
        /// `proxy.ttl` of its upstream, in seconds.
        ttl_secs: Option<u64>,
    },
}

/// A manifest that names a subject, as the referrers API lists it.
#[derive(Clone, Debug)]
pub struct Referrer {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its annotations, as JSON.
    pub annotations: Option<String>,
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Which metadata database to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseSettings {
    /// An SQLite file (created when missing).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database (`database.url`), shared by any number of replicas.
    Postgres(postgres::PostgresSettings),
}

impl std::fmt::Display for DatabaseSettings {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseSettings::Sqlite { path } => write!(f, "{}", path.display()),
            DatabaseSettings::Postgres(settings) => f.write_str(&postgres::redacted(&settings.url)),
        }
    }
}

/// What a metadata snapshot written by [`MetadataBackend::snapshot_into`] holds.
#[derive(Clone, Debug, Default)]
pub struct SnapshotContents {
    /// Every blob it records (layers, configs, manifests' bytes): `(digest, size)`, sorted.
    pub blobs: Vec<(Digest, u64)>,
    /// Repositories in it.
    pub repositories: u64,
    /// Manifests in it.
    pub manifests: u64,
    /// Tags in it.
    pub tags: u64,
}

/// A metadata store as the server, the collector and the importer use it.
#[async_trait]
pub trait MetadataBackend: collector::CollectorMetadata + browse::BrowseMetadata {
    /// Closes the connections (on shutdown).
    async fn close(&self);

    /// Writes a consistent copy of the whole metadata to the file `path` (replaced if it
    /// exists), durable when this returns, while the store keeps serving; upload sessions
    /// are left out (their staged bytes are not part of a backup). Returns what the copy
    /// holds, read back from it.
    async fn snapshot_into(&self, path: &Path) -> Result<SnapshotContents, MetadataError>;
}

/// Opens (creating and migrating when needed) the configured metadata store.
pub async fn open(settings: &DatabaseSettings) -> Result<Arc<dyn MetadataBackend>, MetadataError> {
    match settings {
        DatabaseSettings::Sqlite { path } => Ok(Arc::new(sqlite::open(path).await?)),
        DatabaseSettings::Postgres(settings) => Ok(Arc::new(postgres::open(settings).await?)),
    }
}

/// The metadata operations of the registry, and the locks they are used under.
#[async_trait]
pub trait MetadataStore: MetadataLocks + Send + Sync + 'static {
    /// Size of `digest` if `repository` may serve it.
    async fn blob_in_repository(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError>;

    /// Size of `digest` if it is committed anywhere in the registry.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetadataError>;

    /// Records that committed blobs `(digest, size)` exist and links them into
    /// `repository`, in one transaction.
    async fn link_blobs(
        &self,
        repository: &RepositoryName,
        blobs: &[(Digest, u64)],
    ) -> Result<(), MetadataError>;

    /// Links an existing blob into `repository` if it is in `from` (or, with no `from`,
    /// anywhere). Returns its size, or `None` when there was nothing to mount.
    async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>, MetadataError>;

    /// Removes `digest` from `repository`; `false` if it was not there.
    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError>;

    /// Records a new upload session.
    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError>;

    /// Looks up an upload session.
    async fn upload(&self, id: &Uuid) -> Result<Option<UploadSession>, MetadataError>;

    /// Moves a session from `from_size` to `to_size` bytes with its new hash state.
    /// `false` when the session is gone or no longer at `from_size` (a concurrent request).
    async fn advance_upload(
        &self,
        id: &Uuid,
        from_size: u64,
        to_size: u64,
        hash_state: Option<&[u8]>,
    ) -> Result<bool, MetadataError>;

    /// Ends an upload whose bytes are committed under `digest`: in one transaction, records
    /// the blob, links it into the repository and drops the session. The caller holds
    /// [`LockKey::Blob`] of `digest` from the commit of the bytes until this returns.
    async fn complete_upload(
        &self,
        session: &UploadSession,
        digest: &Digest,
    ) -> Result<(), MetadataError>;

    /// Drops a session; `false` if it did not exist.
    async fn delete_upload(&self, id: &Uuid) -> Result<bool, MetadataError>;

    /// Sessions started before `started_before` (Unix seconds).
    async fn stale_uploads(&self, started_before: i64)
    -> Result<Vec<UploadSession>, MetadataError>;

    /// Records a manifest (and its bytes as a blob) after checking, in the same transaction,
    /// that everything it references is in the repository (refreshing their use time);
    /// points `manifest.tags` at it. The caller stored the bytes first and holds
    /// [`LockKey::Blob`] of the manifest's digest until this returns.
    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest<'_>,
    ) -> Result<(), MetadataError>;

    /// Points `tag` at a manifest already in the repository; `false` if it is not there.
    async fn tag_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool, MetadataError>;

    /// A manifest by digest.
    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, MetadataError>;

    /// The manifest a tag points at.
    async fn tagged_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>, MetadataError>;

    /// Deletes a manifest and the tags pointing at it; `false` if it did not exist.
    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MetadataError>;

    /// Deletes a tag; `false` if it did not exist.
    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError>;

    /// Whether the repository is known: something was pushed to it and it was not
    /// collected since (`_catalog` lists those holding a manifest or a linked blob).
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool, MetadataError>;

    /// Up to `limit` tags after `last`, in byte-wise order; `None` when the repository is
    /// not known (see [`MetadataStore::repository_exists`]). One call, so a tag list is one
    /// query.
    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Names>, MetadataError>;

    /// Up to `limit` names, after `last` in byte-wise order, of the repositories that hold
    /// content: a manifest or a linked blob (as `registry:2` lists a repository once a blob
    /// was pushed to it).
    async fn list_repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Names, MetadataError>;

    /// Up to `limit` names of repositories (those [`MetadataStore::list_repositories`] lists)
    /// that contain `query` (compared without case; an empty query matches every name),
    /// after `last` in byte-wise order: what `docker search` asks. The default pages through
    /// `list_repositories` and filters here, holding at most one batch and the matches; a
    /// backend with an index can do better.
    async fn search_repositories(
        &self,
        query: &str,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        /// Names read per `list_repositories` call.
        const BATCH: u32 = 1000;
        let query = query.to_lowercase();
        let mut found = Vec::new();
        let mut after = last.map(str::to_string);
        while found.len() < limit as usize {
            let batch = self.list_repositories(after.as_deref(), BATCH).await?;
            let ended = batch.len() < BATCH as usize;
            after = batch.last().map(str::to_string);
            found.extend(
                batch
                    .iter()
                    .filter(|name| name.to_lowercase().contains(&query))
                    .map(str::to_string),
            );
            if ended {
                break;
            }
        }
        found.truncate(limit as usize);
        Ok(found)
    }

    /// The `org.opencontainers.image.description` annotation of the most recently tagged
    /// manifest of `repository` that has one (`docker search`'s description); `None` when no
    /// tagged manifest has it.
    async fn repository_description(
        &self,
        repository: &str,
    ) -> Result<Option<String>, MetadataError>;

    /// Manifests in `repository` whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetadataError>;

    /// Up to `limit` committed blobs `(digest, size)`, picked at random (to check that a
    /// store holds what the metadata names).
    async fn sample_blobs(&self, limit: u32) -> Result<Vec<(Digest, u64)>, MetadataError>;

    /// Records that a manifest the mirror cached was pulled now (its TTL counts from the
    /// last pull). Pushed manifests are left alone. A no-op for a backend without cache
    /// expiry.
    async fn touch_pulled(
        &self,
        _repository: &RepositoryName,
        _digest: &Digest,
    ) -> Result<(), MetadataError> {
        Ok(())
    }

    /// Queues notification events (one transaction; nothing for an empty list). Called
    /// after the operation they describe committed.
    async fn enqueue_events(&self, events: &[NewEvent<'_>]) -> Result<(), MetadataError>;

    /// Claims up to `limit` queued events of `lease.endpoint`, oldest first, for
    /// `lease.owner` until `lease.until_ms`: those nobody holds, those whose lease ended, and
    /// those `owner` holds already (renewed). An event is skipped while an older event of
    /// its repository is held by another owner, so each repository's events are delivered
    /// in order. Returned in queue order.
    async fn claim_events(
        &self,
        lease: Lease<'_>,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, MetadataError>;

    /// Removes delivered events: `ids` of `endpoint` still held by `owner`. Returns how many.
    async fn ack_events(
        &self,
        endpoint: &str,
        owner: &str,
        ids: &[i64],
    ) -> Result<u64, MetadataError>;

    /// Lets go of every event `owner` holds (on shutdown), so another process or the next
    /// start delivers them at once.
    async fn release_events(&self, owner: &str) -> Result<u64, MetadataError>;

    /// Drops the oldest events of `endpoint` beyond the newest `keep`. Returns how many.
    async fn trim_events(&self, endpoint: &str, keep: u64) -> Result<u64, MetadataError>;

    /// Drops the events of every endpoint not in `endpoints` (removed or disabled ones).
    /// Returns how many.
    async fn drop_events_except(&self, endpoints: &[&str]) -> Result<u64, MetadataError>;

    /// How many events wait for `endpoint`.
    async fn queued_events(&self, endpoint: &str) -> Result<u64, MetadataError>;

    /// A registry-wide setting kept with the metadata (e.g. which storage it indexes).
    async fn info(&self, key: &str) -> Result<Option<String>, MetadataError>;

    /// Sets a registry-wide setting.
    async fn set_info(&self, key: &str, value: &str) -> Result<(), MetadataError>;

    /// Sets a registry-wide setting unless it is set, and returns its value: `value`, or
    /// what was there (another replica's, when several start at once).
    async fn init_info(&self, key: &str, value: &str) -> Result<String, MetadataError>;
}
