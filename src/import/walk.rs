//! Reading Distribution's repositories tree (`registry/storage/paths.go`) through the blob
//! store, so the same walk reads a data directory and an S3 bucket:
//! `repositories/<name>/_layers/<alg>/<hex>/link`,
//! `repositories/<name>/_manifests/revisions/<alg>/<hex>/link`,
//! `repositories/<name>/_manifests/tags/<tag>/current/link`.
//! A link file holds `<alg>:<hex>` with no newline. A layer or revision is named by its
//! link's path (a deleted one has no `link`), so only tags' links are read (on S3: one
//! request per tag, a few at a time).

use std::ops::ControlFlow;

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::oci::Digest;
use crate::storage::{BlobStore, StorageError};

/// How many tag links are read at once.
const TAG_READS: usize = 8;

/// Calls `visit` with the name of every directory below `repositories/` that holds
/// `_manifests` (a repository), depth first in name order, skipping `_`-prefixed components
/// as Distribution's catalog does; stops early when `visit` says so.
pub async fn visit_repositories(
    store: &dyn BlobStore,
    visit: &mut (dyn FnMut(&str) -> ControlFlow<()> + Send),
) -> Result<(), StorageError> {
    // Directories still to read, the next one last.
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let entries = store.tree_entries(&dir).await?;
        if !dir.is_empty()
            && entries.dirs.iter().any(|d| d == "_manifests")
            && visit(&dir).is_break()
        {
            return Ok(());
        }
        for child in entries.dirs.iter().rev() {
            if !child.starts_with('_') {
                pending.push(if dir.is_empty() {
                    child.clone()
                } else {
                    format!("{dir}/{child}")
                });
            }
        }
    }
    Ok(())
}

/// Every repository of the tree, in the order [`visit_repositories`] finds them.
pub async fn repositories(store: &dyn BlobStore) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    visit_repositories(store, &mut |name| {
        out.push(name.to_string());
        ControlFlow::Continue(())
    })
    .await?;
    Ok(out)
}

/// Whether the tree holds at least one repository (stops at the first).
pub async fn has_repositories(store: &dyn BlobStore) -> Result<bool, StorageError> {
    let mut found = false;
    visit_repositories(store, &mut |_| {
        found = true;
        ControlFlow::Break(())
    })
    .await?;
    Ok(found)
}

/// The digests of `<dir>/<alg>/<hex>/link` entries: a repository's `_layers` or
/// `_manifests/revisions`.
pub async fn link_digests(store: &dyn BlobStore, dir: &str) -> Result<Vec<Digest>, StorageError> {
    Ok(store
        .tree_files(dir)
        .await?
        .iter()
        .filter_map(|path| digest_of_link_path(path))
        .collect())
}

/// `<alg>/<hex>/link` → `<alg>:<hex>`; `None` for anything else.
fn digest_of_link_path(path: &str) -> Option<Digest> {
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(alg), Some(hex), Some("link"), None) => format!("{alg}:{hex}").parse().ok(),
        _ => None,
    }
}

/// `(tag, digest)` of every `<dir>/<tag>/current/link` (`dir`: a repository's
/// `_manifests/tags`), in tag order; tags whose link is missing or malformed are left out.
pub async fn tags(store: &dyn BlobStore, dir: &str) -> Result<Vec<(String, Digest)>, StorageError> {
    let names = store.tree_entries(dir).await?.dirs;
    stream::iter(names)
        .map(|tag| async move {
            let link = store
                .tree_read(&format!("{dir}/{tag}/current/link"))
                .await?;
            Ok::<_, StorageError>(link.and_then(|bytes| parse_link(&bytes)).map(|d| (tag, d)))
        })
        .buffered(TAG_READS)
        .try_filter_map(|found| std::future::ready(Ok(found)))
        .try_collect()
        .await
}

/// The digest in a link file's bytes.
fn parse_link(bytes: &[u8]) -> Option<Digest> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_paths_name_digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            digest_of_link_path(&format!("sha256/{hex}/link")).map(|d| d.to_string()),
            Some(format!("sha256:{hex}"))
        );
        for other in [
            format!("sha256/{hex}/data"),
            format!("sha256/{hex}"),
            format!("sha256/{hex}/link/x"),
            "sha256/nothex/link".to_string(),
        ] {
            assert_eq!(digest_of_link_path(&other), None, "{other}");
        }
        assert!(parse_link(format!("sha256:{hex}\n").as_bytes()).is_some());
        assert!(parse_link(b"\xff").is_none());
    }
}
