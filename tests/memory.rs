//! Memory: a 1 GiB blob streams through the server (in a single PATCH, in a single
//! POST ?digest=, and back out with GET) without the server's peak RSS reaching 128 MiB,
//! and six 160 MiB pushes at once to a disk slower than the network stay under 64 MiB.
//! The test generates the content on the fly and never holds it in memory either.

mod support;

use std::time::Duration;

use reqwest::Method;
use support::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const LIMIT_KIB: u64 = 128 * 1024;
/// The target for parallel pushes, whatever the disk does.
const SLOW_DISK_LIMIT_KIB: u64 = 64 * 1024;

fn check_rss(reg: &TestRegistry, what: &str) {
    check_rss_below(reg, what, LIMIT_KIB);
}

fn check_rss_below(reg: &TestRegistry, what: &str, limit_kib: u64) {
    let peak = reg.peak_rss_kib();
    eprintln!(
        "peak RSS after {what}: {} KiB ({:.1} MiB)",
        peak,
        peak as f64 / 1024.0
    );
    assert!(peak > 0, "could not read the server's VmHWM");
    assert!(
        peak < limit_kib,
        "server peak RSS {peak} KiB after {what} exceeds {limit_kib} KiB"
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

/// Six 160 MiB blobs pushed at once while the disk is slower than the network: every
/// write of the filesystem store's writer thread first sleeps 20 ms
/// (`FERRY_TEST_WRITE_DELAY_MS`, a test-only knob), so each upload's pipeline stays full
/// for the whole push and what it buffers must be bounded in bytes. Each PATCH announces its
/// `Content-Length`, as Go clients send them, so the server reads the body in pieces of
/// whatever the socket holds (a chunked body of 1 MiB chunks would line up with the
/// server's 1 MiB pieces and hide uneven ones). The target is 64 MiB for four pushes; six
/// leave no doubt: with the queues bounded by counts of pieces instead of bytes, four
/// peaked at 59-63 MiB here, six at 78-82 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_parallel_pushes_while_the_disk_is_slow() {
    if support::skip_on_s3("the slowed writer is the filesystem store's") {
        return;
    }
    let reg = start_env(&[("FERRY_TEST_WRITE_DELAY_MS", "20")]);
    let api = Api::with_timeout(&reg, Duration::from_secs(900));
    // Contents and digests first, so the pushes start together.
    let blobs: Vec<(Content, String)> = (0..6)
        .map(|_| {
            let content = Content::new(160 * MIB);
            let digest = content.digest();
            (content, digest)
        })
        .collect();
    let mut pushes = tokio::task::JoinSet::new();
    for (i, (content, digest)) in blobs.into_iter().enumerate() {
        let api = api.clone();
        pushes.spawn(async move {
            api.push_content_with_length(&format!("mem/slow-disk-{i}"), &content, &digest)
                .await;
        });
    }
    while let Some(pushed) = pushes.join_next().await {
        if let Err(e) = pushed {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    check_rss_below(
        &reg,
        "six parallel 160 MiB PATCHes to a slow disk",
        SLOW_DISK_LIMIT_KIB,
    );
}
