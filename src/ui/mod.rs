//! The web UI (`ui.enabled`, default on): server-rendered pages under `/ui/` (and `/`,
//! which leads there), no script. [`pages`] renders (maud: escaped by default), [`params`]
//! checks what a request asks for (malformed is a `400` page), [`csrf`] guards the one form
//! that changes something (delete), [`format`] writes sizes and times.
//!
//! The UI is a client of the registry services, as the API handlers are: it reads through
//! [`crate::registry::browse::Browser`] and deletes through the same
//! [`crate::registry::api::Manifests::delete_manifest`] the API uses; it never touches SQL
//! or files. Access is the API's: the caller is authenticated by
//! [`crate::auth::Authenticator::authorize_browser`] (Basic only, since a browser speaks
//! nothing else) and every page shows only what its `Rights` let it pull; deleting needs
//! `storage.delete.enabled` and the `delete` right. Registry-wide totals and the collector's
//! estimate are shown to a logged-in user (or anyone on an open registry), never to the
//! anonymous caller of a registry with logins. With `auth.token` the UI is off (see
//! [`crate::auth::browser`]).

pub mod csrf;
pub mod format;
pub mod pages;
pub mod params;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::Markup;

use self::pages::Viewer;
use self::params::{BadRequest, RepoPath};
use crate::auth::browser::BrowserRefusal;
use crate::http::AppState;
use crate::oci::{Reference, RepositoryName};
use crate::registry::RegistryError;
use crate::registry::browse::Browser;
use crate::registry::context::{Access, Action, Caller, RequestContext};

/// The stylesheet, served at `/ui/style.css`.
const STYLE: &str = include_str!("style.css");

/// The largest form body read (a delete names one tag or digest).
const MAX_FORM: usize = 4096;

/// What the UI's handlers share.
pub struct Ui {
    app: Arc<AppState>,
    browser: Browser,
    delete_enabled: bool,
}

/// The UI's routes, to merge into the HTTP router (`/` and `/ui/...` only: never a path
/// of the API, `/v1/`, `/health/` or `/auth/token`). `delete_enabled`: deletes are allowed
/// at all (`storage.delete.enabled`, not read-only).
pub fn router(app: Arc<AppState>, browser: Browser, delete_enabled: bool) -> Router {
    let ui = Arc::new(Ui {
        app,
        browser,
        delete_enabled,
    });
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(repositories))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login))
        .route("/ui/storage", get(storage))
        .route("/ui/storage/gc", get(gc))
        .route("/ui/r/{*path}", get(repository_get).post(repository_post))
        .route("/ui/{*rest}", get(not_found))
        .with_state(ui)
}

/// Why a page is not shown.
#[derive(Debug)]
enum UiError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    Login(String),
    Unavailable,
    NotAllowed(String),
    Failed,
}

impl From<BadRequest> for UiError {
    fn from(BadRequest(why): BadRequest) -> Self {
        UiError::BadRequest(why)
    }
}

impl From<RegistryError> for UiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NameUnknown => {
                UiError::NotFound("No such repository (or you may not pull it).".to_string())
            }
            RegistryError::ManifestUnknown => {
                UiError::NotFound("No such manifest or tag.".to_string())
            }
            RegistryError::Unsupported(why) => UiError::NotAllowed(why.to_string()),
            RegistryError::Metadata(_) | RegistryError::Storage(_) => {
                tracing::error!(error = %e, "web UI: the registry failed");
                UiError::Failed
            }
            other => UiError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let anonymous = Viewer {
            user: None,
            can_log_in: false,
        };
        let (status, message) = match self {
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            UiError::NotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, m),
            UiError::Failed => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The registry could not answer; try again shortly.".to_string(),
            ),
            UiError::Unavailable => (
                StatusCode::FORBIDDEN,
                "The web UI is off on this registry: it uses token authentication (auth.token), \
                 whose rights only the token server knows. Use a registry client with a token."
                    .to_string(),
            ),
            UiError::Login(challenge) => {
                let mut response = html(
                    StatusCode::UNAUTHORIZED,
                    pages::layout(
                        "Log in",
                        &anonymous,
                        pages::error("Please log in with your registry user name and password."),
                    ),
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                return response;
            }
        };
        html(
            status,
            pages::layout("Error", &anonymous, pages::error(&message)),
        )
    }
}

