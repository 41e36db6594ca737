//! `GET /v2/<name>/tags/list`, `GET /v2/_catalog`, `GET /v2/<name>/referrers/<digest>`.

use axum::http::{HeaderName, header};
use axum::response::IntoResponse;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::headers::OCI_FILTERS_APPLIED;
use super::{HandlerResult, Request};
use crate::oci::manifest::media_type;
use crate::oci::{Digest, RepositoryName};
use crate::registry::RegistryError;
use crate::registry::listing::{Page, PageRequest};

/// A JSON listing with a `Link` header to the next page when there is one. The body is
/// `{` + `head` + the page's names as an array + `}`, written directly (measured: a page
/// of 5,000 tags spent two thirds of its CPU splitting the names for serde).
fn paged(path: &str, page: &Page, head: &str) -> HandlerResult {
    let mut body = Vec::with_capacity(head.len() + 2);
    body.push(b'{');
    body.extend_from_slice(head.as_bytes());
    page.entries.write_json(&mut body);
    body.push(b'}');
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(last) = &page.next_last {
        let link = format!(
            "<{path}?n={}&last={}>; rel=\"next\"",
            page.limit,
            utf8_percent_encode(last, NON_ALPHANUMERIC)
        );
        if let Ok(v) = link.parse() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

/// The page asked for with `n` and `last`.
fn page_request<'a>(request: &'a Request<'_>) -> Result<PageRequest<'a>, RegistryError> {
    PageRequest::parse(request.query.get("n"), request.query.get("last"))
}

/// The repository's tags, paginated with `n` and `last`.
pub async fn tags(request: &Request<'_>, name: &RepositoryName) -> HandlerResult {
    let page = request
        .registry()
        .list_tags(request.cx, name, page_request(request)?)
        .await?;
    // `{"name":<name>,"tags":[...]}`; a repository name never needs escaping, but JSON
    // is written by serde_json all the same.
    let head = format!(
        "\"name\":{},\"tags\":",
        serde_json::Value::from(name.as_str())
    );
    paged(&format!("/v2/{name}/tags/list"), &page, &head)
}

/// The repositories, paginated with `n` and `last`.
pub async fn catalog(request: &Request<'_>) -> HandlerResult {
    let page = request
        .registry()
        .list_repositories(request.cx, page_request(request)?)
        .await?;
    paged("/v2/_catalog", &page, "\"repositories\":")
}

/// The manifests whose subject is `digest`, as an image index.
pub async fn referrers(
    request: &Request<'_>,
    name: &RepositoryName,
    subject: &Digest,
) -> HandlerResult {
    let artifact_type = request.query.get("artifactType").filter(|t| !t.is_empty());
    let index = request
        .registry()
        .referrers(request.cx, name, subject, artifact_type)
        .await?;
    let mut response = ([(header::CONTENT_TYPE, media_type::OCI_INDEX)], index).into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            HeaderName::from_static(OCI_FILTERS_APPLIED),
            "artifactType".parse().expect("static header value"),
        );
    }
    Ok(response)
}
