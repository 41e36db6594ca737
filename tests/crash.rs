//! Crash safety: `kill -9` in the middle of an upload never leaves a visible or
//! half-written blob, never damages what was pushed before, and an upload session
//! interrupted between chunks continues after a restart.

mod support;

use std::time::Duration;

use reqwest::Method;
use support::*;
use tokio::sync::oneshot;

const BIG: u64 = 256 << 20;

/// How the interrupted upload sends its bytes.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// POST, then one streamed PATCH (no Content-Range).
    StreamedPatch,
    /// POST, then a PUT ?digest= carrying all the bytes.
    PutWithDigest,
    /// A single POST ?digest= carrying all the bytes.
    PostWithDigest,
    /// A PATCH of the first half (acknowledged), then a PUT ?digest= carrying the rest.
    PatchThenPut,
}

/// Starts uploading `content` into `repo` the `mode` way, stalls after `after` chunks,
/// and returns once that many chunks are on the wire, with the request still open.
async fn start_interrupted_upload(
    api: &Api,
    repo: &str,
    content: &Content,
    mode: Mode,
    after: u64,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::StatusCode>> {
    let digest = content.digest();
    let (tx, rx) = oneshot::channel();
    let half = content.chunks() / 2;
    let from = if matches!(mode, Mode::PatchThenPut) {
        half
    } else {
        0
    };
    let body = content.body(from, content.chunks(), Some((after, tx)));
    let request = match mode {
        Mode::StreamedPatch => {
            let loc = api.start_upload(repo).await;
            api.req(Method::PATCH, &loc)
        }
        Mode::PutWithDigest => {
            let loc = api.start_upload(repo).await;
            api.req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
        }
        Mode::PatchThenPut => {
            let loc = api.start_upload(repo).await;
            let r = api
                .send(
                    api.req(Method::PATCH, &loc)
                        .header("Content-Type", "application/octet-stream")
                        .body(content.body(0, half, None)),
                )
                .await;
            r.expect(202);
            assert_eq!(r.range_len(), content.offset(half));
            let loc = api.abs(r.must_header("location"));
            api.req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
        }
        Mode::PostWithDigest => api.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        ),
    }
    .header("Content-Type", "application/octet-stream")
    .body(body);
    let task = tokio::spawn(async move {
        // Fails once the server dies; the outcome does not matter.
        request.send().await.map(|r| r.status())
    });
    let started = tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .expect("the upload did not get going");
    if started.is_err() {
        // The request finished before its body was sent: the server answered early.
        let outcome = task.await.unwrap();
        panic!("{mode:?}: the server answered before the body was complete: {outcome:?}");
    }
    task
}

async fn crash_mid_upload(mode: Mode) {
    let mut reg = start();
    let mut api = Api::with_timeout(&reg, Duration::from_secs(600));
    let before = api.push_image("crash/before", "v1", 3).await;

    let content = Content::new(BIG);
    let digest = content.digest();
    let task = start_interrupted_upload(&api, "crash/big", &content, mode, 64).await;
    // Bytes already acknowledged (PatchThenPut) plus 32 MiB of the interrupted request.
    let acknowledged = match mode {
        Mode::PatchThenPut => content.offset(content.chunks() / 2),
        _ => 0,
    };
    wait_for_staged_bytes(&reg, acknowledged + (32 << 20)).await;
    reg.kill9();
    task.abort();
    reg.restart();
    // A fresh client: pooled connections to the dead server are gone.
    api = Api::with_timeout(&reg, Duration::from_secs(600));

    let path = format!("/v2/crash/big/blobs/{digest}");
    let r = api.head(&path).await;
    assert_eq!(
        r.status, 404,
        "{mode:?}: an interrupted upload must not be visible:\n{r:?}"
    );
    assert!(
        !blob_data_path(&reg, &digest).exists(),
        "{mode:?}: no blob data file may exist for an interrupted upload"
    );
    no_partial_blob_files(&reg, BIG);

    // The image pushed before the crash is intact.
    api.assert_image_intact("crash/before", "v1", &before).await;

    // The same push now succeeds, and the bytes stored hash to the digest.
    api.push_content("crash/big", &content, &digest).await;
    let (status, got, len) = api.get_blob_digest("crash/big", &digest).await;
    assert_eq!(status, 200);
    assert_eq!(len, BIG);
    assert_eq!(got, digest);
    let on_disk = std::fs::metadata(blob_data_path(&reg, &digest)).expect("blob data file");
    assert_eq!(on_disk.len(), BIG);
    check_log_clean(&reg);
}

/// Waits (bounded) until some file under the data directory holds at least `min` bytes:
/// the server is writing the upload to disk as it arrives, so the kill lands mid-write.
async fn wait_for_staged_bytes(reg: &TestRegistry, min: u64) {
    for _ in 0..600 {
        if largest_file(&reg.root) >= min {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no file under the data directory reached {min} bytes while 64 MiB more were sent; \
         is the upload being buffered in memory?"
    );
}

fn largest_file(root: &std::path::Path) -> u64 {
    let mut stack = vec![root.to_path_buf()];
    let mut largest = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                largest = largest.max(meta.len());
            }
        }
    }
    largest
}

