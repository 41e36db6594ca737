//! Server-side copy of a sealed upload to its digest key. Small objects take one
//! `CopyObject`; larger ones a multipart upload whose parts are `UploadPartCopy` requests of
//! bounded byte ranges, run concurrently, so no single copy meets S3's 5 GiB limit.
//! `object_store` has no ranged part copy, so those requests are built and signed here
//! with its SigV4 signer and sent with its HTTP client.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStoreExt};

use super::S3Settings;
use crate::storage::StorageError;

/// Attempts of one part copy before the copy fails.
const ATTEMPTS: u32 = 4;

/// Copies objects inside the bucket.
#[derive(Debug)]
pub(super) struct Copier {
    http: HttpClient,
    bucket: String,
    region: String,
    /// Objects up to this size take a single `CopyObject`.
    threshold: u64,
    /// Bytes per part copy.
    chunk: u64,
    /// Part copies at once.
    concurrency: usize,
}

impl Copier {
    /// A copier using `settings`' multipart copy parameters and the same HTTP options as
    /// the store.
    pub(super) fn new(
        settings: &S3Settings,
        options: &ClientOptions,
    ) -> Result<Self, StorageError> {
        Ok(Copier {
            http: ReqwestConnector::default().connect(options)?,
            bucket: settings.bucket.clone(),
            region: settings.region.clone(),
            threshold: settings.copy_threshold,
            chunk: settings.copy_chunk_size,
            concurrency: settings.copy_max_concurrency,
        })
    }

    /// Copies `size` bytes of `from` to `to`; `to` appears only when complete.
    pub(super) async fn copy(
        &self,
        store: &AmazonS3,
        from: &Path,
        to: &Path,
        size: u64,
    ) -> Result<(), StorageError> {
        if size <= self.threshold {
            store.copy(from, to).await?;
            return Ok(());
        }
        let id = store.create_multipart(to).await?;
        match self.copy_parts(store, from, to, &id, size).await {
            Ok(parts) => {
                store.complete_multipart(to, &id, parts).await?;
                Ok(())
            }
            Err(e) => {
                // Best effort: an upload left behind holds no visible object.
                let _ = store.abort_multipart(to, &id).await;
                Err(e)
            }
        }
    }

    async fn copy_parts(
        &self,
        store: &AmazonS3,
        from: &Path,
        to: &Path,
        id: &str,
        size: u64,
    ) -> Result<Vec<PartId>, StorageError> {
        // The URL object_store itself would use for `to` (endpoint, path style, encoding).
        let mut url = store
            .signed_url(http::Method::PUT, to, Duration::from_secs(60))
            .await?;
        url.set_query(None);
        let source = format!("/{}/{}", self.bucket, from.as_ref());
        let ranges = part_ranges(size, self.chunk);
        futures_util::stream::iter(ranges.into_iter().enumerate())
            .map(|(index, range)| {
                let url = url.as_str();
                let source = source.as_str();
                async move { self.copy_part(store, url, source, id, index, range).await }
            })
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await
    }

    async fn copy_part(
        &self,
        store: &AmazonS3,
        url: &str,
        source: &str,
        id: &str,
        index: usize,
        range: Range<u64>,
    ) -> Result<PartId, StorageError> {
        let uri = format!(
            "{url}?partNumber={}&uploadId={}",
            index + 1,
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_copy_part(store, &uri, source, &range).await {
                Ok(etag) => return Ok(PartId { content_id: etag }),
                Err(CopyFailure::Retriable(message)) if attempt < ATTEMPTS => {
                    tracing::debug!(attempt, %message, "part copy failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(CopyFailure::Retriable(message) | CopyFailure::Fatal(message)) => {
                    return Err(StorageError::Backend(format!(
                        "copying bytes {}-{} of {source}: {message}",
                        range.start,
                        range.end - 1
                    )));
                }
            }
        }
    }

    async fn try_copy_part(
        &self,
        store: &AmazonS3,
        uri: &str,
        source: &str,
        range: &Range<u64>,
    ) -> Result<String, CopyFailure> {
        let credential = store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| CopyFailure::Retriable(e.to_string()))?;
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(uri)
            .header("x-amz-copy-source", source)
            .header(
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            )
            .body(HttpRequestBody::from(Bytes::new()))
            .map_err(|e| CopyFailure::Fatal(e.to_string()))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| CopyFailure::Fatal(e.to_string()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| CopyFailure::Retriable(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| CopyFailure::Retriable(e.to_string()))?;
        let body = String::from_utf8_lossy(&body);
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(CopyFailure::Retriable(format!("{status}: {body}")));
        }
        if !status.is_success() {
            return Err(CopyFailure::Fatal(format!("{status}: {body}")));
        }
        // S3 can answer 200 with an error document when a long copy fails mid-way.
        match xml_element(&body, "ETag") {
            Some(etag) => Ok(etag.replace("&quot;", "\"").replace("&#34;", "\"")),
            None => Err(CopyFailure::Retriable(format!("no ETag in answer: {body}"))),
        }
    }
}

enum CopyFailure {
    Retriable(String),
    Fatal(String),
}

/// Byte ranges of at most `chunk` bytes covering `0..size`.
fn part_ranges(size: u64, chunk: u64) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(size))
        .collect()
}

/// The text of the first `<name>` element in `xml`.
fn xml_element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_in_bounded_parts() {
        assert_eq!(part_ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(part_ranges(8, 4), vec![0..4, 4..8]);
        assert_eq!(part_ranges(0, 4), Vec::<Range<u64>>::new());
        let six_gib = 6 << 30;
        let ranges = part_ranges(six_gib, 32 << 20);
        assert!(ranges.iter().all(|r| r.end - r.start <= 5 << 30));
        assert_eq!(ranges.last().map(|r| r.end), Some(six_gib));
    }

    #[test]
    fn etag_is_read_from_a_copy_part_result() {
        let xml = "<?xml version=\"1.0\"?><CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_element(xml, "ETag"), Some("&quot;abc&quot;"));
        assert_eq!(xml_element("<Error/>", "ETag"), None);
    }
}
