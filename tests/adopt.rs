//! Adopting a registry:2 data directory: Distribution 2.8 (Debian's `docker-registry`)
//! writes a data directory through real clients, is stopped, and Ferry starts on the same
//! directory (importing it automatically) or `ferry import` runs on it.
//!
//! - [`distribution_data_adopted`]: everything Distribution served, Ferry serves the same
//!   (catalog, tags, manifest and blob bytes, referrers, a deleted manifest stays gone, a
//!   moved tag stays moved); `ferry import` again is idempotent; `--verify` finds a blob
//!   corrupted by hand and nothing else.
//! - [`interrupted_import_resumes`]: a `kill -9` half-way through `ferry import`, then a
//!   re-run, ends exactly where an uninterrupted import of an identical copy ends.
//! - [`gc_after_adoption_matches_distribution_gc`]: `ferry-gc --dry-run` on the adopted
//!   directory would reclaim exactly the blobs Distribution's own `garbage-collect
//!   --dry-run` lists as eligible.
//!
//! Needs skopeo, umoci and docker-registry (tests/run.sh installs them).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::cli::*;
use support::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Test 1
// ---------------------------------------------------------------------------------------

/// Distribution writes a data directory through skopeo and plain HTTP; Ferry started on the
/// same directory imports it and serves exactly what Distribution served.
#[test]
fn distribution_data_adopted() {
    let data = DistributionData::write();
    let root = data.root().to_path_buf();

    let mut ferry = TestRegistry::start_on(Flavor::Ferry, &root, &[]);
    assert!(
        ferry.log().contains("import finished"),
        "Ferry did not import the registry:2 directory at startup; log:\n{}",
        ferry.log()
    );
    eprintln!("Distribution listed: {:?}", data.listing);
    let listed = Listing::of(&ferry, &data.listing.catalog_probe());
    data.listing
        .assert_same(&listed, "Ferry after the automatic import");

    // Every manifest Distribution served (tagged or not) comes back byte for byte, and
    // every blob it references with the right bytes.
    for (repo, digest) in &data.manifests {
        assert_pulls(&ferry, repo, digest);
    }
    // A real client pulls the multi-arch index (all platforms) and an image.
    let back = data.scratch.path().join("back");
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}/multi/arch:1", ferry.host))
        .arg(format!("oci:{}:multi", back.display())));
    sh(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/a/b/c:app1", ferry.host))
        .arg(format!("oci:{}:app1", back.display())));
    let back_index: Value = serde_json::from_slice(&read(&back.join("index.json"))).unwrap();
    let pulled: BTreeMap<String, String> = back_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                d["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(pulled.get("multi"), Some(&data.index), "{back_index}");
    assert_eq!(pulled.get("app1"), Some(&data.app1), "{back_index}");

    // The artifact pushed with a `subject` is a referrer of its subject.
    let url = format!("{}/v2/a/b/c/referrers/{}", ferry.url, data.app1);
    let got = http("GET", &url, &[], None);
    assert_eq!(got.status, 200, "GET {url}: {got:?}");
    let referrers = got.json();
    let listed: Vec<(String, String)> = referrers["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap_or_default().to_string(),
                d["artifactType"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(data.artifact.clone(), SBOM_TYPE.to_string())],
        "{referrers}"
    );

    // The manifest deleted on Distribution stays deleted; the moved tag stays moved (and
    // its former manifest stays, untagged, as on Distribution).
    for method in ["GET", "HEAD"] {
        let url = format!("{}/v2/doomed/img/manifests/{}", ferry.url, data.deleted);
        let got = http(method, &url, &[("Accept", ACCEPT_MANIFESTS)], None);
        assert_eq!(
            got.status, 404,
            "{method} {url} (deleted on Distribution): {got:?}"
        );
    }
    assert_eq!(
        listed_digest(&ferry, "team/web", "stable"),
        Some(data.app2.clone()),
        "team/web:stable was moved from app1 to app2"
    );

    // `ferry import` again (server stopped): the same counts, nothing skipped, nothing new.
    ferry.terminate();
    let expected = data.tree_counts();
    for verify in [false, true] {
        let report = ferry_import(&root, verify);
        let counts = (
            report["repositories"].as_u64().unwrap(),
            report["manifests"].as_u64().unwrap(),
            report["tags"].as_u64().unwrap(),
            report["blobs"].as_u64().unwrap(),
        );
        assert_eq!(
            counts, expected,
            "(repositories, manifests, tags, blob links) of a re-import (verify: {verify}): {report}"
        );
        assert_eq!(report["skipped"], json!([]), "{report}");
        assert_eq!(report["corrupt_blobs"], json!([]), "{report}");
    }
    ferry.restart();
    let again = Listing::of(&ferry, &data.listing.catalog_probe());
    data.listing
        .assert_same(&again, "Ferry after `ferry import` ran twice more");
    ferry.terminate();

    // A blob corrupted by hand (same size, one byte changed): `--verify` names it, and only it.
    let victim = &data.app2_layer;
    let path = blob_file(&root, victim);
    let mut bytes = read(&path);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let report = ferry_import(&root, true);
    let corrupt: BTreeSet<String> = string_list(&report["corrupt_blobs"]).into_iter().collect();
    assert_eq!(
        corrupt,
        BTreeSet::from([victim.clone()]),
        "--verify after corrupting {victim}: {report}"
    );
}

