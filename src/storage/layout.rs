//! Distribution's on-disk layout (`registry/storage/paths.go`), shared by Ferry so that a
//! `registry:2` data directory and Ferry's are interchangeable:
//!
//! ```text
//! <root>/docker/registry/v2/blobs/<alg>/<first two hex>/<hex>/data
//! <root>/docker/registry/v2/repositories/<name>/_uploads/<uuid>/data
//! ```

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::oci::{Digest, RepositoryName};

/// `<root>/docker/registry/v2`.
pub fn v2_root(root: &Path) -> PathBuf {
    root.join("docker").join("registry").join("v2")
}

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
