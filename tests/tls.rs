//! HTTPS (`http.tls`) and the connection loop's limits (`connections`): the API over TLS
//! with HTTP/2 by ALPN, skopeo pushing over TLS, podman, ctr and oras logging in over TLS,
//! mutual TLS, certificates replaced while
//! serving, `minimumtls`, configurations that refuse to start, clients that are slow on
//! purpose (a TLS handshake or headers never finished, a request body that stops) or send
//! too many headers, and draining on SIGTERM. Certificates are made with `openssl` in a temporary directory
//! (`support::tls`). Every server uses timeouts of a second or two, so each test takes
//! seconds.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::cli::{require, run_within, tempdir, umoci_image};
use support::tls::*;
use support::*;

/// Short limits, so that the slow-client tests are quick.
const QUICK: &[(&str, &str)] = &[
    ("REGISTRY_CONNECTIONS_HEADERTIMEOUT", "1s"),
    ("REGISTRY_CONNECTIONS_BODYTIMEOUT", "1s"),
];

/// How long any wait for the server may take before the test fails.
const BOUND: Duration = Duration::from_secs(15);

#[tokio::test]
async fn https_answers_with_http2_by_alpn_and_http1_for_others() {
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let reg = start_tls(&ca.server("registry", 1), &[]);
    let url = https_url(&reg);

    let h2 = https_client(&ca.cert, None);
    let r = h2.get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    // A push and a pull over it.
    let api = Api {
        client: h2,
        url: url.clone(),
    };
    let img = api.push_image("tls/repo", "v1", 2).await;
    api.assert_image_intact("tls/repo", "v1", &img).await;

    // A client that offers only HTTP/1.1 gets HTTP/1.1.
    let h1 = https_client_alpn(&ca.cert, None, &["http/1.1"]);
    let r = h1.get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // Locations name the scheme the client used.
    let r = h1
        .post(format!("{url}/v2/tls/repo/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{url}/v2/tls/repo/blobs/uploads/")),
        "{location}"
    );

    // TLS 1.2 is accepted by default; ALPN is what the server chose.
    let (_, alpn) = handshake(&reg, client_config(&ca.cert, None, TLS12_ONLY, &["h2"]))
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    // Plain HTTP on the HTTPS port gets no API answer.
    let plain = raw_exchange(&reg, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        !String::from_utf8_lossy(&plain).contains("200 OK"),
        "{plain:?}"
    );

    // The container health check speaks TLS too.
    let out = healthcheck(&reg, &[]);
    assert!(out.status.success(), "{out:?}");
}

/// skopeo pushes an OCI image over TLS trusting the test CA (`--dest-cert-dir`), and with
/// mutual TLS presenting a client certificate from the same directory.
#[test]
fn skopeo_copies_over_tls_and_mutual_tls() {
    require(&["skopeo", "umoci"]);
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let server = ca.server("registry", 1);
    let layout = tmp.path().join("layout");
    let image = umoci_image(
        &layout,
        "v1",
        None,
        &[("/hello.txt".to_string(), "hello over TLS\n".to_string())],
        tmp.path(),
        Duration::from_secs(120),
    );
    // skopeo's certificate directory: CAs as *.crt, the client's pair as *.cert and *.key.
    let trust = tmp.path().join("certs.d");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(&ca.cert, trust.join("ca.crt")).unwrap();
    let skopeo_copy = |reg: &TestRegistry, certs: &Path| {
        run_within(
            Command::new("skopeo")
                .args(["copy", "--dest-cert-dir"])
                .arg(certs)
                .arg(format!("oci:{}:v1", layout.display()))
                .arg(format!("docker://{}/tls/skopeo:v1", reg.host)),
            Duration::from_secs(120),
        )
    };

    let reg = start_tls(&server, &[]);
    let out = skopeo_copy(&reg, &trust);
    assert!(out.status.success(), "skopeo copy over TLS: {out:?}");
    let manifest = block_on(async {
        let r = https_client(&ca.cert, None)
            .get(format!("{}/v2/tls/skopeo/manifests/v1", https_url(&reg)))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    });
    assert_eq!(sha256(&manifest), image.digest);

    let ca_path = ca.cert.to_str().unwrap().to_string();
    let mutual = start_tls(&server, &[("REGISTRY_HTTP_TLS_CLIENTCAS", &ca_path)]);
    let refused = skopeo_copy(&mutual, &trust);
    assert!(
        !refused.status.success(),
        "skopeo without a client certificate must be refused"
    );
    let client = ca.client("skopeo-client", 7);
    std::fs::copy(&client.cert, trust.join("client.cert")).unwrap();
    std::fs::copy(&client.key, trust.join("client.key")).unwrap();
    let out = skopeo_copy(&mutual, &trust);
    assert!(out.status.success(), "skopeo copy with mutual TLS: {out:?}");
}

