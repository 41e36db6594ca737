//! `ferry backup` end to end, and the store identity that lets a copy be served: a real
//! `ferry serve` takes pushes, pulls and deletes over HTTP while `ferry backup` (and
//! `ferry gc`) run as processes of their own on the same data; then a second Ferry is
//! started on the backup and everything its catalog lists is pulled, every blob hashed.
//!
//! These tests read and write the data directory as files: on S3 the blobs stay in the
//! bucket, so they are skipped there (`FERRY_TEST_STORAGE=s3`).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{ConnectOptions, Connection};
use support::cli::run_within;
use support::*;

/// Bound on one `ferry backup` or `ferry gc` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `ferry backup --json <flags> <dest>` against the registry's data; asserts exit 0
/// and returns the report.
fn backup(reg: &TestRegistry, dest: &Path, flags: &[&str]) -> Value {
    let dest = dest.to_str().expect("utf-8 path");
    let mut args = vec!["backup", "--json"];
    args.extend_from_slice(flags);
    args.push(dest);
    let mut cmd = reg.ferry_command(&args);
    let out = run_within(&mut cmd, TOOL_TIMEOUT);
    let shown = format!(
        "ferry {args:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{shown}"));
    assert!(
        string_list(&report["missing"]).is_empty() && string_list(&report["corrupt"]).is_empty(),
        "{shown}"
    );
    report
}

