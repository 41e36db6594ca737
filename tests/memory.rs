//! Memory: a 1 GiB blob streams through the server (in a single PATCH, in a single
//! POST ?digest=, and back out with GET) without the server's peak RSS reaching 128 MiB.
//! The test generates the content on the fly and never holds it in memory either.

mod support;

use std::time::Duration;

use reqwest::Method;
use support::*;

const GIB: u64 = 1 << 30;
const LIMIT_KIB: u64 = 128 * 1024;

fn check_rss(reg: &TestRegistry, what: &str) {
    let peak = reg.peak_rss_kib();
    eprintln!(
        "peak RSS after {what}: {} KiB ({:.1} MiB)",
        peak,
        peak as f64 / 1024.0
    );
    assert!(peak > 0, "could not read the server's VmHWM");
    assert!(
        peak < LIMIT_KIB,
        "server peak RSS {peak} KiB after {what} exceeds {LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_in_a_single_patch_and_back_out() {
    let reg = start();
    let api = Api::with_timeout(&reg, Duration::from_secs(900));
    let content = Content::new(GIB);
    let digest = content.digest();

    api.push_content("mem/patch", &content, &digest).await;
    check_rss(&reg, "a 1 GiB streamed PATCH");

    let (status, got, len) = api.get_blob_digest("mem/patch", &digest).await;
    assert_eq!(status, 200);
    assert_eq!(len, GIB);
    assert_eq!(got, digest);
    check_rss(&reg, "a 1 GiB PATCH and a 1 GiB GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_in_a_single_post_with_digest() {
    let reg = start();
    let api = Api::with_timeout(&reg, Duration::from_secs(900));
    let content = Content::new(GIB);
    let digest = content.digest();

    let r = api
        .send(
            api.req(
                Method::POST,
                &format!("/v2/mem/post/blobs/uploads/?digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(content.body(0, content.chunks(), None)),
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let r = api.head(&format!("/v2/mem/post/blobs/{digest}")).await;
    r.expect(200);
    assert_eq!(r.must_header("content-length"), GIB.to_string());
    check_rss(&reg, "a 1 GiB POST ?digest=");
}
