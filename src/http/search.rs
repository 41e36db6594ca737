//! `GET /v1/search?q=&n=&page=`: what `docker search <registry>/<term>` asks (after
//! `GET /v1/_ping`). Docker's v1 answer, with Quay's paging fields (`num_pages`, `page`,
//! `page_size`), which Docker ignores. A description is the
//! `org.opencontainers.image.description` annotation of the repository's most recently
//! tagged manifest that has one. Ferry has no stars or official images: those fields are `0`
//! and `false`.

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::{HandlerResult, Request};
use crate::registry::search::SearchRequest;

/// The answer (serialized as is).
#[derive(Serialize)]
struct SearchResults<'a> {
    query: &'a str,
    num_results: u64,
    num_pages: u64,
    page: u64,
    page_size: u32,
    results: Vec<SearchResult<'a>>,
}

/// One repository in the answer, as Docker's `registry.SearchResult` reads it.
#[derive(Serialize)]
struct SearchResult<'a> {
    name: &'a str,
    description: &'a str,
    is_official: bool,
    is_automated: bool,
    star_count: u32,
}

/// The page of repository names containing `q` that the caller may pull.
pub async fn search(request: &Request<'_>) -> HandlerResult {
    let query = request.query;
    let search = SearchRequest::parse(query.get("q"), query.get("n"), query.get("page"))?;
    let found = request
        .registry()
        .search_repositories(request.cx, &search)
        .await?;
    let body = SearchResults {
        query: &search.query,
        num_results: found.total,
        num_pages: found.total.div_ceil(u64::from(search.page_size)),
        page: search.page,
        page_size: search.page_size,
        results: found
            .names
            .iter()
            .zip(&found.descriptions)
            .map(|(name, description)| SearchResult {
                name,
                description,
                is_official: false,
                is_automated: false,
                star_count: 0,
            })
            .collect(),
    };
    // Serializing names and numbers into a string cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
