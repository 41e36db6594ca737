//! The filesystem blob store: Distribution's layout under a root directory. Uploads are
//! appended to a staging file, fsynced and renamed into place on commit, so a blob file
//! under `blobs/` is always complete.

use std::io::{self, ErrorKind, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::append::Appender;
use super::tree::{self, MAX_TREE_FILE, TreeEntries};
use super::{BlobStore, ByteStream, StagedUpload, StorageError, StoredBlob, UploadKey, layout};
use crate::oci::{Digest, RepositoryName};

/// Writes are gathered into pieces of this size (at most) before reaching the file.
const WRITE_BUFFER: usize = 1024 * 1024;
/// Bytes queued for the writer thread at most, besides the piece it writes (bounds the
/// store's memory per upload, with [`WRITE_BUFFER`]).
const WRITE_AHEAD: usize = 2 * WRITE_BUFFER;
/// Reads are served in chunks of this size (at most).
const READ_CHUNK: usize = 1024 * 1024;
/// Bytes read ahead at most (bounds memory per download).
const READ_AHEAD: usize = 4 * READ_CHUNK;

/// TEST ONLY, not a setting: `FERRY_TEST_WRITE_DELAY_MS=<n>` makes the upload writer thread
/// sleep `n` milliseconds before each write, as a slow disk would, so `tests/memory.rs` can
/// check that memory stays bounded while the writer lags. Unset (the only sane production
/// value), it costs one cached lookup per upload.
fn test_write_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("FERRY_TEST_WRITE_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    })
}

/// Blob store over a local directory.
#[derive(Clone, Debug)]
pub struct FilesystemStore {
    root: PathBuf,
}

impl FilesystemStore {
    /// A store rooted at `root` (`storage.filesystem.rootdirectory`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FilesystemStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn staging_file(&self, key: &UploadKey) -> PathBuf {
        layout::upload_dir(&self.root, &key.repository, &key.id).join("data")
    }
}

fn not_found_as_none<T>(result: io::Result<T>) -> Result<Option<T>, StorageError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// fsync a directory so a rename or create inside it survives a power loss.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it and renames it over `path`.
async fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let mut file = in_dir(dir, || File::create(&tmp)).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    fs::rename(&tmp, path).await?;
    sync_dir(dir).await
}

/// Runs `op`, which creates an entry in `dir`, after making sure `dir` exists; again if
/// `dir` vanished in between (the collector removes empty directories).
async fn in_dir<T, F, Fut>(dir: &Path, mut op: F) -> io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Creating the directory can itself fail if a parent is pruned half-way.
        let result = match fs::create_dir_all(dir).await {
            Ok(()) => op().await,
            Err(e) => Err(e),
        };
        match result {
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && attempts < 5
                    && !fs::try_exists(dir).await.unwrap_or(true) => {}
            other => return other,
        }
    }
}

/// Opens a staging file for appending at `offset` (the appender writes at positions, not
/// at the file's cursor), cutting off bytes of an interrupted request beyond it.
fn open_staging_at(path: &Path, offset: u64) -> Result<std::fs::File, StorageError> {
    let file = not_found_as_none(std::fs::OpenOptions::new().write(true).open(path))?
        .ok_or(StorageError::NotFound)?;
    let staged = file.metadata()?.len();
    if staged < offset {
        return Err(StorageError::StagingShort {
            expected: offset,
            actual: staged,
        });
    }
    if staged > offset {
        file.set_len(offset)?;
    }
    Ok(file)
}

/// How a file's bytes reach the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadBy {
    /// Copied into buffers of our own: for files that may still change (staging).
    Copy,
    /// Chunks of at least [`MAP_MIN`] bytes mapped from the page cache, the rest copied: a
    /// pull then copies each byte once (page cache to socket) instead of twice, a quarter
    /// of the server's CPU per GiB pulled. Only for blob files in place, which are never
    /// written or truncated again (they are renamed in whole; the collector unlinks them,
    /// which leaves a mapping valid).
    Map,
}

/// Chunks at least this long are mapped rather than copied ([`ReadBy::Map`]): below it a
/// mapping's set-up and tear-down cost more than the copy.
const MAP_MIN: usize = 256 * 1024;

