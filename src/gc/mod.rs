//! The garbage collector behind `ferry-gc`: gives disk space back after deletes, safely
//! while the server runs on the same data.
//!
//! Phases: **mark** (a consistent metadata snapshot → [`plan::plan`]), then **sweep**:
//! manifests (with `--delete-untagged`), repository links, blobs (row, then bytes, holding
//! the digest's lock), blob files no metadata knows (crash leftovers), abandoned uploads,
//! empty repositories. One collection runs at a time ([`LockKey::Collector`]). Every deletion re-checks inside its own transaction that the thing
//! is still garbage, and nothing used within the grace window is touched, so a push racing
//! the collector keeps its blobs. See ARCHITECTURE.md for the full argument.

pub mod cli;
pub mod plan;
pub mod report;
pub mod textfile;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use crate::metadata::collector::CollectorMetadata;
use crate::metadata::{LockKey, MetadataError, now};
use crate::oci::{Digest, RepositoryName};
use crate::registry::{Registry, RegistryError};
use crate::storage::{BlobStore, StorageError};
pub use report::Report;

/// How a collection runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Also remove manifests no tag reaches.
    pub delete_untagged: bool,
    /// Nothing used more recently than this is collected.
    pub grace: Duration,
    /// Upload sessions older than this are abandoned (`uploadpurging.age`).
    pub upload_age: Duration,
}

