//! OpenTelemetry trace export: one server span per request, sent over OTLP/HTTP
//! (protobuf, [`proto`]) with the `reqwest` client Ferry already has. Off by default; on
//! when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (a base: `/v1/traces` is appended) is set, and off again with `OTEL_TRACES_EXPORTER=none`
//! (what Distribution's image sets) or `OTEL_SDK_DISABLED=true`. `OTEL_SERVICE_NAME` names
//! the service (default `ferry`); `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,...`) adds
//! headers (a collector's credentials).
//!
//! The span is recorded by the access-log layer (`http/logging.rs`) when the response body
//! ends or is cut, with the same request id as the access line (`ferry.request_id`); a
//! W3C `traceparent` header makes it a child of the caller's span. Spans wait in a bounded
//! queue (full: dropped, never waited for) and go out in batches from one task, which
//! flushes what is queued when the server stops.

pub mod proto;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Route;
use proto::Value;

/// Where spans go.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    /// The full URL spans are posted to.
    pub url: String,
    /// `service.name`.
    pub service: String,
    /// Extra request headers.
    pub headers: HeaderMap,
}

/// A trace setting that cannot be used (the start is refused, naming the variable).
#[derive(Debug, thiserror::Error)]
#[error("{var}: {why}")]
pub struct TraceSetupError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub why: String,
}

impl TraceSettings {
    /// The settings `var` (an environment lookup) gives; `None`: no export.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, TraceSetupError> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let (var_name, url) = match (
            set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            set("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        let parsed = url::Url::parse(&url).map_err(|e| TraceSetupError {
            var: var_name,
            why: format!("{url:?} is not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TraceSetupError {
                var: var_name,
                why: format!("{url:?}: OTLP/HTTP needs an http:// or https:// URL"),
            });
        }
        let mut headers = HeaderMap::new();
        for pair in set("OTEL_EXPORTER_OTLP_HEADERS")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let invalid = || TraceSetupError {
                var: "OTEL_EXPORTER_OTLP_HEADERS",
                why: "expected key=value pairs separated by commas".to_string(),
            };
            let (k, v) = pair.split_once('=').ok_or_else(invalid)?;
            let v = percent_encoding::percent_decode_str(v.trim()).decode_utf8_lossy();
            headers.insert(
                HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| invalid())?,
                HeaderValue::from_str(&v).map_err(|_| invalid())?,
            );
        }
        Ok(Some(TraceSettings {
            url,
            service: set("OTEL_SERVICE_NAME").unwrap_or_else(|| "ferry".to_string()),
            headers,
        }))
    }
}

/// One request, as a span.
#[derive(Debug)]
pub struct RequestSpan {
    /// The trace: the caller's (`traceparent`), or new.
    pub trace_id: [u8; 16],
    /// This span.
    pub span_id: [u8; 8],
    /// The caller's span, if it sent one.
    pub parent_span_id: Option<[u8; 8]>,
    /// Start, in nanoseconds since the epoch.
    pub start_unix_nanos: u64,
    /// End (the response body's), likewise.
    pub end_unix_nanos: u64,
    /// The access line's request id.
    pub request_id: String,
    /// The request's method.
    pub method: Method,
    /// Its route.
    pub route: Route,
    /// The response's status code.
    pub status: u16,
    /// Body bytes received.
    pub received: u64,
    /// Body bytes sent.
    pub sent: u64,
    /// Whether the whole response body was sent.
    pub complete: bool,
}

impl RequestSpan {
    /// `<method> <route>`, as the HTTP conventions name server spans.
    fn name(&self) -> String {
        format!("{} {}", self.method, self.route.as_str())
    }

    fn attributes(&self) -> [(&'static str, Value<'_>); 7] {
        let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        [
            ("http.request.method", Value::Text(self.method.as_str())),
            ("http.route", Value::Text(self.route.as_str())),
            ("http.response.status_code", int(u64::from(self.status))),
            ("http.request.body.size", int(self.received)),
            ("http.response.body.size", int(self.sent)),
            ("ferry.request_id", Value::Text(&self.request_id)),
            ("ferry.complete", Value::Bool(self.complete)),
        ]
    }
}

