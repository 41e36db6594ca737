//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::IntoResponse;

use super::headers::{CONTENT_DIGEST, OCI_SUBJECT};
use super::{HandlerResult, Request, repository};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{Reference, Tag};
use crate::registry::RegistryError;

/// Serves a manifest exactly as pushed (HEAD: headers only).
pub async fn get(request: &Request<'_>, name: &str, reference: &str, head: bool) -> HandlerResult {
    let name = repository(name)?;
    let reference = Reference::parse(reference)?;
    let manifest = request.registry().get_manifest(&name, &reference).await?;
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
pub async fn put(request: &Request<'_>, name: &str, reference: &str, body: Body) -> HandlerResult {
    let name = repository(name)?;
    let reference = Reference::parse(reference)?;
    let too_large = RegistryError::ManifestTooLarge {
        limit: MAX_MANIFEST_SIZE,
    };
    let declared = request
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST_SIZE as u64) {
        return Err(too_large);
    }
    let body = axum::body::to_bytes(body, MAX_MANIFEST_SIZE)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                too_large
            } else {
                RegistryError::ManifestInvalid(format!("reading the body failed: {e}"))
            }
        })?;
    let tags = request
        .query
        .all("tag")
        .map(Tag::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let content_type = request.header(header::CONTENT_TYPE);
    let pushed = request
        .registry()
        .put_manifest(&name, &reference, &tags, content_type, body)
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
    if let Some(subject) = pushed.subject {
        if let Ok(v) = subject.to_string().parse() {
            response.headers_mut().insert(OCI_SUBJECT, v);
        }
    }
    Ok(response)
}

/// Deletes a tag or a manifest (`202 Accepted`).
pub async fn delete(request: &Request<'_>, name: &str, reference: &str) -> HandlerResult {
    let name = repository(name)?;
    let reference = Reference::parse(reference)?;
    request
        .registry()
        .delete_manifest(&name, &reference)
        .await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
