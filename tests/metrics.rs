//! Prometheus metrics on the debug listener (`http.debug.addr`,
//! `http.debug.prometheus.enabled`, `http.debug.prometheus.path`): scraped and parsed after
//! pushes and pulls, as Prometheus would; never on the API port.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use support::*;

/// One scrape: every sample, by metric name and labels.
#[derive(Debug)]
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses the text exposition format (what Ferry writes of it: no escaped quotes or
    /// commas in label values), checking each line has a name and a number.
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                    let labels = rest
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair
                                .split_once('=')
                                .unwrap_or_else(|| panic!("bad label in {line:?}"));
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            samples.push((name.to_string(), labels, value));
        }
        Scrape { samples }
    }

    /// The sum of the samples of `name` carrying all of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether any sample of `name` is there.
    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The label values `label` takes in the samples of `name`.
    fn values_of(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.get(label).cloned())
            .collect();
        values.dedup();
        values
    }
}

/// A Ferry with metrics on the debug listener at `debug` (`extra` overrides on top); waits
/// until the debug listener accepts connections.
fn start_with_debug(debug: SocketAddr, extra: &[(&str, &str)]) -> TestRegistry {
    let addr = debug.to_string();
    let mut env = vec![("REGISTRY_HTTP_DEBUG_ADDR", addr.as_str())];
    env.extend_from_slice(extra);
    let reg = start_env(&env);
    assert!(
        wait_listening(None, debug),
        "the debug listener on {debug} never accepted; log:\n{}",
        reg.log()
    );
    reg
}

const METRICS_ON: (&str, &str) = ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true");

async fn get(url: &str) -> Resp {
    send(client(Duration::from_secs(30)).get(url)).await
}

