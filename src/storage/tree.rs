//! Distribution's repositories tree (`docker/registry/v2/repositories/`), as `ferry import`
//! reads it, the same way on every store: a directory's entries one level at a time, all
//! files below a directory at once, a small file (a link) whole. Paths are `/`-separated and
//! relative to `repositories/` (`""` is its top).

/// What is directly below a directory of the tree: names, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeEntries {
    /// Sub-directories (on S3: common prefixes).
    pub dirs: Vec<String>,
    /// Files (on S3: objects).
    pub files: Vec<String>,
}

/// The largest tree file [`crate::storage::BlobStore::tree_read`] returns: a link holds
/// `<algorithm>:<hex>`, well below this.
pub const MAX_TREE_FILE: u64 = 4096;

/// `repositories/<path>` below the store's `docker/registry/v2` prefix (`v2`), as an
/// object key or a path string: no leading or trailing `/`, no empty component.
pub fn key(v2: &str, path: &str) -> String {
    let mut out = format!("{}/repositories", v2.trim_end_matches('/'));
    for component in path.split('/').filter(|c| !c.is_empty()) {
        out.push('/');
        out.push_str(component);
    }
    out.trim_start_matches('/').to_string()
}

/// Whether `path` may be walked: no `.` or `..` component (a listing never yields them; a
/// store whose keys do is not followed out of the tree).
pub fn is_safe(path: &str) -> bool {
    path.split('/').all(|c| c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_below_the_prefix() {
        assert_eq!(
            key("docker/registry/v2", ""),
            "docker/registry/v2/repositories"
        );
        assert_eq!(
            key("r/docker/registry/v2", "a/b/_layers"),
            "r/docker/registry/v2/repositories/a/b/_layers"
        );
        assert_eq!(key("/x/", "/a//b/"), "x/repositories/a/b");
        assert!(is_safe("a/b/_manifests"));
        assert!(!is_safe("a/../b"));
        assert!(!is_safe("./a"));
    }
}
