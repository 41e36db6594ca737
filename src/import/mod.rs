//! Adopting a `registry:2` store (a data directory or an S3 bucket): reads Distribution's
//! metadata files (`_layers`, `_manifests/revisions`, `_manifests/tags`) through the blob
//! store and records the same facts in Ferry's database, without copying any blob. Runs by
//! `ferry import`, and at startup when nothing was imported yet and the store holds
//! Distribution's repositories tree.
//!
//! Every step is idempotent and its own transaction, so an interrupted import is simply run
//! again. Inconsistencies (a link to a missing blob, a tag naming a missing manifest, a
//! schema 1 manifest) are counted and reported, never invented.

pub mod walk;

use futures_util::StreamExt;
use serde::Serialize;

use crate::metadata::{LockKey, MetadataError, MetadataStore, NewManifest};
use crate::oci::manifest::{self, ManifestKind};
use crate::oci::{Digest, Hasher, RepositoryName, Tag};
use crate::storage::{BlobStore, StorageError};

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// Repositories found.
    pub repositories: usize,
    /// Blob links recorded.
    pub blobs: usize,
    /// Manifests recorded.
    pub manifests: usize,
    /// Tags recorded.
    pub tags: usize,
    /// Blobs whose bytes do not hash to their digest (with `--verify`).
    pub corrupt_blobs: Vec<String>,
    /// Things skipped, one line each.
    pub skipped: Vec<String>,
}

/// Why an import failed (re-run it after fixing the cause).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Metadata failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Storage failed (reading the tree or a blob).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Key in `registry_info` recording a finished import.
pub const IMPORT_MARKER: &str = "distribution_import";

/// Whether the store holds a Distribution repositories tree with at least one repository.
pub async fn has_distribution_data(storage: &dyn BlobStore) -> Result<bool, StorageError> {
    walk::has_repositories(storage).await
}

/// Whether the store holds Distribution data that was never imported: what a collection
/// must not run on (every blob of it would look unreferenced).
pub async fn pending(
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
) -> Result<bool, ImportError> {
    Ok(metadata.info(IMPORT_MARKER).await?.is_none() && has_distribution_data(storage).await?)
}

