//! Distribution's on-disk layout (`registry/storage/paths.go`), shared by Ferry so that a
//! `registry:2` data directory and Ferry's are interchangeable:
//!
//! ```text
//! <root>/docker/registry/v2/blobs/<alg>/<first two hex>/<hex>/data
//! <root>/docker/registry/v2/repositories/<name>/_uploads/<uuid>/data
//! <root>/docker/registry/v2/ferry-store-id
//! ```
//!
//! `ferry-store-id` is Ferry's own: the store's identity (see `server::identity`), beside
//! `blobs/` and `repositories/`, where neither Distribution nor Ferry's walks of those trees
//! (the catalog, `ferry import`, the collector) look.

use std::fs::DirEntry;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::oci::{Digest, RepositoryName};

/// `<root>/docker/registry/v2`.
pub fn v2_root(root: &Path) -> PathBuf {
    root.join("docker").join("registry").join("v2")
}

/// The store's identity marker: `<root>/docker/registry/v2/ferry-store-id`.
pub fn store_id(root: &Path) -> PathBuf {
    v2_root(root).join(STORE_ID_FILE)
}

/// File name of the store's identity marker, below `docker/registry/v2`.
pub const STORE_ID_FILE: &str = "ferry-store-id";

/// Directory of a committed blob: `blobs/<alg>/<hex[..2]>/<hex>`.
pub fn blob_dir(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    v2_root(root)
        .join("blobs")
        .join(digest.algorithm().as_str())
        .join(&hex[..2])
        .join(hex)
}

/// The committed blob's bytes: `blobs/<alg>/<hex[..2]>/<hex>/data`.
pub fn blob_data(root: &Path, digest: &Digest) -> PathBuf {
    blob_dir(root, digest).join("data")
}

/// `repositories/<name>` (nested names are nested directories).
pub fn repository_dir(root: &Path, repository: &RepositoryName) -> PathBuf {
    let mut path = v2_root(root).join("repositories");
    path.extend(repository.as_str().split('/'));
    path
}

/// `repositories/<name>/_uploads/<uuid>`.
pub fn upload_dir(root: &Path, repository: &RepositoryName, id: &Uuid) -> PathBuf {
    repository_dir(root, repository)
        .join("_uploads")
        .join(id.to_string())
}

/// Entries of a directory, sorted by name; a missing directory has none.
pub fn sorted_entries(dir: &Path) -> io::Result<Vec<DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(read) => {
            let mut entries: Vec<DirEntry> = read.collect::<Result<_, _>>()?;
            entries.sort_by_key(DirEntry::file_name);
            Ok(entries)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Called with a repository-name candidate, its directory and the directory's entries.
pub type RepositoryVisitor<'a> = dyn FnMut(&str, &Path, &[DirEntry]) -> io::Result<()> + 'a;

/// Visits every directory below `repositories/` whose path can be a repository name (no
/// component starts with `_`, as Distribution's catalog walk), with that name and the
/// directory's entries. Directories that vanish during the walk are skipped.
pub fn visit_repository_tree(root: &Path, visit: &mut RepositoryVisitor<'_>) -> io::Result<()> {
    fn walk(dir: &Path, name: &str, visit: &mut RepositoryVisitor<'_>) -> io::Result<()> {
        let children = sorted_entries(dir)?;
        if !name.is_empty() {
            visit(name, dir, &children)?;
        }
        for entry in &children {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('_') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let child = if name.is_empty() {
                file_name
            } else {
                format!("{name}/{file_name}")
            };
            walk(&entry.path(), &child, visit)?;
        }
        Ok(())
    }
    walk(&v2_root(root).join("repositories"), "", visit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_distribution() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(
            blob_data(Path::new("/r"), &d),
            Path::new(
                "/r/docker/registry/v2/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
            )
        );
        let repo = RepositoryName::parse("team/app").unwrap();
        let id = Uuid::nil();
        assert_eq!(
            upload_dir(Path::new("/r"), &repo, &id),
            Path::new(
                "/r/docker/registry/v2/repositories/team/app/_uploads/00000000-0000-0000-0000-000000000000"
            )
        );
    }
}