type PageResult = Result<Response, UiError>;

/// A page with the UI's headers: no script, no framing, nothing cached (pages depend on
/// who asks).
fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A caller the UI serves: its context (caller and rights) and the header's view of it.
struct Visitor {
    cx: RequestContext,
    viewer: Viewer,
}

impl Visitor {
    fn page(&self, title: &str, body: Markup) -> Response {
        html(StatusCode::OK, pages::layout(title, &self.viewer, body))
    }

    /// Registry-wide pages: anyone on an open registry, logged-in users otherwise.
    fn may_see_totals(&self) -> bool {
        !self.cx.is_restricted() || self.cx.caller != Caller::Anonymous
    }
}

/// Authenticates the browser.
async fn visitor(ui: &Ui, parts: &Parts, want_login: bool) -> Result<Visitor, UiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let grant = ui
        .app
        .auth
        .authorize_browser(
            parts
                .headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            peer,
            want_login,
        )
        .await
        .map_err(|refusal| match refusal {
            BrowserRefusal::Login { challenge } => UiError::Login(challenge),
            BrowserRefusal::Unavailable => UiError::Unavailable,
        })?;
    let mut cx = RequestContext::anonymous(RequestContext::new_id(), Access::Base);
    cx.caller = grant.caller;
    cx.rights = grant.rights;
    let viewer = Viewer {
        user: match &cx.caller {
            Caller::User(name) => Some(name.clone()),
            Caller::Anonymous => None,
        },
        can_log_in: !ui.app.auth.is_open(),
    };
    Ok(Visitor { cx, viewer })
}

/// The host a pull command names: the request's `Host` (HTTP/2: `:authority`).
fn request_host(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
}

async fn to_ui() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, _) = request.into_parts();
    visitor(&ui, &parts, false).await?;
    Err(UiError::NotFound("No such page.".to_string()))
}

/// `/ui/login`: asks for credentials until valid ones come, then goes to the list.
async fn login(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, _) = request.into_parts();
    visitor(&ui, &parts, true).await?;
    Ok(to_ui().await)
}

/// `/ui/?q=&last=&n=`: the repositories the caller may pull.
async fn repositories(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, _) = request.into_parts();
    let visitor = visitor(&ui, &parts, false).await?;
    let query = params::list_query(parts.uri.query())?;
    let list = ui
        .browser
        .repositories(&visitor.cx, &query.q, query.last.as_deref(), query.n)
        .await?;
    Ok(visitor.page(
        "Repositories",
        pages::repositories(&list, &query.q, query.n),
    ))
}

async fn storage(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, _) = request.into_parts();
    let visitor = visitor(&ui, &parts, false).await?;
    if !visitor.may_see_totals() {
        return Err(login_required(&ui, &parts).await);
    }
    let totals = ui.browser.totals().await?;
    Ok(visitor.page("Storage", pages::storage(&totals)))
}

async fn gc(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, _) = request.into_parts();
    let visitor = visitor(&ui, &parts, false).await?;
    if !visitor.may_see_totals() {
        return Err(login_required(&ui, &parts).await);
    }
    let (plain, untagged) = ui.browser.reclaimable().await?;
    let grace = humantime::format_duration(ui.browser.grace()).to_string();
    Ok(visitor.page("Garbage collection", pages::gc(&plain, &untagged, &grace)))
}

/// The challenge for an anonymous caller on a page that needs a login.
async fn login_required(ui: &Ui, parts: &Parts) -> UiError {
    match visitor(ui, parts, true).await {
        Err(e) => e,
        Ok(_) => UiError::Forbidden("Log in to see this page.".to_string()),
    }
}