/// Streams bytes `start..start + len` of `file`: a blocking thread reads ahead in
/// [`READ_CHUNK`]s into a small queue, so disk reads overlap with sending.
fn stream_file(file: std::fs::File, start: u64, len: u64, by: ReadBy) -> ByteStream<'static> {
    let (queue, chunks) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD / READ_CHUNK);
    tokio::task::spawn_blocking(move || {
        // Mapped pages past the end of the file would fault: its length is checked once,
        // for a file that is shorter than recorded.
        let size = match by {
            ReadBy::Copy => u64::MAX,
            ReadBy::Map => match file.metadata() {
                Ok(meta) => meta.len(),
                Err(e) => {
                    let _ = queue.blocking_send(Err(e));
                    return;
                }
            },
        };
        let mut pos = start;
        let end = start.saturating_add(len);
        while pos < end {
            let want = (end - pos).min(READ_CHUNK as u64) as usize;
            let item = if by == ReadBy::Map && want >= MAP_MIN {
                map_chunk(&file, size, pos, want)
            } else {
                read_chunk(&file, pos, want)
            };
            if let Ok(chunk) = &item {
                pos += chunk.len() as u64;
            }
            let failed = item.is_err();
            if queue.blocking_send(item).is_err() || failed {
                return; // the client went away, or the read failed (already reported)
            }
        }
    });
    Box::pin(futures_util::stream::unfold(
        chunks,
        |mut chunks| async move { chunks.recv().await.map(|item| (item, chunks)) },
    ))
}

fn shorter_than_recorded() -> io::Error {
    io::Error::new(
        ErrorKind::UnexpectedEof,
        "blob file is shorter than recorded",
    )
}

/// Up to `want` bytes of `file` at `pos`, copied (at least one, or an error).
fn read_chunk(file: &std::fs::File, pos: u64, want: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buffer[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if filled == 0 {
        return Err(shorter_than_recorded());
    }
    buffer.truncate(filled);
    Ok(Bytes::from(buffer))
}

/// Bytes `pos..pos + want` of a blob file of `size` bytes, mapped (see [`ReadBy::Map`]).
fn map_chunk(file: &std::fs::File, size: u64, pos: u64, want: usize) -> io::Result<Bytes> {
    if pos.saturating_add(want as u64) > size {
        return Err(shorter_than_recorded());
    }
    // SAFETY: the mapping lies within the file, and a blob file in place is never written
    // or truncated (see `ReadBy::Map`), so its pages stay valid and unchanged while mapped.
    // Populated up front: one call fills the page tables instead of a fault per page.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(pos)
            .len(want)
            .populate()
            .map(file)?
    };
    Ok(Bytes::from_owner(map))
}

use layout::sorted_entries as entries;

/// Walks `blobs/<alg>/<xx>/<hex>/data`.
fn walk_blobs(root: &Path) -> io::Result<Vec<StoredBlob>> {
    let mut found = Vec::new();
    for alg in entries(&layout::v2_root(root).join("blobs"))? {
        for prefix in entries(&alg.path())? {
            for blob in entries(&prefix.path())? {
                let digest = format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    blob.file_name().to_string_lossy()
                );
                let Ok(digest) = digest.parse::<Digest>() else {
                    continue;
                };
                match std::fs::metadata(blob.path().join("data")) {
                    Ok(meta) => found.push(StoredBlob {
                        digest,
                        size: meta.len(),
                        modified: meta.modified()?,
                    }),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(found)
}

/// Walks `repositories/**/_uploads/<uuid>`.
fn walk_uploads(root: &Path) -> io::Result<Vec<StagedUpload>> {
    let mut found = Vec::new();
    layout::visit_repository_tree(root, &mut |name, dir, children| {
        if !children.iter().any(|e| e.file_name() == "_uploads") {
            return Ok(());
        }
        let Ok(repository) = RepositoryName::parse(name) else {
            return Ok(());
        };
        for upload in entries(&dir.join("_uploads"))? {
            let Ok(id) = uuid::Uuid::parse_str(&upload.file_name().to_string_lossy()) else {
                continue;
            };
            let modified = match upload.metadata() {
                Ok(meta) => meta.modified()?,
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // finished meanwhile
                Err(e) => return Err(e),
            };
            found.push(StagedUpload {
                key: UploadKey {
                    repository: repository.clone(),
                    id,
                },
                modified,
            });
        }
        Ok(())
    })?;
    Ok(found)
}

/// Removes empty directories below `dir` (not `dir` itself) last changed before
/// `changed_before`; returns whether `dir` is empty.
fn prune(dir: &Path, changed_before: SystemTime) -> io::Result<bool> {
    let mut empty = true;
    for entry in entries(dir)? {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // Judge the age before pruning inside: removing its children changes it.
            let old = match entry.metadata() {
                Ok(meta) => meta.modified().is_ok_and(|t| t < changed_before),
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // removed meanwhile
                Err(e) => return Err(e),
            };
            if prune(&path, changed_before)? && old {
                match std::fs::remove_dir(&path) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(_) => {} // filled again meanwhile
                }
            }
        }
        empty = false;
    }
    Ok(empty)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)??)
}

