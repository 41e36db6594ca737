//! OpenTelemetry trace export (`OTEL_EXPORTER_OTLP_ENDPOINT`): a tiny OTLP/HTTP receiver
//! takes the spans Ferry posts, and a request's span is there with the request id of its
//! access-log line and the caller's trace.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// One request the receiver took: path, content type, body.
type Received = (String, String, Vec<u8>);

/// Accepts `POST`s on a loopback port, answers `200`, keeps what it got.
fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut length, mut content_type) = (0usize, String::new());
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or(("", ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            keep.lock().unwrap().push((path, content_type, body));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_request_span_reaches_the_collector_with_its_request_id() {
    let (url, got) = receiver();
    let reg = start_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)]);
    let api = Api::new(&reg);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = api
        .send(
            api.req(reqwest::Method::GET, "/v2/traced/app/manifests/latest")
                .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01")),
        )
        .await;
    r.expect(404);

    // The access line's request id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let log = reg.log();
        let found = log
            .lines()
            .find(|l| l.contains("/v2/traced/app/manifests/latest"))
            .and_then(|l| l.split("request_id=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|id| id.trim_matches('"').to_string());
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "no access line:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Its span, posted to /v1/traces as protobuf, in the caller's trace.
    let trace_bytes = hex::decode(trace).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let span = got
            .lock()
            .unwrap()
            .iter()
            .find(|(_, _, body)| contains(body, id.as_bytes()))
            .cloned();
        if let Some((path, content_type, body)) = span {
            assert_eq!(path, "/v1/traces");
            assert_eq!(content_type, "application/x-protobuf");
            assert!(contains(&body, &trace_bytes), "not in the caller's trace");
            for text in ["GET manifest_get", "ferry.request_id", "service.name"] {
                assert!(contains(&body, text.as_bytes()), "{text} missing");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span with request id {id} arrived; the receiver got {} posts; log:\n{}",
            got.lock().unwrap().len(),
            reg.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn an_unusable_endpoint_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = serve_expecting_exit(&[
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_string(),
            dir.path().display().to_string(),
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            "collector:4318".to_string(),
        ),
    ]);
    assert!(!status.success(), "{log}");
    assert!(log.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{log}");
}
