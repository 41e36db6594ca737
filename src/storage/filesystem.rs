//! The filesystem blob store: Distribution's layout under a root directory. Uploads are
//! appended to a staging file, fsynced and renamed into place on commit, so a blob file
//! under `blobs/` is always complete.

use std::io::{self, ErrorKind, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{BlobStore, ByteStream, StagedUpload, StorageError, StoredBlob, UploadKey, layout};
use crate::oci::{Digest, RepositoryName};

/// Writes are gathered into buffers of this size before reaching the file.
const WRITE_BUFFER: usize = 1024 * 1024;
/// Reads are served in chunks of this size.
const READ_CHUNK: usize = 256 * 1024;

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
    fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let mut file = File::create(&tmp).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    fs::rename(&tmp, path).await?;
    sync_dir(dir).await
}

/// Entries of a directory; a missing directory has none.
fn entries(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

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
    fn walk(dir: &Path, name: &str, out: &mut Vec<StagedUpload>) -> io::Result<()> {
        for entry in entries(dir)? {
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name == "_uploads" {
                let Ok(repository) = RepositoryName::parse(name) else {
                    continue;
                };
                for upload in entries(&entry.path())? {
                    let Ok(id) = uuid::Uuid::parse_str(&upload.file_name().to_string_lossy())
                    else {
                        continue;
                    };
                    let modified = upload.metadata()?.modified()?;
                    out.push(StagedUpload {
                        key: UploadKey {
                            repository: repository.clone(),
                            id,
                        },
                        modified,
                    });
                }
            } else if !file_name.starts_with('_') {
                let child = if name.is_empty() {
                    file_name
                } else {
                    format!("{name}/{file_name}")
                };
                walk(&entry.path(), &child, out)?;
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(&layout::v2_root(root).join("repositories"), "", &mut found)?;
    Ok(found)
}

/// Removes empty directories below `dir` (not `dir` itself); returns whether `dir` is empty.
fn prune(dir: &Path) -> io::Result<bool> {
    let mut empty = true;
    for entry in entries(dir)? {
        if entry.file_type()?.is_dir() && prune(&entry.path())? {
            match std::fs::remove_dir(entry.path()) {
                Ok(()) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(_) => {} // filled again meanwhile
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
        let mut file = not_found_as_none(File::open(&path).await)?.ok_or(StorageError::NotFound)?;
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start)).await?;
        }
        let reader = file.take(range.end.saturating_sub(range.start));
        Ok(Box::pin(ReaderStream::with_capacity(reader, READ_CHUNK)))
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
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).await?;
        }
        File::create(&path).await?;
        Ok(())
    }

    async fn upload_append(
        &self,
        key: &UploadKey,
        offset: u64,
        mut body: ByteStream<'_>,
    ) -> Result<u64, StorageError> {
        let path = self.staging_file(key);
        let mut file = not_found_as_none(OpenOptions::new().write(true).open(&path).await)?
            .ok_or(StorageError::NotFound)?;
        let staged = file.metadata().await?.len();
        if staged < offset {
            return Err(StorageError::StagingShort {
                expected: offset,
                actual: staged,
            });
        }
        if staged > offset {
            file.set_len(offset).await?; // bytes of a request that did not complete
        }
        file.seek(SeekFrom::Start(offset)).await?;
        let mut written = 0u64;
        let mut buffer = BytesMut::with_capacity(WRITE_BUFFER);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            written += chunk.len() as u64;
            if buffer.is_empty() && chunk.len() >= WRITE_BUFFER {
                file.write_all(&chunk).await?;
                continue;
            }
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= WRITE_BUFFER {
                file.write_all(&buffer).await?;
                buffer.clear();
            }
        }
        if !buffer.is_empty() {
            file.write_all(&buffer).await?;
        }
        file.flush().await?;
        Ok(written)
    }

    async fn upload_read(
        &self,
        key: &UploadKey,
        len: u64,
    ) -> Result<ByteStream<'static>, StorageError> {
        let file = not_found_as_none(File::open(self.staging_file(key)).await)?
            .ok_or(StorageError::NotFound)?;
        Ok(Box::pin(ReaderStream::with_capacity(
            file.take(len),
            READ_CHUNK,
        )))
    }

    async fn upload_commit(
        &self,
        key: &UploadKey,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let staging = self.staging_file(key);
        let final_path = layout::blob_data(&self.root, digest);
        let file = not_found_as_none(OpenOptions::new().write(true).open(&staging).await)?
            .ok_or(StorageError::NotFound)?;
        let staged = file.metadata().await?.len();
        if staged < size {
            return Err(StorageError::StagingShort {
                expected: size,
                actual: staged,
            });
        }
        if !fs::try_exists(&final_path).await? {
            if staged > size {
                file.set_len(size).await?;
            }
            file.sync_all().await?;
            drop(file);
            let dir = final_path
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            fs::create_dir_all(dir).await?;
            fs::rename(&staging, &final_path).await?;
            sync_dir(dir).await?;
        }
        self.upload_abort(key).await
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

    async fn prune_empty_directories(&self) -> Result<(), StorageError> {
        let v2 = layout::v2_root(&self.root);
        blocking(move || {
            prune(&v2.join("repositories"))?;
            prune(&v2.join("blobs")).map(|_| ())
        })
        .await
    }
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
        store.upload_commit(&key, 11, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
        assert_eq!(
            collect(store.read(&digest, 6..11).await.unwrap()).await,
            b"world"
        );
        assert!(!layout::upload_dir(dir.path(), &key.repository, &key.id).exists());
        assert_eq!(store.list_blobs().await.unwrap().len(), 1);
        store.delete(&digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        assert!(store.list_blobs().await.unwrap().is_empty());
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
        store.prune_empty_directories().await.unwrap();
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