// ---------------------------------------------------------------------------------------
// Test 1b
// ---------------------------------------------------------------------------------------

/// The same on S3: Distribution's tree, as an S3-backed `registry:2` keeps it below its
/// `rootdirectory` (written here by Distribution on disk and put into the bucket: s3s-fs keeps
/// an object as a file, and lacks the multipart listing Distribution's S3 driver needs).
/// Before any import `ferry-gc` refuses to run and deletes nothing; `ferry import` imports
/// it; a Ferry started with a new database on the bucket adopts it by itself; both serve
/// exactly what Distribution served.
#[test]
fn distribution_bucket_adopted_on_s3() {
    let data = DistributionData::write();
    let s3 = S3Server::new();
    let bucket_dir = s3.target("registry2").bucket_dir;
    let prefix = bucket_dir.join("fleet/registry");
    std::fs::create_dir_all(&prefix).unwrap();
    copy_tree(&data.root().join("docker"), &prefix.join("docker"));
    let on_bucket = [("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/fleet/registry")];
    let objects = files_under(&prefix.join("docker/registry/v2/blobs"));
    assert!(!objects.is_empty());

    // Not imported (autoimport off): the collector refuses, and the blobs stay.
    let mut env = on_bucket.to_vec();
    env.push(("REGISTRY_DATABASE_AUTOIMPORT", "false"));
    let mut ferry = TestRegistry::start_on_s3(&s3, "registry2", &env);
    assert_eq!(
        http_catalog(&ferry),
        Vec::<String>::new(),
        "nothing imported yet"
    );
    ferry.terminate();
    let gc = ferry_gc(&ferry, &["--grace", "0s"]);
    let said = String::from_utf8_lossy(&gc.stderr);
    assert!(
        !gc.status.success() && said.contains("never imported") && said.contains("ferry import"),
        "ferry-gc on a bucket with registry:2 data never imported: {gc:?}"
    );
    assert_eq!(
        files_under(&prefix.join("docker/registry/v2/blobs")),
        objects,
        "ferry-gc deleted blobs it refused to collect"
    );

    // `ferry import` from the bucket: Distribution's counts, nothing skipped.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["import", "--json"]);
    for (k, v) in ferry
        .storage_env()
        .into_iter()
        .chain(ferry.env.iter().cloned())
    {
        cmd.env(k, v);
    }
    let report = json(&sh(&mut cmd));
    let counts = (
        report["repositories"].as_u64().unwrap(),
        report["manifests"].as_u64().unwrap(),
        report["tags"].as_u64().unwrap(),
        report["blobs"].as_u64().unwrap(),
    );
    assert_eq!(counts, data.tree_counts(), "ferry import from S3: {report}");
    assert_eq!(report["skipped"], json!([]), "{report}");
    ferry.restart();
    let listed = Listing::of(&ferry, &data.listing.catalog_probe());
    data.listing
        .assert_same(&listed, "Ferry on S3 after `ferry import`");
    for (repo, digest) in &data.manifests {
        assert_pulls(&ferry, repo, digest);
    }
    // Collecting now removes only real garbage: everything Distribution served still pulls.
    let gc = ferry_gc(&ferry, &["--grace", "0s"]);
    assert!(gc.status.success(), "ferry-gc after the import: {gc:?}");
    for (repo, digest) in &data.manifests {
        assert_pulls(&ferry, repo, digest);
    }
    ferry.terminate();

    // A Ferry with a database of its own on the same bucket adopts it at startup.
    let adopted = TestRegistry::start_on_s3(&s3, "registry2", &on_bucket);
    assert!(
        adopted.log().contains("import finished"),
        "Ferry did not import the registry:2 bucket at startup; log:\n{}",
        adopted.log()
    );
    let listed = Listing::of(&adopted, &data.listing.catalog_probe());
    data.listing
        .assert_same(&listed, "Ferry on S3 after the automatic import");
    let back = data.scratch.path().join("back-s3");
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}/multi/arch:1", adopted.host))
        .arg(format!("oci:{}:multi", back.display())));
    let index: Value = serde_json::from_slice(&read(&back.join("index.json"))).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(data.index.as_str()),
        "{index}"
    );
}

