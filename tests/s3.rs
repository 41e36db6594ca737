//! Ferry on S3 (`storage.s3`), against a real S3 server: `s3s-fs`, which checks request
//! signatures and keeps each object as a file (`<store>/<bucket>/<key>`), so the tests can
//! look at the bucket the way a user browsing it would.
//!
//! Every test starts its own S3 server (see `tests/support`), whatever `FERRY_TEST_STORAGE`
//! says, so these run in the normal `cargo test` pass:
//!
//! - [`blob_keys_follow_distributions_layout_under_the_rootdirectory`]: the bucket holds
//!   each blob at Distribution's key, byte for byte, and nothing outside the rootdirectory;
//! - [`an_s3_outage_mid_push_fails_the_push_and_a_retry_succeeds`]: S3 goes away in the
//!   middle of a chunked push: an error answer, the registry stays up, nothing half-written
//!   becomes visible, and the push succeeds once S3 is back;
//! - [`a_database_refuses_another_store`]: a metadata database started against another
//!   bucket or rootdirectory (or the filesystem's) stops the server with a message;
//! - [`s3_configuration_errors_name_the_setting`];
//! - [`blob_get_redirects_to_a_presigned_url_when_redirects_are_enabled`];
//! - [`ferry_gc_removes_the_objects_of_a_deleted_image`] and
//!   [`abandoned_uploads_are_purged_with_their_multipart_parts`].

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const MIB: usize = 1 << 20;
/// The smallest S3 part size (all parts but the last), as `storage.s3.chunksize`.
const PART: &str = "5242880";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The bucket file of a blob: `<layout root>/docker/registry/v2/blobs/<alg>/<2>/<hex>/data`.
fn blob_file(layout_root: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest has an algorithm");
    layout_root
        .join("docker/registry/v2/blobs")
        .join(alg)
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Pushes `data` into `repo` as PATCHes of `piece` bytes and a PUT ?digest= without a body;
/// asserts every step and returns the digest.
async fn push_chunked(api: &Api, repo: &str, data: &[u8], piece: usize) -> String {
    let digest = sha256(data);
    let mut loc = api.start_upload(repo).await;
    let mut sent = 0u64;
    for chunk in data.chunks(piece) {
        let r = api.patch(&loc, chunk.to_vec()).await;
        r.expect(202);
        sent += chunk.len() as u64;
        assert_eq!(r.range_len(), sent, "{r:?}");
        loc = api.abs(r.must_header("location"));
    }
    let r = api.put_upload(&loc, &digest, vec![]).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");
    digest
}

/// Asserts a server-side failure as the distribution spec answers one: a 5xx status and a
/// JSON body `{"errors":[{"code","message"}, ...]}`.
#[track_caller]
fn expect_server_error(r: &Resp) {
    assert!(
        (500..600).contains(&r.status),
        "expected a 5xx answer while S3 is down, got:\n{r:?}"
    );
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "an error answer must be JSON:\n{r:?}"
    );
    let body = r.json();
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("error body has no \"errors\" array:\n{r:?}"));
    assert!(!errors.is_empty(), "empty errors array:\n{r:?}");
    for e in errors {
        assert!(
            e["code"].is_string() && e["message"].is_string(),
            "an error needs a code and a message:\n{r:?}"
        );
    }
}

/// `ferry-gc --json <args>` with the registry's storage settings and overrides; asserts exit
/// 0 and returns the JSON report.
fn ferry_gc(reg: &TestRegistry, args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry-gc"));
    cmd.arg("--json")
        .args(args)
        .env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .env("REGISTRY_LOG_LEVEL", "info")
        .stdin(Stdio::null());
    for (k, v) in reg.storage_env().into_iter().chain(reg.env.clone()) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ferry-gc");
    let describe = format!(
        "ferry-gc --json {args:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{describe}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{describe}"))
}

/// A number in a `ferry-gc` report.
#[track_caller]
fn n(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {report:#}"))
}

/// `env` with `key` set to `value` (replacing any earlier setting).
fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    out.push((key.to_string(), value.to_string()));
    out
}

/// Digests of an image's config and layers, and of its manifest.
fn image_digests(img: &Image) -> BTreeSet<String> {
    std::iter::once(&img.config)
        .chain(&img.layers)
        .map(|b| b.digest.clone())
        .chain([img.digest.clone()])
        .collect()
}