/// The trace and parent span of a W3C `traceparent` header (`00-<trace>-<span>-<flags>`),
/// if it holds valid ones.
pub fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(span, &mut span_id).ok()?;
    (trace_id != [0; 16] && span_id != [0; 8]).then_some((trace_id, span_id))
}

/// Fresh random ids: a trace id and a span id.
pub fn new_ids() -> ([u8; 16], [u8; 8]) {
    let trace = *uuid::Uuid::new_v4().as_bytes();
    let span = uuid::Uuid::new_v4().as_bytes()[..8]
        .try_into()
        .unwrap_or([1; 8]);
    (trace, span)
}

/// Nanoseconds since the epoch.
pub fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Spans waiting for the exporter at most; more are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How long a batch waits for more spans.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the access-log layer hands finished spans (cheap to clone).
#[derive(Clone, Debug)]
pub struct Tracer {
    tx: mpsc::Sender<RequestSpan>,
}

/// Why the exporter's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("the OTLP exporter's HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Tracer {
    /// The tracer, and the task that exports its spans until `cancel` (to be spawned).
    pub fn start(
        settings: TraceSettings,
        cancel: CancellationToken,
    ) -> Result<(Tracer, impl Future<Output = ()> + Send + 'static), ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .default_headers(settings.headers.clone())
            .build()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok((Tracer { tx }, export(rx, client, settings, cancel)))
    }

    /// Queues `span` for export (dropped when the queue is full).
    pub fn record(&self, span: RequestSpan) {
        let _ = self.tx.try_send(span);
    }
}

/// Sends the queued spans in batches until `cancel`, then what is left.
async fn export(
    mut rx: mpsc::Receiver<RequestSpan>,
    client: reqwest::Client,
    settings: TraceSettings,
    cancel: CancellationToken,
) {
    let mut failing = false;
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => None,
            span = rx.recv() => span,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let delay = tokio::time::sleep(BATCH_DELAY);
        tokio::pin!(delay);
        while batch.len() < BATCH {
            tokio::select! {
                () = &mut delay => break,
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
            }
        }
        failing = send(&client, &settings, &batch, failing).await;
    }
    rx.close();
    let mut rest = Vec::new();
    while let Ok(span) = rx.try_recv() {
        rest.push(span);
    }
    if !rest.is_empty() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            send(&client, &settings, &rest, failing),
        )
        .await;
    }
}

/// Posts one batch; returns whether it failed (a failure is logged when the previous one
/// did not fail, a recovery likewise, so an absent collector does not flood the log).
async fn send(
    client: &reqwest::Client,
    settings: &TraceSettings,
    spans: &[RequestSpan],
    was_failing: bool,
) -> bool {
    let body = proto::export_request(&settings.service, spans);
    let result = client
        .post(&settings.url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await;
    let failure = match result {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("the collector answered {}", r.status())),
        Err(e) => Some(e.to_string()),
    };
    match (&failure, was_failing) {
        (Some(why), false) => tracing::warn!(
            url = %settings.url,
            spans = spans.len(),
            error = %why,
            "trace export failed (spans are dropped until the collector answers)"
        ),
        (None, true) => tracing::info!(url = %settings.url, "trace export works again"),
        _ => {}
    }
    failure.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<TraceSettings>, TraceSetupError> {
        TraceSettings::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn settings_from_the_environment() {
        assert!(settings(&[]).unwrap().is_none());
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(s.url, "http://collector:4318/v1/traces");
        assert_eq!(s.service, "ferry");
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://b/traces"),
            ("OTEL_SERVICE_NAME", "registry"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Basic%20eDp5,x-a=b",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.url, "https://b/traces");
        assert_eq!(s.service, "registry");
        assert_eq!(s.headers["authorization"], "Basic eDp5");
        assert_eq!(s.headers["x-a"], "b");
        // Distribution's image turns export off this way.
        assert!(
            settings(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ])
            .unwrap()
            .is_none()
        );
        let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let err = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_HEADERS");
    }

    #[test]
    fn traceparent() {
        let (trace, span) =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(hex::encode(trace), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(span), "b7ad6b7169203331");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
        assert!(parse_traceparent("00-0af7-b7ad6b7169203331-01").is_none());
    }
}