/// Three replicas (PostgreSQL metadata) started at once on a bucket holding Distribution's
/// tree: one imports it, the others wait for that import (the collector's lock) and find it
/// done; all three serve every repository.
#[test]
fn replicas_starting_together_import_once() {
    let Some(pg) = support::postgres::PostgresServer::start() else {
        return;
    };
    let url = pg.create_database("fleet");
    let s3 = S3Server::new();
    let written = write_distribution_tree(&s3.target("fleet").bucket_dir, 60, 3, "fleet");
    let env = [("REGISTRY_DATABASE_URL", url.as_str())];
    let replicas: Vec<TestRegistry> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| TestRegistry::start_on_s3(&s3, "fleet", &env)))
            .collect();
        starting
            .into_iter()
            .map(|r| r.join().expect("a replica did not start"))
            .collect()
    });
    let logs: Vec<String> = replicas.iter().map(TestRegistry::log).collect();
    let imports = logs
        .iter()
        .filter(|l| l.contains("import finished"))
        .count();
    assert_eq!(
        imports,
        1,
        "imports by three replicas; logs:\n{}",
        logs.join("\n----\n")
    );
    let expected: Vec<String> = written.keys().cloned().collect();
    for (i, replica) in replicas.iter().enumerate() {
        assert_eq!(http_catalog(replica), expected, "replica {i}'s catalog");
        for (repo, digest) in written.iter().step_by(7) {
            assert_eq!(
                listed_digest(replica, repo, "latest").as_ref(),
                Some(digest),
                "replica {i}: {repo}:latest"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Test 2
// ---------------------------------------------------------------------------------------

/// `kill -9` of `ferry import` after its first progress line, then the same command again:
/// the registry ends up exactly like an uninterrupted import of an identical copy.
#[test]
fn interrupted_import_resumes() {
    const REPOS: usize = 300;
    let tmp = tempdir();
    let interrupted = tmp.path().join("interrupted");
    let whole = tmp.path().join("whole");
    let written = write_distribution_tree(&interrupted, REPOS, 4, "resume");
    copy_tree(&interrupted, &whole);

    // Interrupt: kill -9 right after the first "<n>/<total> repositories" progress line
    // (the first line, "found ...", comes before any work).
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("import")
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &interrupted)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry import");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in support::lines(stderr) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let progress = line.contains(&format!("/{REPOS} repositories"));
                seen.push(line);
                if progress {
                    break;
                }
            }
            Err(_) => break, // stderr closed (the import ended) or the deadline passed
        }
    }
    let finished_first = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let status = child.wait().unwrap();
    drop(rx);
    let _ = reader.join();
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("/{REPOS} repositories"))),
        "no progress line from ferry import within 60s; stderr so far:\n{}",
        seen.join("\n")
    );
    if finished_first {
        eprintln!(
            "NOTE: ferry import finished before the kill ({status}); the re-run still must match"
        );
    } else {
        let db = interrupted.join("ferry").join("metadata.db");
        assert!(db.exists(), "the interrupted import left no database");
    }

    let resumed = ferry_import(&interrupted, false);
    let uninterrupted = ferry_import(&whole, false);
    for key in ["repositories", "manifests", "tags", "blobs"] {
        assert_eq!(
            resumed[key], uninterrupted[key],
            "{key}: resumed {resumed} vs uninterrupted {uninterrupted}"
        );
    }
    assert_eq!(resumed["skipped"], json!([]), "{resumed}");
    assert_eq!(
        resumed["repositories"].as_u64(),
        Some(REPOS as u64),
        "{resumed}"
    );

    // Serve both (no automatic import: both are marked imported) and compare what they list.
    let a = TestRegistry::start_on(Flavor::Ferry, &interrupted, &[]);
    let b = TestRegistry::start_on(Flavor::Ferry, &whole, &[]);
    assert!(
        !a.log().contains("importing it before serving"),
        "{}",
        a.log()
    );
    let probe: Vec<String> = written.keys().cloned().collect();
    let la = Listing::of(&a, &probe);
    let lb = Listing::of(&b, &probe);
    lb.assert_same(&la, "the resumed import (vs an uninterrupted one)");
    let expected_catalog: Vec<String> = written.keys().cloned().collect();
    assert_eq!(
        la.catalog, expected_catalog,
        "the catalog lists every repository"
    );
    for (repo, digest) in &written {
        for tag in ["latest", "v1"] {
            assert_eq!(
                la.digests.get(&(repo.clone(), tag.to_string())),
                Some(digest),
                "{repo}:{tag}"
            );
        }
        let url = format!("{}/v2/{repo}/manifests/{digest}", a.url);
        let got_a = http("GET", &url, &[("Accept", ACCEPT_MANIFESTS)], None);
        let url_b = format!("{}/v2/{repo}/manifests/{digest}", b.url);
        let got_b = http("GET", &url_b, &[("Accept", ACCEPT_MANIFESTS)], None);
        assert_eq!(got_a.status, 200, "{url}: {got_a:?}");
        assert_eq!(got_a.body, got_b.body, "{repo}@{digest}");
        assert_eq!(sha256(&got_a.body), *digest);
    }
}

