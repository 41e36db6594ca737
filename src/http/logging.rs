//! One log line per request, and the `Docker-Distribution-API-Version` header on every
//! response.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;

use super::headers::API_VERSION;

fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Middleware: logs method, path, status, bytes in and out, and duration.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let bytes_in = content_length(request.headers());
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    let status = response.status().as_u16();
    let bytes_out = content_length(response.headers());
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "ferry::access", %method, %path, status, bytes_in, bytes_out, duration_ms = format_args!("{duration_ms:.1}"), "request");
    response
}
