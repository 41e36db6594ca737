//! Adopting a `registry:2` data directory: reads Distribution's metadata files
//! (`_layers`, `_manifests/revisions`, `_manifests/tags`) and records the same facts in
//! Ferry's database, without copying any blob. Runs by `ferry import`, and at startup when
//! the database is empty and the storage holds Distribution's repositories tree.
//!
//! Every step is idempotent and its own transaction, so an interrupted import is simply run
//! again. Inconsistencies (a link to a missing blob, a tag naming a missing manifest, a
//! schema 1 manifest) are counted and reported, never invented.

pub mod walk;

use std::path::Path;

use futures_util::StreamExt;
use serde::Serialize;

use crate::metadata::{MetadataError, MetadataStore, NewManifest};
use crate::oci::manifest::{self, ManifestKind};
use crate::oci::{Digest, Hasher, RepositoryName, Tag};
use crate::storage::{BlobStore, StorageError};
use walk::DistributionRepository;

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
    /// Reading the Distribution tree failed.
    #[error("reading the data directory failed: {0}")]
    Io(#[from] std::io::Error),
    /// Metadata failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Runs a walk of Distribution's directories on a blocking thread (directory reads would
/// stall the async threads that serve requests).
async fn blocking<T: Send + 'static>(
    walk: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(walk)
        .await
        .map_err(std::io::Error::other)?
}

/// Key in `registry_info` recording a finished import.
pub const IMPORT_MARKER: &str = "distribution_import";

/// Whether `root` holds a Distribution repositories tree with at least one repository.
pub fn has_distribution_data(root: &Path) -> bool {
    walk::repositories(root)
        .map(|r| !r.is_empty())
        .unwrap_or(false)
}

/// Imports the Distribution metadata under `root`. `verify` re-hashes every blob.
pub async fn import(
    root: &Path,
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
    verify: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let tree = root.to_path_buf();
    let repositories = blocking(move || walk::repositories(&tree)).await?;
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
    repo: &DistributionRepository,
    metadata: &dyn MetadataStore,
    storage: &dyn BlobStore,
    verify: bool,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let Ok(name) = RepositoryName::parse(&repo.name) else {
        report
            .skipped
            .push(format!("repository {:?}: not a valid name", repo.name));
        return Ok(());
    };
    let mut layers = Vec::new();
    let layers_dir = repo.dir.join("_layers");
    for digest in blocking(move || walk::link_digests(&layers_dir)).await? {
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
    let revisions_dir = repo.dir.join("_manifests").join("revisions");
    for digest in blocking(move || walk::link_digests(&revisions_dir)).await? {
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

    let tags_dir = repo.dir.join("_manifests").join("tags");
    for (tag, digest) in blocking(move || walk::tags(&tags_dir)).await? {
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