// ---------------------------------------------------------------------------------------
// Test 3
// ---------------------------------------------------------------------------------------

/// After adoption, `ferry-gc --dry-run --grace 0s` would reclaim exactly the blobs
/// Distribution's `garbage-collect --dry-run` lists as eligible for deletion.
#[test]
fn gc_after_adoption_matches_distribution_gc() {
    let data = DistributionData::write();
    let root = data.root().to_path_buf();

    // Distribution's collector only reads in a dry run; run it before Ferry touches anything.
    let config = data.registry.dir().join("distribution.yml");
    let out = run_timed(
        Command::new("docker-registry")
            .args(["garbage-collect", "--dry-run"])
            .arg(&config),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "docker-registry garbage-collect: {text}"
    );
    let distribution: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split("blob eligible for deletion: ").nth(1))
        .map(|d| d.trim().to_string())
        .collect();
    // Sanity: the deleted image's manifest, config and own layer, and the blob no manifest
    // references, are garbage to Distribution.
    for digest in [
        &data.deleted,
        &data.deleted_config,
        &data.deleted_layer,
        &data.stray,
    ] {
        assert!(
            distribution.contains(digest),
            "Distribution's GC does not list {digest}:\n{text}"
        );
    }

    let ferry = TestRegistry::start_on(Flavor::Ferry, &root, &[]);
    assert!(ferry.log().contains("import finished"), "{}", ferry.log());
    // Timestamps are whole seconds and `--grace 0s` keeps what was used at or after "now":
    // let the second of the import pass (bounded: at most about one second).
    let imported = unix_now();
    let deadline = Instant::now() + Duration::from_secs(3);
    while unix_now() <= imported && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run_timed(
        Command::new(env!("CARGO_BIN_EXE_ferry-gc"))
            .args(["--dry-run", "--json", "--grace", "0s"])
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ferry-gc: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&stdout);
    let ferry_set: BTreeSet<String> = string_list(&report["blobs"]).into_iter().collect();
    eprintln!(
        "Distribution's GC: {} blobs eligible; ferry-gc --dry-run: {} blobs ({} orphan files)",
        distribution.len(),
        ferry_set.len(),
        report["orphan_files_removed"]
    );
    assert_eq!(
        ferry_set, distribution,
        "ferry-gc --dry-run (left) vs docker-registry garbage-collect --dry-run (right); ferry-gc: {report}\nDistribution:\n{text}"
    );
    // A dry run deleted nothing: every image still pulls.
    for (repo, digest) in &data.manifests {
        assert_pulls(&ferry, repo, digest);
    }
}

