//! In-process tests of the request edge: the router answered without a socket
//! (`tower::ServiceExt::oneshot`), over an in-memory database and a temporary directory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use super::{AppState, router};
use crate::registry::Registry;

struct Edge {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

async fn edge() -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::in_dir_for_tests(dir.path()).await;
    let state = Arc::new(AppState {
        readiness: crate::registry::health::Readiness::of(&registry),
        registry: Arc::new(registry),
        urls: Default::default(),
        auth: crate::auth::Authenticator::open(),
    });
    Edge {
        app: router(state),
        _dir: dir,
    }
}

/// `(status, error code or "")` of `method path`.
async fn answer(edge: &Edge, method: Method, path: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = edge.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, code)
}

#[tokio::test]
async fn the_edge_answers_each_kind_of_bad_request_with_the_spec_code() {
    let edge = edge().await;
    let uuid = "8a9f7d4c-6b1e-4f55-9d8e-1c2b3a4d5e6f";
    let digest = format!("sha256:{}", "a".repeat(64));
    let cases: Vec<(Method, String, StatusCode, &str)> = vec![
        (Method::GET, "/v2/".into(), StatusCode::OK, ""),
        (Method::HEAD, "/v2".into(), StatusCode::OK, ""),
        (Method::GET, "/v2/_catalog".into(), StatusCode::OK, ""),
        (
            Method::GET,
            "/v3/x".into(),
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/x/other/y".into(),
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            Method::POST,
            "/v2/x/manifests/v1".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        ),
        (
            Method::GET,
            "/v2/Upper/tags/list".into(),
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            "/v2/a%2Fb/tags/list".into(),
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            "/v2/x/tags/list".into(),
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/x/manifests/-bad".into(),
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            Method::HEAD,
            "/v2/x/manifests/sha256:abc".into(),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::PUT,
            "/v2/x/manifests/-bad".into(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            Method::DELETE,
            "/v2/x/manifests/sha256:abc".into(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/x/blobs/sha256:abc".into(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            format!("/v2/x/blobs/{digest}"),
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/x/blobs/uploads/..%2F..".into(),
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PATCH,
            "/v2/x/blobs/uploads/a/b".into(),
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::DELETE,
            format!("/v2/x/blobs/uploads/{uuid}"),
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::POST,
            format!("/v2/x/blobs/uploads/{uuid}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        ),
        (
            Method::GET,
            format!("/v2/x/referrers/{digest}"),
            StatusCode::OK,
            "",
        ),
        (
            Method::GET,
            "/v1/search?q=x&n=5&page=2".into(),
            StatusCode::OK,
            "",
        ),
        (
            Method::GET,
            "/v1/search?q=x&n=0".into(),
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
        ),
        (
            Method::GET,
            "/v1/search?page=-1".into(),
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
        ),
        (
            Method::DELETE,
            "/v1/search".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        ),
    ];
    for (method, path, status, code) in cases {
        let got = answer(&edge, method.clone(), &path).await;
        assert_eq!(got, (status, code.to_string()), "{method} {path}");
    }
}

#[tokio::test]
async fn an_upload_session_round_trips_through_the_router() {
    let edge = edge().await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v2/team/app/blobs/uploads/")
        .body(Body::empty())
        .unwrap();
    let response = edge.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (status, code) = answer(&edge, Method::GET, &location).await;
    assert_eq!((status, code.as_str()), (StatusCode::NO_CONTENT, ""));
    let (status, _) = answer(&edge, Method::DELETE, &location).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, code) = answer(&edge, Method::GET, &location).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
}