#[async_trait]
impl BlobStore for FilesystemStore {
    fn describe(&self) -> String {
        format!("filesystem:{}", self.root.display())
    }

    fn blob_location(&self, digest: &Digest) -> String {
        layout::blob_data(&self.root, digest).display().to_string()
    }

    async fn read_store_id(&self) -> Result<Option<String>, StorageError> {
        let read = not_found_as_none(fs::read_to_string(layout::store_id(&self.root)).await)?;
        Ok(read
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty()))
    }

    async fn write_store_id(&self, id: &str) -> Result<String, StorageError> {
        let path = layout::store_id(&self.root);
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("marker path has no parent"))?
            .to_path_buf();
        // Written whole under a temporary name, then linked to its name, which fails if a
        // marker is there already: never two ids, never a half-written one.
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            layout::STORE_ID_FILE,
            uuid::Uuid::new_v4()
        ));
        let mut file = in_dir(&dir, || File::create(&tmp)).await?;
        file.write_all(format!("{id}\n").as_bytes()).await?;
        file.sync_all().await?;
        drop(file);
        let linked = fs::hard_link(&tmp, &path).await;
        let _ = fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => sync_dir(&dir).await?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        self.read_store_id()
            .await?
            .ok_or_else(|| StorageError::Io(io::Error::other("the store id marker vanished")))
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        let meta = not_found_as_none(fs::metadata(layout::blob_data(&self.root, digest)).await)?;
        Ok(meta.map(|m| m.len()))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<ByteStream<'static>, StorageError> {
        let path = layout::blob_data(&self.root, digest);
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StorageError> {
            not_found_as_none(std::fs::File::open(&path))?.ok_or(StorageError::NotFound)
        })
        .await
        .map_err(io::Error::other)??;
        let len = range.end.saturating_sub(range.start);
        Ok(stream_file(file, range.start, len, ReadBy::Map))
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        let path = layout::blob_data(&self.root, digest);
        if fs::try_exists(&path).await? {
            return Ok(()); // content-addressed: same digest, same bytes
        }
        write_atomically(&path, &bytes).await?;
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        let dir = layout::blob_dir(&self.root, digest);
        not_found_as_none(fs::remove_dir_all(&dir).await)?;
        Ok(())
    }

    async fn upload_start(&self, key: &UploadKey) -> Result<(), StorageError> {
        let path = self.staging_file(key);
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("staging path has no parent"))?;
        in_dir(dir, || File::create(&path)).await?;
        Ok(())
    }

    async fn upload_append(
        &self,
        key: &UploadKey,
        offset: u64,
        body: ByteStream<'_>,
    ) -> Result<u64, StorageError> {
        let path = self.staging_file(key);
        // The file is written by a blocking thread fed through a small queue, so disk
        // writes overlap with receiving (and hashing) the next bytes.
        let appender = tokio::task::spawn_blocking(move || {
            open_staging_at(&path, offset).map(|file| Appender::new(&path, file, offset))
        })
        .await
        .map_err(io::Error::other)??;
        let (queue, mut pending) = tokio::sync::mpsc::channel::<Bytes>(WRITE_AHEAD / WRITE_BUFFER);
        let delay = test_write_delay();
        let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut appender = appender;
            while let Some(buffer) = pending.blocking_recv() {
                if let Some(delay) = delay {
                    std::thread::sleep(delay);
                }
                // A piece written directly as it is stays held (in its request's budget)
                // until written; any other is copied or written here and let go.
                appender.append(buffer)?;
                appender.settle()?;
            }
            appender.finish()?;
            Ok(())
        });
        let mut pieces = super::coalesce(body, WRITE_BUFFER);
        let mut written = 0u64;
        let mut body_error = None;
        while let Some(piece) = pieces.next().await {
            match piece {
                Ok(piece) => {
                    written += piece.len() as u64;
                    if queue.send(piece).await.is_err() {
                        break; // the writer failed: its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(queue);
        writer.await.map_err(io::Error::other)??;
        match body_error {
            Some(e) => Err(StorageError::Body(e)),
            None => Ok(written),
        }
    }

    async fn upload_read(
        &self,
        key: &UploadKey,
        len: u64,
    ) -> Result<ByteStream<'static>, StorageError> {
        let path = self.staging_file(key);
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StorageError> {
            not_found_as_none(std::fs::File::open(&path))?.ok_or(StorageError::NotFound)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(stream_file(file, 0, len, ReadBy::Copy))
    }

    async fn upload_seal(&self, key: &UploadKey, size: u64) -> Result<(), StorageError> {
        let staging = self.staging_file(key);
        let file = not_found_as_none(OpenOptions::new().write(true).open(&staging).await)?
            .ok_or(StorageError::NotFound)?;
        let staged = file.metadata().await?.len();
        if staged < size {
            return Err(StorageError::StagingShort {
                expected: size,
                actual: staged,
            });
        }
        if staged > size {
            file.set_len(size).await?;
        }
        file.sync_all().await?;
        Ok(())
    }

    async fn upload_commit(
        &self,
        key: &UploadKey,
        _size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let staging = self.staging_file(key);
        let final_path = layout::blob_data(&self.root, digest);
        if !fs::try_exists(&final_path).await? {
            let dir = final_path
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            not_found_as_none(in_dir(dir, || fs::rename(&staging, &final_path)).await)?
                .ok_or(StorageError::NotFound)?;
            sync_dir(dir).await?;
        }
        Ok(())
    }

    async fn upload_abort(&self, key: &UploadKey) -> Result<(), StorageError> {
        let dir = layout::upload_dir(&self.root, &key.repository, &key.id);
        not_found_as_none(fs::remove_dir_all(&dir).await)?;
        Ok(())
    }

    async fn list_blobs(&self) -> Result<Vec<StoredBlob>, StorageError> {
        let root = self.root.clone();
        blocking(move || walk_blobs(&root)).await
    }

    async fn list_uploads(&self) -> Result<Vec<StagedUpload>, StorageError> {
        let root = self.root.clone();
        blocking(move || walk_uploads(&root)).await
    }

    async fn prune_empty_directories(&self, min_age: Duration) -> Result<(), StorageError> {
        let v2 = layout::v2_root(&self.root);
        let changed_before = SystemTime::now() - min_age;
        blocking(move || {
            prune(&v2.join("repositories"), changed_before)?;
            prune(&v2.join("blobs"), changed_before).map(|_| ())
        })
        .await
    }

    async fn tree_entries(&self, dir: &str) -> Result<TreeEntries, StorageError> {
        let dir = self.tree_path(dir)?;
        blocking(move || {
            let mut found = TreeEntries::default();
            for entry in entries(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => found.dirs.push(name),
                    Ok(t) if t.is_file() => found.files.push(name),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(found)
        })
        .await
    }

    async fn tree_files(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let dir = self.tree_path(dir)?;
        blocking(move || {
            let mut found = Vec::new();
            files_below(&dir, "", &mut found)?;
            Ok(found)
        })
        .await
    }

    async fn tree_read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.tree_path(path)?;
        blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut bytes = Vec::new();
            (&mut file)
                .take(MAX_TREE_FILE + 1)
                .read_to_end(&mut bytes)?;
            Ok((bytes.len() as u64 <= MAX_TREE_FILE).then_some(bytes))
        })
        .await
    }
}

