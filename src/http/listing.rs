//! `GET /v2/<name>/tags/list`, `GET /v2/_catalog`, `GET /v2/<name>/referrers/<digest>`.

use axum::http::{HeaderName, header};
use axum::response::IntoResponse;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::headers::OCI_FILTERS_APPLIED;
use super::{HandlerResult, Request};
use crate::metadata::Names;
use crate::oci::manifest::media_type;
use crate::oci::{Digest, RepositoryName};
use crate::registry::RegistryError;
use crate::registry::listing::{Page, PageRequest};

/// `GET /v2/<name>/tags/list`'s answer (serialized as is, no intermediate JSON value).
#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: &'a Names,
}

/// `GET /v2/_catalog`'s answer.
#[derive(Serialize)]
struct Catalog<'a> {
    repositories: &'a Names,
}

/// A JSON listing (`body`, serialized as is) with a `Link` header to the next page when
/// there is one.
fn paged(path: &str, page: &Page, body: impl Serialize) -> HandlerResult {
    // Serializing names into a string cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
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
    let body = TagList {
        name: name.as_str(),
        tags: &page.entries,
    };
    paged(&format!("/v2/{name}/tags/list"), &page, body)
}

/// The repositories, paginated with `n` and `last`.
pub async fn catalog(request: &Request<'_>) -> HandlerResult {
    let page = request
        .registry()
        .list_repositories(request.cx, page_request(request)?)
        .await?;
    let body = Catalog {
        repositories: &page.entries,
    };
    paged("/v2/_catalog", &page, body)
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
