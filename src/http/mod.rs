//! The HTTP layer: where a request enters. [`router`] runs every request through
//! [`classify`], which parses method and path once into a typed [`Endpoint`] (validated
//! names, digests, references, session ids; [`route`]) and the [`RequestContext`] (caller,
//! the access the endpoint needs, a request id), both put in the request's extensions for
//! the layers after it: **authorization is decided there**, between `classify` and
//! [`dispatch`], by [`authorize`] (which asks [`crate::auth`]). `dispatch` calls the handler of the resource: [`blobs`], [`uploads`],
//! [`manifests`], [`listing`] or [`search`] (`docker search`). Handlers translate between HTTP and the registry services;
//! they never touch files or SQL. [`error`] maps service errors onto the spec's error JSON;
//! [`logging`] writes one line per request and sets the API version header.

mod authorize;
mod blobs;
pub mod error;
pub mod headers;
mod listing;
mod logging;
mod manifests;
pub mod route;
mod search;
#[cfg(test)]
mod tests;
mod token;
mod uploads;

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use self::error::error_response;
use self::headers::UrlBuilder;
use self::route::{Endpoint, EndpointError, InvalidParameter, UploadStep};
use crate::auth::token::issuer::TOKEN_PATH;
use crate::registry::context::RequestContext;
use crate::registry::{RegistryApi, RegistryError, SharedRegistry};
use crate::storage::ByteStream;

/// What every handler gets: the registry and how to write URLs.
pub struct AppState {
    /// The registry services (the local registry, or a layer wrapping it).
    pub registry: SharedRegistry,
    /// `Location` URL policy.
    pub urls: UrlBuilder,
    /// Access control (open when no `auth` is configured).
    pub auth: crate::auth::Authenticator,
    /// The checks of `GET /health/ready`.
    pub readiness: crate::registry::health::Readiness,
}

/// The whole HTTP API as an axum router.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The HTTP API with `extra` routes beside it (the web UI, `crate::ui`), inside the access
/// log. `extra` must not claim a path of the API or of the routes here.
pub fn router_with(state: Arc<AppState>, extra: Router) -> Router {
    let mut api = Router::new().fallback(dispatch);
    // An open registry has nothing to decide: no layer (one less per request).
    if !state.auth.is_open() {
        api = api.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize::authorize,
        ));
    }
    let api = api
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(classify));
    // The token endpoint is outside the API (no endpoint to classify, nothing to authorize:
    // it authenticates the caller itself).
    Router::new()
        .route(TOKEN_PATH, axum::routing::get(token::issue))
        // Liveness: the process serves (no I/O, no credentials, reveals nothing else).
        .route("/health/live", axum::routing::get(health_live))
        // Readiness: the metadata database and the blob store answer.
        .route("/health/ready", axum::routing::get(health_ready))
        // Docker's v1 ping (docker search probes it first).
        .route("/v1/_ping", axum::routing::get(health_live))
        .with_state(state)
        .merge(extra)
        .fallback_service(api)
        .layer(axum::middleware::from_fn(logging::log_request))
}

/// `GET /health/live` and `GET /v1/_ping`: 200 `{}` while the process serves.
async fn health_live() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}

