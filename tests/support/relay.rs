//! A counting reverse proxy on `127.0.0.1:<random port>` in front of a registry: it records
//! every request (method, path, whether it carried credentials) it forwards, so a test can
//! count what a pull-through mirror asks its upstream. It can be told to misbehave
//! ([`Mode`]): answer `429 Too Many Requests`, corrupt blob bodies, or redirect blob `GET`s
//! to itself under `/direct/...` (as registries redirect to object storage). Bodies stream
//! both ways. Stopped when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

/// One request the relay saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Whether it had an `Authorization` header.
    pub authorized: bool,
}

/// How the relay answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward everything.
    Forward = 0,
    /// `429 Too Many Requests` to everything.
    RateLimited = 1,
    /// Forward, but flip the first byte of every chunk of a blob `GET`'s body.
    CorruptBlobs = 2,
    /// Answer blob `GET`s with `307` to `<relay>/direct<path>`, which is forwarded.
    RedirectBlobs = 3,
    /// Forward, but send blob bodies at about 10 MiB/s (a slow upstream).
    SlowBlobs = 4,
}

/// The prefix of redirected blob paths.
pub const DIRECT: &str = "/direct";

struct RelayState {
    target: String,
    client: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
    mode: AtomicU8,
    /// The relay's own URL (for redirects).
    url: String,
    /// The last `Authorization` a request brought: redirected requests are forwarded with
    /// it, as a presigned URL carries its own authorization.
    last_authorization: Mutex<Option<axum::http::HeaderValue>>,
}

/// The relay; `url` is what the mirror is configured with as its upstream.
pub struct Relay {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<RelayState>,
    _server: super::http::BackgroundServer,
}

impl Relay {
    /// A relay forwarding to `target` (`http://127.0.0.1:PORT`); works from synchronous and
    /// asynchronous tests alike (it runs on its own thread and runtime).
    pub fn start(target: &str) -> Relay {
        let client = super::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .expect("relay client");
        let listener = super::http::BackgroundServer::listener();
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(RelayState {
            target: target.trim_end_matches('/').to_string(),
            client,
            seen: Mutex::new(Vec::new()),
            mode: AtomicU8::new(Mode::Forward as u8),
            url: format!("http://{addr}"),
            last_authorization: Mutex::new(None),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let server = super::http::BackgroundServer::start(listener, app, "relay");
        Relay {
            addr,
            url: format!("http://{addr}"),
            state,
            _server: server,
        }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// Forgets the requests seen so far.
    pub fn reset(&self) {
        self.state.seen.lock().expect("seen").clear();
    }

    /// How many requests of `method` had a path containing `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.contains(part))
            .count()
    }

    /// From now on, answer every request with `429 Too Many Requests` (or forward again).
    pub fn rate_limit(&self, on: bool) {
        self.set_mode(if on { Mode::RateLimited } else { Mode::Forward });
    }

    /// From now on, answer as `mode` says.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }
}

async fn forward(State(state): State<Arc<RelayState>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    state.seen.lock().expect("seen").push(Seen {
        method: method.to_string(),
        path: path.clone(),
        authorized: request.headers().contains_key("authorization"),
    });
    let mode = state.mode.load(Ordering::SeqCst);
    let blob_get = method == axum::http::Method::GET && path.contains("/blobs/sha");
    if mode == Mode::RedirectBlobs as u8 && blob_get && !path.starts_with(DIRECT) {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("{}{DIRECT}{path}", state.url))],
        )
            .into_response();
    }
    let direct = path.starts_with(DIRECT);
    let path = path.strip_prefix(DIRECT).unwrap_or(&path).to_string();
    if let Some(value) = request.headers().get("authorization") {
        *state.last_authorization.lock().expect("auth") = Some(value.clone());
    }
    if mode == Mode::RateLimited as u8 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "application/json")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
            .into_response();
    }
    let mut upstream = state.client.request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method"),
        format!("{}{path}", state.target),
    );
    for (name, value) in request.headers() {
        if name != "host" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    if direct
        && !request.headers().contains_key("authorization")
        && let Some(value) = state.last_authorization.lock().expect("auth").clone()
    {
        upstream = upstream.header("authorization", value.as_bytes());
    }
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        let body = request
            .into_body()
            .into_data_stream()
            .map_err(std::io::Error::other);
        upstream = upstream.body(reqwest::Body::wrap_stream(body));
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response = response.header(n, v);
        }
    }
    let corrupt = mode == Mode::CorruptBlobs as u8 && blob_get;
    let body = answer.bytes_stream().map_ok(move |chunk| {
        if corrupt && !chunk.is_empty() {
            let mut bytes = chunk.to_vec();
            bytes[0] ^= 0xff;
            bytes::Bytes::from(bytes)
        } else {
            chunk
        }
    });
    let slow = mode == Mode::SlowBlobs as u8 && blob_get;
    let body = body.and_then(move |chunk| async move {
        if slow {
            // 100 ms per MiB.
            tokio::time::sleep(Duration::from_micros(
                chunk.len() as u64 * 100_000 / (1 << 20),
            ))
            .await;
        }
        Ok(chunk)
    });
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
