//! `ferry backup`: a consistent copy of a registry while it serves, that `ferry serve` on
//! the destination serves as it was at the snapshot.
//!
//! Order (see ARCHITECTURE.md, "Backups"):
//! 1. Hold the collector off ([`LockKey::Collector`], waiting for a collection in progress),
//!    so no blob the snapshot names is removed until it is copied. Pushes, pulls and
//!    deletes go on: deletes only remove rows, and only the collector removes bytes.
//! 2. Snapshot the metadata ([`MetadataBackend::snapshot_into`]) under a temporary name in
//!    the destination.
//! 3. Copy the store's id marker, then every blob the snapshot records into
//!    `<dest>/docker/registry/v2/blobs/...` (a blob already there with its size is
//!    skipped; `--link` hard-links), each whole and durable before it has its name
//!    ([`files::place`]). Release the collector. `--verify` re-hashes what was placed.
//! 4. Put the snapshot in place as `<dest>/ferry/metadata.db` (a stale `-wal`/`-shm`
//!    removed first), last: until then the destination holds the previous backup, whole.
//! 5. `--prune`: remove blob directories the new snapshot does not record.
//!
//! A backup killed anywhere leaves the previous backup usable and a rerun completes it.
//! On object storage (S3) the bytes stay in the bucket: the snapshot and a list of the
//! objects it references are written instead (versioning or replication keeps the bytes).

pub mod cli;
pub mod files;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use crate::metadata::{LockKey, MetadataBackend, MetadataError, SnapshotContents};
use crate::oci::Digest;
use crate::storage::{BlobStore, StorageError, layout};
use files::Placed;

/// How a backup runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Hard-link blobs instead of copying them where the destination is on the same
    /// filesystem.
    pub link: bool,
    /// Remove blobs in the destination that the new snapshot does not record.
    pub prune: bool,
    /// Re-hash every blob copied or linked.
    pub verify: bool,
}

/// Where the blobs are.
pub enum Source<'a> {
    /// Files in Distribution's layout under this root (the filesystem store).
    Files(&'a Path),
    /// Objects (S3): listed, not copied.
    Objects,
}

/// What a backup did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The destination directory.
    pub destination: String,
    /// The store's id, as recorded in the snapshot and the destination.
    pub store_id: String,
    /// Repositories in the snapshot.
    pub repositories: u64,
    /// Manifests in the snapshot.
    pub manifests: u64,
    /// Tags in the snapshot.
    pub tags: u64,
    /// Blobs the snapshot records.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs copied.
    pub copied: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Blobs hard-linked.
    pub linked: u64,
    /// Bytes hard-linked.
    pub linked_bytes: u64,
    /// Blobs already in the destination.
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Blob directories removed from the destination (`--prune`).
    pub pruned: u64,
    /// Their bytes.
    pub pruned_bytes: u64,
    /// Blobs re-hashed (`--verify`).
    pub verified: u64,
    /// Blobs the snapshot records that the store does not have (the backup fails).
    pub missing: Vec<String>,
    /// Blobs whose copy does not hash to their digest (the backup fails).
    pub corrupt: Vec<String>,
    /// Object-storage keys the snapshot references, listed in this file (S3 only).
    pub object_list: Option<String>,
    /// Seconds the backup took.
    pub seconds: f64,
}