/// `GET /health/ready`: 200 `{}` when the metadata database and the blob store answer,
/// else 503 naming what does not (nothing more: no credentials are needed to ask).
async fn health_ready(State(state): State<Arc<AppState>>) -> Response {
    let failing = state.readiness.failing().await;
    if failing.is_empty() {
        return health_live().await;
    }
    let body = serde_json::json!({ "ready": false, "failing": failing });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
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

/// Middleware: the request edge. Parses the endpoint and builds the request context (into
/// the request's extensions), or answers the spec's error for a path that names none.
async fn classify(mut request: axum::extract::Request, next: Next) -> Response {
    let endpoint = match Endpoint::parse(request.method(), request.uri().path()) {
        Ok(endpoint) => endpoint,
        Err(e) => return endpoint_error(e, request.method(), request.uri()),
    };
    let mut context =
        RequestContext::anonymous(logging::RequestId::of(&request), endpoint.access());
    context.namespace = Query::from_uri(request.uri())
        .get("ns")
        .map(str::to_string)
        .filter(|ns| !ns.is_empty());
    if request
        .extensions()
        .get::<crate::notify::Notifying>()
        .is_some()
    {
        context.request = Some(Arc::new(headers::request_facts(&request)));
    }
    // For the metrics (when on): the route, and the uploads being received.
    let route = crate::metrics::Route::of(&endpoint);
    let _upload = request
        .extensions()
        .get::<Arc<crate::metrics::Metrics>>()
        .and_then(|metrics| metrics.http.upload_in_progress(route));
    request.extensions_mut().insert(context);
    request.extensions_mut().insert(endpoint);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(route);
    response
}

/// The answer to a request that names no endpoint.
fn endpoint_error(e: EndpointError, method: &axum::http::Method, uri: &Uri) -> Response {
    let error = match e {
        EndpointError::NotFound => {
            return error_response(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                format!("no API endpoint at {}", uri.path()),
            );
        }
        EndpointError::MethodNotAllowed => {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("{method} is not supported on {}", uri.path()),
            );
        }
        EndpointError::Invalid(InvalidParameter::Name(why)) => RegistryError::NameInvalid(why),
        EndpointError::Invalid(InvalidParameter::Digest(why)) => RegistryError::DigestInvalid(why),
        EndpointError::Invalid(InvalidParameter::Reference(why)) => why.into(),
        EndpointError::Invalid(InvalidParameter::UnknownManifest) => RegistryError::ManifestUnknown,
        EndpointError::Invalid(InvalidParameter::UnknownUpload) => RegistryError::BlobUploadUnknown,
    };
    error.into_response()
}

/// A digest from a query parameter (`?digest=`, `?mount=`).
fn digest(s: &str) -> Result<crate::oci::Digest, RegistryError> {
    Ok(s.parse::<crate::oci::Digest>()?)
}

/// Calls the handler of the endpoint [`classify`] found.
async fn dispatch(State(state): State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    // Moved out of the request, not cloned (the extractors for these clone).
    let (mut parts, body) = request.into_parts();
    let (Some(endpoint), Some(mut context)) = (
        parts.extensions.remove::<Endpoint>(),
        parts.extensions.remove::<RequestContext>(),
    ) else {
        // `classify` always puts both there.
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "request was not classified".to_string(),
        );
    };
    let headers = parts.headers;
    if let Some(facts) = context.request.as_mut() {
        Arc::make_mut(facts).base_url = state.urls.absolute(&headers, "");
    }
    let query = Query::from_uri(&parts.uri);
    let request = Request {
        state: &state,
        cx: &context,
        headers: &headers,
        query: &query,
    };
    let result = match endpoint {
        Endpoint::Base => Ok(base()),
        Endpoint::Catalog => listing::catalog(&request).await,
        Endpoint::Search => search::search(&request).await,
        Endpoint::Tags { name } => listing::tags(&request, &name).await,
        Endpoint::Referrers { name, digest } => listing::referrers(&request, &name, &digest).await,
        Endpoint::GetManifest {
            name,
            reference,
            head,
        } => manifests::get(&request, &name, &reference, head).await,
        Endpoint::PutManifest { name, reference } => {
            manifests::put(&request, &name, &reference, body).await
        }
        Endpoint::DeleteManifest { name, reference } => {
            manifests::delete(&request, &name, &reference).await
        }
        Endpoint::GetBlob { name, digest, head } => {
            blobs::get(&request, &name, &digest, head).await
        }
        Endpoint::DeleteBlob { name, digest } => blobs::delete(&request, &name, &digest).await,
        Endpoint::StartUpload { name } => uploads::start(&request, &name, body).await,
        Endpoint::Upload { name, id, step } => match step {
            UploadStep::Status => uploads::status(&request, &name, &id).await,
            UploadStep::Chunk => uploads::patch(&request, &name, &id, body).await,
            UploadStep::Finish => uploads::put(&request, &name, &id, body).await,
            UploadStep::Cancel => uploads::cancel(&request, &name, &id).await,
        },
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The parts of a request every handler reads.
struct Request<'a> {
    state: &'a AppState,
    cx: &'a RequestContext,
    headers: &'a HeaderMap,
    query: &'a Query,
}

impl Request<'_> {
    fn registry(&self) -> &dyn RegistryApi {
        self.state.registry.as_ref()
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
