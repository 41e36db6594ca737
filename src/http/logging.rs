//! The access log, and the `Docker-Distribution-API-Version` header on every response.
//!
//! One line per request, written when the response body is finished: when its last byte was
//! handed to the connection, or when the body was dropped before that (the client went away,
//! the connection broke). So the line carries the bytes really sent and received and the
//! full duration, not the `Content-Length` promised at the headers. (tower-http's
//! `TraceLayer` reports the end of a body only when it completes, not when it is cut, which
//! is the case an operator looks for in a log; hence this small wrapper.)
//!
//! The request metrics (when on: `crate::metrics`) and the request's span (when traces are
//! exported: `crate::otlp`), both found in the request's extensions, are recorded at the
//! same moment, from the same counts.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::headers::API_VERSION;
use crate::metrics::{Metrics, Route};
use crate::otlp::{RequestSpan, Tracer};
use crate::registry::context::{Caller, RequestContext};

/// Middleware: counts the request's bytes, wraps the response body so the line is written
/// (and the metrics recorded) when it ends, and sets the API version header.
pub async fn log_request(mut request: Request, next: Next) -> Response {
    // The request id is made here so that it names the line even of a request `classify`
    // refuses; `classify` takes it over.
    let id = RequestContext::new_id();
    let log = tracing::enabled!(target: "ferry::access", tracing::Level::INFO);
    let metrics = request.extensions().get::<Arc<Metrics>>().cloned();
    let trace = request
        .extensions()
        .get::<Tracer>()
        .cloned()
        .map(|tracer| TraceStart {
            tracer,
            wall: std::time::SystemTime::now(),
            parent: request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::otlp::parse_traceparent),
        });
    if !log && metrics.is_none() && trace.is_none() {
        // No access line will be written (log.level above info), no metrics: nothing to
        // count.
        request.extensions_mut().insert(RequestId(id));
        let mut response = next.run(request).await;
        response
            .headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        return response;
    }
    let started = Instant::now();
    let method = request.method().clone();
    // Only the log line needs these (no allocation per request for the metrics alone).
    let path = if log {
        request.uri().path().to_string()
    } else {
        String::new()
    };
    let received = Arc::new(AtomicU64::new(0));
    let (parts, body) = request.into_parts();
    let body = Body::new(Counted {
        inner: body,
        count: received.clone(),
        on_end: None,
    });
    let mut request = Request::from_parts(parts, body);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    let user = match response.extensions().get::<Caller>() {
        Some(Caller::User(name)) if log => Some(name.clone()),
        _ => None,
    };
    let line = AccessLine {
        log,
        metrics,
        trace,
        route: response
            .extensions()
            .get::<Route>()
            .copied()
            .unwrap_or(Route::Other),
        id,
        user,
        method,
        path,
        status: response.status().as_u16(),
        started,
        received,
    };
    let (parts, body) = response.into_parts();
    let body = Body::new(Counted {
        inner: body,
        count: Arc::new(AtomicU64::new(0)),
        on_end: Some(line),
    });
    Response::from_parts(parts, body)
}

/// The id of a request, in its extensions (the access log's, reused by its context).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of `request`, or a fresh one outside the logging layer (tests).
    pub fn of(request: &Request) -> String {
        request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(RequestContext::new_id)
    }
}

/// What the access line says, waiting for the end of the response body.
struct AccessLine {
    /// Whether the line is written (else only the metrics are recorded).
    log: bool,
    /// Where the request is counted, when metrics are on.
    metrics: Option<Arc<Metrics>>,
    /// Its span, when traces are exported.
    trace: Option<TraceStart>,
    /// The route `classify` found (`Other` for requests it did not see or refused).
    route: Route,
    id: String,
    /// The authenticated user, if any (never a credential).
    user: Option<String>,
    method: Method,
    path: String,
    status: u16,
    started: Instant,
    received: Arc<AtomicU64>,
}

impl AccessLine {
    fn write(&self, sent: u64, complete: bool) {
        let took = self.started.elapsed();
        let bytes_in = self.received.load(Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics
                .http
                .record(self.route, self.status, bytes_in, sent, took);
        }
        if let Some(trace) = &self.trace {
            let (trace_id, span_id) = crate::otlp::new_ids();
            let (trace_id, parent_span_id) = match trace.parent {
                Some((caller_trace, caller_span)) => (caller_trace, Some(caller_span)),
                None => (trace_id, None),
            };
            trace.tracer.record(RequestSpan {
                trace_id,
                span_id,
                parent_span_id,
                start_unix_nanos: crate::otlp::unix_nanos(trace.wall),
                end_unix_nanos: crate::otlp::unix_nanos(trace.wall + took),
                request_id: self.id.clone(),
                method: self.method.clone(),
                route: self.route,
                status: self.status,
                received: bytes_in,
                sent,
                complete,
            });
        }
        if !self.log {
            return;
        }
        let duration_ms = took.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "ferry::access",
            request_id = %self.id,
            user = self.user.as_deref().unwrap_or(""),
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes_in,
            bytes_out = sent,
            complete,
            duration_ms = format_args!("{duration_ms:.1}"),
            "request"
        );
    }
}

/// A request's span, waiting for the end of the response body.
struct TraceStart {
    tracer: Tracer,
    /// When the request arrived (wall clock, for the span).
    wall: std::time::SystemTime,
    /// The caller's trace and span (`traceparent`).
    parent: Option<([u8; 16], [u8; 8])>,
}

/// A body that counts the data bytes passing through it and, for a response, writes the
/// access line when it ends or is dropped.
struct Counted {
    inner: Body,
    count: Arc<AtomicU64>,
    on_end: Option<AccessLine>,
}

impl Counted {
    fn finish(&mut self, complete: bool) {
        if let Some(line) = self.on_end.take() {
            line.write(self.count.load(Ordering::Relaxed), complete);
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // An empty body may never be polled; anything else dropped early was cut.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