/// Imports the Distribution metadata of the store's repositories tree (a data directory or
/// an S3 bucket), again if it was imported before. `verify` re-hashes every blob. Holds the
/// collector's lock throughout (waiting for a collection in progress), so no collection sees
/// blobs whose links are not recorded yet.
pub async fn import(
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
    verify: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImportReport, ImportError> {
    let _collector = metadata.lock(LockKey::Collector).await?;
    import_locked(metadata, storage, verify, progress).await
}

/// The automatic import at startup, once [`pending`] said there is one: imports the store's
/// Distribution data if it is still not imported under the collector's lock; `None` when
/// there was nothing left to do. Replicas starting together import once: the others wait
/// for the lock and then find it done.
pub async fn adopt(
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<ImportReport>, ImportError> {
    let _collector = metadata.lock(LockKey::Collector).await?;
    if !pending(metadata, storage).await? {
        return Ok(None);
    }
    progress(
        "found registry:2 (Distribution) data that was never imported: importing it before serving (database.autoimport: false turns this off)",
    );
    import_locked(metadata, storage, false, progress)
        .await
        .map(Some)
}

async fn import_locked(
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
    verify: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let repositories = walk::repositories(storage).await?;
    report.repositories = repositories.len();
    progress(&format!("found {} repositories", repositories.len()));
    let started = std::time::Instant::now();
    for (i, repository) in repositories.iter().enumerate() {
        import_repository(repository, metadata, storage, verify, &mut report).await?;
        if (i + 1) % 100 == 0 || i + 1 == repositories.len() {
            progress(&format!(
                "{}/{} repositories, {} manifests, {} blobs, {:.1}s",
                i + 1,
                repositories.len(),
                report.manifests,
                report.blobs,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    metadata
        .set_info(IMPORT_MARKER, &crate::metadata::now().to_string())
        .await?;
    Ok(report)
}

async fn import_repository(
    repo: &str,
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
    verify: bool,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let Ok(name) = RepositoryName::parse(repo) else {
        report
            .skipped
            .push(format!("repository {repo:?}: not a valid name"));
        return Ok(());
    };
    let mut layers = Vec::new();
    for digest in walk::link_digests(storage, &format!("{repo}/_layers")).await? {
        let Some(size) = storage.stat(&digest).await? else {
            report
                .skipped
                .push(format!("{name}: layer link {digest} has no blob data"));
            continue;
        };
        if verify && !hashes_to(storage, &digest, size).await? {
            report.corrupt_blobs.push(digest.to_string());
            continue;
        }
        layers.push((digest, size));
    }
    // One transaction per repository, not per link.
    metadata.link_blobs(&name, &layers).await?;
    report.blobs += layers.len();

    // Manifests: children before the indexes that list them, so keep passing over the
    // rest while something lands.
    let mut pending = Vec::new();
    let revisions = format!("{repo}/_manifests/revisions");
    for digest in walk::link_digests(storage, &revisions).await? {
        match read_manifest(storage, &digest).await? {
            Ok(payload) => pending.push((digest, payload)),
            Err(reason) => report
                .skipped
                .push(format!("{name}: manifest {digest}: {reason}")),
        }
    }
    pending.sort_by_key(|(_, payload)| {
        matches!(
            manifest::parse(payload, None).map(|m| m.kind),
            Ok(ManifestKind::Index)
        )
    });
    loop {
        let before = pending.len();
        let mut still = Vec::new();
        let mut last_error = Vec::new();
        for (digest, payload) in pending {
            match record_manifest(metadata, &name, &digest, &payload).await {
                Ok(()) => report.manifests += 1,
                Err(RecordError::Retry(reason)) => {
                    last_error.push(format!("{name}: manifest {digest}: {reason}"));
                    still.push((digest, payload));
                }
                Err(RecordError::Skip(reason)) => report
                    .skipped
                    .push(format!("{name}: manifest {digest}: {reason}")),
                Err(RecordError::Fatal(e)) => return Err(e.into()),
            }
        }
        pending = still;
        if pending.is_empty() || pending.len() == before {
            report.skipped.extend(last_error);
            break;
        }
    }

    let tags = format!("{repo}/_manifests/tags");
    for (tag, digest) in walk::tags(storage, &tags).await? {
        let Ok(tag) = Tag::parse(&tag) else {
            report
                .skipped
                .push(format!("{name}: tag {tag:?} is not a valid tag"));
            continue;
        };
        if metadata.tag_manifest(&name, &tag, &digest).await? {
            report.tags += 1;
        } else {
            report.skipped.push(format!(
                "{name}:{tag} points at {digest}, which is not in the repository"
            ));
        }
    }
    Ok(())
}

enum RecordError {
    /// May succeed once other manifests are in.
    Retry(String),
    /// Never will.
    Skip(String),
    /// The database failed.
    Fatal(MetadataError),
}

/// Records a manifest whose bytes are already in storage (as a registry:2 blob).
async fn record_manifest(
    metadata: &dyn MetadataStore,
    name: &RepositoryName,
    digest: &Digest,
    payload: &[u8],
) -> Result<(), RecordError> {
    let parsed = manifest::parse(payload, None).map_err(|e| RecordError::Skip(e.to_string()))?;
    let new = NewManifest {
        digest,
        media_type: &parsed.media_type,
        artifact_type: parsed.artifact_type.as_deref(),
        subject: parsed.subject.as_ref(),
        annotations: parsed.annotations.as_deref(),
        payload,
        references: &parsed.references,
        tags: &[],
        origin: crate::metadata::Origin::Pushed,
    };
    match metadata.put_manifest(name, &new).await {
        Ok(()) => Ok(()),
        Err(e @ MetadataError::MissingReference { .. }) => Err(RecordError::Retry(e.to_string())),
        Err(e @ MetadataError::SizeMismatch { .. }) => Err(RecordError::Skip(e.to_string())),
        Err(e) => Err(RecordError::Fatal(e)),
    }
}

/// A manifest's bytes from blob storage, checked against its digest.
async fn read_manifest(
    storage: &dyn BlobStore,
    digest: &Digest,
) -> Result<Result<Vec<u8>, String>, ImportError> {
    let Some(size) = storage.stat(digest).await? else {
        return Ok(Err("its blob data is missing".into()));
    };
    if size > manifest::MAX_MANIFEST_SIZE as u64 {
        return Ok(Err(format!(
            "{size} bytes is larger than a manifest may be"
        )));
    }
    let mut body = storage.read(digest, 0..size).await?;
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(StorageError::Io)?);
    }
    if Digest::of(digest.algorithm(), &bytes) != *digest {
        return Ok(Err("its bytes do not match the digest".into()));
    }
    Ok(Ok(bytes))
}

/// Re-hashes a blob from storage.
async fn hashes_to(
    storage: &dyn BlobStore,
    digest: &Digest,
    size: u64,
) -> Result<bool, ImportError> {
    let mut hasher = Hasher::new(digest.algorithm());
    let mut body = storage.read(digest, 0..size).await?;
    while let Some(chunk) = body.next().await {
        hasher.update(&chunk.map_err(StorageError::Io)?);
    }
    Ok(hasher.finish() == *digest)
}
