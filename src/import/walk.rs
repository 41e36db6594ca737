//! Reading Distribution's repositories tree (`registry/storage/paths.go`):
//! `repositories/<name>/_layers/<alg>/<hex>/link`,
//! `repositories/<name>/_manifests/revisions/<alg>/<hex>/link`,
//! `repositories/<name>/_manifests/tags/<tag>/current/link`.
//! A link file holds `<alg>:<hex>` with no newline.

use std::io;
use std::path::{Path, PathBuf};

use crate::oci::Digest;
use crate::storage::layout::{self, sorted_entries as entries};

/// A repository directory of a Distribution tree.
#[derive(Clone, Debug)]
pub struct DistributionRepository {
    /// Its name (the path below `repositories/`).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
}

/// Every directory holding `_manifests` below `<root>/docker/registry/v2/repositories`,
/// skipping `_`-prefixed components as Distribution's catalog does.
pub fn repositories(root: &Path) -> io::Result<Vec<DistributionRepository>> {
    let mut out = Vec::new();
    layout::visit_repository_tree(root, &mut |name, dir, children| {
        if children.iter().any(|e| e.file_name() == "_manifests") {
            out.push(DistributionRepository {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// The digest in a link file; `None` when absent or malformed.
pub fn read_link(path: &Path) -> Option<Digest> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Digests of `<dir>/<alg>/<hex>/link` entries (a missing `link` means deleted).
pub fn link_digests(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in entries(dir)? {
        for hex in entries(&alg.path())? {
            if let Some(digest) = read_link(&hex.path().join("link")) {
                out.push(digest);
            }
        }
    }
    Ok(out)
}

/// `(tag, digest)` of every `tags/<tag>/current/link`.
pub fn tags(dir: &Path) -> io::Result<Vec<(String, Digest)>> {
    let mut out = Vec::new();
    for tag in entries(dir)? {
        if let Some(digest) = read_link(&tag.path().join("current").join("link")) {
            out.push((tag.file_name().to_string_lossy().into_owned(), digest));
        }
    }
    Ok(out)
}