// ---------------------------------------------------------------------------------------
// The data directory Distribution writes
// ---------------------------------------------------------------------------------------

/// A data directory written by Distribution through real clients, Distribution stopped.
struct DistributionData {
    /// The stopped Distribution (owns the data directory; keep it alive).
    registry: TestRegistry,
    scratch: tempfile::TempDir,
    /// What Distribution listed before it was stopped.
    listing: Listing,
    /// `(repository, digest)` of every manifest Distribution serves.
    manifests: Vec<(String, String)>,
    app1: String,
    app2: String,
    /// app2's own layer (in `a/b/c` and `team/web`).
    app2_layer: String,
    index: String,
    /// The artifact whose subject is app1 in `a/b/c`.
    artifact: String,
    /// The manifest deleted in `doomed/img`, its config and its own layer.
    deleted: String,
    deleted_config: String,
    deleted_layer: String,
    /// A blob pushed to `a/b/c` that no manifest references.
    stray: String,
}

impl DistributionData {
    /// - `lib/base:1`: the base image (one layer);
    /// - `a/b/c:app1`, `a/b/c:app2`: base plus one layer each (sharing the base layer);
    /// - `team/web:stable`: pushed as app1, then moved to app2 (app1 stays, untagged);
    /// - `multi/arch:1`: an OCI index of two platforms (`skopeo copy --all`);
    /// - in `a/b/c`, untagged: an artifact whose `subject` is app1 (pushed over HTTP);
    /// - `doomed/img:keep` (base) and `doomed/img:gone`, whose manifest is then deleted;
    /// - a blob pushed to `a/b/c` that no manifest references;
    /// - abandoned uploads (POST + PATCH, no PUT) in `a/b/c` and `ghost/upload`.
    fn write() -> Self {
        require(&["skopeo", "umoci", "docker-registry"]);
        let mut registry = TestRegistry::start_with(Flavor::Distribution, &[]);
        let scratch = tempdir();
        let layout = scratch.path().join("layout");
        let nonce = nonce();

        // Image `tag`: a copy of `from` (or a new empty image) plus one layer holding `path`.
        let image = |tag: &str, from: Option<&str>, path: &str, content: &str| {
            let files = [(path.to_string(), content.to_string())];
            umoci_image(&layout, tag, from, &files, scratch.path(), TOOL_TIMEOUT)
        };
        let base = image("base", None, "/base.txt", &noise(200_000, &nonce));
        let app1 = image("app1", Some("base"), "/app1", &nonce);
        let app2 = image("app2", Some("base"), "/app2", &nonce);
        let doomed = image("doomed", Some("base"), "/doomed", &nonce);
        assert_eq!(app1.layers[0], base.layers[0], "umoci kept the base layer");
        assert_eq!(app2.layers[0], base.layers[0]);
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let files = [("/arch".to_string(), format!("{arch} {nonce}"))];
            let child = platform_image(
                &layout,
                arch,
                Some("base"),
                &files,
                scratch.path(),
                TOOL_TIMEOUT,
            );
            children.push((arch, child));
        }
        let index = platform_index(&children);
        let index_digest = add_to_layout(
            &layout,
            "multi",
            OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        );

