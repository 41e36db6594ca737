//! Blob storage in an S3 bucket (AWS S3 and S3-compatible stores: MinIO, Ceph RGW, Garage),
//! over the `object_store` crate, with Distribution's S3 object keys:
//!
//! ```text
//! <rootdirectory>/docker/registry/v2/blobs/<alg>/<first two hex>/<hex>/data
//! <rootdirectory>/docker/registry/v2/repositories/<name>/_uploads/<uuid>/...
//! ```
//!
//! Uploads stream into a multipart upload at the staging key `_uploads/<uuid>/data`
//! ([`staging`] keeps its state in small objects beside it, so any replica or a restarted
//! process continues it). After the digest is verified the sealed object is copied to its
//! digest key with part copies of bounded size ([`copy`]), so blobs above 5 GiB need no
//! single server-side copy. Nothing is ever written under a digest key before its bytes
//! were verified.

mod copy;
mod settings;
mod staging;

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use uuid::Uuid;

pub use settings::{Encryption, MAX_PART_SIZE, MIN_PART_SIZE, S3Settings};

use super::tree::{self, MAX_TREE_FILE, TreeEntries};
use super::{BlobStore, ByteStream, StagedUpload, StorageError, StoredBlob, UploadKey};
use crate::oci::{Digest, RepositoryName};
use staging::Staging;

/// Bound on one request that works on the server side (multipart completion, part copy).
const SERVER_SIDE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long a presigned blob URL handed out in a redirect stays valid (as Distribution).
const REDIRECT_VALIDITY: Duration = Duration::from_secs(20 * 60);

/// A [`BlobStore`] in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    /// For requests that move bytes (a stalled transfer times out).
    store: AmazonS3,
    /// For requests the server answers only when its work is done.
    slow: AmazonS3,
    settings: S3Settings,
    /// `<rootdirectory>/docker/registry/v2` (no leading or trailing slash).
    v2: String,
    copier: copy::Copier,
}

impl S3Store {
    /// Connects to the bucket named in `settings` (no request is made yet).
    pub fn new(settings: S3Settings) -> Result<Self, StorageError> {
        // object_store's HTTP client is rustls without a bundled crypto provider (the build
        // carries ring only, no aws-lc): make ring the process's provider before building it.
        // Err means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut client = ClientOptions::new()
            .with_allow_http(!settings.secure || settings.endpoint_is_http())
            .with_connect_timeout(Duration::from_secs(5))
            // A blob download may take long; a stalled one may not.
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(60));
        if let Some(bundle) = settings.ca_bundle()? {
            for certificate in bundle {
                client = client.with_root_certificate(certificate);
            }
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(20),
        };
        let store = build(&settings, &client, &retry)?;
        // Completing a multipart upload and copying parts are answered only when done,
        // which on a busy store takes minutes: no read timeout, one bound on the whole.
        let slow_client = client
            .with_read_timeout_disabled()
            .with_timeout(SERVER_SIDE_TIMEOUT);
        let slow = build(&settings, &slow_client, &retry)?;
        let v2 = [settings.root_directory.as_str(), "docker/registry/v2"]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let copier = copy::Copier::new(&settings, &slow_client)?;
        Ok(S3Store {
            store,
            slow,
            settings,
            v2,
            copier,
        })
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        Path::from(format!(
            "{}/blobs/{}/{}/{}/data",
            self.v2,
            digest.algorithm().as_str(),
            &hex[..2],
            hex
        ))
    }

    fn store_id_key(&self) -> Path {
        Path::from(format!("{}/{}", self.v2, super::layout::STORE_ID_FILE))
    }

    fn upload_prefix(&self, key: &UploadKey) -> String {
        format!(
            "{}/repositories/{}/_uploads/{}",
            self.v2,
            key.repository.as_str(),
            key.id
        )
    }

    fn staging(&self, key: &UploadKey) -> Staging<'_> {
        Staging::new(
            &self.store,
            &self.slow,
            self.upload_prefix(key),
            self.settings.chunk_size,
        )
    }

    /// Stat of `path`: its size, `None` when absent.
    async fn size_of(&self, path: &Path) -> Result<Option<u64>, StorageError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts the sealed upload under its digest key, unless a blob of that size is there.
    async fn publish_sealed(
        &self,
        staging: &Staging<'_>,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let target = self.blob_key(digest);
        if self.size_of(&target).await? == Some(size) {
            return Ok(());
        }
        match staging.sealed_source(size).await? {
            None => {
                self.store.put(&target, PutPayload::new()).await?;
            }
            Some(source) => {
                self.copier.copy(&self.slow, &source, &target, size).await?;
            }
        }
        Ok(())
    }

    /// Streams `range` of the object at `path`.
    async fn stream(
        &self,
        path: &Path,
        range: Range<u64>,
    ) -> object_store::Result<ByteStream<'static>> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(path, options).await?;
        Ok(Box::pin(result.into_stream().map_err(io_error)))
    }

    /// Every object under `prefix` (recursively).
    async fn list_under(
        &self,
        prefix: &str,
    ) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
        let prefix = Path::from(prefix);
        Ok(self.store.list(Some(&prefix)).try_collect().await?)
    }
}