impl FilesystemStore {
    /// `repositories/<path>` of Distribution's tree under the root.
    fn tree_path(&self, path: &str) -> Result<PathBuf, StorageError> {
        if !tree::is_safe(path) {
            return Err(StorageError::Io(io::Error::new(
                ErrorKind::InvalidInput,
                format!("not a path of the repositories tree: {path:?}"),
            )));
        }
        let mut out = layout::v2_root(&self.root).join("repositories");
        out.extend(path.split('/').filter(|c| !c.is_empty()));
        Ok(out)
    }
}

/// Appends the files below `dir` (recursively, sorted) to `found`, as `prefix` + their path
/// relative to `dir`. Entries that vanish during the walk are skipped.
fn files_below(dir: &Path, prefix: &str, found: &mut Vec<String>) -> io::Result<()> {
    for entry in entries(dir)? {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        match entry.file_type() {
            Ok(t) if t.is_dir() => files_below(&entry.path(), &format!("{name}/"), found)?,
            Ok(t) if t.is_file() => found.push(name),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;
    use futures_util::stream;

    fn body(parts: &[&'static [u8]]) -> ByteStream<'static> {
        Box::pin(stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn collect(mut s: ByteStream<'static>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn upload_commit_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStore::new(dir.path());
        let key = UploadKey {
            repository: RepositoryName::parse("a/b").unwrap(),
            id: uuid::Uuid::new_v4(),
        };
        store.upload_start(&key).await.unwrap();
        assert_eq!(
            store
                .upload_append(&key, 0, body(&[b"hello ", b"wor"]))
                .await
                .unwrap(),
            9
        );
        // A retried request after an interrupted one: staged bytes past the offset are dropped.
        assert_eq!(
            store
                .upload_append(&key, 6, body(&[b"world"]))
                .await
                .unwrap(),
            5
        );
        let digest = Digest::of(Algorithm::Sha256, b"hello world");
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        store.upload_seal(&key, 11).await.unwrap();
        store.upload_commit(&key, 11, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
        assert_eq!(
            collect(store.read(&digest, 6..11).await.unwrap()).await,
            b"world"
        );
        // The staging area stays until the caller aborts it, after the metadata transaction.
        assert!(layout::upload_dir(dir.path(), &key.repository, &key.id).exists());
        store.upload_abort(&key).await.unwrap();
        assert!(!layout::upload_dir(dir.path(), &key.repository, &key.id).exists());
        assert_eq!(store.list_blobs().await.unwrap().len(), 1);
        store.delete(&digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        assert!(store.list_blobs().await.unwrap().is_empty());
    }

    /// A blob file of `len` bytes (each byte its offset's remainder mod 251) placed as if
    /// committed, without its real digest: the reads never check it.
    fn place_blob(root: &Path, len: usize) -> (Digest, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        let path = layout::blob_data(root, &digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        (digest, bytes)
    }

    #[tokio::test]
    async fn reads_give_every_range_whether_mapped_or_copied() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStore::new(dir.path());
        let len = 3 * READ_CHUNK + 123;
        let (digest, bytes) = place_blob(dir.path(), len);
        let page = 4096;
        // Whole, from unaligned offsets, ending in a copied tail, exactly MAP_MIN long, and
        // one byte short of it.
        for (start, end) in [
            (0, len),
            (1, len),
            (page + 7, page + 7 + READ_CHUNK + MAP_MIN + 1),
            (READ_CHUNK - 5, 2 * READ_CHUNK + 5),
            (len - 100, len),
            (11, 11 + MAP_MIN),
            (11, 11 + MAP_MIN - 1),
            (len - 1, len),
        ] {
            let read = collect(store.read(&digest, start as u64..end as u64).await.unwrap()).await;
            assert!(read == bytes[start..end], "bytes {start}..{end}");
        }
    }

    #[tokio::test]
    async fn a_blob_file_shorter_than_recorded_ends_the_stream_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStore::new(dir.path());
        let (digest, bytes) = place_blob(dir.path(), 2 * READ_CHUNK);
        // Mapped chunks past the file's end would fault: the read must stop with an error
        // where the file ends, both for a mapped chunk and for a copied one.
        for wanted in [2 * READ_CHUNK + MAP_MIN, 2 * READ_CHUNK + 10] {
            let mut stream = store.read(&digest, 0..wanted as u64).await.unwrap();
            let mut read = Vec::new();
            let error = loop {
                match stream.next().await {
                    Some(Ok(chunk)) => read.extend_from_slice(&chunk),
                    Some(Err(e)) => break e,
                    None => panic!("{wanted} bytes of {}: no error", bytes.len()),
                }
            };
            assert_eq!(error.kind(), ErrorKind::UnexpectedEof, "{wanted}");
            assert!(read == bytes, "{wanted}: the bytes before the end");
        }
    }

    #[tokio::test]
    async fn lists_uploads_and_prunes_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStore::new(dir.path());
        let key = UploadKey {
            repository: RepositoryName::parse("team/app").unwrap(),
            id: uuid::Uuid::new_v4(),
        };
        store.upload_start(&key).await.unwrap();
        let uploads = store.list_uploads().await.unwrap();
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0].key.repository.as_str(), "team/app");
        assert_eq!(uploads[0].key.id, key.id);
        store.upload_abort(&key).await.unwrap();
        store.prune_empty_directories(Duration::ZERO).await.unwrap();
        assert!(!layout::repository_dir(dir.path(), &key.repository).exists());
        assert!(layout::v2_root(dir.path()).join("repositories").exists());
    }

    #[tokio::test]
    async fn append_refuses_short_staging() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStore::new(dir.path());
        let key = UploadKey {
            repository: RepositoryName::parse("a").unwrap(),
            id: uuid::Uuid::new_v4(),
        };
        store.upload_start(&key).await.unwrap();
        let err = store
            .upload_append(&key, 4, body(&[b"x"]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StorageError::StagingShort {
                expected: 4,
                actual: 0
            }
        ));
    }
}