/// Why a collection failed (it can simply be run again).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Metadata failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Another collection, a backup (which holds the collector off while it copies) or an
    /// import is running on the same metadata.
    #[error(
        "another garbage collection, a backup (ferry backup) or an import (ferry import) is running on this registry; try again when it has finished"
    )]
    Busy,
    /// The store holds registry:2 data that was never imported: all of it would look like
    /// garbage.
    #[error(
        "the storage holds registry:2 (Distribution) repositories that were never imported into Ferry's metadata; collecting now would delete their blobs. Run `ferry import` (or start the server with database.autoimport on) first"
    )]
    NotImported,
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Runs one collection. `progress` receives one line per phase.
pub async fn collect(
    metadata: &dyn CollectorMetadata,
    registry: &Registry,
    options: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, GcError> {
    let started = Instant::now();
    let storage: &dyn BlobStore = registry.storage().as_ref();
    let cutoff = now().saturating_sub(seconds(options.grace));
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };

    let Some(_collector) = metadata.try_lock(LockKey::Collector).await? else {
        return Err(GcError::Busy);
    };
    match crate::import::pending(registry.metadata().as_ref(), storage).await {
        Ok(false) => {}
        Ok(true) => return Err(GcError::NotImported),
        Err(crate::import::ImportError::Metadata(e)) => return Err(e.into()),
        Err(crate::import::ImportError::Storage(e)) => return Err(e.into()),
    }
    // The mirror's cached manifests whose TTL passed go first (like a client's DELETE);
    // what they referenced is then ordinary garbage for the plan below.
    let expired = metadata
        .expire_cached_manifests(now(), options.dry_run)
        .await?;
    if !expired.is_empty() {
        progress(&format!(
            "expire: {} cached manifests not pulled within their proxy.ttl",
            expired.len()
        ));
    }
    report.expired = expired
        .iter()
        .map(|(repository, digest)| format!("{repository}@{digest}"))
        .collect();
    report.expired_removed = report.expired.len();
    progress("mark: reading metadata");
    let snapshot = metadata.snapshot().await?;
    let plan = plan::plan(&snapshot, options.delete_untagged, cutoff);
    // What only the grace window keeps: the difference to a plan without one, so the
    // summary can say why a collection right after a delete frees nothing.
    let collected: std::collections::HashSet<&str> =
        plan.blobs.iter().map(|(d, _)| d.as_str()).collect();
    for (digest, size) in plan::plan(&snapshot, options.delete_untagged, i64::MAX).blobs {
        if !collected.contains(digest.as_str()) {
            report.grace_kept_blobs += 1;
            report.grace_kept_bytes += size;
        }
    }
    report.grace = humantime::format_duration(options.grace).to_string();
    let names: std::collections::HashMap<i64, &str> = snapshot
        .repositories
        .iter()
        .map(|(id, name)| (*id, name.as_str()))
        .collect();
    progress(&format!(
        "mark: {} repositories, {} manifests, {} blobs; garbage: {} manifests, {} links, {} blobs",
        snapshot.repositories.len(),
        snapshot.manifests.len(),
        snapshot.blobs.len(),
        plan.manifests.len(),
        plan.links.len(),
        plan.blobs.len()
    ));

    progress("sweep: manifests");
    if options.dry_run {
        report.manifests = plan
            .manifests
            .iter()
            .map(|(r, d, _)| format!("{}@{d}", names.get(r).unwrap_or(&"?")))
            .collect();
    } else {
        // Parents before children: a child still listed by a remaining index is refused by
        // the re-check, so repeat while something goes.
        let mut pending: Vec<&(i64, String, u64)> = plan.manifests.iter().collect();
        loop {
            let before = pending.len();
            let mut still = Vec::new();
            for item in pending {
                let (repository, digest, _) = item;
                if metadata
                    .delete_manifest_if_unreachable(*repository, digest, cutoff)
                    .await?
                {
                    report.manifests.push(format!(
                        "{}@{digest}",
                        names.get(repository).unwrap_or(&"?")
                    ));
                } else {
                    still.push(item);
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
    }
    report.manifests_removed = report.manifests.len();

    progress("sweep: repository links");
    if options.dry_run {
        report.links_removed = plan.links.len();
    } else {
        for (repository, digest) in &plan.links {
            if metadata
                .delete_link_if_unreferenced(*repository, digest, cutoff)
                .await?
            {
                report.links_removed += 1;
            }
        }
    }

    progress("sweep: blobs");
    for (digest, size) in &plan.blobs {
        let Ok(parsed) = digest.parse::<Digest>() else {
            continue;
        };
        let removed = if options.dry_run {
            Some(*size)
        } else {
            // Row, then bytes, holding the digest's lock: an upload of the same digest
            // waits, then finds the bytes gone and places them again before its row.
            let _blob = metadata.lock(LockKey::Blob(parsed.clone())).await?;
            let removed = metadata.delete_blob_if_garbage(&parsed, cutoff).await?;
            if removed.is_some() {
                storage.delete(&parsed).await?;
            }
            removed
        };
        if let Some(size) = removed {
            report.blobs_removed += 1;
            report.bytes_reclaimed += size;
            report.blobs.push(digest.clone());
        }
    }

    progress("sweep: blob files unknown to metadata");
    let known: HashSet<&str> = snapshot.blobs.iter().map(|b| b.digest.as_str()).collect();
    let old_file = SystemTime::now() - options.grace;
    for file in storage.list_blobs().await? {
        let digest = file.digest.to_string();
        if known.contains(digest.as_str()) || file.modified > old_file {
            continue;
        }
        let removed = if options.dry_run {
            metadata.blob_size(&file.digest).await?.is_none()
        } else {
            // Re-checked under the digest's lock: it may have been recorded since the
            // snapshot, and no upload can record it while the bytes go.
            let _blob = metadata.lock(LockKey::Blob(file.digest.clone())).await?;
            let unknown = metadata.blob_size(&file.digest).await?.is_none();
            if unknown {
                storage.delete(&file.digest).await?;
            }
            unknown
        };
        if !removed {
            continue;
        }
        report.orphan_files_removed += 1;
        report.bytes_reclaimed += file.size;
        report.blobs.push(digest);
    }

    progress("sweep: abandoned uploads");
    let upload_age = seconds(options.upload_age);
    let stale = metadata
        .stale_uploads(now().saturating_sub(upload_age))
        .await?;
    report.uploads_removed = if options.dry_run {
        stale.len()
    } else {
        registry.purge_uploads(upload_age).await?
    };
    let old_upload = SystemTime::now() - options.upload_age;
    for staged in storage.list_uploads().await? {
        if staged.modified > old_upload || metadata.upload(&staged.key.id).await?.is_some() {
            continue;
        }
        if !options.dry_run {
            storage.upload_abort(&staged.key).await?;
        }
        report.uploads_removed += 1;
    }

    progress("sweep: empty repositories");
    for (id, name) in &plan.repositories {
        let removed = if options.dry_run {
            true
        } else {
            let _repository = match RepositoryName::parse(name) {
                Ok(parsed) => Some(metadata.lock(LockKey::Repository(parsed)).await?),
                Err(_) => None,
            };
            metadata.delete_repository_if_empty(*id).await?
        };
        if removed {
            report.repositories.push(name.clone());
        }
    }
    report.repositories_removed = report.repositories.len();
    if !options.dry_run {
        // Only directories emptied before the grace window; the server also re-creates a
        // directory that vanishes under it.
        storage.prune_empty_directories(options.grace).await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