/// An `object_store` client for the bucket of `settings`.
fn build(
    settings: &S3Settings,
    client: &ClientOptions,
    retry: &RetryConfig,
) -> Result<AmazonS3, StorageError> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_virtual_hosted_style_request(!settings.path_style())
        .with_client_options(client.clone())
        .with_retry(retry.clone());
    if let Some(endpoint) = settings.endpoint_url() {
        builder = builder.with_endpoint(endpoint);
    }
    match &settings.encryption {
        Encryption::None => {}
        Encryption::S3Managed => {
            // object_store names SSE-S3 only through its string config key (the key type
            // behind `AmazonS3ConfigKey::Encryption` is not exported).
            let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse()?;
            builder = builder.with_config(key, "AES256");
        }
        Encryption::Kms(key) => builder = builder.with_sse_kms_encryption(key),
    }
    if let (Some(key), Some(secret)) = (&settings.access_key, &settings.secret_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret);
    }
    Ok(builder.build()?)
}

fn not_found_ok(result: object_store::Result<()>) -> Result<(), StorageError> {
    match result {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(other),
    }
}

fn system_time(time: chrono::DateTime<chrono::Utc>) -> SystemTime {
    time.into()
}

#[async_trait]
impl BlobStore for S3Store {
    fn describe(&self) -> String {
        self.settings.identity()
    }

    async fn probe(&self) -> Result<(), StorageError> {
        let prefix = Path::from(self.v2.as_str());
        self.store.list_with_delimiter(Some(&prefix)).await?;
        Ok(())
    }

    fn blob_location(&self, digest: &Digest) -> String {
        format!("s3://{}/{}", self.settings.bucket, self.blob_key(digest))
    }

