//! The file operations of a backup (blocking; run on blocking threads): a blob placed
//! under its final name only whole and durable (written or linked under a temporary name,
//! fsynced, renamed, the directory fsynced), re-hashing, and the walk of a destination's
//! blob directories.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::oci::{Algorithm, Digest, Hasher};
use crate::storage::layout;

/// Name of a blob being placed, beside its `data`: the same for every attempt, so a rerun
/// after a kill replaces what an interrupted one left.
pub const TMP_NAME: &str = "data.backup-tmp";

/// How a blob got into the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Its bytes were copied.
    Copied,
    /// It was hard-linked to the source's file (same filesystem, `--link`).
    Linked,
}

/// Removes `path`; absent is fine.
pub fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// fsyncs a directory, so entries created or renamed in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Puts `src` at `dest`: hard-linked when `link` and the filesystem allows it, else
/// copied and fsynced; under [`TMP_NAME`] first, then renamed, so `dest` is never partial.
/// `NotFound` when `src` does not exist.
pub fn place(src: &Path, dest: &Path, link: bool) -> io::Result<Placed> {
    let dir = dest
        .parent()
        .ok_or_else(|| io::Error::other("blob path has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(TMP_NAME);
    remove_file_if_present(&tmp)?;
    let linked = link
        && match fs::hard_link(src, &tmp) {
            Ok(()) => true,
            // Another filesystem, or one without hard links: copy instead.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::CrossesDevices
                        | ErrorKind::Unsupported
                        | ErrorKind::PermissionDenied
                ) =>
            {
                false
            }
            Err(e) => return Err(e),
        };
    if !linked {
        fs::copy(src, &tmp)?;
        fs::OpenOptions::new().write(true).open(&tmp)?.sync_all()?;
    }
    fs::rename(&tmp, dest)?;
    // Renaming one link of an inode over another of the same inode does nothing.
    remove_file_if_present(&tmp)?;
    sync_dir(dir)?;
    Ok(if linked {
        Placed::Linked
    } else {
        Placed::Copied
    })
}

/// Writes `bytes` to `path` whole: a temporary file, fsynced, renamed, directory fsynced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    fs::write(&tmp, bytes)?;
    fs::OpenOptions::new().write(true).open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// The digest of the file at `path`, with `algorithm`.
pub fn hash_file(path: &Path, algorithm: Algorithm) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new(algorithm);
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..n]);
    }
}

/// Size of the regular file at `path`, `None` when absent.
pub fn size_of(path: &Path) -> io::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A blob directory found in a destination: `blobs/<alg>/<xx>/<dir name>`.
#[derive(Debug)]
pub struct BlobDir {
    /// The digest its path names (`None`: not a digest, e.g. a stray directory).
    pub digest: Option<Digest>,
    /// The directory.
    pub dir: PathBuf,
    /// Bytes of the files in it.
    pub bytes: u64,
}

/// Every blob directory under `root`'s `blobs/` tree.
pub fn blob_dirs(root: &Path) -> io::Result<Vec<BlobDir>> {
    let mut out = Vec::new();
    for alg in layout::sorted_entries(&layout::v2_root(root).join("blobs"))? {
        for prefix in layout::sorted_entries(&alg.path())? {
            for blob in layout::sorted_entries(&prefix.path())? {
                let digest = format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    blob.file_name().to_string_lossy()
                )
                .parse::<Digest>()
                .ok();
                let mut bytes = 0;
                for file in layout::sorted_entries(&blob.path())? {
                    bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
                }
                out.push(BlobDir {
                    digest,
                    dir: blob.path(),
                    bytes,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_copies_or_links_whole_files_and_replaces_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"bytes").unwrap();
        let dest = dir.path().join("a/b/data");
        // A leftover of an interrupted run is replaced, not appended to.
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(dest.with_file_name(TMP_NAME), b"half").unwrap();
        assert_eq!(place(&src, &dest, false).unwrap(), Placed::Copied);
        assert_eq!(fs::read(&dest).unwrap(), b"bytes");
        assert!(!dest.with_file_name(TMP_NAME).exists());
        let linked = dir.path().join("c/data");
        assert_eq!(place(&src, &linked, true).unwrap(), Placed::Linked);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(&linked).unwrap().ino(),
            fs::metadata(&src).unwrap().ino()
        );
        let missing = place(&dir.path().join("nope"), &dest, false).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert_eq!(
            hash_file(&dest, Algorithm::Sha256).unwrap(),
            Digest::of(Algorithm::Sha256, b"bytes")
        );
    }
}