// ---------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------

/// After pushes (small blobs in one request, a large one in parts, manifests), the bucket
/// holds each blob's exact bytes at Distribution's key below the rootdirectory, nothing
/// outside it, and no upload left behind.
#[tokio::test]
async fn blob_keys_follow_distributions_layout_under_the_rootdirectory() {
    let s3 = S3Server::new();
    let reg = TestRegistry::start_on_s3(
        &s3,
        "layout-bucket",
        &[
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/deep/prefix"),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", PART),
        ],
    );
    let api = Api::new(&reg);
    let img = api.push_image("layout/app", "v1", 2).await;
    let big = random_bytes(12 * MIB + 3);
    let big_digest = push_chunked(&api, "layout/app", &big, 4 * MIB).await;

    let bucket = s3.bucket_dir("layout-bucket");
    let layout_root = bucket.join("deep/prefix");
    let mut expected: Vec<(&str, &[u8])> = vec![
        (&img.config.digest, &img.config.data),
        (&img.digest, &img.manifest),
        (&big_digest, &big),
    ];
    for l in &img.layers {
        expected.push((&l.digest, &l.data));
    }
    for (digest, bytes) in expected {
        let file = blob_file(&layout_root, digest);
        let stored = std::fs::read(&file).unwrap_or_else(|e| {
            panic!(
                "no object deep/prefix/docker/registry/v2/blobs/.../{digest}/data in the bucket \
                 ({e}); objects: {:#?}",
                files_under(&bucket).keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(stored.len(), bytes.len(), "size of the object of {digest}");
        assert!(stored == bytes, "the object of {digest} holds other bytes");
    }

    let objects = files_under(&bucket);
    let stray: Vec<&PathBuf> = objects
        .keys()
        .filter(|k| !k.starts_with("deep/prefix/docker/registry/v2"))
        .collect();
    assert!(
        stray.is_empty(),
        "objects outside <rootdirectory>/docker/registry/v2: {stray:?}"
    );
    let uploads: Vec<&PathBuf> = objects
        .keys()
        .filter(|k| k.components().any(|c| c.as_os_str() == "_uploads"))
        .collect();
    assert!(
        uploads.is_empty(),
        "completed uploads left staging objects behind: {uploads:?}"
    );
    assert_eq!(
        s3.multipart_staging(),
        Vec::<PathBuf>::new(),
        "completed uploads left multipart uploads open in S3"
    );
    // And the registry serves what the bucket holds.
    api.assert_image_intact("layout/app", "v1", &img).await;
    let (status, digest, len) = api.get_blob_digest("layout/app", &big_digest).await;
    assert_eq!((status, digest, len), (200, big_digest, big.len() as u64));
}

// ---------------------------------------------------------------------------------------
// S3 outage
// ---------------------------------------------------------------------------------------

/// S3 stops in the middle of a chunked push: the push fails with a spec error answer, the
/// registry keeps answering, the half-pushed blob is never visible (nor stored under its
/// final key with other bytes), and the same push from scratch succeeds once S3 is back.
#[tokio::test]
async fn an_s3_outage_mid_push_fails_the_push_and_a_retry_succeeds() {
    let mut s3 = S3Server::new();
    let reg = TestRegistry::start_on_s3(
        &s3,
        support::DEFAULT_BUCKET,
        &[("REGISTRY_STORAGE_S3_CHUNKSIZE", PART)],
    );
    let api = Api::new(&reg);
    let repo = "fault/app";
    let before = api.push_image(repo, "before", 2).await;

    let data = random_bytes(24 * MIB + 7);
    let digest = sha256(&data);
    let piece = 6 * MIB; // more than a part: every PATCH has something to send to S3
    let mut loc = api.start_upload(repo).await;
    let mut sent = 0usize;
    for chunk in data[..2 * piece].chunks(piece) {
        let r = api.patch(&loc, chunk.to_vec()).await;
        r.expect(202);
        sent += chunk.len();
        assert_eq!(r.range_len(), sent as u64, "{r:?}");
        loc = api.abs(r.must_header("location"));
    }

    s3.stop();
    // The push goes on; the first request that is refused must be a spec error. Any PATCH
    // the registry still accepts (buffered) is fine, but the push cannot complete.
    let mut refused = None;
    for chunk in data[sent..].chunks(piece) {
        let r = api.patch(&loc, chunk.to_vec()).await;
        if r.status != 202 {
            refused = Some(r);
            break;
        }
        loc = api.abs(r.must_header("location"));
    }
    let refused = match refused {
        Some(r) => r,
        None => api.put_upload(&loc, &digest, vec![]).await,
    };
    eprintln!(
        "refused while S3 was down: {} {}",
        refused.status,
        refused.text()
    );
    expect_server_error(&refused);

    // The registry is still up and answers what needs no S3.
    api.get("/v2/").await.expect(200);
    let r = api.get(&format!("/v2/{repo}/tags/list")).await;
    r.expect(200);
    assert_eq!(string_list(&r.json()["tags"]), vec!["before".to_string()]);

    s3.start();
    // Nothing of the failed push is visible.
    let path = format!("/v2/{repo}/blobs/{digest}");
    api.head(&path).await.expect(404);
    api.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
    let final_file = blob_file(&reg.storage_root(), &digest);
    if let Ok(stored) = std::fs::read(&final_file) {
        assert!(
            stored == data,
            "{} holds {} bytes that are not the blob's",
            final_file.display(),
            stored.len()
        );
    }

    // The same push from scratch succeeds and reads back identical.
    let pushed = push_chunked(&api, repo, &data, piece).await;
    assert_eq!(pushed, digest);
    let (status, got, len) = api.get_blob_digest(repo, &digest).await;
    assert_eq!((status, got, len), (200, digest.clone(), data.len() as u64));
    let stored =
        std::fs::read(&final_file).unwrap_or_else(|e| panic!("{}: {e}", final_file.display()));
    assert!(stored == data, "the object under the blob's key differs");
    api.assert_image_intact(repo, "before", &before).await;
}

// ---------------------------------------------------------------------------------------
// Storage identity
// ---------------------------------------------------------------------------------------

/// A metadata database belongs to the store it indexes: started with another bucket,
/// another rootdirectory, or where a filesystem registry's database points at S3, Ferry
/// exits non-zero naming both stores and writes nothing; on its own store it serves what
/// was pushed.
#[tokio::test]
async fn a_database_refuses_another_store() {
    let s3 = S3Server::new();
    let mut first = TestRegistry::start_on_s3(
        &s3,
        "bucket-alpha",
        &[("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/first-root")],
    );
    let img = Api::new(&first).push_image("ident/app", "v1", 1).await;
    first.terminate();
    let db = first.root.join("ferry").join("metadata.db");
    assert!(db.is_file(), "no database at {}", db.display());
    let env: Vec<(String, String)> = first
        .storage_env()
        .into_iter()
        .chain(first.env.clone())
        .collect();

    // Another bucket.
    let beta = s3.create_bucket("bucket-beta");
    let (status, log) =
        serve_expecting_exit(&with(&env, "REGISTRY_STORAGE_S3_BUCKET", "bucket-beta"));
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    for name in ["bucket-alpha", "bucket-beta"] {
        assert!(
            log.contains(name),
            "the refusal does not name {name:?}; log:\n{log}"
        );
    }
    assert!(
        files_under(&beta).is_empty(),
        "a refused start wrote into bucket-beta: {:?}",
        files_under(&beta)
    );

    // Another rootdirectory in the same bucket.
    let (status, log) = serve_expecting_exit(&with(
        &env,
        "REGISTRY_STORAGE_S3_ROOTDIRECTORY",
        "/second-root",
    ));
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    for name in ["first-root", "second-root"] {
        assert!(
            log.contains(name),
            "the refusal does not name {name:?}; log:\n{log}"
        );
    }
    assert!(
        !s3.bucket_dir("bucket-alpha").join("second-root").exists(),
        "a refused start wrote under second-root"
    );

    // A filesystem registry's database, pointed at S3.
    let fs_dir = tempfile::tempdir().expect("temp dir");
    let fs_root = fs_dir.path().join("data");
    std::fs::create_dir_all(&fs_root).unwrap();
    let mut on_fs = TestRegistry::start_on(support::Flavor::Ferry, &fs_root, &[]);
    Api::new(&on_fs).push_image("fs/app", "v1", 1).await;
    on_fs.terminate();
    let fs_db = fs_root.join("ferry").join("metadata.db");
    assert!(fs_db.is_file(), "no database at {}", fs_db.display());
    let (status, log) = serve_expecting_exit(&with(
        &with(&env, "REGISTRY_DATABASE_PATH", fs_db.to_str().unwrap()),
        "REGISTRY_STORAGE_S3_BUCKET",
        "bucket-beta",
    ));
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("bucket-beta") && log.contains(fs_root.to_str().unwrap()),
        "the refusal does not name bucket-beta and {}; log:\n{log}",
        fs_root.display()
    );
    assert!(
        files_under(&beta).is_empty(),
        "a refused start wrote into bucket-beta"
    );

    // The first store with its own database: everything is there.
    let again = TestRegistry::start_on_s3(
        &s3,
        "bucket-alpha",
        &[
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/first-root"),
            ("REGISTRY_DATABASE_PATH", db.to_str().unwrap()),
        ],
    );
    Api::new(&again)
        .assert_image_intact("ident/app", "v1", &img)
        .await;
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// Two storage drivers, a part size below S3's 5 MiB minimum, or no bucket: `ferry serve`
/// exits non-zero naming the setting, as Distribution does.
#[test]
fn s3_configuration_errors_name_the_setting() {
    let s3 = S3Server::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("data/ferry/metadata.db");
    let target = s3.target(support::DEFAULT_BUCKET);
    let env: Vec<(String, String)> = [
        ("REGISTRY_STORAGE_S3_BUCKET", target.bucket.as_str()),
        ("REGISTRY_STORAGE_S3_REGIONENDPOINT", &target.endpoint),
        ("REGISTRY_STORAGE_S3_REGION", support::S3_REGION),
        ("REGISTRY_STORAGE_S3_ACCESSKEY", &target.access_key),
        ("REGISTRY_STORAGE_S3_SECRETKEY", &target.secret_key),
        ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
        ("REGISTRY_STORAGE_S3_SECURE", "false"),
        ("REGISTRY_DATABASE_PATH", db.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let fs_root = dir.path().join("fs");
    // (settings, what the error must name)
    type Case<'a> = (Vec<(String, String)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            with(
                &env,
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                fs_root.to_str().unwrap(),
            ),
            &["filesystem", "s3"],
        ),
        (
            with(&env, "REGISTRY_STORAGE_S3_CHUNKSIZE", "1048576"),
            &["storage.s3.chunksize"],
        ),
        (
            env.iter()
                .filter(|(k, _)| k != "REGISTRY_STORAGE_S3_BUCKET")
                .cloned()
                .collect(),
            &["storage.s3.bucket"],
        ),
    ];
    for (env, names) in cases {
        let (status, log) = serve_expecting_exit(&env);
        assert!(
            !status.success(),
            "exit status {status} with {env:?}; log:\n{log}"
        );
        for name in names {
            assert!(
                log.contains(name),
                "the error does not name {name:?}; log:\n{log}"
            );
        }
    }
    assert!(
        files_under(&target.bucket_dir).is_empty(),
        "a refused start wrote into the bucket"
    );
}

// ---------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------

/// With `storage.redirect.disable: false` a blob GET answers 307 to a presigned URL on the
/// S3 endpoint that yields the blob's bytes; HEAD answers itself. Without the setting, the
/// registry serves the bytes.
#[tokio::test]
async fn blob_get_redirects_to_a_presigned_url_when_redirects_are_enabled() {
    let s3 = S3Server::new();
    let reg = TestRegistry::start_on_s3(
        &s3,
        support::DEFAULT_BUCKET,
        &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "false")],
    );
    let api = Api::new(&reg); // does not follow redirects
    let data = random_bytes(300_001);
    let digest = api.push_blob("redir/app", &data).await;
    let path = format!("/v2/redir/app/blobs/{digest}");

    let r = api.get(&path).await;
    r.expect(307);
    let location = r.must_header("location").to_string();
    assert!(
        location.starts_with(&format!("{}/", s3.endpoint)),
        "Location should be on the S3 endpoint {}:\n{r:?}",
        s3.endpoint
    );
    let followed = client_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(&location)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {location}: {e:?}"));
    let status = followed.status().as_u16();
    let body = followed.bytes().await.expect("body");
    assert_eq!(
        status,
        200,
        "GET {location} (the presigned URL):\n{}",
        String::from_utf8_lossy(&body[..body.len().min(2000)])
    );
    assert_eq!(body.len(), data.len(), "bytes behind the presigned URL");
    assert!(body[..] == data[..], "the presigned URL yields other bytes");

    let h = api.head(&path).await;
    h.expect(200);
    assert_eq!(
        h.must_header("content-length"),
        data.len().to_string(),
        "{h:?}"
    );
    assert_eq!(h.must_header("docker-content-digest"), digest, "{h:?}");

    // An unknown blob is still the registry's 404, not a redirect.
    api.get(&format!("/v2/redir/app/blobs/{}", sha256(b"never pushed")))
        .await
        .expect_error(404, &["BLOB_UNKNOWN"]);

    // By default the registry serves the bytes itself.
    let plain = TestRegistry::start_on_s3(&s3, "plain", &[]);
    let plain_api = Api::new(&plain);
    let digest = plain_api.push_blob("redir/app", &data).await;
    let r = plain_api
        .get(&format!("/v2/redir/app/blobs/{digest}"))
        .await;
    r.expect(200);
    assert!(r.body[..] == data[..]);
}

