//! Blob reads and deletes.

use std::ops::Range;

use async_trait::async_trait;

use super::api::Blobs;
use super::context::RequestContext;
use super::{Registry, RegistryError};
use crate::notify::{EventAction, Target};
use crate::oci::{Digest, RepositoryName};
use crate::storage::{ByteStream, StorageError};

/// A byte range as a client asked for it (`Range: bytes=...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=start-end` (inclusive) or `bytes=start-` (to the end).
    From {
        /// First byte.
        start: u64,
        /// Last byte, inclusive; `None` for the end of the blob.
        end: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// Parses a single-range `Range` header; `None` for anything else (which is ignored,
    /// as HTTP allows, and the whole blob served).
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        let (start, end) = (start.trim(), end.trim());
        if start.is_empty() {
            return end.parse().ok().map(RangeRequest::Suffix);
        }
        let start = start.parse().ok()?;
        let end = if end.is_empty() {
            None
        } else {
            Some(end.parse().ok()?)
        };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(RangeRequest::From { start, end })
    }

    /// The bytes this selects in a blob of `size` bytes; `None` if unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            RangeRequest::From { start, end } if start < size => {
                let end = end.map_or(size, |e| e.saturating_add(1).min(size));
                Some(start..end)
            }
            RangeRequest::From { .. } => None,
            RangeRequest::Suffix(0) => None,
            RangeRequest::Suffix(n) if size > 0 => Some(size.saturating_sub(n)..size),
            RangeRequest::Suffix(_) => None,
        }
    }
}

/// How a blob read is answered.
pub enum BlobAnswer {
    /// The bytes, streamed through the registry.
    Bytes(BlobRead),
    /// A URL the client fetches the bytes from (a presigned object storage URL).
    Redirect(String),
}

/// A blob being read.
pub struct BlobRead {
    /// Size of the whole blob.
    pub size: u64,
    /// The bytes being sent (the whole blob unless a range was asked for).
    pub range: Range<u64>,
    /// Whether `range` answers a range request (206) or is the whole blob (200).
    pub partial: bool,
    /// The bytes.
    pub body: ByteStream<'static>,
}

#[async_trait]
impl Blobs for Registry {
    async fn stat_blob(
        &self,
        _cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        self.metadata
            .blob_in_repository(repository, digest)
            .await?
            .ok_or(RegistryError::BlobUnknown)
    }

    /// Opens a blob, or the requested range of it, for streaming; or, where the store
    /// offers it (`storage.redirect`), the URL the client may fetch it from directly. One
    /// metadata lookup either way.
    async fn read_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobAnswer, RegistryError> {
        let size = self.stat_blob(cx, repository, digest).await?;
        if let Some(url) = self.storage.redirect_url(digest).await? {
            self.notify(
                cx,
                EventAction::Pull,
                Target::blob(repository, digest, size),
            )
            .await;
            return Ok(BlobAnswer::Redirect(url));
        }
        let (range, partial) = match range {
            Some(request) => (
                request
                    .resolve(size)
                    .ok_or(RegistryError::RangeNotSatisfiable { size })?,
                true,
            ),
            None => (0..size, false),
        };
        let body = match self.storage.read(digest, range.clone()).await {
            Ok(body) => body,
            // Metadata says it exists but the bytes are gone (deleted by hand?): say unknown.
            Err(StorageError::NotFound) => return Err(RegistryError::BlobUnknown),
            Err(e) => return Err(e.into()),
        };
        self.notify(
            cx,
            EventAction::Pull,
            Target::blob(repository, digest, size),
        )
        .await;
        Ok(BlobAnswer::Bytes(BlobRead {
            size,
            range,
            partial,
            body,
        }))
    }

    async fn delete_blob(
        &self,
        cx: &RequestContext,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.check_deletable()?;
        if self.metadata.unlink_blob(repository, digest).await? {
            self.notify(
                cx,
                EventAction::Delete,
                Target::deleted_blob(repository, digest),
            )
            .await;
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        let r = |h| RangeRequest::parse(h).and_then(|r| r.resolve(100));
        assert_eq!(r("bytes=0-9"), Some(0..10));
        assert_eq!(r("bytes=90-"), Some(90..100));
        assert_eq!(r("bytes=90-200"), Some(90..100));
        assert_eq!(r("bytes=-10"), Some(90..100));
        assert_eq!(r("bytes=-1000"), Some(0..100));
        assert_eq!(r("bytes=100-"), None);
        assert_eq!(RangeRequest::parse("bytes=5-1"), None);
        assert_eq!(RangeRequest::parse("bytes=0-1,4-5"), None);
        assert_eq!(RangeRequest::parse("items=0-1"), None);
        assert_eq!(RangeRequest::Suffix(5).resolve(0), None);
    }
}