        let push = |tag: &str, dest: &str, all: bool| {
            let mut cmd = Command::new("skopeo");
            cmd.args(["copy", "--dest-tls-verify=false"]);
            if all {
                cmd.arg("--all");
            }
            sh(cmd
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("docker://{}/{dest}", registry.host)));
        };
        push("base", "lib/base:1", false);
        push("app1", "a/b/c:app1", false);
        push("app2", "a/b/c:app2", false);
        push("app1", "team/web:stable", false);
        push("app2", "team/web:stable", false);
        push("multi", "multi/arch:1", true);
        push("base", "doomed/img:keep", false);
        push("doomed", "doomed/img:gone", false);

        // The artifact: an empty config, one layer, `subject` = app1; blobs, then the
        // manifest by digest (Distribution 2.8 stores the field it does not know).
        let sbom = format!("{{\"sbom\":\"{nonce}\"}}").into_bytes();
        let empty = b"{}".to_vec();
        upload_blob(&registry, "a/b/c", &empty);
        upload_blob(&registry, "a/b/c", &sbom);
        let artifact = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": {"mediaType": OCI_EMPTY, "digest": sha256(&empty), "size": empty.len()},
            "layers": [{"mediaType": SBOM_TYPE, "digest": sha256(&sbom), "size": sbom.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": app1.digest, "size": app1.manifest.len()},
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        }))
        .unwrap();
        let artifact_digest = sha256(&artifact);
        let url = format!("{}/v2/a/b/c/manifests/{artifact_digest}", registry.url);
        let put = http(
            "PUT",
            &url,
            &[("Content-Type", OCI_MANIFEST)],
            Some(artifact),
        );
        assert_eq!(put.status, 201, "PUT {url} on Distribution: {put:?}");

        // A blob pushed and never referenced by any manifest (linked in `a/b/c` only).
        let stray = format!("stray blob {nonce}").into_bytes();
        upload_blob(&registry, "a/b/c", &stray);

        // Delete the doomed image's manifest by digest.
        let url = format!("{}/v2/doomed/img/manifests/{}", registry.url, doomed.digest);
        let del = http("DELETE", &url, &[], None);
        assert_eq!(del.status, 202, "DELETE {url} on Distribution: {del:?}");
        let got = http("GET", &url, &[("Accept", ACCEPT_MANIFESTS)], None);
        assert_eq!(got.status, 404, "Distribution after the delete: {got:?}");

        // Abandoned uploads: some bytes, never committed.
        for repo in ["a/b/c", "ghost/upload"] {
            let url = format!("{}/v2/{repo}/blobs/uploads/", registry.url);
            let post = http("POST", &url, &[], None);
            assert_eq!(post.status, 202, "POST {url}: {post:?}");
            let location = absolute(&registry, post.must_header("location"));
            let patch = http(
                "PATCH",
                &location,
                &[("Content-Type", "application/octet-stream")],
                Some(b"abandoned bytes".to_vec()),
            );
            assert_eq!(patch.status, 202, "PATCH {location}: {patch:?}");
        }

        let mut probe = vec!["ghost/upload".to_string(), "no/such/repo".to_string()];
        probe.extend(http_catalog(&registry));
        let listing = Listing::of(&registry, &probe);
        assert_eq!(
            listing.catalog,
            ["a/b/c", "doomed/img", "lib/base", "multi/arch", "team/web"],
            "Distribution's catalog"
        );
        assert_eq!(
            listing.digests.get(&("team/web".into(), "stable".into())),
            Some(&app2.digest)
        );
        let mut manifests: Vec<(String, String)> = listing
            .digests
            .iter()
            .map(|((repo, _), d)| (repo.clone(), d.clone()))
            .collect();
        manifests.push(("team/web".into(), app1.digest.clone())); // untagged since the move
        manifests.push(("a/b/c".into(), artifact_digest.clone()));
        for (_, child) in &children {
            manifests.push(("multi/arch".into(), child.digest.clone()));
        }
        manifests.sort();
        manifests.dedup();
        for (repo, digest) in &manifests {
            assert_pulls(&registry, repo, digest); // the fixture is what we think it is
        }
        registry.kill9();

        DistributionData {
            registry,
            scratch,
            listing,
            manifests,
            app1: app1.digest,
            app2_layer: app2.layers[1].clone(),
            app2: app2.digest,
            index: index_digest,
            artifact: artifact_digest,
            deleted: doomed.digest,
            deleted_config: doomed.config,
            deleted_layer: doomed.layers[1].clone(),
            stray: sha256(&stray),
        }
    }

    fn root(&self) -> &Path {
        &self.registry.root
    }

    /// `(repositories, manifest revisions, tags, layer links)` in Distribution's tree,
    /// counted from the files themselves.
    fn tree_counts(&self) -> (u64, u64, u64, u64) {
        let repos = self.root().join("docker/registry/v2/repositories");
        let (mut r, mut m, mut t, mut l) = (0, 0, 0, 0);
        for name in &self.listing.catalog {
            let dir = repos.join(name);
            r += 1;
            m += count_links(&dir.join("_manifests/revisions"));
            t += count_links(&dir.join("_manifests/tags"));
            l += count_links(&dir.join("_layers"));
        }
        (r, m, t, l)
    }
}

