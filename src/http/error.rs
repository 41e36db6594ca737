//! The distribution spec's error responses:
//! `{"errors":[{"code":"...","message":"...","detail":...}]}` with the matching status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::registry::RegistryError;
use crate::storage::StorageError;

/// Seconds a client is asked to wait before retrying when storage is unavailable.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Serialize)]
struct ErrorBody<'a> {
    errors: [ErrorEntry<'a>; 1],
}

#[derive(Serialize)]
struct ErrorEntry<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

/// Builds an error response with a spec error code.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        errors: [ErrorEntry {
            code,
            message,
            detail: None,
        }],
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The spec's status and error code for a registry error.
pub fn status_and_code(error: &RegistryError) -> (StatusCode, &'static str) {
    use RegistryError as E;
    match error {
        E::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        E::BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        E::BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        E::ContentRangeInvalid(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        E::ChunkOutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        E::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID"),
        E::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        E::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        E::ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
        E::ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        E::BlobTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        E::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        E::NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        E::PaginationNumberInvalid(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
        E::Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        // The mirror's upstream cannot give what is not cached: the client may retry.
        E::UpstreamUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        E::UpstreamUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        // The storage service is down or throttling: the client may retry.
        E::Storage(StorageError::Backend(_)) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        E::Storage(_) | E::Metadata(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = status_and_code(&self);
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let message = match &self {
            // The details (endpoint, key, cause) are for the log above, not for clients.
            RegistryError::Storage(StorageError::Backend(_)) => {
                "storage backend unavailable; retry later".to_string()
            }
            other => other.to_string(),
        };
        let mut response = error_response(status, code, message);
        let headers = response.headers_mut();
        match self {
            RegistryError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            RegistryError::ChunkOutOfOrder { size } => {
                if let Ok(v) = HeaderValue::from_str(&super::headers::upload_range(size)) {
                    headers.insert(header::RANGE, v);
                }
            }
            RegistryError::Storage(StorageError::Backend(_))
            | RegistryError::UpstreamUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        response
    }
}
