//! `ferry-gc` end to end: a real `ferry serve` on a temporary data directory, images pushed
//! and deleted over HTTP, the collector run as its own process with the server's
//! environment, and the outcome checked the way a user would notice it: bytes on disk,
//! pulls that still work (every blob hashed), 404s for what went, `_catalog`, the JSON
//! report, exit codes.
//!
//! Metadata timestamps are whole Unix seconds and the collector leaves alone anything used
//! at or after its cutoff (`now - grace`), so tests that run `--grace 0s` first let the
//! clock pass a second boundary ([`next_second`]): a bounded wait for time to pass, not a
//! readiness guess.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

// ---------------------------------------------------------------------------------------
// Running the collector
// ---------------------------------------------------------------------------------------

/// `ferry-gc <args>` with the environment the server was started with.
fn gc_command_for(root: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    collector_command(env!("CARGO_BIN_EXE_ferry-gc"), root, env, args)
}

/// `program <args>` with the environment a server on `root` was started with.
fn collector_command(
    program: &str,
    root: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root)
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .env("REGISTRY_LOG_LEVEL", "info")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn gc_command(reg: &TestRegistry, args: &[&str]) -> Command {
    gc_command_for(&reg.root, &reg.env, args)
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "ferry-gc {args:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses a successful `--json` run's report.
fn parse_report(args: &[&str], out: &Output) -> Value {
    assert!(out.status.success(), "{}", describe(args, out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{}", describe(args, out)));
    for key in [
        "dry_run",
        "manifests_removed",
        "links_removed",
        "blobs_removed",
        "orphan_files_removed",
        "uploads_removed",
        "repositories_removed",
        "bytes_reclaimed",
        "seconds",
        "blobs",
        "manifests",
        "repositories",
    ] {
        assert!(
            report.get(key).is_some(),
            "report lacks {key:?}:\n{}",
            describe(args, out)
        );
    }
    report
}

/// Runs `ferry-gc --json <args>` against the registry's data; asserts exit 0 and returns
/// the report.
fn gc(reg: &TestRegistry, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = gc_command(reg, &all).output().expect("run ferry-gc");
    parse_report(&all, &out)
}

/// A number in a report.
#[track_caller]
fn n(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {report:#}"))
}

/// A string list in a report, as a set.
fn set(report: &Value, key: &str) -> BTreeSet<String> {
    string_list(&report[key]).into_iter().collect()
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

/// Asserts that a report removed nothing at all.
#[track_caller]
fn assert_nothing_removed(report: &Value) {
    for key in [
        "manifests_removed",
        "links_removed",
        "blobs_removed",
        "orphan_files_removed",
        "uploads_removed",
        "repositories_removed",
        "bytes_reclaimed",
    ] {
        assert_eq!(n(report, key), 0, "{key} should be 0 in {report:#}");
    }
    for key in ["blobs", "manifests", "repositories"] {
        assert!(
            set(report, key).is_empty(),
            "{key} should be empty in {report:#}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Time and disk
// ---------------------------------------------------------------------------------------

fn v2(reg: &TestRegistry) -> PathBuf {
    reg.root.join("docker/registry/v2")
}

/// Bytes of all files under `blobs/`.
fn blob_bytes(reg: &TestRegistry) -> u64 {
    files_under(&v2(reg).join("blobs")).values().sum()
}

// ---------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------

fn layer(size: usize) -> Blob {
    Blob::new(OCI_LAYER, random_bytes(size))
}

/// Digests of an image's config and layers.
fn blob_digests(img: &Image) -> BTreeSet<String> {
    std::iter::once(&img.config)
        .chain(&img.layers)
        .map(|b| b.digest.clone())
        .collect()
}

/// Bytes of an image's config, layers and manifest.
fn image_bytes(img: &Image) -> u64 {
    std::iter::once(&img.config)
        .chain(&img.layers)
        .map(|b| b.data.len() as u64)
        .sum::<u64>()
        + img.manifest.len() as u64
}

/// What is wrong with pulling `img` as `repo:reference` (empty: it pulls, every blob hashes
/// to its digest).
async fn image_problems(api: &Api, repo: &str, reference: &str, img: &Image) -> Vec<String> {
    let mut problems = Vec::new();
    let r = api.get_manifest(repo, reference).await;
    if r.status != 200 {
        problems.push(format!("{repo}:{reference}: manifest GET -> {}", r.status));
    } else if r.body[..] != img.manifest[..] {
        problems.push(format!("{repo}:{reference}: manifest bytes changed"));
    }
    for b in std::iter::once(&img.config).chain(&img.layers) {
        let (status, digest, len) = api.get_blob_digest(repo, &b.digest).await;
        if status != 200 || digest != b.digest || len != b.data.len() as u64 {
            problems.push(format!(
                "{repo}:{reference}: blob {} -> {status}, {len} bytes hashing to {digest}",
                b.digest
            ));
        }
    }
    problems
}

/// Asserts a manifest is gone: GET by digest answers 404.
#[track_caller]
fn assert_404(r: &Resp) {
    assert_eq!(r.status, 404, "expected 404:\n{r:?}");
}

/// Asserts a blob no longer pulls from `repo` and its file is gone.
async fn assert_blob_gone(api: &Api, reg: &TestRegistry, repo: &str, digest: &str) {
    let r = api.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_404(&r);
    assert!(
        !blob_data_path(reg, digest).exists(),
        "bytes of {digest} still on disk"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Shared layers: exactly the deleted image's own blobs go
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn gc_removes_exactly_the_unique_blobs_of_a_deleted_image() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let repo = "team/app";

    let base1 = layer(300 * 1024 + 1);
    let base2 = layer(200 * 1024 + 2);
    let a_only = layer(250 * 1024 + 3);
    let b_only = layer(280 * 1024 + 4);
    let a = api
        .push_layers(
            repo,
            "a",
            vec![base1.clone(), base2.clone(), a_only.clone()],
        )
        .await;
    let b = api
        .push_layers(
            repo,
            "b",
            vec![base1.clone(), base2.clone(), b_only.clone()],
        )
        .await;
    api.delete(&format!("/v2/{repo}/manifests/{}", a.digest))
        .await
        .expect(202);
    next_second().await;

    let unique = strings([
        a_only.digest.clone(),
        a.config.digest.clone(),
        a.digest.clone(),
    ]);
    let unique_bytes =
        a_only.data.len() as u64 + a.config.data.len() as u64 + a.manifest.len() as u64;

    // Dry run: a faithful report, and not one file touched.
    let before = files_under(&reg.root.join("docker"));
    let dry = gc(&reg, &["--dry-run", "--grace", "0s"]);
    assert_eq!(
        files_under(&reg.root.join("docker")),
        before,
        "a dry run changed files on disk; report: {dry:#}"
    );
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(set(&dry, "blobs"), unique, "dry-run blobs: {dry:#}");
    assert_eq!(n(&dry, "blobs_removed"), 3, "{dry:#}");
    assert_eq!(n(&dry, "bytes_reclaimed"), unique_bytes, "{dry:#}");
    assert_eq!(n(&dry, "manifests_removed"), 0, "{dry:#}");
    assert_eq!(n(&dry, "orphan_files_removed"), 0, "{dry:#}");
    assert_eq!(n(&dry, "repositories_removed"), 0, "{dry:#}");
    for d in &unique {
        assert!(blob_data_path(&reg, d).exists(), "dry run removed {d}");
    }

    // The real run removes exactly those, and the disk usage drops by exactly their size.
    let bytes_before = blob_bytes(&reg);
    let real = gc(&reg, &["--grace", "0s"]);
    assert_eq!(real["dry_run"], false, "{real:#}");
    assert_eq!(set(&real, "blobs"), unique, "removed blobs: {real:#}");
    assert_eq!(n(&real, "blobs_removed"), 3, "{real:#}");
    assert_eq!(n(&real, "orphan_files_removed"), 0, "{real:#}");
    assert_eq!(n(&real, "bytes_reclaimed"), unique_bytes, "{real:#}");
    assert_eq!(
        n(&real, "links_removed"),
        2,
        "the a-only layer's and A's config's links: {real:#}"
    );
    assert_eq!(n(&real, "manifests_removed"), 0, "{real:#}");
    assert_eq!(
        bytes_before - blob_bytes(&reg),
        unique_bytes,
        "bytes under blobs/ did not drop by exactly A's unique blobs"
    );
    for d in &unique {
        assert!(!blob_data_path(&reg, d).exists(), "{d} still on disk");
    }
    for d in [
        &base1.digest,
        &base2.digest,
        &b_only.digest,
        &b.config.digest,
    ] {
        assert!(blob_data_path(&reg, d).exists(), "{d} of B was removed");
    }

    // B pulls, by tag and by digest, every blob hashing to its digest.
    api.assert_image_intact(repo, "b", &b).await;
    api.assert_image_intact(repo, &b.digest, &b).await;
    // A is gone.
    assert_404(&api.get_manifest(repo, &a.digest).await);
    assert_404(&api.get_manifest(repo, "a").await);
    assert_blob_gone(&api, &reg, repo, &a_only.digest).await;
    assert_blob_gone(&api, &reg, repo, &a.config.digest).await;
}

// ---------------------------------------------------------------------------------------
// 2. Multi-arch: a tagged index keeps its untagged children; an untagged one goes whole
// ---------------------------------------------------------------------------------------

fn platform_descriptor(img: &Image, arch: &str) -> Value {
    let mut d = img.descriptor();
    d["platform"] = json!({"architecture": arch, "os": "linux"});
    d
}

#[tokio::test]
async fn delete_untagged_keeps_children_of_a_tagged_index_and_removes_an_untagged_one() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let repo = "multi/app";

    // Tagged index `multi` over two untagged children.
    let amd64 = api.push_image(repo, "", 2).await;
    let arm64 = api.push_image(repo, "", 2).await;
    let index = oci_index(
        &[
            platform_descriptor(&amd64, "amd64"),
            platform_descriptor(&arm64, "arm64"),
        ],
        json!({}),
    );
    let index_digest = api.push_manifest(repo, "multi", OCI_INDEX, &index).await;

    // Untagged index over two more untagged children, in the same repository.
    let old_amd64 = api.push_image(repo, "", 1).await;
    let old_arm64 = api.push_image(repo, "", 1).await;
    let old_index = oci_index(
        &[
            platform_descriptor(&old_amd64, "amd64"),
            platform_descriptor(&old_arm64, "arm64"),
        ],
        json!({}),
    );
    let old_index_digest = sha256(&old_index);
    api.push_manifest(repo, &old_index_digest, OCI_INDEX, &old_index)
        .await;
    next_second().await;

    let report = gc(&reg, &["-m", "--grace", "0s"]);
    let gone_manifests = strings([
        format!("{repo}@{old_index_digest}"),
        format!("{repo}@{}", old_amd64.digest),
        format!("{repo}@{}", old_arm64.digest),
    ]);
    assert_eq!(set(&report, "manifests"), gone_manifests, "{report:#}");
    assert_eq!(n(&report, "manifests_removed"), 3, "{report:#}");
    let mut gone_blobs = blob_digests(&old_amd64);
    gone_blobs.extend(blob_digests(&old_arm64));
    gone_blobs.extend([
        old_index_digest.clone(),
        old_amd64.digest.clone(),
        old_arm64.digest.clone(),
    ]);
    assert_eq!(set(&report, "blobs"), gone_blobs, "{report:#}");
    assert_eq!(
        n(&report, "bytes_reclaimed"),
        image_bytes(&old_amd64) + image_bytes(&old_arm64) + old_index.len() as u64,
        "{report:#}"
    );
    assert_eq!(n(&report, "repositories_removed"), 0, "{report:#}");

    // The tagged index and both children still pull.
    let r = api.get_manifest(repo, "multi").await;
    r.expect(200);
    assert!(r.body[..] == index[..], "index bytes changed:\n{r:?}");
    assert_eq!(r.must_header("docker-content-digest"), index_digest);
    api.get_manifest(repo, &index_digest).await.expect(200);
    api.assert_image_intact(repo, &amd64.digest, &amd64).await;
    api.assert_image_intact(repo, &arm64.digest, &arm64).await;

    // The untagged index and its children are gone, bytes included.
    for d in [&old_index_digest, &old_amd64.digest, &old_arm64.digest] {
        assert_404(&api.get_manifest(repo, d).await);
        assert!(
            !blob_data_path(&reg, d).exists(),
            "manifest blob {d} on disk"
        );
    }
    for d in blob_digests(&old_amd64)
        .iter()
        .chain(&blob_digests(&old_arm64))
    {
        assert_blob_gone(&api, &reg, repo, d).await;
    }

    // Without -m, nothing more to do; with -m again, nothing either.
    assert_nothing_removed(&gc(&reg, &["-m", "--grace", "0s"]));
}

// ---------------------------------------------------------------------------------------
// 3. Referrers follow their subject
// ---------------------------------------------------------------------------------------

async fn referrer_digests(api: &Api, repo: &str, subject: &str) -> BTreeSet<String> {
    let r = api.get(&format!("/v2/{repo}/referrers/{subject}")).await;
    r.expect(200);
    r.json()["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("referrers without manifests:\n{r:?}"))
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn referrers_stay_with_a_tagged_subject_and_go_with_it() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let repo = "signed/app";

    // Another tagged image keeps the repository (and its referrers API) alive throughout.
    let keeper = api.push_image(repo, "keep", 1).await;
    let image = api.push_image(repo, "v1", 2).await;

    // A signature: an artifact manifest whose subject is the image.
    let empty = Blob::new(OCI_EMPTY, b"{}".to_vec());
    let signature = Blob::new("application/vnd.example.signature.v1", random_bytes(700));
    api.push_blobs(repo, &[&empty, &signature]).await;
    let sig_manifest = oci_manifest(
        &empty,
        std::slice::from_ref(&signature),
        json!({
            "artifactType": "application/vnd.example.signature.v1",
            "subject": image.descriptor(),
        }),
    );
    let sig_digest = sha256(&sig_manifest);
    api.push_manifest(repo, &sig_digest, OCI_MANIFEST, &sig_manifest)
        .await;
    assert_eq!(
        referrer_digests(&api, repo, &image.digest).await,
        strings([sig_digest.clone()])
    );
    next_second().await;

    // Tagged subject: the signature stays.
    let report = gc(&reg, &["-m", "--grace", "0s"]);
    assert_nothing_removed(&report);
    api.assert_image_intact(repo, "v1", &image).await;
    let r = api.get_manifest(repo, &sig_digest).await;
    r.expect(200);
    assert!(r.body[..] == sig_manifest[..]);
    assert_eq!(
        referrer_digests(&api, repo, &image.digest).await,
        strings([sig_digest.clone()])
    );
    for b in [&empty, &signature] {
        let (status, digest, _) = api.get_blob_digest(repo, &b.digest).await;
        assert_eq!((status, digest.as_str()), (200, b.digest.as_str()));
    }

    // Untag the image: both it and its signature go.
    api.delete(&format!("/v2/{repo}/manifests/v1"))
        .await
        .expect(202);
    let report = gc(&reg, &["-m", "--grace", "0s"]);
    assert_eq!(
        set(&report, "manifests"),
        strings([
            format!("{repo}@{}", image.digest),
            format!("{repo}@{sig_digest}")
        ]),
        "{report:#}"
    );
    let mut gone_blobs = blob_digests(&image);
    gone_blobs.extend([
        image.digest.clone(),
        sig_digest.clone(),
        empty.digest.clone(),
        signature.digest.clone(),
    ]);
    assert_eq!(set(&report, "blobs"), gone_blobs, "{report:#}");
    assert_404(&api.get_manifest(repo, &image.digest).await);
    assert_404(&api.get_manifest(repo, &sig_digest).await);
    assert!(
        referrer_digests(&api, repo, &image.digest).await.is_empty(),
        "referrers of a collected image"
    );
    for d in blob_digests(&image)
        .iter()
        .chain([&empty.digest, &signature.digest])
    {
        assert_blob_gone(&api, &reg, repo, d).await;
    }
    api.assert_image_intact(repo, "keep", &keeper).await;
}

// ---------------------------------------------------------------------------------------
// 4. Pushes and deletes racing repeated collections
// ---------------------------------------------------------------------------------------

/// The race workload's outcome.
struct RaceOutcome {
    pushed: usize,
    failed_manifest_pushes: Vec<String>,
    gc_reports: Vec<Value>,
}

/// One line for an unexpected response: the request line, the status and the body.
fn short(r: &Resp) -> String {
    format!(
        "{} -> {} {}",
        r.request.lines().next().unwrap_or(""),
        r.status,
        r.text()
    )
}

/// Pushes one blob (POST, then PUT with the bytes); the exchange that failed, if any.
async fn try_push_blob(api: &Api, repo: &str, blob: &Blob) -> Result<(), String> {
    let r = api
        .send(api.req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
        .await;
    if r.status != 202 {
        return Err(short(&r));
    }
    let location = api.abs(r.must_header("location"));
    let r = api
        .put_upload(&location, &blob.digest, blob.data.clone())
        .await;
    if r.status != 201 {
        return Err(short(&r));
    }
    Ok(())
}

/// Pushes images into one repository for `duration` (at most `iterations`), each reusing
/// the layers of the image deleted just before, and deleting two of every three images
/// right after the next one is pushed; meanwhile a thread runs `ferry-gc <gc_args>`
/// back to back (at most `max_gc_runs`, every other one with `--delete-untagged`).
///
/// Then: every request of the workload got the answer it would get without a collector
/// (with `--grace 0s`, a manifest push may also be refused with `MANIFEST_BLOB_UNKNOWN`,
/// when a link it names was collected first); every collection succeeded; every image
/// that was pushed and not deleted pulls with matching digests, also after one more
/// collection.
async fn race(
    reg: &TestRegistry,
    gc_args: &'static [&'static str],
    iterations: usize,
    duration: Duration,
    max_gc_runs: usize,
) -> RaceOutcome {
    let api = Api::new(reg);
    let repo = "race/app";
    let no_grace = gc_args.contains(&"0s");
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        let root = reg.root.clone();
        let env = reg.env.clone();
        std::thread::spawn(move || {
            let mut outputs = Vec::new();
            let mut args = vec!["--json", "--quiet"];
            args.extend_from_slice(gc_args);
            for run in 0..max_gc_runs {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut args = args.clone();
                if run % 2 == 1 {
                    args.push("--delete-untagged");
                }
                let out = gc_command_for(&root, &env, &args)
                    .output()
                    .expect("run ferry-gc");
                outputs.push((args, out));
            }
            outputs
        })
    };

    let started = Instant::now();
    let mut live: Vec<(String, Image)> = Vec::new();
    let mut last_pushed: Option<(usize, String, Image)> = None;
    let mut recycled: Vec<Blob> = Vec::new();
    let mut failed_manifest_pushes = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut pushed = 0;
    let mut iteration = 0;
    while iteration < iterations && started.elapsed() < duration {
        let i = iteration;
        iteration += 1;
        // Layers of the image deleted last (bytes the collector may be removing right
        // now), plus one new layer; a new config.
        let mut layers: Vec<Blob> = recycled.iter().take(2).cloned().collect();
        layers.push(layer(16 * 1024 + i));
        let config = random_config();
        let mut blobs_ok = true;
        for b in std::iter::once(&config).chain(&layers) {
            if let Err(e) = try_push_blob(&api, repo, b).await {
                unexpected.push(format!("iteration {i}: blob push: {e}"));
                blobs_ok = false;
                break;
            }
        }
        let manifest = oci_manifest(&config, &layers, json!({}));
        let tag = format!("t{i}");
        let image = Image {
            media_type: OCI_MANIFEST.to_string(),
            digest: sha256(&manifest),
            manifest,
            config,
            layers,
        };
        let mut this = None;
        if blobs_ok {
            let r = api
                .put_manifest(repo, &tag, OCI_MANIFEST, &image.manifest)
                .await;
            let refused = r.status == 400
                && r.json()["errors"][0]["code"].as_str() == Some("MANIFEST_BLOB_UNKNOWN");
            if r.status == 201 {
                pushed += 1;
                this = Some((i, tag, image));
            } else if no_grace && refused {
                // A link pushed in an earlier second was collected before the manifest
                // named it: the push fails cleanly (and is not counted).
                failed_manifest_pushes.push(format!("{tag}: {}", r.text()));
            } else {
                unexpected.push(format!("iteration {i}: manifest push: {}", short(&r)));
            }
        }
        // The previous image: kept if its index is a multiple of three, else deleted.
        if let Some((j, tag, image)) = last_pushed.take() {
            if j % 3 == 0 {
                live.push((tag, image));
            } else {
                let r = api
                    .delete(&format!("/v2/{repo}/manifests/{}", image.digest))
                    .await;
                if r.status != 202 {
                    unexpected.push(format!("iteration {i}: delete: {}", short(&r)));
                    live.push((tag, image));
                } else {
                    recycled = image.layers.clone();
                }
            }
        }
        last_pushed = this;
    }
    if let Some((_, tag, image)) = last_pushed {
        live.push((tag, image));
    }
    let workload = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let outputs = collector.join().expect("collector thread");

    let mut gc_reports = Vec::new();
    for (args, out) in &outputs {
        if out.status.success() {
            gc_reports.push(parse_report(args, out));
        } else {
            unexpected.push(format!("a collection failed: {}", describe(args, out)));
        }
    }
    let mut problems = Vec::new();
    for (tag, image) in &live {
        problems.extend(image_problems(&api, repo, tag, image).await);
    }
    let removed: u64 = gc_reports.iter().map(|r| n(r, "blobs_removed")).sum();
    let orphans: u64 = gc_reports
        .iter()
        .map(|r| n(r, "orphan_files_removed"))
        .sum();
    let summary = format!(
        "race {gc_args:?}: {iteration} iterations in {workload:?} ({:?} with the checks), {pushed} images pushed ({} refused \
         cleanly), {} kept; {} collections removed {removed} blobs and {orphans} orphan files; \
         {} unexpected failures",
        started.elapsed(),
        failed_manifest_pushes.len(),
        live.len(),
        outputs.len(),
        unexpected.len()
    );
    eprintln!("{summary}");
    let mut report = String::new();
    if !problems.is_empty() {
        // Which collection removed each lost blob, and in which sweep: the last
        // `orphan_files_removed` digests of a report are blob files without a row.
        let mut fate: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (run, r) in gc_reports.iter().enumerate() {
            let blobs = string_list(&r["blobs"]);
            let orphans = n(r, "orphan_files_removed") as usize;
            let first_orphan = blobs.len().saturating_sub(orphans);
            for (k, d) in blobs.into_iter().enumerate() {
                let how = if k >= first_orphan {
                    "as a blob file without a row (orphan sweep)"
                } else {
                    "as an unreferenced blob"
                };
                fate.entry(d)
                    .or_default()
                    .push(format!("collection #{run} {how}"));
            }
        }
        let annotated: Vec<String> = problems
            .iter()
            .map(|p| {
                let removed_by: Vec<&String> = fate
                    .iter()
                    .filter(|(d, _)| p.contains(d.as_str()))
                    .flat_map(|(_, v)| v)
                    .collect();
                if removed_by.is_empty() {
                    p.clone()
                } else {
                    format!("{p}\n    removed by {removed_by:?}")
                }
            })
            .collect();
        report.push_str(&format!(
            "\n{} problems pulling images kept through the race:\n{}\n",
            problems.len(),
            annotated.join("\n")
        ));
    }
    if !unexpected.is_empty() {
        report.push_str(&format!(
            "\n{} requests or collections failed that must not:\n{}\n",
            unexpected.len(),
            unexpected.join("\n")
        ));
    }
    assert!(report.is_empty(), "{summary}\n{report}");

    // After the race, one more collection must not break anything either.
    next_second().await;
    let last = gc(reg, &["--grace", "0s"]);
    let mut problems = Vec::new();
    for (tag, image) in &live {
        problems.extend(image_problems(&api, repo, tag, image).await);
    }
    assert!(
        problems.is_empty(),
        "after a final collection ({last}):\n{}",
        problems.join("\n")
    );
    RaceOutcome {
        pushed,
        failed_manifest_pushes,
        gc_reports,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_racing_collections_with_no_grace_never_lose_a_kept_image() {
    let reg = TestRegistry::start();
    let outcome = race(&reg, &["--grace", "0s"], 400, Duration::from_secs(8), 1000).await;
    assert!(outcome.pushed >= 10, "too few pushes succeeded");
    let removed: u64 = outcome
        .gc_reports
        .iter()
        .map(|r| n(r, "blobs_removed"))
        .sum();
    assert!(
        removed > 0,
        "the collections removed nothing during the race: the race was not exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_racing_collections_with_the_default_grace_lose_nothing() {
    let reg = TestRegistry::start();
    let outcome = race(&reg, &[], 200, Duration::from_secs(4), 1000).await;
    assert!(
        outcome.failed_manifest_pushes.is_empty(),
        "{:?}",
        outcome.failed_manifest_pushes
    );
    for report in &outcome.gc_reports {
        assert_nothing_removed(report);
    }
}

// ---------------------------------------------------------------------------------------
// 5. Abandoned uploads
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn abandoned_uploads_older_than_the_purge_age_go_fresh_ones_stay() {
    let reg = TestRegistry::start_with(
        Flavor::Ferry,
        &[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2s")],
    );
    let api = Api::new(&reg);
    let repo = "uploads/app";
    let uploads = v2(&reg).join("repositories/uploads/app/_uploads");

    let loc_a = api.start_upload(repo).await;
    let opened_a = unix_now().as_secs(); // A started at or before this second
    api.patch(&loc_a, random_bytes(64 * 1024)).await.expect(202);
    let staging_a = uploads.join(upload_id(&loc_a));
    assert!(staging_a.is_dir(), "no staging dir {}", staging_a.display());

    // A is older than 2 s (in whole seconds) once the clock reaches opened_a + 3.
    until_second(opened_a + 3).await;
    let loc_b = api.start_upload(repo).await;
    let first = random_bytes(48 * 1024);
    let rest = random_bytes(16 * 1024);
    api.patch(&loc_b, first.clone()).await.expect(202);
    let staging_b = uploads.join(upload_id(&loc_b));

    let report = gc(&reg, &[]);
    assert_eq!(n(&report, "uploads_removed"), 1, "{report:#}");
    assert_eq!(n(&report, "repositories_removed"), 0, "{report:#}");

    api.get(&loc_a)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    assert!(
        !staging_a.exists(),
        "staging dir of the abandoned upload is still there"
    );

    let status = api.get(&loc_b).await;
    status.expect(204);
    assert_eq!(status.range_len(), first.len() as u64, "{status:?}");
    assert!(
        staging_b.is_dir(),
        "staging dir of the fresh upload is gone"
    );
    let mut whole = first;
    whole.extend_from_slice(&rest);
    let digest = sha256(&whole);
    api.put_upload(&loc_b, &digest, rest).await.expect(201);
    let (status, got, len) = api.get_blob_digest(repo, &digest).await;
    assert_eq!((status, got, len), (200, digest, whole.len() as u64));
}

// ---------------------------------------------------------------------------------------
// 6. Empty repositories leave the catalog and the disk
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_repository_with_everything_deleted_leaves_catalog_and_disk() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let gone = "gone/app";
    let stays = "stays/app";
    let one = api.push_image(gone, "one", 2).await;
    let two = api.push_image(gone, "two", 1).await;
    let kept = api.push_image(stays, "v1", 1).await;
    assert_eq!(
        api.catalog().await,
        vec![gone.to_string(), stays.to_string()]
    );
    let gone_dir = v2(&reg).join("repositories/gone/app");
    assert!(gone_dir.is_dir(), "no {} after pushes", gone_dir.display());

    for img in [&one, &two] {
        api.delete(&format!("/v2/{gone}/manifests/{}", img.digest))
            .await
            .expect(202);
    }
    // Like registry:2, a repository that still holds blobs stays listed until the
    // collector removes its last blob link.
    assert_eq!(
        api.catalog().await,
        vec![gone.to_string(), stays.to_string()]
    );
    next_second().await;

    let report = gc(&reg, &["--grace", "0s"]);
    assert_eq!(set(&report, "repositories"), strings([gone]), "{report:#}");
    assert_eq!(n(&report, "repositories_removed"), 1, "{report:#}");
    let mut blobs = blob_digests(&one);
    blobs.extend(blob_digests(&two));
    blobs.extend([one.digest.clone(), two.digest.clone()]);
    assert_eq!(set(&report, "blobs"), blobs, "{report:#}");
    assert_eq!(
        n(&report, "bytes_reclaimed"),
        image_bytes(&one) + image_bytes(&two),
        "{report:#}"
    );

    assert_eq!(api.catalog().await, vec![stays.to_string()]);
    assert!(!gone_dir.exists(), "{} is still there", gone_dir.display());
    assert!(
        !v2(&reg).join("repositories/gone").exists(),
        "the emptied parent directory repositories/gone is still there"
    );
    api.get(&format!("/v2/{gone}/tags/list"))
        .await
        .expect_error(404, &["NAME_UNKNOWN"]);
    api.assert_image_intact(stays, "v1", &kept).await;

    // The name can be used again.
    let again = api.push_image(gone, "again", 1).await;
    api.assert_image_intact(gone, "again", &again).await;
    assert_eq!(
        api.catalog().await,
        vec![gone.to_string(), stays.to_string()]
    );
}

// ---------------------------------------------------------------------------------------
// 7. Configuration errors
// ---------------------------------------------------------------------------------------

/// `ferry-gc <args>` with only `env` as `REGISTRY_*` settings.
fn gc_bare(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry-gc"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferry-gc")
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let cases = [
        (
            "storage.maintenance.uploadpurging.age",
            "  maintenance:\n    uploadpurging:\n      age: soon\n",
        ),
        ("storage.delete.enabled", "  delete:\n    enabled: maybe\n"),
    ];
    for (i, (key, fragment)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("config-{i}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n{fragment}",
                root.display()
            ),
        )
        .unwrap();
        let args = ["--grace", "0s", config.to_str().unwrap()];
        let out = gc_bare(&[], &args);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(key),
            "stderr does not name {key}:\n{stderr}"
        );
        assert!(out.stdout.is_empty(), "{}", describe(&args, &out));
    }

    // The same through an environment override.
    let root_s = root.to_str().unwrap();
    let env = [
        ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root_s),
        ("REGISTRY_STORAGE_DELETE_ENABLED", "perhaps"),
    ];
    let out = gc_bare(&env, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&[], &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("storage.delete.enabled"),
        "stderr does not name the key:\n{stderr}"
    );
    assert!(
        !root.join("ferry").exists(),
        "a refused run created files under the root"
    );
}

#[test]
fn a_root_without_a_ferry_database_exits_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not-a-registry");
    std::fs::create_dir_all(&root).unwrap();
    let env = [(
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
        root.to_str().unwrap(),
    )];
    let args = ["--grace", "0s"];
    let out = gc_bare(&env, &args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let db = root.join("ferry").join("metadata.db");
    assert!(
        stderr.contains("database") && stderr.contains(db.to_str().unwrap()),
        "stderr should say there is no database at {}:\n{stderr}",
        db.display()
    );
    assert!(out.stdout.is_empty(), "{}", describe(&args, &out));
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "ferry-gc created files in a directory that is not a registry"
    );

    // A config file that does not exist is a configuration error too.
    let missing = dir.path().join("missing.yml");
    let args = [missing.to_str().unwrap()];
    let out = gc_bare(&env, &args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
}

#[tokio::test]
async fn a_database_of_another_store_exits_2() {
    let reg = TestRegistry::start();
    Api::new(&reg).push_image("other/app", "v1", 1).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let db = reg.root.join("ferry/metadata.db");
    let env = [
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            elsewhere.path().to_str().unwrap(),
        ),
        ("REGISTRY_DATABASE_PATH", db.to_str().unwrap()),
    ];
    let args = ["--dry-run"];
    let out = gc_bare(&env, &args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("indexes"), "{}", describe(&args, &out));
}

// ---------------------------------------------------------------------------------------
// 9. The collector under its other names, and what its summary explains
// ---------------------------------------------------------------------------------------

/// The one executable under another name (a link, as in the container image).
fn linked_as(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ferry"), &link).unwrap();
    link
}

#[test]
fn help_says_what_the_collector_does() {
    let dir = tempfile::tempdir().unwrap();
    let registry = linked_as(dir.path(), "registry");
    for (program, args) in [
        (
            PathBuf::from(env!("CARGO_BIN_EXE_ferry-gc")),
            vec!["--help"],
        ),
        (
            PathBuf::from(env!("CARGO_BIN_EXE_ferry")),
            vec!["gc", "--help"],
        ),
        (registry, vec!["garbage-collect", "--help"]),
    ] {
        let out = Command::new(&program).args(&args).output().unwrap();
        assert!(out.status.success(), "{program:?} {args:?}: {out:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("disk space of deleted images"),
            "{program:?} {args:?} does not say what it does:\n{help}"
        );
        for flag in ["--dry-run", "--delete-untagged", "--grace", "-d,", "-m,"] {
            assert!(
                help.contains(flag),
                "{program:?} {args:?} lacks {flag}:\n{help}"
            );
        }
    }
}

#[tokio::test]
async fn a_collection_right_after_a_delete_says_the_grace_window_kept_it() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let img = api.push_image("grace/app", "v1", 2).await;
    api.delete(&format!("/v2/grace/app/manifests/{}", img.digest))
        .await
        .expect(202);

    // `ferry gc`, the subcommand, with the default grace window: nothing goes, and the
    // summary says why and what to do.
    let out = collector_command(env!("CARGO_BIN_EXE_ferry"), &reg.root, &reg.env, &["gc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&["gc"], &out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("space reclaimed: 0 B"), "{summary}");
    let blobs = blob_digests(&img).len() + 1; // the layers, the config and the manifest
    assert!(
        summary.contains(&format!("kept: {blobs} blobs,"))
            && summary.contains("used within the grace window of 1h")
            && summary.contains("--grace 0s"),
        "the summary does not explain what the grace window kept:\n{summary}"
    );
    let report = gc(&reg, &["--dry-run"]);
    assert_eq!(n(&report, "grace_kept_blobs"), blobs as u64, "{report:#}");
    assert_eq!(
        n(&report, "grace_kept_bytes"),
        image_bytes(&img),
        "{report:#}"
    );

    // Without the window (a second later), the space comes back and nothing is "kept".
    next_second().await;
    let report = gc(&reg, &["--grace", "0s"]);
    assert_eq!(
        n(&report, "bytes_reclaimed"),
        image_bytes(&img),
        "{report:#}"
    );
    assert_eq!(n(&report, "grace_kept_blobs"), 0, "{report:#}");
}

#[tokio::test]
async fn registry2_command_lines_work() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let img = api.push_image("compat/app", "v1", 1).await;
    api.delete(&format!("/v2/compat/app/manifests/{}", img.digest))
        .await
        .expect(202);
    let dir = tempfile::tempdir().unwrap();
    let registry = linked_as(dir.path(), "registry");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
            reg.root.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&registry)
            .args(args)
            .env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(args, &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let version = run(&["--version"]);
    assert!(
        version.starts_with("registry ") && version.contains("Ferry"),
        "{version}"
    );
    let config = config.to_str().unwrap();
    let dry = run(&["garbage-collect", "--dry-run", config]);
    assert!(dry.contains("would remove"), "{dry}");
    next_second().await;
    let done = run(&["garbage-collect", "-m", "--grace", "0s", config]);
    assert!(done.contains("removed:"), "{done}");
    assert!(api.catalog().await.is_empty(), "compat/app is still listed");
    api.get(&format!("/v2/compat/app/blobs/{}", img.layers[0].digest))
        .await
        .expect(404);
}

// ---------------------------------------------------------------------------------------
// 8. A second run has nothing left to do
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_run_removes_nothing() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let repo = "twice/app";
    let shared = layer(100 * 1024);
    let a = api
        .push_layers(repo, "a", vec![shared.clone(), layer(50 * 1024)])
        .await;
    let b = api
        .push_layers(repo, "b", vec![shared.clone(), layer(60 * 1024)])
        .await;
    let untagged = api.push_image(repo, "", 1).await;
    api.delete(&format!("/v2/{repo}/manifests/{}", a.digest))
        .await
        .expect(202);
    // A blob file no metadata knows, as a crash between bytes and row leaves it.
    let orphan = random_bytes(10 * 1024);
    let orphan_digest = sha256(&orphan);
    let orphan_path = blob_data_path(&reg, &orphan_digest);
    std::fs::create_dir_all(orphan_path.parent().unwrap()).unwrap();
    std::fs::write(&orphan_path, &orphan).unwrap();
    next_second().await;

    let first = gc(&reg, &["-m", "--grace", "0s"]);
    assert_eq!(
        set(&first, "manifests"),
        strings([format!("{repo}@{}", untagged.digest)]),
        "{first:#}"
    );
    assert_eq!(n(&first, "orphan_files_removed"), 1, "{first:#}");
    assert!(set(&first, "blobs").contains(&orphan_digest), "{first:#}");
    assert!(!orphan_path.exists(), "orphan file still there");
    let mut expected = blob_digests(&a);
    expected.remove(&shared.digest);
    expected.extend(blob_digests(&untagged));
    expected.extend([a.digest.clone(), untagged.digest.clone(), orphan_digest]);
    assert_eq!(set(&first, "blobs"), expected, "{first:#}");

    let files = files_under(&reg.root.join("docker"));
    let second = gc(&reg, &["-m", "--grace", "0s"]);
    assert_nothing_removed(&second);
    assert_eq!(second["dry_run"], false);
    assert_eq!(files_under(&reg.root.join("docker")), files);
    api.assert_image_intact(repo, "b", &b).await;

    // Without --json: a summary for people on stdout, progress on stderr; -q silences the
    // progress.
    let args = ["-m", "--grace", "0s"];
    let out = gc_command(&reg, &args).output().unwrap();
    assert!(out.status.success(), "{}", describe(&args, &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("removed") && stdout.contains("manifests"),
        "{}",
        describe(&args, &out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[ferry-gc]"),
        "no progress lines on stderr: {}",
        describe(&args, &out)
    );
    let args = ["-q", "-m", "--grace", "0s"];
    let out = gc_command(&reg, &args).output().unwrap();
    assert!(out.status.success(), "{}", describe(&args, &out));
    assert!(out.stderr.is_empty(), "{}", describe(&args, &out));
    assert!(!out.stdout.is_empty(), "{}", describe(&args, &out));
    assert_eq!(files_under(&reg.root.join("docker")), files);
}

// ---------------------------------------------------------------------------------------
// Extra: the grace window covers a manifest pushed again
// ---------------------------------------------------------------------------------------

/// An untagged manifest pushed again (say, as a child just before its index is pushed) has
/// been used within the grace window: `-m` must leave it alone, as it does a new one.
#[tokio::test]
async fn an_untagged_manifest_pushed_again_within_the_grace_window_stays() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let repo = "repush/app";
    let child = api.push_image(repo, "", 1).await;
    let pushed_first = unix_now().as_secs();
    // With --grace 3s, the first push is outside the window from pushed_first + 4 on.
    until_second(pushed_first + 4).await;
    let again = api
        .push_manifest(repo, &child.digest, OCI_MANIFEST, &child.manifest)
        .await;
    assert_eq!(again, child.digest);

    let report = gc(&reg, &["-m", "--grace", "3s"]);
    let r = api.get_manifest(repo, &child.digest).await;
    assert_eq!(
        r.status, 200,
        "a manifest pushed again just before the collection was removed by -m --grace 3s \
         (report: {report})"
    );
    // And an index over it can still be pushed.
    let index = oci_index(&[child.descriptor()], json!({}));
    api.push_manifest(repo, "multi", OCI_INDEX, &index).await;
    api.assert_image_intact(repo, &child.digest, &child).await;
}