async fn scrape(debug: SocketAddr) -> Scrape {
    let r = get(&format!("http://{debug}/metrics")).await;
    r.expect(200);
    assert_eq!(
        r.must_header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(&r.text())
}

/// Scrapes until `ready` holds (a response is counted when its body ends, which for an
/// empty body may be just after the client has it), at most 30 s; returns that scrape.
async fn scrape_until(debug: SocketAddr, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(debug).await;
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never got there:\n{s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const REQUESTS: &str = "ferry_http_requests_total";

#[tokio::test]
async fn a_push_and_a_pull_are_counted_by_route_and_status() {
    let debug = free_port();
    let reg = start_with_debug(debug, &[METRICS_ON]);
    let api = Api::new(&reg);
    let before = scrape(debug).await;
    // Every route is there from the start, at zero.
    for route in ["manifest_put", "blob_get", "upload_finish", "other"] {
        assert_eq!(
            before.sum(
                "ferry_http_request_duration_seconds_count",
                &[("route", route)]
            ),
            0.0
        );
    }

    // A push: config and one layer (POST + PUT each), then the manifest.
    let layer = Blob::new(OCI_LAYER, random_bytes(300_001));
    let img = api
        .push_layers("metrics/app", "v1", vec![layer.clone()])
        .await;
    // A pull: the manifest, the layer (whole), a HEAD of the config; and a tag that is
    // not there.
    api.get_manifest("metrics/app", "v1").await.expect(200);
    let (status, digest, len) = api.get_blob_digest("metrics/app", &layer.digest).await;
    assert_eq!((status, digest, len), (200, layer.digest.clone(), 300_001));
    api.head(&format!("/v2/metrics/app/blobs/{}", img.config.digest))
        .await
        .expect(200);
    api.get_manifest("metrics/app", "nope").await.expect(404);
    const MADE: f64 = 9.0;

    let after = scrape_until(debug, |s| s.sum(REQUESTS, &[]) >= MADE).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert_eq!(delta(REQUESTS, &[]), MADE, "{after:#?}");
    for (route, code, count) in [
        ("upload_start", "202", 2.0),
        ("upload_finish", "201", 2.0),
        ("manifest_put", "201", 1.0),
        ("manifest_get", "200", 1.0),
        ("manifest_get", "404", 1.0),
        ("blob_get", "200", 1.0),
        ("blob_head", "200", 1.0),
    ] {
        assert_eq!(
            delta(REQUESTS, &[("route", route), ("code", code)]),
            count,
            "{route} {code}"
        );
        // One duration per request, whatever its status.
        assert_eq!(
            delta(
                "ferry_http_request_duration_seconds_count",
                &[("route", route)]
            ),
            delta(REQUESTS, &[("route", route)]),
            "{route}"
        );
    }
    // The labels are routes and codes, never names or digests.
    for route in after.values_of(REQUESTS, "route") {
        assert!(
            !route.contains("metrics") && !route.contains("sha256"),
            "{route}"
        );
    }
    // Bytes: at least the blobs' sizes each way.
    assert!(
        delta(
            "ferry_http_received_bytes_total",
            &[("route", "upload_finish")]
        ) >= (img.config.data.len() + layer.data.len()) as f64
    );
    assert!(
        delta(
            "ferry_http_received_bytes_total",
            &[("route", "manifest_put")]
        ) >= img.manifest.len() as f64
    );
    assert!(delta("ferry_http_sent_bytes_total", &[("route", "blob_get")]) >= 300_001.0);
    assert!(
        delta("ferry_http_sent_bytes_total", &[("route", "manifest_get")])
            >= img.manifest.len() as f64
    );
    assert_eq!(after.sum("ferry_uploads_in_progress", &[]), 0.0);

    // The stores' operations, timed; nothing failed.
    assert!(
        delta(
            "ferry_storage_operation_duration_seconds_count",
            &[("operation", "upload_commit")]
        ) >= 2.0
    );
    assert!(
        delta(
            "ferry_database_operation_duration_seconds_count",
            &[("operation", "put_manifest")]
        ) >= 1.0
    );
    assert!(
        delta(
            "ferry_database_operation_duration_seconds_count",
            &[("operation", "tagged_manifest")]
        ) >= 1.0
    );
    assert_eq!(after.sum("ferry_storage_errors_total", &[]), 0.0);
    assert_eq!(after.sum("ferry_database_errors_total", &[]), 0.0);

    // The process.
    assert!(after.sum("process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(after.sum("process_open_fds", &[]) > 0.0);
    assert!(after.has("process_cpu_seconds_total"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = after.sum("process_start_time_seconds", &[]);
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    // No mirror, no mirror counters.
    assert!(!after.has("ferry_mirror_hits_total"));

    // Only the metrics path answers on the debug listener.
    get(&format!("http://{debug}/")).await.expect(404);
    get(&format!("http://{debug}/v2/")).await.expect(404);
}

#[tokio::test]
async fn an_upload_in_progress_is_counted_while_its_body_arrives() {
    let debug = free_port();
    let reg = start_with_debug(debug, &[METRICS_ON]);
    let api = Api::new(&reg);
    let location = api.start_upload("metrics/slow").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let patch = api
        .req(Method::PATCH, &location)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body));
    let sending = tokio::spawn(async move { send(patch).await });
    tx.send(bytes::Bytes::from(vec![7u8; 1000])).await.unwrap();
    scrape_until(debug, |s| s.sum("ferry_uploads_in_progress", &[]) == 1.0).await;
    drop(tx);
    sending.await.unwrap().expect(202);
    scrape_until(debug, |s| {
        s.sum("ferry_uploads_in_progress", &[]) == 0.0
            && s.sum(REQUESTS, &[("route", "upload_chunk"), ("code", "202")]) == 1.0
    })
    .await;
}

#[tokio::test]
async fn the_api_port_never_serves_metrics() {
    let debug = free_port();
    let reg = start_with_debug(
        debug,
        &[
            METRICS_ON,
            ("REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH", "/internal/metrics"),
        ],
    );
    for path in ["/metrics", "/internal/metrics"] {
        get(&format!("{}{path}", reg.url)).await.expect(404);
    }
    // The debug listener serves the configured path, and only that.
    let r = get(&format!("http://{debug}/internal/metrics")).await;
    r.expect(200);
    assert!(Scrape::parse(&r.text()).has(REQUESTS));
    get(&format!("http://{debug}/metrics")).await.expect(404);
}

#[tokio::test]
async fn without_prometheus_enabled_the_debug_listener_serves_nothing() {
    let debug = free_port();
    let reg = start_with_debug(debug, &[]);
    get(&format!("http://{debug}/metrics")).await.expect(404);
    get(&format!("{}/metrics", reg.url)).await.expect(404);
    assert!(
        reg.log().contains("http.debug.prometheus.enabled is not"),
        "{}",
        reg.log()
    );
}

#[test]
fn an_invalid_debug_address_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let with = |addr: &str| {
        vec![
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_string(),
                root.clone(),
            ),
            ("REGISTRY_HTTP_DEBUG_ADDR".to_string(), addr.to_string()),
            (
                "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED".to_string(),
                "true".to_string(),
            ),
        ]
    };
    for addr in ["5001", "localhost:metrics"] {
        let (status, log) = serve_expecting_exit(&with(addr));
        assert!(!status.success(), "{addr}: {log}");
        assert!(log.contains("http.debug.addr"), "{addr}: {log}");
        assert!(log.contains("REGISTRY_HTTP_DEBUG_ADDR"), "{addr}: {log}");
    }
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, log) = serve_expecting_exit(&with(&addr));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("http.debug.addr") && log.contains(&addr),
        "{log}"
    );
}

#[tokio::test]
async fn a_mirror_exposes_its_counters() {
    let upstream = TestRegistry::start();
    let up = Api::new(&upstream);
    let img = up.push_image("library/app", "v1", 1).await;
    let debug = free_port();
    let addr = debug.to_string();
    let mirror = TestRegistry::start_with_config(
        &format!("version: 0.1\nproxy:\n  remoteurl: {}\n", upstream.url),
        &[("REGISTRY_HTTP_DEBUG_ADDR", &addr), METRICS_ON],
    );
    assert!(wait_listening(None, debug), "{}", mirror.log());
    let api = Api::new(&mirror);
    api.assert_image_intact("library/app", "v1", &img).await;
    // The download's counters move as it runs, possibly just after the client's last byte.
    let blobs = (img.config.data.len() + img.layers[0].data.len()) as f64;
    let s = scrape_until(debug, |s| {
        s.sum("ferry_mirror_fetched_bytes_total", &[]) >= blobs
    })
    .await;
    assert!(s.sum("ferry_mirror_misses_total", &[]) >= 1.0, "{s:#?}");
    assert!(s.sum("ferry_mirror_upstream_requests_total", &[]) >= 1.0);
    for counter in [
        "ferry_mirror_hits_total",
        "ferry_mirror_upstream_errors_total",
        "ferry_mirror_stale_serves_total",
    ] {
        assert!(s.has(counter), "{counter}");
    }
}

#[tokio::test]
async fn ferry_gc_leaves_its_outcome_for_the_textfile_collector() {
    let reg = start();
    let api = Api::new(&reg);
    // A blob no manifest names: garbage once the grace window (0 s here) passed.
    api.push_blob("metrics/gc", &random_bytes(50_000)).await;
    next_second().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry_gc.prom");
    let path = file.display().to_string();
    let out = ferry_gc(&reg, &["--grace", "0s", "--metrics-textfile", &path]);
    assert!(out.status.success(), "{out:?}");
    let s = Scrape::parse(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(s.sum("ferry_gc_last_run_success", &[]), 1.0);
    assert_eq!(s.sum("ferry_gc_last_run_dry_run", &[]), 0.0);
    assert_eq!(
        s.sum("ferry_gc_last_run_removed", &[("kind", "blobs")]),
        1.0
    );
    assert!(s.sum("ferry_gc_last_run_reclaimed_bytes", &[]) >= 50_000.0);
    assert!(s.sum("ferry_gc_last_run_timestamp_seconds", &[]) > 1.0e9);
    // Only the file: nothing left under a temporary name.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