impl Report {
    /// Whether the destination is a complete backup.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "backup of store {} in {}: {} repositories, {} manifests, {} tags, {} blobs ({:.1} MiB)",
            self.store_id,
            self.destination,
            self.repositories,
            self.manifests,
            self.tags,
            self.blobs,
            self.bytes as f64 / MIB
        )?;
        if let Some(list) = &self.object_list {
            writeln!(
                f,
                "  blobs stay in object storage; their keys are listed in {list}"
            )?;
        } else {
            writeln!(
                f,
                "  copied {} ({:.1} MiB), linked {} ({:.1} MiB), skipped {} already there ({:.1} MiB), pruned {} ({:.1} MiB), verified {}",
                self.copied,
                self.copied_bytes as f64 / MIB,
                self.linked,
                self.linked_bytes as f64 / MIB,
                self.skipped,
                self.skipped_bytes as f64 / MIB,
                self.pruned,
                self.pruned_bytes as f64 / MIB,
                self.verified
            )?;
        }
        write!(
            f,
            "  {:.1}s, {:.1} MiB/s copied",
            self.seconds,
            self.copied_bytes as f64 / MIB / self.seconds.max(0.001)
        )?;
        for digest in &self.missing {
            write!(f, "\n  missing from the store: {digest}")?;
        }
        for digest in &self.corrupt {
            write!(f, "\n  copy does not match its digest: {digest}")?;
        }
        Ok(())
    }
}

