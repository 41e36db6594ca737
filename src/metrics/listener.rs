//! The debug listener (`http.debug.addr`): a second, plain-HTTP listener for operators,
//! apart from the API port. It serves the metrics at `http.debug.prometheus.path` (when
//! `http.debug.prometheus.enabled`) and `404` everywhere else; it stops with the server.

use std::future::IntoFuture;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE, Metrics};

/// The debug listener's routes: the metrics at `path` (`None`: nothing), `404` elsewhere.
pub fn router(metrics: Option<(Arc<Metrics>, &str)>) -> Router {
    let mut router = Router::new();
    if let Some((metrics, path)) = metrics {
        router = router.route(path, axum::routing::get(move || scrape(metrics.clone())));
    }
    router.fallback(|| async { StatusCode::NOT_FOUND })
}

/// `GET <path>`: every metric now. Reading `/proc` is file I/O: off the async threads.
async fn scrape(metrics: Arc<Metrics>) -> Response {
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves `router` on `listener` until `cancel`. Scrapes are short: connections still open
/// then are dropped, not drained.
pub async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    let local = listener.local_addr().ok();
    tokio::select! {
        () = cancel.cancelled() => {}
        result = axum::serve(listener, router).into_future() => {
            if let Err(e) = result {
                tracing::error!(addr = ?local, error = %e, "the debug listener (http.debug.addr) failed");
            }
        }
    }
}