// ---------------------------------------------------------------------------------------
// ferry-gc
// ---------------------------------------------------------------------------------------

/// A deleted image's own objects leave the bucket; an image sharing nothing with it pulls
/// as before.
#[tokio::test]
async fn ferry_gc_removes_the_objects_of_a_deleted_image() {
    let s3 = S3Server::new();
    let reg = TestRegistry::start_on_s3(
        &s3,
        "gc-bucket",
        &[("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/registry")],
    );
    let api = Api::new(&reg);
    let repo = "gc/app";
    let gone = api.push_image(repo, "gone", 2).await;
    let kept = api.push_image(repo, "kept", 2).await;
    let layout_root = s3.bucket_dir("gc-bucket").join("registry");
    for d in image_digests(&gone).iter().chain(&image_digests(&kept)) {
        assert!(
            blob_file(&layout_root, d).is_file(),
            "no object for {d} after the push"
        );
    }
    api.delete(&format!("/v2/{repo}/manifests/{}", gone.digest))
        .await
        .expect(202);
    next_second().await;

    let report = ferry_gc(&reg, &["--grace", "0s"]);
    let removed: BTreeSet<String> = string_list(&report["blobs"]).into_iter().collect();
    assert_eq!(removed, image_digests(&gone), "{report:#}");
    assert_eq!(n(&report, "blobs_removed"), 4, "{report:#}");

    for d in image_digests(&gone) {
        assert!(
            !blob_file(&layout_root, &d).exists(),
            "the object of {d} is still in the bucket"
        );
        api.get(&format!("/v2/{repo}/blobs/{d}"))
            .await
            .expect_error(404, &["BLOB_UNKNOWN"]);
    }
    for d in image_digests(&kept) {
        assert!(
            blob_file(&layout_root, &d).is_file(),
            "the object of {d} (kept image) was removed"
        );
    }
    api.assert_image_intact(repo, "kept", &kept).await;
    assert_eq!(api.tags(repo).await, vec!["kept".to_string()]);
}

