//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use futures_util::StreamExt;

use super::headers::{CONTENT_DIGEST, OCI_SUBJECT};
use super::{HandlerResult, Request};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{Reference, RepositoryName, Tag};
use crate::registry::RegistryError;

/// Serves a manifest exactly as pushed (HEAD: headers only).
pub async fn get(
    request: &Request<'_>,
    name: &RepositoryName,
    reference: &Reference,
    head: bool,
) -> HandlerResult {
    let manifest = request
        .registry()
        .get_manifest(request.cx, name, reference)
        .await?;
    let digest = manifest.digest.to_string();
    let headers = [
        (header::CONTENT_TYPE, manifest.media_type),
        (header::CONTENT_LENGTH, manifest.payload.len().to_string()),
        (header::ETAG, format!("\"{digest}\"")),
        (HeaderName::from_static(CONTENT_DIGEST), digest),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.payload)
    };
    Ok((headers, body).into_response())
}

/// Validates and stores a manifest (`201 Created`).
pub async fn put(
    request: &Request<'_>,
    name: &RepositoryName,
    reference: &Reference,
    body: Body,
) -> HandlerResult {
    let body = read_manifest_body(body).await?;
    let tags = request
        .query
        .all("tag")
        .map(Tag::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let content_type = request.header(header::CONTENT_TYPE);
    let pushed = request
        .registry()
        .put_manifest(request.cx, name, reference, &tags, content_type, body)
        .await?;
    let digest = pushed.digest.to_string();
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                request.url(&format!("/v2/{name}/manifests/{digest}")),
            ),
            (header::CONTENT_LENGTH, "0".to_string()),
            (HeaderName::from_static(CONTENT_DIGEST), digest),
        ],
    )
        .into_response();
    if let Some(subject) = pushed.subject
        && let Ok(v) = subject.to_string().parse()
    {
        response.headers_mut().insert(OCI_SUBJECT, v);
    }
    Ok(response)
}

/// Deletes a tag or a manifest (`202 Accepted`).
pub async fn delete(
    request: &Request<'_>,
    name: &RepositoryName,
    reference: &Reference,
) -> HandlerResult {
    request
        .registry()
        .delete_manifest(request.cx, name, reference)
        .await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

/// Bodies over the limit are still read (and dropped) up to this many bytes, so the client
/// sees the 413 instead of a connection closed under its upload.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a manifest body of at most [`MAX_MANIFEST_SIZE`] bytes.
async fn read_manifest_body(body: Body) -> Result<bytes::Bytes, RegistryError> {
    let mut stream = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::ManifestInvalid(format!("reading the body failed: {e}")))?;
        total += chunk.len();
        if total <= MAX_MANIFEST_SIZE {
            collected.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_MANIFEST_SIZE {
        return Err(RegistryError::ManifestTooLarge {
            limit: MAX_MANIFEST_SIZE,
        });
    }
    Ok(collected.freeze())
}
