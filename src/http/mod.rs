//! The HTTP layer: where a request enters. [`router`] sends every `/v2/...` request to
//! [`dispatch`], which parses the path from its end ([`route`]), validates names and
//! digests, and calls the handler of the resource: [`blobs`], [`uploads`], [`manifests`]
//! or [`listing`]. Handlers translate between HTTP and the registry services; they never
//! touch files or SQL. [`error`] maps service errors onto the spec's error JSON; [`logging`]
//! writes one line per request and sets the API version header.

mod blobs;
pub mod error;
pub mod headers;
mod listing;
mod logging;
mod manifests;
pub mod route;
mod uploads;

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use self::error::error_response;
use self::headers::UrlBuilder;
use self::route::Route;
use crate::oci::{Digest, RepositoryName};
use crate::registry::{Registry, RegistryError};
use crate::storage::ByteStream;

/// What every handler gets: the registry and how to write URLs.
pub struct AppState {
    /// The registry services.
    pub registry: Registry,
    /// `Location` URL policy.
    pub urls: UrlBuilder,
}

/// The whole HTTP API as an axum router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(state)
        .layer(axum::middleware::from_fn(logging::log_request))
}

/// A handler's result: a response, or a registry error rendered as spec JSON.
type HandlerResult = Result<Response, RegistryError>;

/// The parsed query string, in order, with repeated keys kept.
struct Query(Vec<(String, String)>);

impl Query {
    fn from_uri(uri: &Uri) -> Self {
        Query(
            uri.query()
                .and_then(|q| serde_urlencoded::from_str(q).ok())
                .unwrap_or_default(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The request body as a stream of bytes for the storage layer.
fn body_stream(body: Body) -> ByteStream<'static> {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

/// Whether the request carries a body (a final chunk on PUT, say).
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn repository(name: &str) -> Result<RepositoryName, RegistryError> {
    Ok(RepositoryName::parse(name)?)
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    Ok(s.parse::<Digest>()?)
}

/// The one entry point of the API: route, validate, hand over to the resource handler.
async fn dispatch(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(route) = Route::parse(uri.path()) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no API endpoint at {}", uri.path()),
        );
    };
    let query = Query::from_uri(&uri);
    let request = Request {
        state: &state,
        headers: &headers,
        query: &query,
    };
    let result = match (route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => Ok(base()),
        (Route::Catalog, &Method::GET) => listing::catalog(&request).await,
        (Route::Tags { name }, &Method::GET) => listing::tags(&request, &name).await,
        (Route::Referrers { name, digest }, &Method::GET) => {
            listing::referrers(&request, &name, &digest).await
        }
        (Route::Manifest { name, reference }, &Method::GET) => {
            manifests::get(&request, &name, &reference, false).await
        }
        (Route::Manifest { name, reference }, &Method::HEAD) => {
            manifests::get(&request, &name, &reference, true).await
        }
        (Route::Manifest { name, reference }, &Method::PUT) => {
            manifests::put(&request, &name, &reference, body).await
        }
        (Route::Manifest { name, reference }, &Method::DELETE) => {
            manifests::delete(&request, &name, &reference).await
        }
        (Route::Blob { name, digest }, &Method::GET) => {
            blobs::get(&request, &name, &digest, false).await
        }
        (Route::Blob { name, digest }, &Method::HEAD) => {
            blobs::get(&request, &name, &digest, true).await
        }
        (Route::Blob { name, digest }, &Method::DELETE) => {
            blobs::delete(&request, &name, &digest).await
        }
        (Route::UploadStart { name }, &Method::POST) => uploads::start(&request, &name, body).await,
        (Route::Upload { name, id }, &Method::GET) => uploads::status(&request, &name, &id).await,
        (Route::Upload { name, id }, &Method::PATCH) => {
            uploads::patch(&request, &name, &id, body).await
        }
        (Route::Upload { name, id }, &Method::PUT) => {
            uploads::put(&request, &name, &id, body).await
        }
        (Route::Upload { name, id }, &Method::DELETE) => {
            uploads::cancel(&request, &name, &id).await
        }
        _ => {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("{method} is not supported on {}", uri.path()),
            );
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The parts of a request every handler reads.
struct Request<'a> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    query: &'a Query,
}

impl Request<'_> {
    fn registry(&self) -> &Registry {
        &self.state.registry
    }

    fn url(&self, path: &str) -> String {
        self.state.urls.url(self.headers, path)
    }

    fn header(&self, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET /v2/`: the API version check.
fn base() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}