/// No file under `blobs/` may be a truncated copy of the interrupted upload.
fn no_partial_blob_files(reg: &TestRegistry, full: u64) {
    let blobs = reg.root.join("docker/registry/v2/blobs");
    let mut stack = vec![blobs];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            assert!(seen < 100_000, "too many files under blobs/");
            let p = e.path();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                assert!(
                    meta.len() < (1 << 20) || meta.len() == full,
                    "a partial blob was left under blobs/: {} ({} bytes)",
                    p.display(),
                    meta.len()
                );
            }
        }
    }
}

fn check_log_clean(reg: &TestRegistry) {
    let log = reg.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_streamed_patch() {
    crash_mid_upload(Mode::StreamedPatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_put_with_digest() {
    crash_mid_upload(Mode::PutWithDigest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_post_with_digest() {
    crash_mid_upload(Mode::PostWithDigest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_final_put_after_a_patch() {
    crash_mid_upload(Mode::PatchThenPut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_session_continues_after_a_crash_between_chunks() {
    let mut reg = start();
    let mut api = Api::with_timeout(&reg, Duration::from_secs(600));
    let content = Content::new(40 * CHUNK + 12345);
    let digest = content.digest();
    let (a, b) = (16, 30); // chunk boundaries: [0,a) before the crash, [a,b) and the rest after

    let loc = api.start_upload("resume/repo").await;
    let first_end = content.offset(a);
    let r = api
        .send(
            api.req(Method::PATCH, &loc)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("0-{}", first_end - 1))
                .body(content.body(0, a, None)),
        )
        .await;
    r.expect(202);
    assert_eq!(r.range_len(), first_end);
    let loc = api.abs(r.must_header("location"));

    reg.kill9();
    reg.restart();
    // A fresh client: pooled connections to the dead server are gone.
    api = Api::with_timeout(&reg, Duration::from_secs(600));

    // The session and its offset survived.
    let r = api.get(&loc).await;
    r.expect(204);
    assert_eq!(r.range_len(), first_end, "{r:?}");
    let loc = api.abs(r.must_header("location"));

    // A chunk that does not continue at the offset is still refused.
    api.patch_range(&loc, first_end + 1, vec![1, 2, 3])
        .await
        .expect_error(416, &["BLOB_UPLOAD_INVALID"]);

    // Next chunk with Content-Range.
    let mid_end = content.offset(b);
    let r = api
        .send(
            api.req(Method::PATCH, &loc)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{first_end}-{}", mid_end - 1))
                .body(content.body(a, b, None)),
        )
        .await;
    r.expect(202);
    assert_eq!(r.range_len(), mid_end);
    let loc = api.abs(r.must_header("location"));

    // Crash again, then finish with a streamed PATCH and an empty PUT.
    reg.kill9();
    reg.restart();
    // A fresh client: pooled connections to the dead server are gone.
    api = Api::with_timeout(&reg, Duration::from_secs(600));
    let r = api
        .send(
            api.req(Method::PATCH, &loc)
                .header("Content-Type", "application/octet-stream")
                .body(content.body(b, content.chunks(), None)),
        )
        .await;
    r.expect(202);
    assert_eq!(r.range_len(), content.len);
    let loc = api.abs(r.must_header("location"));
    let r = api.put_upload(&loc, &digest, vec![]).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest);

    let (status, got, len) = api.get_blob_digest("resume/repo", &digest).await;
    assert_eq!(status, 200);
    assert_eq!(len, content.len);
    assert_eq!(got, digest);
    check_log_clean(&reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_pushes_survive_kill9() {
    let mut reg = start();
    let mut api = Api::new(&reg);
    let images: Vec<Image> = {
        let mut v = vec![];
        for i in 0..5 {
            v.push(api.push_image(&format!("durable/r{i}"), "v1", 2).await);
        }
        v
    };
    let img = &images[0];
    api.push_manifest("durable/r0", "v2", OCI_MANIFEST, &img.manifest)
        .await;
    // Killed right after the last 201: everything acknowledged must still be there.
    reg.kill9();
    reg.restart();
    // A fresh client: pooled connections to the dead server are gone.
    api = Api::with_timeout(&reg, Duration::from_secs(600));
    for (i, img) in images.iter().enumerate() {
        api.assert_image_intact(&format!("durable/r{i}"), "v1", img)
            .await;
    }
    assert_eq!(api.tags("durable/r0").await, vec!["v1", "v2"]);
    let mut catalog = api.catalog().await;
    catalog.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("durable/r{i}")).collect();
    assert_eq!(catalog, expected);
}

/// Several processes started at the same moment on a new data directory (a restart loop, two
/// containers on one volume, the collector next to the server) all open it: the schema is
/// created once, the others wait for it instead of failing with "table ... already exists".
/// `ferry import` opens the stores exactly as `ferry serve` does, then exits.
#[tokio::test]
async fn processes_started_at_once_on_a_new_database_all_open_it() {
    let root = tempfile::tempdir().expect("temp dir");
    for round in 0..5 {
        let data = root.path().join(format!("round-{round}"));
        let mut children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
                    .arg("import")
                    .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn ferry import")
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)))
        {
            assert!(std::time::Instant::now() < deadline, "ferry import hangs");
            std::thread::sleep(Duration::from_millis(20));
        }
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: a process failed to open the new database ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // And a server on such a database serves.
    let reg = TestRegistry::start_on(support::Flavor::Ferry, &root.path().join("round-0"), &[]);
    let api = Api::new(&reg);
    api.push_image("race/start", "v1", 1).await;
    assert_eq!(api.tags("race/start").await, vec!["v1"]);
}
