//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::headers::CONTENT_DIGEST;
use super::{HandlerResult, Request};
use crate::oci::{Digest, RepositoryName};
use crate::registry::blobs::{BlobAnswer, RangeRequest};

/// Serves a blob, a range of it, or (for HEAD) only its headers.
pub async fn get(
    request: &Request<'_>,
    name: &RepositoryName,
    digest: &Digest,
    head: bool,
) -> HandlerResult {
    let (name, digest) = (name.clone(), digest.clone());
    let registry = request.registry();
    let digest_header = digest.to_string();
    if head {
        let size = registry.stat_blob(request.cx, &name, &digest).await?;
        return Ok((
            [
                (header::CONTENT_LENGTH, size.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
                (header::ETAG, format!("\"{digest_header}\"")),
                (
                    header::HeaderName::from_static(CONTENT_DIGEST),
                    digest_header,
                ),
            ],
            Body::empty(),
        )
            .into_response());
    }
    let range = request.header(header::RANGE).and_then(RangeRequest::parse);
    let read = match registry
        .read_blob(request.cx, &name, &digest, range)
        .await?
    {
        BlobAnswer::Bytes(read) => read,
        BlobAnswer::Redirect(url) => {
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, url),
                    (header::CONTENT_LENGTH, "0".to_string()),
                    (
                        header::HeaderName::from_static(CONTENT_DIGEST),
                        digest_header,
                    ),
                ],
            )
                .into_response());
        }
    };
    let length = read.range.end - read.range.start;
    let mut response = (
        [
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (header::ETAG, format!("\"{digest_header}\"")),
            (header::CACHE_CONTROL, "max-age=31536000".to_string()),
            (
                header::HeaderName::from_static(CONTENT_DIGEST),
                digest_header,
            ),
        ],
        Body::from_stream(read.body),
    )
        .into_response();
    if read.partial {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let content_range = format!(
            "bytes {}-{}/{}",
            read.range.start,
            read.range.end.saturating_sub(1),
            read.size
        );
        if let Ok(v) = content_range.parse() {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// Removes a blob from the repository (`202 Accepted`).
pub async fn delete(
    request: &Request<'_>,
    name: &RepositoryName,
    digest: &Digest,
) -> HandlerResult {
    request
        .registry()
        .delete_blob(request.cx, name, digest)
        .await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