    async fn read_store_id(&self) -> Result<Option<String>, StorageError> {
        match self.store.get(&self.store_id_key()).await {
            Ok(result) => {
                let bytes = result.bytes().await?;
                let id = String::from_utf8_lossy(&bytes).trim().to_string();
                Ok(Some(id).filter(|id| !id.is_empty()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_store_id(&self, id: &str) -> Result<String, StorageError> {
        // Not a conditional put (S3-compatible stores differ in `If-None-Match` support):
        // two processes creating a new store's marker in the same instant is the one race
        // left, and both then read back whichever id won.
        if let Some(existing) = self.read_store_id().await? {
            return Ok(existing);
        }
        self.store
            .put(
                &self.store_id_key(),
                PutPayload::from(Bytes::from(format!("{id}\n"))),
            )
            .await?;
        self.read_store_id()
            .await?
            .ok_or_else(|| StorageError::Backend("the store id marker vanished".into()))
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.size_of(&self.blob_key(digest)).await
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<ByteStream<'static>, StorageError> {
        if range.is_empty() {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        Ok(self.stream(&self.blob_key(digest), range).await?)
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StorageError> {
        if !self.settings.redirect {
            return Ok(None);
        }
        let url = self
            .store
            .signed_url(http::Method::GET, &self.blob_key(digest), REDIRECT_VALIDITY)
            .await?;
        Ok(Some(url.to_string()))
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.blob_key(digest), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        not_found_ok(self.store.delete(&self.blob_key(digest)).await)
    }

    async fn upload_start(&self, _key: &UploadKey) -> Result<(), StorageError> {
        // Nothing to create: the multipart upload starts with the first full part.
        Ok(())
    }

    async fn upload_append(
        &self,
        key: &UploadKey,
        offset: u64,
        body: ByteStream<'_>,
    ) -> Result<u64, StorageError> {
        self.staging(key).append(offset, body).await
    }

    async fn upload_read(
        &self,
        key: &UploadKey,
        len: u64,
    ) -> Result<ByteStream<'static>, StorageError> {
        let staging = self.staging(key);
        let Some(source) = staging.readable_source(len).await? else {
            return Ok(Box::pin(futures_util::stream::empty()));
        };
        match self.stream(&source, 0..len).await {
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::StagingShort {
                expected: len,
                actual: 0,
            }),
            other => Ok(other?),
        }
    }

    async fn upload_seal(&self, key: &UploadKey, size: u64) -> Result<(), StorageError> {
        self.staging(key).seal(size).await
    }

    async fn upload_publish(
        &self,
        key: &UploadKey,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        self.publish_sealed(&self.staging(key), size, digest).await
    }

    async fn upload_commit(
        &self,
        key: &UploadKey,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        // Published before the lock was taken; the collector may have removed the object
        // since (it holds the same lock when it deletes), so check and copy again if so.
        // The staging objects go after the metadata transaction (`upload_abort`).
        if self.size_of(&self.blob_key(digest)).await? != Some(size) {
            self.publish_sealed(&self.staging(key), size, digest)
                .await?;
        }
        Ok(())
    }

    async fn upload_abort(&self, key: &UploadKey) -> Result<(), StorageError> {
        self.staging(key).remove().await
    }

    async fn list_blobs(&self) -> Result<Vec<StoredBlob>, StorageError> {
        let prefix = format!("{}/blobs", self.v2);
        let mut blobs = Vec::new();
        for meta in self.list_under(&prefix).await? {
            let parts: Vec<&str> = meta.location.as_ref().rsplit('/').take(4).collect();
            // data, <hex>, <2 hex>, <alg>
            let [file, hex, _, algorithm] = parts[..] else {
                continue;
            };
            if file != "data" {
                continue;
            }
            let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                continue;
            };
            blobs.push(StoredBlob {
                digest,
                size: meta.size,
                modified: system_time(meta.last_modified),
            });
        }
        Ok(blobs)
    }

    async fn list_uploads(&self) -> Result<Vec<StagedUpload>, StorageError> {
        let prefix = format!("{}/repositories/", self.v2);
        // Newest object of each staging area.
        let mut uploads: BTreeMap<(RepositoryName, Uuid), SystemTime> = BTreeMap::new();
        for meta in self.list_under(&prefix).await? {
            let location = meta.location.as_ref();
            let Some(rest) = location.strip_prefix(&prefix) else {
                continue;
            };
            let Some((name, after)) = rest.split_once("/_uploads/") else {
                continue;
            };
            let id = after.split('/').next().unwrap_or_default();
            let (Ok(repository), Ok(id)) = (RepositoryName::parse(name), id.parse::<Uuid>()) else {
                continue;
            };
            let modified = system_time(meta.last_modified);
            let newest = uploads.entry((repository, id)).or_insert(modified);
            *newest = (*newest).max(modified);
        }
        Ok(uploads
            .into_iter()
            .map(|((repository, id), modified)| StagedUpload {
                key: UploadKey { repository, id },
                modified,
            })
            .collect())
    }

    async fn prune_empty_directories(&self, _min_age: Duration) -> Result<(), StorageError> {
        // An object store has no directories.
        Ok(())
    }

    async fn tree_entries(&self, dir: &str) -> Result<TreeEntries, StorageError> {
        let prefix = self.tree_key(dir)?;
        let listing = self.store.list_with_delimiter(Some(&prefix)).await?;
        let name = |path: &Path| path.filename().map(str::to_string);
        let mut found = TreeEntries {
            dirs: listing.common_prefixes.iter().filter_map(name).collect(),
            files: listing
                .objects
                .iter()
                .filter_map(|o| name(&o.location))
                .collect(),
        };
        found.dirs.sort();
        found.files.sort();
        Ok(found)
    }

    async fn tree_files(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let prefix = self.tree_key(dir)?;
        let mut found: Vec<String> = self
            .store
            .list(Some(&prefix))
            .try_filter_map(|meta| {
                let relative = meta.location.prefix_match(&prefix).map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                });
                std::future::ready(Ok(relative.filter(|r| !r.is_empty())))
            })
            .try_collect()
            .await?;
        found.sort();
        Ok(found)
    }

    async fn tree_read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = self.tree_key(path)?;
        match self.store.get(&key).await {
            Ok(result) if result.meta.size > MAX_TREE_FILE => Ok(None),
            Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl S3Store {
    /// The key of `repositories/<path>` of Distribution's tree.
    fn tree_key(&self, path: &str) -> Result<Path, StorageError> {
        if !tree::is_safe(path) {
            return Err(StorageError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a path of the repositories tree: {path:?}"),
            )));
        }
        Ok(Path::from(tree::key(&self.v2, path)))
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other => StorageError::Backend(other.to_string()),
        }
    }
}
