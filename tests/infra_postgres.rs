//! The test infrastructure of the scale-out tests (issue #16), checked on its own, without
//! Ferry's PostgreSQL support:
//!
//! - [`postgres_server_gives_each_test_its_databases`]: a throwaway PostgreSQL cluster
//!   ([`support::postgres::PostgresServer`]) starts quickly, serves separate databases at
//!   the URLs it hands out, and survives being killed and restarted with its data;
//! - [`balancer_alternates_between_backends_and_keeps_the_host`]: the nginx balancer
//!   ([`support::balancer::Balancer`]) goes round robin over two backends, passes the
//!   client's `Host` on, logs who served what, and skips a backend that is gone;
//! - [`balancer_streams_a_chunked_request_body`]: a chunked request body reaches the
//!   backend while the client is still sending it.
//!
//! Each test prints `SKIP: ...` and passes when PostgreSQL or nginx is not installed
//! (tests/run.sh installs both).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use futures_util::StreamExt;
use support::balancer::Balancer;
use support::http::BackgroundServer;
use support::postgres::PostgresServer;
use support::*;

/// `psql <url> -c <sql>` with the server's own psql: the URL alone must be enough.
fn psql_url(pg: &PostgresServer, url: &str, sql: &str) -> std::process::Output {
    let mut cmd = Command::new(pg.bin.join("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5");
    cli::run_within(&mut cmd, Duration::from_secs(60))
}

#[test]
fn postgres_server_gives_each_test_its_databases() {
    let Some(mut pg) = PostgresServer::start() else {
        return;
    };
    eprintln!(
        "PostgreSQL from {} on {} started in {:?}",
        pg.bin.display(),
        pg.addr,
        pg.startup
    );
    let one = pg.create_database("one");
    let two = pg.create_database("two");
    assert_eq!(one, format!("postgres://postgres@{}/one", pg.addr));
    assert_eq!(two, pg.url("two"));
    for url in [&one, &two] {
        let out = psql_url(&pg, url, "select 1");
        assert!(out.status.success(), "psql {url}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    }

    // Separate databases, with the settings the helper promises.
    pg.psql(
        "one",
        "create table t (v text); insert into t values ('kept')",
    );
    let out = psql_url(&pg, &two, "select * from t");
    assert!(!out.status.success(), "table t must not exist in two");
    assert_eq!(pg.psql("one", "show fsync").trim(), "off");
    assert_eq!(pg.psql("one", "show full_page_writes").trim(), "off");
    assert_eq!(pg.psql("one", "show listen_addresses").trim(), "127.0.0.1");

    // Killed: unreachable, then back on the same port with the committed row.
    pg.kill();
    assert!(!pg.is_running());
    let out = psql_url(&pg, &one, "select 1");
    assert!(
        !out.status.success(),
        "psql against a killed server: {out:?}"
    );
    pg.restart();
    assert_eq!(pg.psql("one", "select v from t").trim(), "kept");

    // Immediate shutdown, then restart.
    pg.psql("one", "insert into t values ('also kept')");
    pg.stop_hard();
    assert!(!psql_url(&pg, &one, "select 1").status.success());
    pg.restart();
    assert_eq!(pg.psql("one", "select count(*) from t").trim(), "2");

    // A second server beside it: its own port and cluster (quicker: the template exists).
    let other = PostgresServer::start().expect("second server");
    eprintln!("second PostgreSQL started in {:?}", other.startup);
    assert_ne!(other.addr, pg.addr);
    assert!(
        !other
            .psql(
                "postgres",
                "select 1 from pg_database where datname = 'one'"
            )
            .contains('1')
    );
    let pid = pg.pid();
    drop(pg);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "the postmaster outlived its handle"
    );
}

/// A backend's state: its name, and where it reports the first chunk of a streamed body.
#[derive(Clone)]
struct Backend {
    name: &'static str,
    first_chunk: Arc<Mutex<mpsc::Sender<Vec<u8>>>>,
}

/// Answers `<name>` (with the `Host` it saw in `x-seen-host`); for a body, reports its first
/// chunk as soon as it arrives and answers `<name>:<body length>` once it has all of it.
async fn answer(State(backend): State<Backend>, request: Request) -> axum::response::Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut body = request.into_body().into_data_stream();
    let mut len = 0;
    let mut first = true;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("request body");
        if first && !chunk.is_empty() {
            first = false;
            let _ = backend.first_chunk.lock().unwrap().send(chunk.to_vec());
        }
        len += chunk.len();
    }
    let text = if len > 0 {
        format!("{}:{len}", backend.name)
    } else {
        backend.name.to_string()
    };
    axum::response::Response::builder()
        .header("x-seen-host", host)
        .body(Body::from(text))
        .unwrap()
}