/// An upload left open longer than `uploadpurging.age` goes with its staging objects and
/// its multipart upload in S3; a fresh one stays and completes.
#[tokio::test]
async fn abandoned_uploads_are_purged_with_their_multipart_parts() {
    let s3 = S3Server::new();
    let reg = TestRegistry::start_on_s3(
        &s3,
        support::DEFAULT_BUCKET,
        &[
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/registry"),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", PART),
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2s"),
        ],
    );
    let api = Api::new(&reg);
    let repo = "uploads/app";
    let uploads = reg
        .storage_root()
        .join("docker/registry/v2/repositories/uploads/app/_uploads");

    let loc_a = api.start_upload(repo).await;
    let opened_a = unix_now().as_secs(); // A started at or before this second
    let r = api.patch(&loc_a, random_bytes(6 * MIB)).await;
    r.expect(202);
    let staging_a = uploads.join(upload_id(&loc_a));
    assert!(
        !files_under(&staging_a).is_empty(),
        "no objects under {} during the upload; bucket: {:#?}",
        staging_a.display(),
        files_under(&reg.storage_root()).keys().collect::<Vec<_>>()
    );
    eprintln!(
        "multipart staging in s3s-fs during upload A: {:?}",
        s3.multipart_staging()
    );

    // A is older than 2 s (in whole seconds) once the clock reaches opened_a + 3.
    until_second(opened_a + 3).await;
    let first = random_bytes(6 * MIB);
    let rest = random_bytes(MIB + 5);
    let loc_b = api.start_upload(repo).await;
    let r = api.patch(&loc_b, first.clone()).await;
    r.expect(202);
    let loc_b = api.abs(r.must_header("location"));
    let staging_b = uploads.join(upload_id(&loc_b));

    let report = ferry_gc(&reg, &[]);
    assert_eq!(n(&report, "uploads_removed"), 1, "{report:#}");

    api.get(&loc_a)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    assert_eq!(
        files_under(&staging_a),
        Default::default(),
        "objects of the purged upload are still in the bucket under {}",
        staging_a.display()
    );
    assert!(
        !files_under(&staging_b).is_empty(),
        "the fresh upload's objects are gone"
    );
    let status = api.get(&loc_b).await;
    status.expect(204);
    assert_eq!(status.range_len(), first.len() as u64, "{status:?}");

    let mut whole = first;
    whole.extend_from_slice(&rest);
    let digest = sha256(&whole);
    api.put_upload(&loc_b, &digest, rest).await.expect(201);
    let (status, got, len) = api.get_blob_digest(repo, &digest).await;
    assert_eq!((status, got, len), (200, digest, whole.len() as u64));

    // A's multipart upload was aborted and B's completed: S3 keeps no parts.
    assert_eq!(
        s3.multipart_staging(),
        Vec::<PathBuf>::new(),
        "multipart uploads left open in S3 (parts stored and billed, never used)"
    );
    assert_eq!(
        files_under(&staging_b),
        Default::default(),
        "objects of the completed upload are still in the bucket"
    );
}

