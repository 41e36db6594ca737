//! `/v2/<name>/blobs/uploads/...`: start (with monolithic and mount variants), chunk,
//! status, complete, cancel.

use axum::body::Body;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::headers::{CONTENT_DIGEST, UPLOAD_UUID, upload_range};
use super::{HandlerResult, Request, body_stream, digest, has_body};
use crate::metadata::UploadSession;
use crate::oci::{Digest, RepositoryName};
use crate::registry::RegistryError;
use crate::registry::context::Action;
use crate::registry::uploads::ChunkRange;

/// `202 Accepted` pointing at the session, with its progress.
fn in_progress(request: &Request<'_>, status: StatusCode, session: &UploadSession) -> Response {
    let location = request.url(&format!(
        "/v2/{}/blobs/uploads/{}",
        session.repository, session.id
    ));
    (
        status,
        [
            (header::LOCATION, location),
            (header::RANGE, upload_range(session.size)),
            (header::CONTENT_LENGTH, "0".to_string()),
            (HeaderName::from_static(UPLOAD_UUID), session.id.to_string()),
        ],
    )
        .into_response()
}

/// `201 Created` pointing at the committed blob.
fn created(request: &Request<'_>, name: &RepositoryName, digest: &Digest) -> Response {
    let location = request.url(&format!("/v2/{name}/blobs/{digest}"));
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CONTENT_LENGTH, "0".to_string()),
            (HeaderName::from_static(CONTENT_DIGEST), digest.to_string()),
        ],
    )
        .into_response()
}

fn chunk_range(request: &Request<'_>) -> Result<Option<ChunkRange>, RegistryError> {
    let Some(value) = request.headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    ChunkRange::parse(&text)
        .map(Some)
        .ok_or_else(|| RegistryError::ContentRangeInvalid(format!("{text:?}")))
}

/// `POST`: mount (`?mount=&from=`), single-request upload (`?digest=`), or a new session.
pub async fn start(request: &Request<'_>, name: &RepositoryName, body: Body) -> HandlerResult {
    let name = name.clone();
    let registry = request.registry();
    if let Some(mount) = request.query.get("mount") {
        let digest = digest(mount)?;
        // An unusable `from` is no error: the client simply gets a session to upload into.
        let from = request
            .query
            .get("from")
            .and_then(|f| RepositoryName::parse(f).ok());
        let from_given = request.query.get("from").is_some();
        // Under access control a mount needs `pull` on its source (a caller that lacks it
        // gets a session, as in Distribution), and a mount from anywhere is not offered.
        let allowed = match &from {
            Some(from) => request.cx.may(from, Action::Pull),
            None => !request.cx.is_restricted(),
        };
        let usable = allowed && (!from_given || from.is_some());
        if usable
            && registry
                .mount_blob(request.cx, &name, &digest, from.as_ref())
                .await?
                .is_some()
        {
            return Ok(created(request, &name, &digest));
        }
    } else if let Some(d) = request.query.get("digest") {
        let digest = digest(d)?;
        registry
            .upload_whole(request.cx, &name, &digest, body_stream(body))
            .await?;
        return Ok(created(request, &name, &digest));
    }
    let session = registry.start_upload(request.cx, &name).await?;
    Ok(in_progress(request, StatusCode::ACCEPTED, &session))
}

/// `GET`: where the upload stands (`204 No Content` with `Range`).
pub async fn status(request: &Request<'_>, name: &RepositoryName, id: &Uuid) -> HandlerResult {
    let session = request
        .registry()
        .upload_status(request.cx, name, id)
        .await?;
    Ok(in_progress(request, StatusCode::NO_CONTENT, &session))
}

/// `PATCH`: a chunk (with `Content-Range`) or a stream (without).
pub async fn patch(
    request: &Request<'_>,
    name: &RepositoryName,
    id: &Uuid,
    body: Body,
) -> HandlerResult {
    let range = chunk_range(request)?;
    let session = request
        .registry()
        .upload_chunk(request.cx, name, id, range, body_stream(body))
        .await?;
    Ok(in_progress(request, StatusCode::ACCEPTED, &session))
}

/// `PUT ?digest=`: completes the upload, with or without a final chunk.
pub async fn put(
    request: &Request<'_>,
    name: &RepositoryName,
    id: &Uuid,
    body: Body,
) -> HandlerResult {
    let digest = digest(request.query.get("digest").ok_or_else(|| {
        RegistryError::DigestInvalid("the digest query parameter is required".into())
    })?)?;
    let final_chunk = if has_body(request.headers) {
        Some((chunk_range(request)?, body_stream(body)))
    } else {
        None
    };
    request
        .registry()
        .finish_upload(request.cx, name, id, &digest, final_chunk)
        .await?;
    Ok(created(request, name, &digest))
}

/// `DELETE`: cancels the upload (`204 No Content`).
pub async fn cancel(request: &Request<'_>, name: &RepositoryName, id: &Uuid) -> HandlerResult {
    request
        .registry()
        .cancel_upload(request.cx, name, id)
        .await?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}