/// Starts a backend answering as `name`.
fn backend(name: &'static str, first_chunk: &mpsc::Sender<Vec<u8>>) -> BackgroundServer {
    let state = Backend {
        name,
        first_chunk: Arc::new(Mutex::new(first_chunk.clone())),
    };
    let app = Router::new().fallback(answer).with_state(state);
    BackgroundServer::start(BackgroundServer::listener(), app, "backend")
}

#[test]
fn balancer_alternates_between_backends_and_keeps_the_host() {
    let (tx, _rx) = mpsc::channel();
    let a = backend("a", &tx);
    let b = backend("b", &tx);
    let (addr_a, addr_b) = (a.addr.to_string(), b.addr.to_string());
    let Some(lb) = Balancer::start(&[&addr_a, &addr_b]) else {
        return;
    };

    let mut bodies = vec![];
    for _ in 0..6 {
        let r = http("GET", &format!("{}/v2/", lb.url), &[], None);
        r.expect(200);
        assert_eq!(
            r.must_header("x-seen-host"),
            lb.host,
            "Host must reach the backend as sent"
        );
        bodies.push(r.text());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {bodies:?}"
    );
    let expected: Vec<String> = bodies
        .iter()
        .map(|b| {
            if b == "a" {
                addr_a.clone()
            } else {
                addr_b.clone()
            }
        })
        .collect();
    let served = lb.wait_served(6);
    assert_eq!(lb.served_by(), expected, "access log: {served:?}");
    assert!(
        served
            .iter()
            .all(|s| s.status == 200 && s.request == "GET /v2/ HTTP/1.1")
    );

    // Backend b gone: every request is answered by a, b being tried on its turns.
    drop(b);
    lb.reset();
    for _ in 0..4 {
        let r = http("GET", &format!("{}/v2/", lb.url), &[], None);
        r.expect(200);
        assert_eq!(r.text(), "a");
    }
    let served = lb.wait_served(4);
    assert!(
        served.iter().all(|s| s.upstreams.last() == Some(&addr_a)),
        "{served:?}"
    );
    assert!(
        served
            .iter()
            .any(|s| s.upstreams == vec![addr_b.clone(), addr_a.clone()]),
        "b should have been tried and skipped: {served:?}"
    );
}

#[test]
fn balancer_streams_a_chunked_request_body() {
    let (tx, rx) = mpsc::channel();
    let a = backend("a", &tx);
    let b = backend("b", &tx);
    let Some(lb) = Balancer::start(&[a.addr.to_string(), b.addr.to_string()]) else {
        return;
    };

    let mut conn = TcpStream::connect(lb.addr).expect("connect to the balancer");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PATCH /v2/r/blobs/uploads/x HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        lb.host
    );
    let first = b"first chunk";
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(format!("{:x}\r\n", first.len()).as_bytes())
        .unwrap();
    conn.write_all(first).unwrap();
    conn.write_all(b"\r\n").unwrap();
    conn.flush().unwrap();

    // The backend has the first chunk while the request is still open: nothing buffered it.
    let started = Instant::now();
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first chunk did not reach a backend before the body ended");
    assert_eq!(got, first);
    eprintln!(
        "first chunk through the balancer after {:?}",
        started.elapsed()
    );

    let last = vec![b'x'; 100_000];
    conn.write_all(format!("{:x}\r\n", last.len()).as_bytes())
        .unwrap();
    conn.write_all(&last).unwrap();
    conn.write_all(b"\r\n0\r\n\r\n").unwrap();
    // Read by Content-Length: waiting for the close would wait out nginx's lingering close
    // (5 s) of a connection whose client could still be sending.
    let response = read_response(&mut conn);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let total = first.len() + last.len();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body == format!("a:{total}") || body == format!("b:{total}"),
        "the backend must get the whole body: {response}"
    );
    // nginx logs the request once done with its connection (else after its lingering close).
    drop(conn);
    assert_eq!(lb.wait_served(1).len(), 1);
}

/// One HTTP/1.1 response with a `Content-Length` from `conn`, head and body, as text.
fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = vec![];
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("response head");
        assert_eq!(n, 1, "connection closed in the response head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let mut body = vec![0; len];
    conn.read_exact(&mut body).expect("response body");
    head + &String::from_utf8_lossy(&body)
}