/// A number in a report.
#[track_caller]
fn n(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {report:#}"))
}

/// `PRAGMA integrity_check` of the SQLite file at `db` (opened read-only, in-process).
async fn integrity_check(db: &Path) -> String {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check");
    conn.close().await.expect("close");
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one SQL statement on the SQLite file at `db` (the server on it stopped).
async fn sql(db: &Path, statement: &'static str) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    sqlx::query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    conn.close().await.expect("close");
}

fn database(root: &Path) -> PathBuf {
    root.join("ferry").join("metadata.db")
}

fn store_id_file(root: &Path) -> PathBuf {
    root.join("docker/registry/v2/ferry-store-id")
}

fn store_id(root: &Path) -> String {
    std::fs::read_to_string(store_id_file(root))
        .unwrap_or_else(|e| panic!("store id of {}: {e}", root.display()))
        .trim()
        .to_string()
}

/// Every `blobs/<alg>/<xx>/<hex>/data` under `root`: `(digest, path)`.
fn blob_files(root: &Path) -> BTreeMap<String, PathBuf> {
    files_under(&root.join("docker/registry/v2/blobs"))
        .into_keys()
        .filter(|p| p.file_name().is_some_and(|n| n == "data"))
        .map(|p| {
            let parts: Vec<String> = p.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            // <alg>/<xx>/<hex>/data
            let digest = format!("{}:{}", parts[0], parts[2]);
            (digest, root.join("docker/registry/v2/blobs").join(&p))
        })
        .collect()
}

/// Asserts every blob file under `root` hashes to the digest its path names (nothing
/// partial under a final name).
fn assert_blob_files_whole(root: &Path) {
    for (digest, path) in blob_files(root) {
        assert_eq!(
            sha256(&std::fs::read(&path).expect("blob")),
            digest,
            "{} does not hash to its digest",
            path.display()
        );
    }
}

/// Everything the registry's catalog lists, pulled: `repo:tag` → manifest digest. Returns
/// the problems found (a manifest or blob that does not pull whole, with its digest).
async fn pull_everything(api: &Api) -> (BTreeMap<String, String>, Vec<String>) {
    let mut pulled = BTreeMap::new();
    let mut problems = Vec::new();
    let r = api.get("/v2/_catalog?n=10000").await;
    r.expect(200);
    for repo in string_list(&r.json()["repositories"]) {
        let r = api.get(&format!("/v2/{repo}/tags/list?n=10000")).await;
        if r.status == 404 {
            continue; // a repository holding only blobs
        }
        r.expect(200);
        for tag in string_list(&r.json()["tags"]) {
            let m = api.get_manifest(&repo, &tag).await;
            if m.status != 200 {
                problems.push(format!("{repo}:{tag}: manifest -> {}", m.status));
                continue;
            }
            let digest = sha256(&m.body);
            if m.header("docker-content-digest") != Some(digest.as_str()) {
                problems.push(format!("{repo}:{tag}: manifest digest header differs"));
            }
            let parsed: Value = serde_json::from_slice(&m.body).unwrap_or_default();
            let blobs = std::iter::once(&parsed["config"])
                .chain(parsed["layers"].as_array().into_iter().flatten())
                .filter(|d| d.is_object());
            for d in blobs {
                let want = d["digest"].as_str().unwrap_or_default();
                let size = d["size"].as_u64().unwrap_or_default();
                let (status, got, len) = api.get_blob_digest(&repo, want).await;
                if (status, got.as_str(), len) != (200, want, size) {
                    problems.push(format!(
                        "{repo}:{tag}: blob {want} -> {status}, {len} bytes hashing to {got}"
                    ));
                }
            }
            pulled.insert(format!("{repo}:{tag}"), digest);
        }
    }
    (pulled, problems)
}

fn layers(count: usize, size: usize) -> Vec<Blob> {
    (0..count)
        .map(|_| Blob::new(OCI_LAYER, random_bytes(size)))
        .collect()
}

/// Blobs an image adds: config, layers, manifest.
fn image_blobs(img: &Image) -> u64 {
    img.layers.len() as u64 + 2
}

// ---------------------------------------------------------------------------------------
// 1. A backup taken while clients push, pull and delete, and while the collector runs
// ---------------------------------------------------------------------------------------

/// A push by a client during the test: when it started and what it pushed.
struct LivePush {
    repo: String,
    tag: String,
    started: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_serves_exactly_whole_images() {
    if skip_on_s3("backups copy blob files") {
        return;
    }
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let dest_dir = tempfile::tempdir().expect("temp dir");
    let dest = dest_dir.path().join("backup");

    // Before: images that stay, images deleted during the backup, and some big layers so
    // that the copy takes a while.
    let mut kept = Vec::new();
    for i in 0..5 {
        let repo = format!("seed/kept{i}");
        kept.push((repo.clone(), api.push_image(&repo, "v1", 2).await));
    }
    let mut doomed = Vec::new();
    for i in 0..3 {
        let repo = format!("seed/doomed{i}");
        doomed.push((repo.clone(), api.push_image(&repo, "v1", 2).await));
    }
    let big = api.push_layers("seed/big", "v1", layers(12, 4 << 20)).await;
    kept.push(("seed/big".to_string(), big));

    let stop = Arc::new(AtomicBool::new(false));
    let backup_running = Arc::new(AtomicBool::new(false));
    let pushes_done = Arc::new(AtomicUsize::new(0));
    let mut pushers = Vec::new();
    for p in 0..2 {
        let (api, stop, done) = (api.clone(), stop.clone(), pushes_done.clone());
        pushers.push(tokio::spawn(async move {
            let mut pushed = Vec::new();
            for k in 0..300 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (repo, tag) = (format!("live/p{p}"), format!("t{k}"));
                let started = Instant::now();
                api.push_image(&repo, &tag, 2).await;
                pushed.push(LivePush { repo, tag, started });
                done.fetch_add(1, Ordering::SeqCst);
            }
            pushed
        }));
    }
    let puller = {
        let (api, stop, kept) = (api.clone(), stop.clone(), kept.clone());
        tokio::spawn(async move {
            let mut pulls = 0;
            while !stop.load(Ordering::SeqCst) && pulls < 500 {
                for (repo, img) in &kept {
                    api.assert_image_intact(repo, "v1", img).await;
                    pulls += 1;
                }
            }
            pulls
        })
    };
    let deleter = {
        let (api, running, doomed) = (api.clone(), backup_running.clone(), doomed.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !running.load(Ordering::SeqCst) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for (repo, img) in &doomed {
                api.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
                    .await
                    .expect(202);
            }
        })
    };
    // The collector, again and again: it runs, or refuses because a backup holds it off.
    let collector = {
        let stop = stop.clone();
        let mut cmd = reg.ferry_command(&["gc", "-m", "--grace", "2s"]);
        cmd.stdout(Stdio::null());
        std::thread::spawn(move || {
            let (mut ran, mut refused) = (0, 0);
            while !stop.load(Ordering::SeqCst) && ran + refused < 200 {
                let out = run_within(&mut cmd, TOOL_TIMEOUT);
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    ran += 1;
                } else {
                    assert!(
                        stderr.contains("backup"),
                        "ferry gc failed for another reason than a backup:\n{stderr}"
                    );
                    refused += 1;
                }
            }
            (ran, refused)
        })
    };

    // The backup starts once clients are busy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pushes_done.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "no pushes within 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    backup_running.store(true, Ordering::SeqCst);
    let report = {
        let (reg_cmd_dest, started) = (dest.clone(), Instant::now());
        let mut cmd = reg.ferry_command(&[
            "backup",
            "--json",
            "--verify",
            reg_cmd_dest.to_str().unwrap(),
        ]);
        let out = tokio::task::spawn_blocking(move || run_within(&mut cmd, TOOL_TIMEOUT))
            .await
            .expect("backup thread");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "backup failed ({}):\n{stderr}",
            out.status
        );
        eprintln!(
            "backup took {:?}; its progress:\n{stderr}",
            started.elapsed()
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("report")
    };
    let backup_done = Instant::now();
    // Clients go on a little after it, then stop.
    let after = pushes_done.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pushes_done.load(Ordering::SeqCst) < after + 4 {
        assert!(Instant::now() < deadline, "no pushes after the backup");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut live = Vec::new();
    for p in pushers {
        live.extend(p.await.expect("pusher"));
    }
    let pulls = puller.await.expect("puller");
    deleter.await.expect("deleter");
    let (gc_ran, gc_refused) = collector.join().expect("collector thread");
    eprintln!(
        "{} pushes, {pulls} pulls, ferry gc ran {gc_ran} times and refused {gc_refused} times (backup)",
        live.len()
    );
    assert!(gc_ran + gc_refused > 0, "the collector never ran");
    assert_eq!(n(&report, "verified"), n(&report, "copied"), "{report:#}");
    assert!(string_list(&report["missing"]).is_empty(), "{report:#}");
    assert!(string_list(&report["corrupt"]).is_empty(), "{report:#}");

    // The backup: an intact database, whole blob files, the store's id.
    assert_eq!(integrity_check(&database(&dest)).await, "ok");
    assert_blob_files_whole(&dest);
    assert_eq!(store_id(&dest), store_id(&reg.root));
    assert_eq!(blob_files(&dest).len() as u64, n(&report, "blobs"));

    // A Ferry on it serves every image its catalog lists, whole.
    let restored = TestRegistry::start_on(Flavor::Ferry, &dest, &[]);
    let restored_api = Api::new(&restored);
    let (pulled, problems) = pull_everything(&restored_api).await;
    assert!(problems.is_empty(), "restored registry: {problems:#?}");
    assert_eq!(pulled.len() as u64, n(&report, "tags"), "{report:#}");
    for (repo, img) in &kept {
        restored_api.assert_image_intact(repo, "v1", img).await;
    }
    // Nothing pushed after the backup is there.
    let mut later = 0;
    for push in live.iter().filter(|p| p.started > backup_done) {
        later += 1;
        assert!(
            !pulled.contains_key(&format!("{}:{}", push.repo, push.tag)),
            "{}:{} was pushed after the backup finished and is in it",
            push.repo,
            push.tag
        );
    }
    assert!(later > 0, "no push started after the backup");
    // What was pushed before the backup started is there.
    let in_backup = live
        .iter()
        .filter(|p| pulled.contains_key(&format!("{}:{}", p.repo, p.tag)))
        .count();
    eprintln!(
        "{in_backup} of {} client pushes are in the backup; {} tags in all",
        live.len(),
        pulled.len()
    );
}

// ---------------------------------------------------------------------------------------
// 2. Incremental backups, --prune, --link, --verify
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn incremental_backups_copy_only_new_blobs_and_prune_removes_deleted_ones() {
    if skip_on_s3("backups copy blob files") {
        return;
    }
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let repo = "inc/app";
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("backup");

    let one = api.push_image(repo, "1", 2).await;
    let two = api.push_image(repo, "2", 3).await;
    let first = backup(&reg, &dest, &["--verify"]);
    let blobs = image_blobs(&one) + image_blobs(&two);
    assert_eq!(n(&first, "blobs"), blobs, "{first:#}");
    assert_eq!(n(&first, "copied"), blobs, "{first:#}");
    assert_eq!(n(&first, "verified"), blobs, "{first:#}");
    assert_eq!(n(&first, "skipped"), 0, "{first:#}");

    // Two more images: only their blobs are copied.
    let three = api.push_image(repo, "3", 2).await;
    let four = api.push_image(repo, "4", 1).await;
    let before = files_under(&dest.join("docker"));
    let second = backup(&reg, &dest, &[]);
    let new = image_blobs(&three) + image_blobs(&four);
    assert_eq!(n(&second, "copied"), new, "{second:#}");
    assert_eq!(n(&second, "skipped"), blobs, "{second:#}");
    assert_eq!(n(&second, "verified"), 0, "{second:#}");
    assert_eq!(
        files_under(&dest.join("docker")).len(),
        before.len() + new as usize,
        "files in the backup"
    );

    // Delete one, collect it: without --prune the backup keeps its blobs, with it they go.
    api.delete(&format!("/v2/{repo}/manifests/{}", one.digest))
        .await
        .expect(202);
    next_second().await;
    let mut gc = reg.ferry_command(&["gc", "--grace", "0s"]);
    run_within(&mut gc, TOOL_TIMEOUT);
    let third = backup(&reg, &dest, &[]);
    assert_eq!(n(&third, "copied"), 0, "{third:#}");
    assert_eq!(n(&third, "pruned"), 0, "{third:#}");
    assert_eq!(
        blob_files(&dest).len() as u64,
        blobs + new,
        "blobs in the backup"
    );
    let fourth = backup(&reg, &dest, &["--prune"]);
    assert_eq!(n(&fourth, "pruned"), image_blobs(&one), "{fourth:#}");
    assert_eq!(blob_files(&dest).len() as u64, n(&fourth, "blobs"));
    assert_eq!(n(&fourth, "blobs"), blobs + new - image_blobs(&one));

    {
        let restored = TestRegistry::start_on(Flavor::Ferry, &dest, &[]);
        let api = Api::new(&restored);
        assert_eq!(api.get_manifest(repo, "1").await.status, 404);
        for (tag, img) in [("2", &two), ("3", &three), ("4", &four)] {
            api.assert_image_intact(repo, tag, img).await;
        }
    }

    // --link on the same filesystem: hard links, no bytes copied.
    if same_filesystem(&reg.root, dir.path()) {
        let linked_dest = dir.path().join("linked");
        let linked = backup(&reg, &linked_dest, &["--link", "--verify"]);
        assert_eq!(n(&linked, "linked"), n(&linked, "blobs"), "{linked:#}");
        assert_eq!(n(&linked, "copied"), 0, "{linked:#}");
        assert_eq!(n(&linked, "verified"), n(&linked, "blobs"), "{linked:#}");
        use std::os::unix::fs::MetadataExt;
        let source = blob_files(&reg.root);
        for (digest, path) in blob_files(&linked_dest) {
            let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
            assert_eq!(ino(&path), ino(&source[&digest]), "{digest} is not a link");
        }
        let restored = TestRegistry::start_on(Flavor::Ferry, &linked_dest, &[]);
        Api::new(&restored)
            .assert_image_intact(repo, "3", &three)
            .await;
    } else {
        eprintln!("SKIP --link: the temporary directories are on different filesystems");
    }
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    dev(a).is_some() && dev(a) == dev(b)
}

// ---------------------------------------------------------------------------------------
// 3. kill -9 in the middle of a backup, then again
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_backup_killed_mid_copy_leaves_the_previous_one_and_a_rerun_completes() {
    if skip_on_s3("backups copy blob files") {
        return;
    }
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("backup");
    let small = api.push_image("kill/small", "v1", 2).await;
    backup(&reg, &dest, &[]);
    let big = api.push_layers("kill/big", "v1", layers(96, 2 << 20)).await;

    // Killed at its first progress line within the blobs (after 16 of ~100).
    let mut child = reg
        .ferry_command(&["backup", dest.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry backup");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no progress within the copy; output:\n{seen:#?}"));
        let mid_copy = line
            .split_once("blobs: ")
            .and_then(|(_, rest)| rest.split_once(','))
            .and_then(|(count, _)| count.split_once('/'))
            .is_some_and(|(done, total)| done != total);
        seen.push(line);
        if mid_copy {
            break;
        }
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the backup finished before it could be killed; output:\n{seen:#?}"
    );
    child.kill().expect("kill -9"); // SIGKILL, by its process id
    child.wait().expect("wait");
    eprintln!("killed at: {seen:#?}");

    // Nothing partial under a final name; the previous backup still serves, as it was.
    assert_blob_files_whole(&dest);
    let copied_before_kill = blob_files(&dest).len();
    {
        let mut restored = TestRegistry::start_on(Flavor::Ferry, &dest, &[]);
        let api = Api::new(&restored);
        api.assert_image_intact("kill/small", "v1", &small).await;
        assert_eq!(api.get_manifest("kill/big", "v1").await.status, 404);
        restored.terminate();
    }

    // Again: complete, consistent, and only what was missing is copied.
    let report = backup(&reg, &dest, &["--verify"]);
    eprintln!(
        "{copied_before_kill} blob files were in the backup when it was killed; rerun: {report:#}"
    );
    assert_eq!(
        n(&report, "copied") + n(&report, "skipped"),
        n(&report, "blobs"),
        "{report:#}"
    );
    assert!(n(&report, "skipped") as usize >= image_blobs(&small) as usize);
    assert_eq!(integrity_check(&database(&dest)).await, "ok");
    assert_blob_files_whole(&dest);
    let restored = TestRegistry::start_on(Flavor::Ferry, &dest, &[]);
    let api = Api::new(&restored);
    api.assert_image_intact("kill/small", "v1", &small).await;
    api.assert_image_intact("kill/big", "v1", &big).await;
}

// ---------------------------------------------------------------------------------------
// 4. The store identity: moved, upgraded, refused
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_moved_data_directory_is_served_and_another_stores_database_is_refused() {
    if skip_on_s3("moves a data directory on the filesystem") {
        return;
    }
    let mut reg = TestRegistry::start();
    let img = Api::new(&reg).push_image("moved/app", "v1", 2).await;
    reg.terminate();
    let id = store_id(&reg.root);

    // Copied elsewhere with the server stopped, and started there.
    let dir = tempfile::tempdir().expect("temp dir");
    let moved = dir.path().join("elsewhere").join("data");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(&reg.root).arg(&moved));
    {
        let mut on_copy = TestRegistry::start_on(Flavor::Ferry, &moved, &[]);
        Api::new(&on_copy)
            .assert_image_intact("moved/app", "v1", &img)
            .await;
        on_copy.terminate();
    }
    assert_eq!(store_id(&moved), id, "a move keeps the store's id");

    // A database and store from before store ids (the database names the old path, the
    // store has no id file), moved: upgraded in place.
    std::fs::remove_file(store_id_file(&moved)).unwrap();
    sql(
        &database(&moved),
        "DELETE FROM registry_info WHERE key = 'store_id'",
    )
    .await;
    sql(
        &database(&moved),
        "UPDATE registry_info SET value = 'filesystem:/old/place/data' WHERE key = 'storage'",
    )
    .await;
    {
        let mut upgraded = TestRegistry::start_on(Flavor::Ferry, &moved, &[]);
        Api::new(&upgraded)
            .assert_image_intact("moved/app", "v1", &img)
            .await;
        upgraded.terminate();
    }
    let new_id = store_id(&moved);
    assert!(!new_id.is_empty() && new_id != id, "a new id was written");

    // Another store's database: refused, naming both stores' ids.
    let mut other = TestRegistry::start();
    Api::new(&other).push_image("other/app", "v1", 1).await;
    other.terminate();
    let other_db = database(&other.root);
    let env: Vec<(String, String)> = [
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            moved.to_str().unwrap(),
        ),
        ("REGISTRY_DATABASE_PATH", other_db.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let before = files_under(&moved);
    let (status, log) = serve_expecting_exit(&env);
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    for name in [store_id(&other.root), new_id.clone()] {
        assert!(
            log.contains(&name),
            "the refusal does not name {name}:\n{log}"
        );
    }
    assert!(log.contains("refusing"), "{log}");
    assert_eq!(
        files_under(&moved),
        before,
        "a refused start changed the store"
    );

    // A backup is the same store: its database and blobs serve, and a backup is not
    // written into the registry's own data directory.
    let dest = dir.path().join("backup");
    let mut again = TestRegistry::start_on(Flavor::Ferry, &moved, &[]);
    let report = backup(&again, &dest, &[]);
    assert_eq!(report["store_id"], Value::String(new_id.clone()));
    let out = run_within(
        &mut again.ferry_command(&["backup", moved.to_str().unwrap()]),
        TOOL_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    again.terminate();
    let restored = TestRegistry::start_on(Flavor::Ferry, &dest, &[]);
    Api::new(&restored)
        .assert_image_intact("moved/app", "v1", &img)
        .await;
}

// ---------------------------------------------------------------------------------------
// 5. On S3: the snapshot and the list of objects; the bytes stay in the bucket
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_backup_on_s3_writes_the_snapshot_and_the_list_of_its_objects() {
    let s3 = S3Server::new();
    let mut reg = TestRegistry::start_on_s3(&s3, "backed-up", &[]);
    let img = Api::new(&reg).push_image("s3/app", "v1", 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("backup");
    let report = backup(&reg, &dest, &["--verify"]);
    assert_eq!(n(&report, "blobs"), image_blobs(&img), "{report:#}");
    assert_eq!(n(&report, "verified"), image_blobs(&img), "{report:#}");
    assert_eq!(n(&report, "copied"), 0, "{report:#}");
    assert!(
        blob_files(&dest).is_empty(),
        "blob bytes were copied from S3"
    );
    let list = std::fs::read_to_string(dest.join("ferry/blob-objects.txt")).expect("list");
    assert_eq!(list.lines().count() as u64, image_blobs(&img), "{list}");
    let bucket = s3.bucket_dir("backed-up");
    for line in list.lines() {
        let key = line
            .split('\t')
            .next()
            .and_then(|url| url.strip_prefix("s3://backed-up/"))
            .unwrap_or_else(|| panic!("not an s3:// location of the bucket: {line}"));
        assert!(bucket.join(key).is_file(), "no object {key}");
    }
    assert_eq!(integrity_check(&database(&dest)).await, "ok");
    reg.terminate();

    // The snapshot with the same bucket serves the image.
    let db = database(&dest);
    let restored = TestRegistry::start_on_s3(
        &s3,
        "backed-up",
        &[("REGISTRY_DATABASE_PATH", db.to_str().unwrap())],
    );
    Api::new(&restored)
        .assert_image_intact("s3/app", "v1", &img)
        .await;
}

/// An S3 store that does not answer at startup is not checked that time (the server
/// starts and answers 503 until it does, as before store ids); it is at the next start.
#[tokio::test]
async fn an_unreachable_s3_store_does_not_stop_the_start() {
    let mut s3 = S3Server::new();
    let mut reg = TestRegistry::start_on_s3(&s3, "flaky", &[]);
    let img = Api::new(&reg).push_image("flaky/app", "v1", 1).await;
    reg.terminate();
    s3.stop();
    reg.restart();
    assert!(
        reg.log().contains("identity is not checked"),
        "{}",
        reg.log()
    );
    s3.start();
    Api::new(&reg)
        .assert_image_intact("flaky/app", "v1", &img)
        .await;
}
