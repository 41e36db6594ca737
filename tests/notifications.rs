//! Notifications (`notifications.endpoints`) as Distribution's receivers see them: a
//! receiver in the test (a small HTTP server on a loopback port that records what it is
//! sent, and can be told to fail or hang, or not be there at all) and Ferry configured to
//! send to it. Pushes, pulls, deletes and mounts emit events with Distribution's fields, in
//! order; `ignore` and `headers` apply; a receiver that is down, fails or hangs delays only
//! the delivery, never a push; queued events survive a restart and arrive once.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::Value;
use support::http::BackgroundServer;
use support::*;

const ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// How long a test waits for events at most (a bound on the polling, not a timing claim).
const WAIT: Duration = Duration::from_secs(90);

const ACCEPT: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// What the receiver got in one request.
#[derive(Clone, Debug)]
struct Delivery {
    headers: HeaderMap,
    events: Vec<Value>,
}

#[derive(Default)]
struct Recorded {
    deliveries: Mutex<Vec<Delivery>>,
    mode: AtomicU8,
}

/// The webhook receiver.
struct Receiver {
    recorded: Arc<Recorded>,
    _server: BackgroundServer,
}

async fn hook(
    State(recorded): State<Arc<Recorded>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    match recorded.mode.load(Ordering::SeqCst) {
        FAIL => return StatusCode::INTERNAL_SERVER_ERROR,
        HANG => std::future::pending::<()>().await,
        _ => {}
    }
    let Ok(envelope) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let events = envelope["events"].as_array().cloned().unwrap_or_default();
    recorded
        .deliveries
        .lock()
        .unwrap()
        .push(Delivery { headers, events });
    StatusCode::OK
}

impl Receiver {
    /// A receiver on a random loopback port.
    fn start() -> Self {
        Self::start_on(BackgroundServer::listener())
    }

    /// A receiver on `addr` (where a registry was told to send before it listened).
    fn start_at(addr: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind the receiver's address");
        listener.set_nonblocking(true).expect("nonblocking");
        Self::start_on(listener)
    }