/// A TCP relay in front of the S3 server that keeps every byte the registry sends, to see
/// the headers of its requests.
struct RecordingRelay {
    endpoint: String,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RecordingRelay {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                    let _ = answers.await;
                });
            }
        });
        RecordingRelay { endpoint, sent }
    }

    /// How many requests carried `header: value` (case-insensitive name).
    fn count(&self, header: &str, value: &str) -> usize {
        let sent = self.sent.lock().unwrap();
        let text = String::from_utf8_lossy(&sent).to_ascii_lowercase();
        text.matches(&format!(
            "\r\n{}: {}\r\n",
            header,
            value.to_ascii_lowercase()
        ))
        .count()
    }
}

/// `storage.s3.encrypt` (and `keyid`): every object Ferry writes is sent with the
/// server-side encryption headers (SSE-S3, or SSE-KMS with the key), and images still
/// push and pull.
#[tokio::test(flavor = "multi_thread")]
async fn server_side_encryption_headers_go_with_every_write() {
    let s3 = S3Server::new();
    for (settings, header_value, key_id) in [
        (
            vec![("REGISTRY_STORAGE_S3_ENCRYPT", "true")],
            "AES256",
            None,
        ),
        (
            vec![
                ("REGISTRY_STORAGE_S3_ENCRYPT", "true"),
                (
                    "REGISTRY_STORAGE_S3_KEYID",
                    "arn:aws:kms:us-east-1:1:key/ferry-test",
                ),
            ],
            "aws:kms",
            Some("arn:aws:kms:us-east-1:1:key/ferry-test"),
        ),
    ] {
        let relay = RecordingRelay::start(s3.addr).await;
        let bucket = format!("sse-{}", header_value.replace(':', "-").to_lowercase());
        let mut env = settings.clone();
        env.push((
            "REGISTRY_STORAGE_S3_REGIONENDPOINT",
            relay.endpoint.as_str(),
        ));
        let reg = TestRegistry::start_on_s3(&s3, &bucket, &env);
        let api = Api::new(&reg);
        let image = api.push_image("sse/app", "v1", 2).await;
        api.assert_image_intact("sse/app", "v1", &image).await;
        // Two layers, the config and the manifest: each written at least once.
        let encrypted = relay.count("x-amz-server-side-encryption", header_value);
        assert!(
            encrypted >= 4,
            "{header_value}: {encrypted} requests encrypted"
        );
        if let Some(key) = key_id {
            assert!(relay.count("x-amz-server-side-encryption-aws-kms-key-id", key) >= 4);
        }
    }
}