/// `/ui/r/<name>` (tags), `/ui/r/<name>/-/manifest/<digest>`, `/ui/r/<name>/-/delete`
/// (the confirmation).
async fn repository_get(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, _) = request.into_parts();
    let visitor = visitor(&ui, &parts, false).await?;
    let path = parts.uri.path().strip_prefix("/ui/r/").unwrap_or_default();
    let host = request_host(&parts).unwrap_or_else(|| "REGISTRY".to_string());
    match params::repo_path(path)? {
        RepoPath::Tags(name) => {
            let query = params::list_query(parts.uri.query())?;
            let list = ui
                .browser
                .tags(&visitor.cx, &name, query.last.as_deref(), query.n)
                .await?;
            let can_delete = ui.can_delete(&visitor.cx, &name);
            Ok(visitor.page(
                name.as_str(),
                pages::tags(
                    name.as_str(),
                    &list,
                    &host,
                    can_delete,
                    query.n,
                    query.last.is_none(),
                ),
            ))
        }
        RepoPath::Manifest(name, digest) => {
            let view = ui.browser.manifest(&visitor.cx, &name, &digest).await?;
            let can_delete = ui.can_delete(&visitor.cx, &name);
            Ok(visitor.page(
                name.as_str(),
                pages::manifest(name.as_str(), &view, &host, can_delete),
            ))
        }
        RepoPath::Delete(name) => {
            let reference = params::reference(params::single(parts.uri.query(), "reference")?)?;
            ui.check_delete(&visitor.cx, &name)?;
            let is_digest = matches!(reference, Reference::Digest(_));
            Ok(visitor.page(
                "Delete",
                pages::confirm_delete(name.as_str(), &reference.to_string(), is_digest),
            ))
        }
    }
}

/// `POST /ui/r/<name>/-/delete` with `reference=<tag or digest>`: from this registry's own
/// page only (CSRF), with the right, through the registry's delete.
async fn repository_post(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let (parts, body) = request.into_parts();
    let visitor = visitor(&ui, &parts, false).await?;
    if !csrf::same_origin(&parts.headers, request_host(&parts).as_deref()) {
        return Err(UiError::Forbidden(
            "This form must be sent from this registry's own page (its Origin or Referer did not match)."
                .to_string(),
        ));
    }
    let path = parts.uri.path().strip_prefix("/ui/r/").unwrap_or_default();
    let RepoPath::Delete(name) = params::repo_path(path)? else {
        return Err(UiError::NotAllowed(
            "Only deletes are sent here.".to_string(),
        ));
    };
    ui.check_delete(&visitor.cx, &name)?;
    let body = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| UiError::BadRequest("the form is too large".to_string()))?;
    let form = std::str::from_utf8(&body)
        .map_err(|_| UiError::BadRequest("the form is not UTF-8".to_string()))?;
    let reference = params::reference(params::single(Some(form), "reference")?)?;
    let mut cx = visitor.cx.clone();
    cx.access = Access::Repository {
        name: name.clone(),
        actions: &[Action::Delete],
    };
    ui.app
        .registry
        .delete_manifest(&cx, &name, &reference)
        .await?;
    tracing::info!(
        request_id = %cx.id,
        caller = %cx.caller,
        repository = %name,
        reference = %reference,
        "web UI: deleted"
    );
    Ok(visitor.page(
        "Deleted",
        pages::deleted(name.as_str(), &reference.to_string()),
    ))
}

impl Ui {
    fn can_delete(&self, cx: &RequestContext, name: &RepositoryName) -> bool {
        self.delete_enabled && cx.may(name, Action::Delete)
    }

    fn check_delete(&self, cx: &RequestContext, name: &RepositoryName) -> Result<(), UiError> {
        if !self.delete_enabled {
            return Err(UiError::NotAllowed(
                "Deleting is disabled on this registry (storage.delete.enabled).".to_string(),
            ));
        }
        if !cx.may(name, Action::Pull) {
            return Err(RegistryError::NameUnknown.into());
        }
        if !cx.may(name, Action::Delete) {
            return Err(UiError::Forbidden(format!(
                "{} may not delete from {name}.",
                cx.caller
            )));
        }
        Ok(())
    }
}