/// `http.tls.clientcas`: only clients with a certificate signed by one of those CAs get
/// through the handshake.
#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_client_cas() {
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let clients = Ca::new(tmp.path(), "clients");
    let stranger = Ca::new(tmp.path(), "stranger");
    let cas = format!("[{}]", clients.cert.display());
    let reg = start_tls(
        &ca.server("registry", 1),
        &[("REGISTRY_HTTP_TLS_CLIENTCAS", &cas)],
    );
    let url = format!("{}/v2/", https_url(&reg));

    let alice = clients.client("alice", 2);
    let r = https_client(&ca.cert, Some(&alice))
        .get(&url)
        .send()
        .await
        .expect("a client with a certificate from the client CA");
    assert_eq!(r.status(), 200);

    let anonymous = https_client(&ca.cert, None).get(&url).send().await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let mallory = stranger.client("mallory", 3);
    let foreign = https_client(&ca.cert, Some(&mallory))
        .get(&url)
        .send()
        .await;
    assert!(foreign.is_err(), "a certificate of another CA: {foreign:?}");

    // The health check counts a server that refuses it for want of a certificate as up.
    let out = healthcheck(&reg, &[("REGISTRY_HTTP_TLS_CLIENTCAS", &cas)]);
    assert!(out.status.success(), "{out:?}");
}