    fn start_on(listener: std::net::TcpListener) -> Self {
        let recorded = Arc::new(Recorded::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(recorded.clone());
        Receiver {
            recorded,
            _server: BackgroundServer::start(listener, app, "receiver"),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self._server.addr)
    }

    fn set_mode(&self, mode: u8) {
        self.recorded.mode.store(mode, Ordering::SeqCst);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.recorded.deliveries.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .flat_map(|d| d.events)
            .collect()
    }

    /// Waits until at least `n` events arrived; returns them.
    async fn wait_for(&self, n: usize, reg: &TestRegistry) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events arrived: {events:#?}\nregistry log:\n{}",
                events.len(),
                reg.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until an event satisfying `last` arrived; returns every event up to it.
    async fn wait_until(&self, reg: &TestRegistry, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.events();
            if let Some(i) = events.iter().position(&last) {
                return events[..=i].to_vec();
            }
            assert!(
                Instant::now() < deadline,
                "the awaited event did not arrive: {events:#?}\nregistry log:\n{}",
                reg.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `REGISTRY_*` overrides of endpoint 0 named `hook` at `url`, plus `extra` keys of it
/// (`("TIMEOUT", "1s")`).
fn endpoint_env(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME".to_string(),
            "hook".to_string(),
        ),
        (
            "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL".to_string(),
            url.to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| {
        (
            format!("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_{k}"),
            v.to_string(),
        )
    }));
    env
}

fn start_notifying(env: &[(String, String)]) -> TestRegistry {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start_env(&env)
}

fn summary(e: &Value) -> String {
    let target = &e["target"];
    format!(
        "{} {} {} {}",
        e["action"].as_str().unwrap_or("?"),
        target["repository"].as_str().unwrap_or("?"),
        target["digest"].as_str().unwrap_or("?"),
        target["tag"].as_str().unwrap_or("-"),
    )
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every event's id differs (nothing delivered twice).
fn assert_unique(events: &[Value]) {
    let mut seen = ids(events);
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "an event arrived twice: {events:#?}");
}

#[tokio::test]
async fn push_pull_and_delete_emit_distributions_events() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("alice", "pw")).unwrap();
    let mut env = endpoint_env(&receiver.url(), &[]);
    env.push(("REGISTRY_AUTH_HTPASSWD_REALM".into(), "R".into()));
    env.push((
        "REGISTRY_AUTH_HTPASSWD_PATH".into(),
        htpasswd.display().to_string(),
    ));
    env.push((
        "REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES".into(),
        "true".into(),
    ));
    let reg = start_notifying(&env);
    let api = Api::with_authorization(&reg, &basic("alice", "pw"));

    let img = api.push_image("team/app", "v1", 1).await;
    let pushed = receiver.wait_for(3, &reg).await;
    let expected = [
        format!("push team/app {} -", img.config.digest),
        format!("push team/app {} -", img.layers[0].digest),
        format!("push team/app {} v1", img.digest),
    ];
    assert_eq!(pushed.iter().map(summary).collect::<Vec<_>>(), expected);
    for delivery in receiver.deliveries() {
        assert_eq!(
            delivery
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(ENVELOPE)
        );
    }
    let blob = &pushed[0];
    assert_eq!(blob["target"]["mediaType"], "application/octet-stream");
    assert_eq!(blob["target"]["size"], img.config.data.len());
    assert_eq!(blob["target"]["length"], img.config.data.len());
    assert_eq!(
        blob["target"]["url"],
        format!("{}/v2/team/app/blobs/{}", reg.url, img.config.digest)
    );
    let manifest = &pushed[2];
    assert_eq!(manifest["target"]["mediaType"], img.media_type);
    assert_eq!(manifest["target"]["size"], img.manifest.len());
    assert_eq!(manifest["target"]["length"], img.manifest.len());
    assert_eq!(
        manifest["target"]["url"],
        format!("{}/v2/team/app/manifests/{}", reg.url, img.digest)
    );
    let references: Vec<&str> = manifest["target"]["references"]
        .as_array()
        .expect("includereferences")
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        references,
        [img.config.digest.as_str(), img.layers[0].digest.as_str()]
    );
    for event in &pushed {
        assert!(
            event["id"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
        assert!(
            event["timestamp"]
                .as_str()
                .is_some_and(|s| s.ends_with('Z')),
            "{event}"
        );
        assert_eq!(event["actor"]["name"], "alice");
        let request = &event["request"];
        assert!(
            request["id"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
        assert!(
            request["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{event}"
        );
        assert_eq!(request["host"], reg.host);
        assert!(request["useragent"].as_str().is_some(), "{event}");
        let source = &event["source"];
        assert!(
            source["addr"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":{}", reg.addr.port()))),
            "{event}"
        );
        assert!(
            source["instanceID"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
    }
    assert_eq!(pushed[0]["request"]["method"], "PUT");
    assert_eq!(pushed[2]["request"]["method"], "PUT");

    // Pulls: GETs only (a HEAD asks, it does not pull).
    api.head_manifest("team/app", "v1").await.expect(200);
    api.head(&format!("/v2/team/app/blobs/{}", img.layers[0].digest))
        .await
        .expect(200);
    api.get_manifest("team/app", "v1").await.expect(200);
    api.get_manifest("team/app", &img.digest).await.expect(200);
    api.get(&format!("/v2/team/app/blobs/{}", img.layers[0].digest))
        .await
        .expect(200);
    // A cross-repository mount.
    let mount = api
        .send(api.req(
            Method::POST,
            &format!(
                "/v2/team/copy/blobs/uploads/?mount={}&from=team/app",
                img.layers[0].digest
            ),
        ))
        .await;
    mount.expect(201);
    // Deletes: a tag, a manifest by digest, a blob.
    api.delete("/v2/team/app/manifests/v1").await.expect(202);
    api.delete(&format!("/v2/team/app/manifests/{}", img.digest))
        .await
        .expect(202);
    api.delete(&format!("/v2/team/app/blobs/{}", img.config.digest))
        .await
        .expect(202);

    let all = receiver.wait_for(10, &reg).await;
    let rest: Vec<String> = all[3..].iter().map(summary).collect();
    assert_eq!(
        rest,
        [
            format!("pull team/app {} v1", img.digest),
            format!("pull team/app {} -", img.digest),
            format!("pull team/app {} -", img.layers[0].digest),
            format!("mount team/copy {} -", img.layers[0].digest),
            format!("delete team/app {} v1", img.digest),
            format!("delete team/app {} -", img.digest),
            format!("delete team/app {} -", img.config.digest),
        ]
    );
    assert_eq!(all[3]["request"]["method"], "GET");
    assert_eq!(all[3]["target"]["mediaType"], img.media_type);
    assert_eq!(all[6]["target"]["fromRepository"], "team/app");
    assert_eq!(all[8]["request"]["method"], "DELETE");
    assert!(all[8]["target"].get("mediaType").is_none(), "{}", all[8]);
    assert_unique(&all);
}

#[tokio::test]
async fn ignored_actions_and_media_types_are_not_sent_and_headers_are() {
    let receiver = Receiver::start();
    let env = endpoint_env(
        &receiver.url(),
        &[
            ("IGNORE_ACTIONS", "[pull]"),
            ("IGNOREDMEDIATYPES", "application/octet-stream"),
            ("HEADERS_X-TOKEN", "secret"),
        ],
    );
    let reg = start_notifying(&env);
    let api = Api::new(&reg);
    let img = api.push_image("quiet/app", "v1", 2).await;
    api.get_manifest("quiet/app", "v1").await.expect(200);
    api.get(&format!("/v2/quiet/app/blobs/{}", img.layers[0].digest))
        .await
        .expect(200);
    // The last event: nothing ignored may come after it.
    api.delete("/v2/quiet/app/manifests/v1").await.expect(202);
    let events = receiver.wait_until(&reg, |e| e["action"] == "delete").await;
    assert_eq!(
        events.iter().map(summary).collect::<Vec<_>>(),
        [
            format!("push quiet/app {} v1", img.digest),
            format!("delete quiet/app {} v1", img.digest),
        ]
    );
    // Anonymous: no actor name.
    assert!(events[0]["actor"].get("name").is_none(), "{}", events[0]);
    for delivery in receiver.deliveries() {
        assert_eq!(
            delivery
                .headers
                .get("x-token")
                .and_then(|v| v.to_str().ok()),
            Some("secret")
        );
    }
}

/// The events of `repository` in the order they arrived.
fn of_repository<'a>(events: &'a [Value], repository: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["target"]["repository"] == repository)
        .collect()
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_and_arrive_once_in_order() {
    let addr = free_port();
    let env = endpoint_env(
        &format!("http://{addr}/hook"),
        &[("THRESHOLD", "2"), ("BACKOFF", "100ms")],
    );
    let reg = start_notifying(&env);
    let api = Api::new(&reg);
    // Nobody listens: the pushes complete anyway.
    let one = api.push_image("down/one", "v1", 2).await;
    let two = api.push_image("down/two", "v1", 1).await;
    let one_again = api.push_image("down/one", "v2", 1).await;
    let receiver = Receiver::start_at(addr);
    receiver.wait_for(4 + 3 + 3, &reg).await;
    let expect = |repo: &str, images: &[(&support::oci::Image, &str)]| {
        let mut expected = Vec::new();
        for (img, tag) in images {
            expected.push(format!("push {repo} {} -", img.config.digest));
            for layer in &img.layers {
                expected.push(format!("push {repo} {} -", layer.digest));
            }
            expected.push(format!("push {repo} {} {tag}", img.digest));
        }
        expected
    };
    // A last event in each repository: a duplicate of any earlier one would arrive before
    // it.
    api.delete("/v2/down/one/manifests/v2").await.expect(202);
    api.delete("/v2/down/two/manifests/v1").await.expect(202);
    let events = receiver.wait_for(12, &reg).await;
    let mut one_expected = expect("down/one", &[(&one, "v1"), (&one_again, "v2")]);
    one_expected.push(format!("delete down/one {} v2", one_again.digest));
    let mut two_expected = expect("down/two", &[(&two, "v1")]);
    two_expected.push(format!("delete down/two {} v1", two.digest));
    let got = |repo| {
        of_repository(&events, repo)
            .into_iter()
            .map(summary)
            .collect::<Vec<_>>()
    };
    assert_eq!(got("down/one"), one_expected);
    assert_eq!(got("down/two"), two_expected);
    assert_eq!(events.len(), 12, "{events:#?}");
    assert_unique(&events);
}

#[tokio::test]
async fn queued_events_survive_a_restart_and_arrive_once() {
    let addr = free_port();
    let env = endpoint_env(
        &format!("http://{addr}/hook"),
        &[("THRESHOLD", "1"), ("BACKOFF", "100ms")],
    );
    let mut reg = start_notifying(&env);
    let api = Api::new(&reg);
    let img = api.push_image("restart/app", "v1", 1).await;
    // Stopped with the events queued (nobody listened), then started again.
    assert!(reg.terminate().success());
    let receiver = Receiver::start_at(addr);
    reg.restart();
    let before = receiver.wait_for(3, &reg).await;
    let api = Api::new(&reg);
    api.delete("/v2/restart/app/manifests/v1").await.expect(202);
    let events = receiver.wait_until(&reg, |e| e["action"] == "delete").await;
    assert_eq!(
        events.iter().map(summary).collect::<Vec<_>>(),
        [
            format!("push restart/app {} -", img.config.digest),
            format!("push restart/app {} -", img.layers[0].digest),
            format!("push restart/app {} v1", img.digest),
            format!("delete restart/app {} v1", img.digest),
        ]
    );
    // The events from before the restart name the first process, the last the second.
    assert_ne!(
        before[0]["source"]["instanceID"], events[3]["source"]["instanceID"],
        "a new instance id after a restart"
    );
    assert_unique(&events);
}

#[tokio::test]
async fn a_hanging_or_failing_receiver_never_holds_a_push_up() {
    let receiver = Receiver::start();
    let env = endpoint_env(&receiver.url(), &[("TIMEOUT", "1s"), ("BACKOFF", "100ms")]);
    let reg = start_notifying(&env);
    let api = Api::new(&reg);
    receiver.set_mode(HANG);
    let first = api.push_image("slow/app", "v1", 1).await;
    api.get_manifest("slow/app", "v1").await.expect(200);
    receiver.set_mode(FAIL);
    let second = api.push_image("slow/app", "v2", 1).await;
    assert!(receiver.events().is_empty());
    receiver.set_mode(ACCEPT);
    let events = receiver
        .wait_until(&reg, |e| {
            e["target"]["tag"] == "v2" && e["action"] == "push"
        })
        .await;
    assert_eq!(
        events.iter().map(summary).collect::<Vec<_>>(),
        [
            format!("push slow/app {} -", first.config.digest),
            format!("push slow/app {} -", first.layers[0].digest),
            format!("push slow/app {} v1", first.digest),
            format!("pull slow/app {} v1", first.digest),
            format!("push slow/app {} -", second.config.digest),
            format!("push slow/app {} -", second.layers[0].digest),
            format!("push slow/app {} v2", second.digest),
        ]
    );
    assert_unique(&events);
}

#[test]
fn bad_endpoints_refuse_the_start_naming_the_key() {
    for (extra, key) in [
        (
            vec![(
                "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL",
                "http://127.0.0.1:1/",
            )],
            "notifications.endpoints.0.name",
        ),
        (
            vec![
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "a"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "ftp://x/"),
            ],
            "notifications.endpoints.0.url",
        ),
        (
            vec![
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "a"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "http://x/"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_TIMEOUT", "soon"),
            ],
            "notifications.endpoints",
        ),
    ] {
        let mut env: Vec<(String, String)> =
            vec![("REGISTRY_HTTP_ADDR".into(), free_port().to_string())];
        let dir = tempfile::tempdir().unwrap();
        env.push((
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".into(),
            dir.path().display().to_string(),
        ));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (status, log) = serve_expecting_exit(&env);
        assert!(!status.success(), "{log}");
        assert!(log.contains(key), "{key}: {log}");
    }
}