/// `<dir>/<a>/<b>/link` files: `_layers/sha256/<hex>/link`, `revisions/sha256/<hex>/link`,
/// `tags/<tag>/current/link`.
fn count_links(dir: &Path) -> u64 {
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    };
    let mut n = 0;
    for a in subdirs(dir) {
        for b in subdirs(&a) {
            n += u64::from(b.join("link").is_file());
        }
    }
    n
}

/// What a registry lists: its catalog, the tags of probed repositories (status and
/// sorted list) and the digest each tag resolves to.
#[derive(Debug, PartialEq)]
struct Listing {
    catalog: Vec<String>,
    /// repository -> (status of `tags/list`, sorted tags)
    tags: BTreeMap<String, (u16, Vec<String>)>,
    /// (repository, tag) -> manifest digest
    digests: BTreeMap<(String, String), String>,
}

impl Listing {
    /// Lists `reg`, asking for the tags of the catalog's repositories and of `probe`.
    fn of(reg: &TestRegistry, probe: &[String]) -> Self {
        let catalog = http_catalog(reg);
        let mut tags = BTreeMap::new();
        let mut digests = BTreeMap::new();
        let repos: BTreeSet<&String> = catalog.iter().chain(probe).collect();
        for repo in repos {
            let got = http(
                "GET",
                &format!("{}/v2/{repo}/tags/list?n=1000", reg.url),
                &[],
                None,
            );
            let mut list = if got.status == 200 {
                let body = got.json();
                assert_eq!(body["name"].as_str(), Some(repo.as_str()), "{body}");
                string_list(&body["tags"])
            } else {
                Vec::new()
            };
            list.sort();
            for tag in &list {
                let digest = listed_digest(reg, repo, tag)
                    .unwrap_or_else(|| panic!("{repo}:{tag} is listed but does not resolve"));
                digests.insert((repo.clone(), tag.clone()), digest);
            }
            tags.insert(repo.clone(), (got.status, list));
        }
        Listing {
            catalog,
            tags,
            digests,
        }
    }

    /// Repositories whose tags were listed.
    fn catalog_probe(&self) -> Vec<String> {
        self.tags.keys().cloned().collect()
    }

    fn assert_same(&self, other: &Listing, what: &str) {
        assert_eq!(other.catalog, self.catalog, "{what}: _catalog");
        for (repo, expected) in &self.tags {
            assert_eq!(
                other.tags.get(repo),
                Some(expected),
                "{what}: tags/list of {repo} (status, tags)"
            );
        }
        assert_eq!(other.digests, self.digests, "{what}: digest of every tag");
    }
}

/// `_catalog`, asking for everything in one page.
fn http_catalog(reg: &TestRegistry) -> Vec<String> {
    let got = http("GET", &format!("{}/v2/_catalog?n=1000", reg.url), &[], None);
    assert_eq!(got.status, 200, "GET /v2/_catalog: {got:?}");
    string_list(&got.json()["repositories"])
}

/// The digest `repo:tag` resolves to (`HEAD`), `None` on 404.
fn listed_digest(reg: &TestRegistry, repo: &str, tag: &str) -> Option<String> {
    let url = format!("{}/v2/{repo}/manifests/{tag}", reg.url);
    let got = http("HEAD", &url, &[("Accept", ACCEPT_MANIFESTS)], None);
    if got.status == 404 {
        return None;
    }
    assert_eq!(got.status, 200, "HEAD {url}: {got:?}");
    Some(got.must_header("docker-content-digest").to_string())
}