/// Certificate and key replaced while serving (renamed over the old files, as certbot
/// does, then rewritten in place): new connections get the new certificate, no restart.
/// Files that do not load keep the previous certificate in use.
#[tokio::test]
async fn replaced_certificates_are_served_to_new_connections() {
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let first = ca.server("first", 1);
    let second = ca.server("second", 2);
    let live_dir = tmp.path().join("live");
    std::fs::create_dir_all(&live_dir).unwrap();
    let live = Pair {
        cert: live_dir.join("cert.pem"),
        key: live_dir.join("key.pem"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let reg = start_tls(&live, &[]);
    let served =
        || async { handshake(&reg, client_config(&ca.cert, None, ANY_VERSION, &[])).await };
    assert_eq!(served().await.expect("handshake").0, first.der());

    // A half-written certificate is not served; the old one stays.
    let half = std::fs::read_to_string(&second.cert).unwrap();
    std::fs::write(&live.cert, &half[..half.len() / 2]).unwrap();
    let deadline = Instant::now() + BOUND;
    while !reg.log().contains("do not load") {
        assert!(Instant::now() < deadline, "no warning; log:\n{}", reg.log());
        assert_eq!(served().await.expect("handshake").0, first.der());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served().await.expect("handshake").0, first.der());

    // certbot: new files renamed over the old ones.
    std::fs::copy(&second.cert, live_dir.join("cert.new")).unwrap();
    std::fs::copy(&second.key, live_dir.join("key.new")).unwrap();
    std::fs::rename(live_dir.join("cert.new"), &live.cert).unwrap();
    std::fs::rename(live_dir.join("key.new"), &live.key).unwrap();
    wait_for_certificate(&reg, &ca, &second.der()).await;
    let r = https_client(&ca.cert, None)
        .get(format!("{}/v2/", https_url(&reg)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Rewritten in place.
    std::fs::write(&live.key, std::fs::read(&first.key).unwrap()).unwrap();
    std::fs::write(&live.cert, std::fs::read(&first.cert).unwrap()).unwrap();
    wait_for_certificate(&reg, &ca, &first.der()).await;
    assert!(reg.log().contains("TLS certificate reloaded"));
}

/// New handshakes until the server shows `der` (bounded).
async fn wait_for_certificate(reg: &TestRegistry, ca: &Ca, der: &[u8]) {
    let deadline = Instant::now() + BOUND;
    loop {
        let (cert, _) = handshake(reg, client_config(&ca.cert, None, ANY_VERSION, &[]))
            .await
            .expect("handshake");
        if cert == der {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within {BOUND:?}; log:\n{}",
            reg.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn minimum_tls13_refuses_tls12_clients() {
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let reg = start_tls(
        &ca.server("registry", 1),
        &[("REGISTRY_HTTP_TLS_MINIMUMTLS", "tls1.3")],
    );
    let old = handshake(&reg, client_config(&ca.cert, None, TLS12_ONLY, &[])).await;
    assert!(old.is_err(), "a TLS 1.2-only client: {old:?}");
    handshake(&reg, client_config(&ca.cert, None, ANY_VERSION, &[]))
        .await
        .expect("a TLS 1.3 client");
}

/// Configurations that cannot serve HTTPS as asked stop the start (status 2) with a message
/// naming the key (and the file and the reason, for files that do not load).
#[test]
fn tls_configurations_that_cannot_work_refuse_to_start() {
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let one = ca.server("one", 1);
    let two = ca.server("two", 2);
    let missing = tmp.path().join("nowhere/cert.pem");
    let (one_cert, one_key, two_key, missing) = (
        one.cert.to_str().unwrap(),
        one.key.to_str().unwrap(),
        two.key.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    // (environment, what the message must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &[("REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL", "admin@example.com")],
            &[
                "http.tls.letsencrypt.email",
                "certbot",
                "http.tls.certificate",
            ],
        ),
        (
            &[("REGISTRY_HTTP_TLS_CERTIFICATE", one_cert)],
            &["http.tls.key"],
        ),
        (
            &[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", missing),
                ("REGISTRY_HTTP_TLS_KEY", one_key),
            ],
            &["http.tls.certificate", missing, "cannot read it"],
        ),
        (
            &[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", one_cert),
                ("REGISTRY_HTTP_TLS_KEY", two_key),
            ],
            &["http.tls.key", two_key, "is not the private key"],
        ),
        (
            &[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", one_cert),
                ("REGISTRY_HTTP_TLS_KEY", one_key),
                ("REGISTRY_HTTP_TLS_MINIMUMTLS", "tls1.1"),
            ],
            &["http.tls.minimumtls", "tls1.2 or tls1.3"],
        ),
    ];
    for (env, names) in cases {
        let root = tmp.path().join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("serve")
            .env("REGISTRY_HTTP_ADDR", free_port().to_string())
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let out = run_within(&mut cmd, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        for name in *names {
            assert!(
                stderr.contains(name),
                "{env:?}: stderr should name {name}:\n{stderr}"
            );
        }
        assert!(
            !root.exists(),
            "{env:?}: a refused start created the data directory"
        );
    }
}

/// A client that never finishes its TLS handshake, or its request headers, or never sends
/// a request at all, is disconnected after `connections.headertimeout`, and holds up
/// nobody else meanwhile.
#[tokio::test]
async fn slow_handshakes_and_headers_are_cut() {
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let tls = start_tls(&ca.server("registry", 1), QUICK);
    let plain = start_env(QUICK);

    // A TCP connection that starts no handshake, and one that stops in the middle of it.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(tls.addr).unwrap();
    let mut partial = TcpStream::connect(tls.addr).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // Meanwhile others are served.
    let r = https_client(&ca.cert, None)
        .get(format!("{}/v2/", https_url(&tls)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(opened.elapsed() < Duration::from_millis(900));
    for stream in [&mut silent, &mut partial] {
        wait_closed(stream);
        assert!(opened.elapsed() >= Duration::from_millis(900));
    }

    // Plain HTTP: nothing at all, and headers dripped a byte at a time (slowloris).
    let opened = Instant::now();
    let mut silent = TcpStream::connect(plain.addr).unwrap();
    wait_closed(&mut silent);
    assert!(opened.elapsed() >= Duration::from_millis(900));
    let opened = Instant::now();
    let mut drip = TcpStream::connect(plain.addr).unwrap();
    drip.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // A byte every 200 ms (the read's timeout) does not keep the connection open.
    while drip.write_all(b"X").is_ok() && !peer_closed(&mut drip) {
        assert!(
            opened.elapsed() < Duration::from_secs(5),
            "a client dripping header bytes is still connected after 5 s"
        );
    }
    assert!(opened.elapsed() >= Duration::from_millis(900));
}

/// A client that stops sending in the middle of a blob upload has its request failed after
/// `connections.bodytimeout` and the connection closed; the upload session keeps what was
/// recorded before and is finished afterwards.
#[tokio::test]
async fn an_idle_upload_body_is_cut_and_the_upload_resumes() {
    let reg = start_env(QUICK);
    let api = Api::new(&reg);
    let data = random_bytes(3000);
    let digest = sha256(&data);
    let location = api.start_upload("idle/repo").await;
    let r = api.patch(&location, data[..1000].to_vec()).await;
    r.expect(202);
    let location = api.abs(r.must_header("location"));

    // A PATCH announcing 2000 bytes that sends 500 and then nothing.
    let path = location
        .split_once(&reg.host)
        .map(|(_, path)| path.to_string())
        .expect("location on this registry");
    let mut stream = TcpStream::connect(reg.addr).unwrap();
    stream
        .write_all(
            format!(
                "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 2000\r\n\r\n",
                reg.host
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&data[1000..1500]).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // The server answers and closes: read to the end.
    stream
        .read_to_end(&mut answer)
        .expect("the server closes the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("connections.bodytimeout"),
        "{answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500), "{answer}");
    assert!(
        reg.log()
            .contains("sent nothing in the middle of a request body")
    );

    // The session still holds the first 1000 bytes, and the push finishes.
    let status = api.get(&location).await;
    status.expect(204);
    assert_eq!(status.range_len(), 1000, "{status:?}");
    let r = api.patch(&location, data[1000..].to_vec()).await;
    r.expect(202);
    let location = api.abs(r.must_header("location"));
    api.put_upload(&location, &digest, vec![]).await.expect(201);
    let (status, got, len) = api.get_blob_digest("idle/repo", &digest).await;
    assert_eq!((status, got.as_str(), len), (200, digest.as_str(), 3000));
}

/// Request heads over 64 KiB, or with more than 100 header fields, are answered 431, on
/// HTTP/1.1 and HTTP/2; a large but allowed header is fine.
#[tokio::test]
async fn oversized_headers_are_answered_431() {
    let reg = start();
    let big = "a".repeat(70 * 1024);
    let (status, _) = raw_request(&reg, "GET", "/v2/", &[("X-Big", &big)], b"");
    assert_eq!(status, 431);
    let many: Vec<(String, String)> = (0..120)
        .map(|i| (format!("X-Header-{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _) = raw_request(&reg, "GET", "/v2/", &many, b"");
    assert_eq!(status, 431);
    let allowed = "a".repeat(48 * 1024);
    let (status, _) = raw_request(&reg, "GET", "/v2/", &[("X-Big", &allowed)], b"");
    assert_eq!(status, 200);

    let h2 = client_builder().http2_prior_knowledge().build().unwrap();
    let r = h2
        .request(Method::GET, format!("{}/v2/", reg.url))
        .header("X-Big", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = h2
        .request(Method::GET, format!("{}/v2/", reg.url))
        .header("X-Big", &allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// SIGTERM lets a request in flight finish within `http.draintimeout`, then the server
/// exits 0; a request that outlasts the drain timeout does not hold the exit up.
#[test]
fn sigterm_drains_requests_in_flight_within_the_drain_timeout() {
    let mut reg = start_env(&[("REGISTRY_HTTP_DRAINTIMEOUT", "30s")]);
    let mut stream = patch_in_flight(&reg, 1000);
    sigterm(&reg);
    stream.write_all(&random_bytes(1000)).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the answer, then the end");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let status = reg.terminate();
    assert!(status.success(), "{status}");
    assert!(!reg.log().contains("drain timeout"), "{}", reg.log());

    let mut reg = start_env(&[("REGISTRY_HTTP_DRAINTIMEOUT", "1s")]);
    let _stream = patch_in_flight(&reg, 1000);
    let signalled = Instant::now();
    sigterm(&reg);
    let status = reg.terminate();
    assert!(status.success(), "{status}");
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < BOUND,
        "exited {waited:?} after SIGTERM"
    );
    assert!(
        reg.log()
            .contains("requests still running after the drain timeout"),
        "{}",
        reg.log()
    );
}

/// A PATCH of `len` bytes to a new upload session whose handler is waiting for the body
/// (hyper has answered its `Expect: 100-continue`); nothing of the body is sent yet.
fn patch_in_flight(reg: &TestRegistry, len: usize) -> TcpStream {
    let started = http(
        "POST",
        &format!("{}/v2/drain/repo/blobs/uploads/", reg.url),
        &[],
        None,
    );
    started.expect(202);
    let location = started.must_header("location");
    let path = location
        .split_once(&reg.host)
        .map_or(location, |(_, path)| path);
    let mut stream = TcpStream::connect(reg.addr).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream
        .write_all(
            format!(
                "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n",
                reg.host
            )
            .as_bytes(),
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("100 Continue");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    stream
}

/// Sends SIGTERM to the server and waits (bounded) until it has logged it.
fn sigterm(reg: &TestRegistry) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(reg.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + BOUND;
    while !reg.log().contains("SIGTERM received") {
        assert!(
            Instant::now() < deadline,
            "no SIGTERM in the log:\n{}",
            reg.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `ferry healthcheck` against `reg` (its TLS settings from its environment, plus `env`).
fn healthcheck(reg: &TestRegistry, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("healthcheck")
        .env("REGISTRY_HTTP_ADDR", reg.addr.to_string())
        .envs(reg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(env.iter().copied());
    run_within(&mut cmd, Duration::from_secs(30))
}

/// Writes `request` on a fresh connection and reads until the server closes it (bounded).
fn raw_exchange(reg: &TestRegistry, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(reg.addr).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Waits (within [`BOUND`]) until the server closes `stream`: a read finds the end, or a
/// reset. Whatever comes before (a TLS alert) is read past.
fn wait_closed(stream: &mut TcpStream) {
    let started = Instant::now();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    assert!(
        started.elapsed() < BOUND,
        "the server did not close the connection within {BOUND:?}"
    );
}

/// Whether the server has closed `stream`: a read finds the end or a reset (not a timeout).
fn peer_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Runs `future` on a runtime of its own (for the tests that drive command-line tools).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// podman logs in over TLS (a CA made here) to an htpasswd registry whose rules let anyone
/// pull, so its challenges name Ferry's own token endpoint, over HTTPS: no push before
/// `login`, a wrong password refused, push after it, an anonymous pull after `logout` and
/// no push; containerd's `ctr` pulls with `--user` and without; oras pushes logged in and
/// pulls without. With mutual TLS, `login` without a client certificate is refused and succeeds
/// with one.
#[test]
fn podman_logs_in_over_tls_and_mutual_tls() {
    require(&["podman", "skopeo", "umoci"]);
    const TIMEOUT: Duration = Duration::from_secs(180);
    let tmp = tempdir();
    let ca = Ca::new(tmp.path(), "ca");
    let server = ca.server("registry", 1);
    let htpasswd = tmp.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("ci", "ci-pw")).unwrap();
    let config = format!(
        "version: 0.1\nauth:\n  htpasswd:\n    realm: TLS Realm\n    path: {}\n  access:\n    - repositories: [\"**\"]\n      anonymous: true\n      actions: [pull]\n    - repositories: [\"**\"]\n      users: [ci]\n      actions: [pull, push]\n",
        htpasswd.display()
    );
    let start = |extra: &[(String, String)]| {
        let mut env = tls_env(&server);
        env.extend(extra.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestRegistry::start_with_config(&config, &env)
    };
    // podman's certificate directory: the CA as *.crt (a client pair goes in later).
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca.cert, certs.join("ca.crt")).unwrap();
    let podman = cli::ToolStorage::new("podman", tmp.path().join("podman"));
    let auth_file = tmp.path().join("auth.json");
    std::fs::write(&auth_file, "{}").unwrap();
    let run = |args: &[&str]| {
        let mut cmd = podman.cmd();
        cmd.env("REGISTRY_AUTH_FILE", &auth_file).args(args);
        run_within(&mut cmd, TIMEOUT)
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "podman {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cert_dir = certs.to_str().unwrap();

    let layout = tmp.path().join("layout");
    let files = vec![("/hello.txt".to_string(), "podman over TLS\n".to_string())];
    umoci_image(&layout, "v1", None, &files, tmp.path(), TIMEOUT);
    let reg = start(&[]);
    let name = format!("{}/tls/podman:v1", reg.host);
    // Into podman's storage (podman itself names an image pulled from a layout after its
    // path, which may hold capitals, and refuses that).
    let store = tmp.path().join("podman");
    cli::sh_within(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!(
                "containers-storage:[vfs@{}+{}]{name}",
                store.join("root").display(),
                store.join("runroot").display()
            )),
        TIMEOUT,
    );
    assert!(
        !run(&["push", "--cert-dir", cert_dir, &name])
            .status
            .success(),
        "push without login"
    );
    let login_as = |password: &str, host: &str| {
        run(&[
            "login",
            "--cert-dir",
            cert_dir,
            "-u",
            "ci",
            "-p",
            password,
            host,
        ])
    };
    let login = |host: &str| login_as("ci-pw", host);
    let wrong = login_as("wrong", &reg.host);
    assert!(
        !wrong.status.success(),
        "login with a wrong password: {wrong:?}"
    );
    let out = login(&reg.host);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("Login Succeeded"),
        "{out:?}"
    );
    ok(&["push", "--cert-dir", cert_dir, &name]);
    ok(&["logout", &reg.host]);
    ok(&["rmi", &name]);
    ok(&["pull", "--cert-dir", cert_dir, &name]);
    assert!(
        !run(&["push", "--cert-dir", cert_dir, &name])
            .status
            .success(),
        "push after logout"
    );
    assert!(!reg.log().contains("ci-pw"), "the password is in the log");

    // containerd's ctr over TLS: with `--user`, and without (an anonymous token).
    require(&["containerd", "ctr"]);
    let daemon = cli::Containerd::start(&tmp.path().join("containerd"));
    // (ctr speaks plain HTTP to 127.0.0.1 unless a hosts.toml says https.)
    let hosts = tmp.path().join("hosts.d");
    cli::write(
        &hosts.join(&reg.host).join("hosts.toml"),
        &format!(
            "server = \"https://{host}\"\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = {ca:?}\n",
            host = reg.host,
            ca = ca.cert.display().to_string()
        ),
    );
    let ctr_pull = |user: Option<&str>| {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&daemon.socket)
            .args(["images", "pull"]);
        cmd.args(["--snapshotter", "native", "--hosts-dir"])
            .arg(&hosts);
        if let Some(user) = user {
            cmd.args(["--user", user]);
        }
        cli::sh_within(cmd.arg(&name), TIMEOUT)
    };
    ctr_pull(Some("ci:ci-pw"));
    ctr_pull(None);

    // oras (the Python SDK) over TLS: pushes an artifact logged in, not without; pulls it
    // without a login.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oras_client.py");
    let work = tmp.path().join("oras");
    cli::write(&work.join("note.txt"), "oras over TLS\n");
    let oras = |args: &[&str], login: bool| {
        let mut cmd = Command::new("python3");
        cmd.arg(&script).args(args).current_dir(&work);
        cmd.env("ORAS_TLS_CA", &ca.cert);
        if login {
            cmd.env("ORAS_USER", "ci").env("ORAS_PASSWORD", "ci-pw");
        }
        run_within(&mut cmd, TIMEOUT)
    };
    let push = [
        "push",
        &reg.host,
        "tls/oras:v1",
        "note.txt",
        OCI_EMPTY,
        "-",
        "-",
        "-",
        "-",
        "-",
    ];
    assert!(
        !oras(&push, false).status.success(),
        "oras pushed without a login"
    );
    let pushed = oras(&push, true);
    assert!(pushed.status.success(), "oras push: {pushed:?}");
    let out = work.join("out");
    let pulled = oras(
        &["pull", &reg.host, "tls/oras:v1", out.to_str().unwrap()],
        false,
    );
    assert!(pulled.status.success(), "oras pull: {pulled:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("note.txt")).unwrap(),
        "oras over TLS\n"
    );

    let client_cas = ca.cert.to_str().unwrap().to_string();
    let mutual = start(&[("REGISTRY_HTTP_TLS_CLIENTCAS".to_string(), client_cas)]);
    let refused = login(&mutual.host);
    assert!(
        !refused.status.success(),
        "login without a client certificate: {refused:?}"
    );
    let client = ca.client("podman-client", 7);
    std::fs::copy(&client.cert, certs.join("client.cert")).unwrap();
    std::fs::copy(&client.key, certs.join("client.key")).unwrap();
    let out = login(&mutual.host);
    assert!(
        out.status.success(),
        "login with a client certificate: {out:?}"
    );
}
