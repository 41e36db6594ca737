//! The connection loop, one for plain HTTP and HTTPS: accepts TCP connections and serves
//! each in a task of its own (so a client that is slow to finish its TLS handshake or its
//! headers holds only its own connection), with HTTP/1.1 and HTTP/2 on the same port (over
//! TLS by ALPN; on plain HTTP, HTTP/2 with prior knowledge), and drains on shutdown.
//!
//! Limits on what a client may hold (`connections`):
//! - a TLS handshake, and the first request on a connection, within `headertimeout`;
//! - each request's headers within `headertimeout` from the end of the previous response
//!   (HTTP/1.1: this is also how long an idle kept-alive connection stays open);
//! - headers of at most [`MAX_HEADER_BYTES`] (HTTP/1.1 and HTTP/2) and [`MAX_HEADERS`]
//!   fields (HTTP/1.1), else `431 Request Header Fields Too Large`; HTTP/1.1 reads take up
//!   to [`READ_BUFFER_BYTES`] at once (so hyper stops at a head that large, and the service
//!   refuses any head over [`MAX_HEADER_BYTES`] before routing it);
//! - a request body silent for `bodytimeout` fails ([`super::idle_body`]);
//! - HTTP/2 connections are pinged every [`H2_KEEPALIVE`] and closed when the client does
//!   not answer.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::future::{Either, Ready, ready};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use super::idle_body::IdleBody;
use crate::config::ConnectionSettings;

/// Largest request head (request line and headers), in bytes. Docker's bearer tokens with
/// many scopes run to a few KiB; Go's servers allow 1 MiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest read from an HTTP/1.1 connection (hyper's read buffer, which also bounds the
/// head hyper will buffer, and its write buffer). Request bodies arrive in chunks up to this
/// size: a 1 GiB push takes ~1,000 reads instead of ~16,000 at 64 KiB (server CPU per GiB
/// pushed −7 %), and responses are flushed in up to this much (per GiB pulled −16 %).
pub const READ_BUFFER_BYTES: usize = 1024 * 1024;
/// Most header fields in an HTTP/1.1 request (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// How often an HTTP/2 client is pinged (and must answer within 20 s).
pub const H2_KEEPALIVE: Duration = Duration::from_secs(60);

/// What the loop needs besides the listener.
pub struct Serving {
    /// The HTTP API.
    pub router: Router,
    /// HTTPS when set.
    pub tls: Option<TlsAcceptor>,
    /// Timeouts.
    pub limits: ConnectionSettings,
    /// How long in-flight requests may finish after `shutdown`.
    pub drain: Duration,
}

/// Serves connections from `listener` until `shutdown` completes, then lets the requests
/// in flight finish within the drain timeout.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let http = Arc::new(http_builder(&serving.limits));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, say: wait for connections to close.
                    tracing::error!(error = %e, "accepting a connection failed; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            peer,
            http: http.clone(),
            router: serving.router.clone(),
            tls: serving.tls.clone(),
            limits: serving.limits,
        };
        tokio::spawn(connection.run(tcp, graceful.watcher()));
    }
    drop(listener);
    if tokio::time::timeout(serving.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?serving.drain, "requests still running after the drain timeout; exiting");
    }
    Ok(())
}

/// HTTP/1.1 and HTTP/2 with the limits above.
fn http_builder(limits: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(H2_KEEPALIVE);
    builder
}

/// Errors of one connection that `accept` reports (axum's serve skips the same).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection.
struct Connection {
    peer: SocketAddr,
    http: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionSettings,
}

impl Connection {
    async fn run(self, tcp: TcpStream, watcher: Watcher) {
        match self.tls.clone() {
            None => self.serve_http(tcp, watcher).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(tcp);
                let tls = match self.limits.header_timeout {
                    Some(limit) => match tokio::time::timeout(limit, handshake).await {
                        Ok(result) => result,
                        Err(_) => {
                            tracing::debug!(peer = %self.peer, "TLS handshake not finished within connections.headertimeout; closing");
                            return;
                        }
                    },
                    None => handshake.await,
                };
                match tls {
                    Ok(tls) => self.serve_http(tls, watcher).await,
                    // Scanners and clients that do not trust the certificate end here.
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                }
            }
        }
    }

    async fn serve_http<I>(self, io: I, watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let started = Arc::new(AtomicBool::new(false));
        let service = RequestService {
            router: self.router,
            peer: self.peer,
            body_timeout: self.limits.body_timeout,
            started: started.clone(),
        };
        let connection = watcher.watch(self.http.serve_connection(TokioIo::new(io), service));
        tokio::pin!(connection);
        // hyper's header timeout starts once the protocol is known; a client that sends
        // nothing (or not even enough to tell HTTP/1.1 from HTTP/2) is closed here.
        if let Some(limit) = self.limits.header_timeout {
            tokio::select! {
                result = &mut connection => return log_end(self.peer, result),
                () = tokio::time::sleep(limit) => {
                    if !started.load(Ordering::Relaxed) {
                        tracing::debug!(peer = %self.peer, "no request within connections.headertimeout; closing");
                        return;
                    }
                }
            }
        }
        log_end(self.peer, connection.await);
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Hands each request to the router, with its body under `bodytimeout` and the client's
/// address in its extensions (`ConnectInfo<SocketAddr>`).
#[derive(Clone)]
struct RequestService {
    router: Router,
    peer: SocketAddr,
    body_timeout: Option<Duration>,
    /// Set at the connection's first request.
    started: Arc<AtomicBool>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for RequestService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<axum::response::Response, Infallible>>,
        axum::routing::future::RouteFuture<Infallible>,
    >;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        if head_len(&request) > MAX_HEADER_BYTES {
            return Either::Left(ready(Ok(head_too_large())));
        }
        let mut request = request.map(|body| match self.body_timeout {
            Some(limit) => Body::new(IdleBody::new(body, limit, self.peer)),
            None => Body::new(body),
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A Router is always ready: `call` needs no `poll_ready` first.
        Either::Right(self.router.clone().call(request))
    }
}

/// The size of `request`'s head as sent in HTTP/1.1: request line, header lines, blank line.
fn head_len<B>(request: &hyper::Request<B>) -> usize {
    const LINE_END: usize = 2;
    let uri = request.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| "https://".len() + a.as_str().len());
    let request_line =
        request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + LINE_END;
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + LINE_END)
        .sum();
    request_line + fields + LINE_END
}

/// What hyper answers to a head over its own limit: `431`, no body, and the connection closed.
fn head_too_large() -> axum::response::Response {
    let mut response = axum::response::Response::new(Body::empty());
    *response.status_mut() = hyper::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}