/// `GET repo@digest` returns bytes hashing to the digest; every blob it references (config,
/// layers) returns bytes hashing to theirs with the declared size; index children likewise.
fn assert_pulls(reg: &TestRegistry, repo: &str, digest: &str) {
    let url = format!("{}/v2/{repo}/manifests/{digest}", reg.url);
    let got = http("GET", &url, &[("Accept", ACCEPT_MANIFESTS)], None);
    assert_eq!(got.status, 200, "{:?} GET {url}: {got:?}", reg.flavor);
    assert_eq!(sha256(&got.body), digest, "GET {url} bytes");
    let manifest = got.json();
    for child in manifest["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert_pulls(reg, repo, child["digest"].as_str().unwrap());
    }
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let config = [manifest["config"].clone()];
    for desc in layers.iter().chain(config.iter().filter(|c| c.is_object())) {
        let blob = desc["digest"].as_str().expect("descriptor digest");
        let url = format!("{}/v2/{repo}/blobs/{blob}", reg.url);
        let got = http("GET", &url, &[], None);
        assert_eq!(got.status, 200, "{:?} GET {url}: {got:?}", reg.flavor);
        assert_eq!(Some(got.body.len() as u64), desc["size"].as_u64(), "{url}");
        assert_eq!(sha256(&got.body), blob, "{url} content");
    }
}

/// Push a blob over HTTP: POST, then PUT with the digest and the bytes.
fn upload_blob(reg: &TestRegistry, repo: &str, bytes: &[u8]) {
    let url = format!("{}/v2/{repo}/blobs/uploads/", reg.url);
    let post = http("POST", &url, &[], None);
    assert_eq!(post.status, 202, "POST {url}: {post:?}");
    let location = absolute(reg, post.must_header("location"));
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{sep}digest={}", sha256(bytes));
    let put = http(
        "PUT",
        &put_url,
        &[("Content-Type", "application/octet-stream")],
        Some(bytes.to_vec()),
    );
    assert_eq!(put.status, 201, "PUT {put_url}: {put:?}");
}

fn absolute(reg: &TestRegistry, location: &str) -> String {
    if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{}{location}", reg.url)
    }
}

// ---------------------------------------------------------------------------------------
// Distribution's tree written directly (test 2)
// ---------------------------------------------------------------------------------------

/// Writes Distribution's layout for `repos` repositories named `org<k>/repo<i>`, each with
/// a config, `layers` layers (the first shared by all), one OCI manifest tagged `latest`
/// and `v1`. Returns repository -> manifest digest.
fn write_distribution_tree(
    root: &Path,
    repos: usize,
    layers: usize,
    seed: &str,
) -> BTreeMap<String, String> {
    let v2 = root.join("docker/registry/v2");
    let blob = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256(bytes);
        let hex = &digest[7..];
        let dir = v2.join("blobs/sha256").join(&hex[..2]).join(hex);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), bytes).unwrap();
        (digest, bytes.len())
    };
    let link = |path: PathBuf, digest: &str| {
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("link"), digest).unwrap();
    };
    let shared = blob(format!("shared layer {seed}").as_bytes());
    let mut out = BTreeMap::new();
    for i in 0..repos {
        let name = format!("org{}/repo{i:04}", i % 10);
        let dir = v2.join("repositories").join(&name);
        let config = blob(format!("{{\"config\":\"{seed} {i}\"}}").as_bytes());
        let mut descs = vec![shared.clone()];
        for j in 1..layers {
            descs.push(blob(format!("layer {seed} {i} {j}").as_bytes()));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
            "layers": descs.iter().map(|(d, s)| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        let (digest, _) = blob(&manifest);
        for (d, _) in descs.iter().chain([&config]) {
            link(dir.join("_layers/sha256").join(&d[7..]), d);
        }
        link(
            dir.join("_manifests/revisions/sha256").join(&digest[7..]),
            &digest,
        );
        for tag in ["latest", "v1"] {
            let t = dir.join("_manifests/tags").join(tag);
            link(t.join("current"), &digest);
            link(t.join("index/sha256").join(&digest[7..]), &digest);
        }
        out.insert(name, digest);
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    sh(Command::new("cp").arg("-a").arg(from).arg(to));
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `ferry import [--verify] --json` on `root`; its report.
fn ferry_import(root: &Path, verify: bool) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["import", "--json"])
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root);
    if verify {
        cmd.arg("--verify");
    }
    json(&sh(&mut cmd))
}

fn blob_file(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    root.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Run a command with no stdin, kill it (by its PID) after [`TOOL_TIMEOUT`].
fn run_timed(cmd: &mut Command) -> Output {
    run_within(cmd, TOOL_TIMEOUT)
}

/// Run a command (bounded in time), panic with its output if it fails, return its stdout.
fn sh(cmd: &mut Command) -> String {
    sh_within(cmd, TOOL_TIMEOUT)
}