/// Why a backup failed (run it again after fixing the cause; what it left is harmless).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination cannot be used.
    #[error("destination {path}: {reason}")]
    Destination {
        /// The destination.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another backup writes into the same destination.
    #[error("another backup is writing into {0}")]
    Busy(PathBuf),
    /// A file of the destination or the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Metadata failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

/// Where `ferry serve` on the data directory `dest` keeps its database (the default
/// `database.path`).
pub fn database_in(dest: &Path) -> PathBuf {
    dest.join("ferry").join("metadata.db")
}

/// The list of object keys an object-storage backup writes.
pub fn object_list_in(dest: &Path) -> PathBuf {
    dest.join("ferry").join("blob-objects.txt")
}

/// Backs up the registry of `metadata` and `storage` (whose blobs are at `source`) into
/// the directory `dest`. `progress` gets a line per phase and about one a second while
/// blobs are copied. A report with [`Report::complete`] false is a failed backup.
pub async fn backup(
    metadata: &dyn MetadataBackend,
    storage: &dyn BlobStore,
    source: Source<'_>,
    dest: &Path,
    options: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, BackupError> {
    let started = Instant::now();
    let database = database_in(dest);
    let ferry_dir = database
        .parent()
        .ok_or_else(|| BackupError::Destination {
            path: dest.to_path_buf(),
            reason: "has no parent".into(),
        })?
        .to_path_buf();
    std::fs::create_dir_all(&ferry_dir).map_err(io_at(&ferry_dir))?;
    let Some(_exclusive) =
        crate::metadata::locks::flock(&ferry_dir.join("backup.lock"), false).await?
    else {
        return Err(BackupError::Busy(dest.to_path_buf()));
    };
    let mut report = Report {
        destination: dest.display().to_string(),
        ..Report::default()
    };

    // 1. No blob the snapshot names goes until it is copied.
    let collector = match metadata.try_lock(LockKey::Collector).await? {
        Some(guard) => guard,
        None => {
            progress("waiting for the garbage collection in progress to finish");
            metadata.lock(LockKey::Collector).await?
        }
    };

    // 2. The snapshot, under a temporary name until the blobs are there.
    progress("snapshot: copying the metadata");
    let mut snapshot_name = database.as_os_str().to_owned();
    snapshot_name.push(".backup-tmp");
    let snapshot = PathBuf::from(snapshot_name);
    let contents = metadata.snapshot_into(&snapshot).await?;
    report.repositories = contents.repositories;
    report.manifests = contents.manifests;
    report.tags = contents.tags;
    report.blobs = contents.blobs.len() as u64;
    report.bytes = contents.blobs.iter().map(|(_, size)| size).sum();
    progress(&format!(
        "snapshot: {} repositories, {} manifests, {} tags, {} blobs ({:.1} MiB)",
        report.repositories,
        report.manifests,
        report.tags,
        report.blobs,
        report.bytes as f64 / MIB
    ));

    // 3. The store's id, then the blobs.
    let store_id = storage
        .read_store_id()
        .await?
        .ok_or_else(|| BackupError::Destination {
            path: dest.to_path_buf(),
            reason: format!("the store {} has no id yet", storage.describe()),
        })?;
    report.store_id = store_id.clone();
    match source {
        Source::Files(root) => {
            let marker = layout::store_id(dest);
            let id_line = format!("{store_id}\n");
            blocking(move || {
                files::write_atomically(&marker, id_line.as_bytes()).map_err(io_at(&marker))
            })
            .await?;
            let placed = copy_blobs(root, dest, &contents, options, &mut report, progress).await?;
            drop(collector);
            if options.verify {
                verify(dest, placed, &mut report, progress).await?;
            }
        }
        Source::Objects => {
            list_objects(storage, dest, &contents, options, &mut report, progress).await?;
            drop(collector);
        }
    }
    if !report.complete() {
        // The previous backup (if any) stays as it was; the snapshot is not put in place.
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    // 4. The snapshot takes its place, last.
    let (from, to) = (snapshot.clone(), database.clone());
    blocking(move || {
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut stale = to.as_os_str().to_owned();
            stale.push(suffix);
            let stale = PathBuf::from(stale);
            files::remove_file_if_present(&stale).map_err(io_at(&stale))?;
        }
        std::fs::rename(&from, &to).map_err(io_at(&to))?;
        let dir = to.parent().unwrap_or(Path::new("."));
        files::sync_dir(dir).map_err(io_at(dir))
    })
    .await?;
    progress(&format!("metadata: {}", database.display()));

    // 5. What the new snapshot no longer records.
    if options.prune && matches!(source, Source::Files(_)) {
        prune(dest, &contents, &mut report, progress).await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Copies (or links) every blob of the snapshot that the destination lacks; returns the
/// ones placed, for `--verify`.
async fn copy_blobs(
    root: &Path,
    dest: &Path,
    contents: &SnapshotContents,
    options: &Options,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Digest>, BackupError> {
    progress(&format!(
        "blobs: {} to check into {}",
        contents.blobs.len(),
        layout::v2_root(dest).join("blobs").display()
    ));
    let started = Instant::now();
    let mut last = Instant::now();
    let mut placed = Vec::new();
    let total = contents.blobs.len();
    // A few at a time: a small blob costs two fsyncs, which overlap well.
    let jobs = contents.blobs.iter().map(|(digest, size)| {
        let (from, to, size, link) = (
            layout::blob_data(root, digest),
            layout::blob_data(dest, digest),
            *size,
            options.link,
        );
        let digest = digest.clone();
        async move {
            let outcome = blocking(move || place_blob(&from, &to, size, link)).await;
            (digest, size, outcome)
        }
    });
    let mut results = futures_util::stream::iter(jobs).buffer_unordered(PARALLEL_COPIES);
    let mut done = 0;
    while let Some((digest, size, outcome)) = results.next().await {
        match outcome? {
            Outcome::Present => {
                report.skipped += 1;
                report.skipped_bytes += size;
            }
            Outcome::Missing => report.missing.push(digest.to_string()),
            Outcome::Placed(Placed::Copied) => {
                report.copied += 1;
                report.copied_bytes += size;
                placed.push(digest);
            }
            Outcome::Placed(Placed::Linked) => {
                report.linked += 1;
                report.linked_bytes += size;
                placed.push(digest);
            }
        }
        done += 1;
        // About once a second, and early on (after 16, 32, 64... blobs) for quick feedback.
        let early = done >= 16 && u64::is_power_of_two(done);
        if last.elapsed().as_secs() >= 1 || early || done as usize == total {
            last = Instant::now();
            let moved = report.copied_bytes + report.linked_bytes;
            progress(&format!(
                "blobs: {done}/{total}, copied {}, linked {}, skipped {}, {:.1} MiB at {:.1} MiB/s, {:.1}s",
                report.copied,
                report.linked,
                report.skipped,
                moved as f64 / MIB,
                moved as f64 / MIB / started.elapsed().as_secs_f64().max(0.001),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    report.missing.sort();
    Ok(placed)
}

/// Blobs copied at once.
const PARALLEL_COPIES: usize = 4;

/// What became of one blob of the snapshot.
enum Outcome {
    /// The destination has it, with its size.
    Present,
    /// The store does not have it.
    Missing,
    /// Copied or linked.
    Placed(Placed),
}

/// Places the blob file `from` at `to` unless a file of `size` bytes is there (blocking).
fn place_blob(from: &Path, to: &Path, size: u64, link: bool) -> Result<Outcome, BackupError> {
    if files::size_of(to).map_err(io_at(to))? == Some(size) {
        return Ok(Outcome::Present);
    }
    match files::place(from, to, link) {
        Ok(how) => Ok(Outcome::Placed(how)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => {
            Ok(Outcome::Missing)
        }
        Err(e) => Err(io_at(to)(e)),
    }
}

/// Re-hashes the blobs placed in the destination.
async fn verify(
    dest: &Path,
    placed: Vec<Digest>,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BackupError> {
    progress(&format!("verify: re-hashing {} blobs", placed.len()));
    for digest in placed {
        let path = layout::blob_data(dest, &digest);
        let algorithm = digest.algorithm();
        let hashed =
            blocking(move || files::hash_file(&path, algorithm).map_err(io_at(&path))).await?;
        report.verified += 1;
        if hashed != digest {
            report.corrupt.push(digest.to_string());
        }
    }
    Ok(())
}

/// Removes the blob directories of `dest` that the snapshot does not record.
async fn prune(
    dest: &Path,
    contents: &SnapshotContents,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BackupError> {
    let keep: HashSet<Digest> = contents.blobs.iter().map(|(d, _)| d.clone()).collect();
    let root = dest.to_path_buf();
    let (pruned, bytes) = blocking(move || {
        let (mut pruned, mut bytes) = (0u64, 0u64);
        for found in files::blob_dirs(&root).map_err(io_at(&root))? {
            if found.digest.as_ref().is_some_and(|d| keep.contains(d)) {
                let leftover = found.dir.join(files::TMP_NAME);
                files::remove_file_if_present(&leftover).map_err(io_at(&leftover))?;
                continue;
            }
            std::fs::remove_dir_all(&found.dir).map_err(io_at(&found.dir))?;
            pruned += 1;
            bytes += found.bytes;
        }
        Ok((pruned, bytes))
    })
    .await?;
    report.pruned = pruned;
    report.pruned_bytes = bytes;
    crate::storage::filesystem::FilesystemStore::new(dest)
        .prune_empty_directories(std::time::Duration::ZERO)
        .await?;
    progress(&format!(
        "prune: removed {pruned} blobs ({:.1} MiB) the snapshot does not record",
        bytes as f64 / MIB
    ));
    Ok(())
}

/// Object storage: checks each blob is there (`--verify`: with its size) and writes the
/// list of their locations beside the snapshot.
async fn list_objects(
    storage: &dyn BlobStore,
    dest: &Path,
    contents: &SnapshotContents,
    options: &Options,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BackupError> {
    let mut list = String::new();
    for (digest, size) in &contents.blobs {
        if options.verify {
            if storage.stat(digest).await? != Some(*size) {
                report.missing.push(digest.to_string());
                continue;
            }
            report.verified += 1;
        }
        list.push_str(&format!(
            "{}\t{digest}\t{size}\n",
            storage.blob_location(digest)
        ));
    }
    let path = object_list_in(dest);
    report.object_list = Some(path.display().to_string());
    let shown = path.clone();
    blocking(move || files::write_atomically(&path, list.as_bytes()).map_err(io_at(&path))).await?;
    progress(&format!(
        "objects: {} blob objects listed in {}",
        contents.blobs.len(),
        shown.display()
    ));
    Ok(())
}
