//! `ferry migrate-metadata` end to end: a Ferry on SQLite takes pushes (two repositories,
//! tags, a multi-arch index, a referrer, an unfinished upload), is stopped, its metadata
//! is moved into PostgreSQL, and a Ferry on the same storage with `database.url` serves
//! the same catalog, tags, manifest bytes, blobs and referrers, and finishes the upload.
//! A second migration into the now non-empty database and an unreachable database are
//! refused with exit 2, the password never printed.
//!
//! The data directory is read as files: skipped on S3 (`FERRY_TEST_STORAGE=s3`); skipped
//! without PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};
use support::cli::run_within;
use support::http::Api;
use support::oci::*;
use support::postgres::PostgresServer;
use support::*;

/// Bound on one `ferry migrate-metadata` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// The SQLite database of a registry on the filesystem (the default `database.path`).
fn sqlite_path(reg: &TestRegistry) -> PathBuf {
    reg.root.join("ferry").join("metadata.db")
}

/// Runs `ferry migrate-metadata <args>` as another process on the registry's data.
fn migrate(reg: &TestRegistry, args: &[&str]) -> Output {
    let mut all = vec!["migrate-metadata"];
    all.extend_from_slice(args);
    let mut cmd = reg.ferry_command(&all);
    run_within(&mut cmd, TOOL_TIMEOUT)
}

/// What a run printed, for assertion messages.
fn shown(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Rows of `table` in the PostgreSQL database `db`.
fn pg_rows(pg: &PostgresServer, db: &str, table: &str) -> u64 {
    pg.psql(db, &format!("SELECT COUNT(*) FROM {table}"))
        .trim()
        .parse()
        .expect("a count")
}

/// `GET /v2/<repo>/referrers/<digest>` → the descriptors listed.
async fn referrers(api: &Api, repo: &str, digest: &str) -> Vec<Value> {
    let r = api.get(&format!("/v2/{repo}/referrers/{digest}")).await;
    r.expect(200);
    r.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A manifest by `reference`: its bytes and `Docker-Content-Digest`.
async fn manifest(api: &Api, repo: &str, reference: &str) -> (Vec<u8>, String) {
    let r = api.get_manifest(repo, reference).await;
    r.expect(200);
    (
        r.body.to_vec(),
        r.must_header("docker-content-digest").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_moves_into_postgres_and_serves_the_same() {
    if skip_on_s3("reads the SQLite database in the data directory") {
        return;
    }
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let url = pg.create_database("fleet");

    // One node on SQLite.
    let mut single = TestRegistry::start_with(Flavor::Ferry, &[]);
    let api = Api::new(&single);
    let one_v1 = api.push_image("team/one", "v1", 2).await;
    api.push_manifest("team/one", "latest", OCI_MANIFEST, &one_v1.manifest)
        .await;
    let one_v2 = api.push_image("team/one", "v2", 1).await;
    let amd64 = api.push_image("two", "", 1).await;
    let arm64 = api.push_image("two", "", 2).await;
    let index = oci_index(&[amd64.descriptor(), arm64.descriptor()], json!({}));
    let index_digest = api.push_manifest("two", "multi", OCI_INDEX, &index).await;
    let sbom = api
        .push_image_with(
            "team/one",
            "",
            1,
            json!({"artifactType": SBOM_TYPE, "subject": one_v1.descriptor()}),
        )
        .await;
    // An upload left half-way, to be finished on the fleet.
    let pending = random_bytes(3000);
    let started = api.start_upload("two").await;
    let r = api.patch(&started, pending[..1000].to_vec()).await;
    r.expect(202);
    // The path only: the fleet answers on another port.
    let location = r.must_header("location");
    let location = location[location.find("/v2/").expect("a /v2/ location")..].to_string();

    let catalog = api.catalog().await;
    assert_eq!(catalog, ["team/one", "two"]);
    let tags_one = api.tags("team/one").await;
    let tags_two = api.tags("two").await;
    let referrers_before = referrers(&api, "team/one", &one_v1.digest).await;
    assert_eq!(referrers_before.len(), 1, "{referrers_before:?}");
    let mut manifests_before = Vec::new();
    for (repo, reference) in [
        ("team/one", "v1"),
        ("team/one", "latest"),
        ("team/one", "v2"),
        ("team/one", sbom.digest.as_str()),
        ("two", "multi"),
        ("two", amd64.digest.as_str()),
        ("two", arm64.digest.as_str()),
    ] {
        manifests_before.push((repo, reference, manifest(&api, repo, reference).await));
    }
    assert!(single.terminate().success(), "{}", single.log());

    // The migration.
    let db = sqlite_path(&single);
    let out = migrate(
        &single,
        &[
            "--json",
            "--from",
            db.to_str().expect("utf-8"),
            "--to",
            &url,
        ],
    );
    assert!(out.status.success(), "{}", shown(&out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", shown(&out)));
    let tables = &report["tables"];
    assert_eq!(tables["repositories"], 2, "{report:#}");
    assert_eq!(tables["manifests"], 6, "{report:#}");
    assert_eq!(tables["tags"], 4, "{report:#}");
    assert_eq!(tables["uploads"], 1, "{report:#}");
    for table in [
        "registry_info",
        "repositories",
        "blobs",
        "repository_blobs",
        "manifests",
        "manifest_references",
        "tags",
        "uploads",
    ] {
        let rows = tables[table].as_u64().unwrap_or_else(|| panic!("{table}"));
        assert_eq!(pg_rows(&pg, "fleet", table), rows, "{table}");
    }
    assert!(pg_rows(&pg, "fleet", "manifest_references") > 0);

    // The fleet: a Ferry on the same storage, metadata in PostgreSQL.
    let mut fleet = TestRegistry::start_on(
        Flavor::Ferry,
        &single.root,
        &[("REGISTRY_DATABASE_URL", url.as_str())],
    );
    let api = Api::new(&fleet);
    assert_eq!(api.catalog().await, catalog);
    assert_eq!(api.tags("team/one").await, tags_one);
    assert_eq!(api.tags("two").await, tags_two);
    for (repo, reference, (bytes, digest)) in &manifests_before {
        let (now_bytes, now_digest) = manifest(&api, repo, reference).await;
        assert!(now_bytes == *bytes, "{repo}:{reference}: bytes changed");
        assert_eq!(now_digest, *digest, "{repo}:{reference}");
    }
    assert_eq!(index_digest, sha256(&index));
    api.assert_image_intact("team/one", "v1", &one_v1).await;
    api.assert_image_intact("team/one", "v2", &one_v2).await;
    api.assert_image_intact("two", &amd64.digest, &amd64).await;
    api.assert_image_intact("two", &arm64.digest, &arm64).await;
    assert_eq!(
        referrers(&api, "team/one", &one_v1.digest).await,
        referrers_before
    );
    // The upload continues where it stopped.
    let r = api
        .put_upload(&location, &sha256(&pending), pending[1000..].to_vec())
        .await;
    r.expect(201);
    let (status, digest, _) = api.get_blob_digest("two", &sha256(&pending)).await;
    assert_eq!((status, digest), (200, sha256(&pending)));
    // New repositories get new ids (the identity sequence was moved past the copied ones).
    let three = api.push_image("three", "t", 1).await;
    api.assert_image_intact("three", "t", &three).await;
    assert_eq!(api.catalog().await, ["team/one", "three", "two"]);
    assert!(fleet.terminate().success(), "{}", fleet.log());

    // Again, into the database that now holds a registry (given by REGISTRY_DATABASE_URL).
    let manifests = pg_rows(&pg, "fleet", "manifests");
    let mut cmd = single.ferry_command(&["migrate-metadata", "--from", db.to_str().unwrap()]);
    cmd.env("REGISTRY_DATABASE_URL", &url);
    let out = run_within(&mut cmd, TOOL_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{}", shown(&out));
    assert!(stderr.contains("repositories: 3 rows"), "{}", shown(&out));
    assert_eq!(pg_rows(&pg, "fleet", "manifests"), manifests);
}

#[test]
fn unusable_arguments_exit_2_without_the_password() {
    let dir = support::cli::tempdir();
    let source = dir.path().join("metadata.db");
    std::fs::write(&source, b"").expect("empty SQLite file");
    let source = source.to_str().expect("utf-8");
    let ferry = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("migrate-metadata")
            .args(args)
            .env_remove("REGISTRY_DATABASE_URL")
            .envs(env.iter().copied());
        run_within(&mut cmd, TOOL_TIMEOUT)
    };
    let exit_2 = |out: &Output, says: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", shown(out));
        let all = shown(out);
        assert!(all.contains(says), "expected {says:?}:\n{all}");
        assert!(!all.contains("Sup3rSecret"), "password printed:\n{all}");
    };

    // Nothing listens there.
    let port = free_port().port();
    let url = format!("postgres://ferry:Sup3rSecret@127.0.0.1:{port}/ferry");
    let out = ferry(&["--from", source, "--to", &url], &[]);
    exit_2(&out, "cannot connect");
    let out = ferry(
        &["--json", "--from", source],
        &[("REGISTRY_DATABASE_URL", &url)],
    );
    exit_2(&out, "ferry:****@127.0.0.1");

    // A missing source is not created (and migrated, empty) by mistake.
    let missing = dir.path().join("nope.db");
    let out = ferry(&["--from", missing.to_str().unwrap(), "--to", &url], &[]);
    exit_2(&out, "nope.db");
    assert!(!Path::new(&missing).exists());

    // No destination, or not a PostgreSQL one.
    exit_2(&ferry(&["--from", source], &[]), "REGISTRY_DATABASE_URL");
    exit_2(
        &ferry(
            &["--from", source, "--to", "mysql://u:Sup3rSecret@h/db"],
            &[],
        ),
        "PostgreSQL URL",
    );
}

/// Asserts that `table` holds the same rows (decoded as the tuple type `$row`) in the
/// SQLite and PostgreSQL connections, ordered by `$order`; returns how many.
macro_rules! same_rows {
    ($sqlite:expr, $pg:expr, $table:literal, $columns:literal, $order:literal, $row:ty) => {{
        let sql = concat!("SELECT ", $columns, " FROM ", $table, " ORDER BY ", $order);
        let from: Vec<$row> = sqlx::query_as(sql)
            .fetch_all(&mut *$sqlite)
            .await
            .expect($table);
        let to: Vec<$row> = sqlx::query_as(sql)
            .fetch_all(&mut *$pg)
            .await
            .expect($table);
        assert_eq!(from.len(), to.len(), "{} rows", $table);
        assert!(from == to, "{} rows differ", $table);
        from.len()
    }};
}

/// Enough rows for several batches of every table, NULLs and values in every nullable
/// column, payloads of 4 MiB (batches bounded by bytes), and byte-exact comparison of every
/// value on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_is_copied_across_batches() {
    use sqlx::{ConnectOptions, Connection};
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let url = pg.create_database("values");
    let dir = support::cli::tempdir();
    let path = dir.path().join("metadata.db");
    // The schema by the store itself; rows written directly.
    ferry::metadata::sqlite::open(&path)
        .await
        .expect("create the SQLite database")
        .close()
        .await;
    let mut sqlite = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("open SQLite");
    const N: i64 = 1234;
    let mut tx = sqlite.begin().await.expect("begin");
    for (k, v) in [("store_id", "abc"), ("token_secret", "s3cr3t")] {
        sqlx::query("INSERT INTO registry_info (key, value) VALUES ($1, $2)")
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .expect("registry_info");
    }
    let mut big = Rng::new(7);
    for i in 1..=N {
        // Ids with gaps, as after deletes.
        let id = i * 3;
        let digest = format!("sha256:{i:064x}");
        sqlx::query("INSERT INTO repositories (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(format!("repo/{i:05}"))
            .bind(1_700_000_000 + i)
            .execute(&mut *tx)
            .await
            .expect("repositories");
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, last_used) VALUES ($1, $2, $3, $4)",
        )
        .bind(&digest)
        .bind(i * 1000)
        .bind(i)
        .bind(i + 1)
        .execute(&mut *tx)
        .await
        .expect("blobs");
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(&digest)
        .bind(i)
        .execute(&mut *tx)
        .await
        .expect("repository_blobs");
        let payload = if i % 300 == 0 {
            let mut bytes = vec![0u8; 4 << 20];
            big.fill(&mut bytes);
            bytes
        } else {
            format!("{{\"n\":{i}}}\0\u{e9}").into_bytes()
        };
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject,
               annotations, size, payload, created_at, last_pulled, cache_ttl)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(&digest)
        .bind(OCI_MANIFEST)
        .bind((i % 2 == 0).then_some(SBOM_TYPE))
        .bind((i % 3 == 0).then(|| format!("sha256:{:064x}", i - 1)))
        .bind((i % 5 == 0).then_some("{\"a\":\"ü\"}"))
        .bind(payload.len() as i64)
        .bind(payload)
        .bind(i)
        .bind((i % 7 == 0).then_some(i * 2))
        .bind((i % 7 == 0).then_some(3600i64))
        .execute(&mut *tx)
        .await
        .expect("manifests");
        sqlx::query(
            "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, kind)
             VALUES ($1, $2, $2, 'config')",
        )
        .bind(id)
        .bind(&digest)
        .execute(&mut *tx)
        .await
        .expect("manifest_references");
        sqlx::query(
            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
             VALUES ($1, 'latest', $2, $3)",
        )
        .bind(id)
        .bind(&digest)
        .bind(i)
        .execute(&mut *tx)
        .await
        .expect("tags");
        if i % 400 == 0 {
            sqlx::query(
                "INSERT INTO uploads (id, repository, size, hash_state, started_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(format!("00000000-0000-0000-0000-{i:012}"))
            .bind(format!("repo/{i:05}"))
            .bind(i)
            .bind((i % 800 == 0).then(|| vec![0u8, 1, 2, 255]))
            .bind(i)
            .bind(i + 5)
            .execute(&mut *tx)
            .await
            .expect("uploads");
        }
    }
    tx.commit().await.expect("commit");
    drop(sqlite);

    let settings = ferry::metadata::postgres::PostgresSettings {
        url: url.clone(),
        max_connections: 2,
    };
    let mut lines = Vec::new();
    let report =
        ferry::metadata::migrate::migrate(&path, &settings, &mut |l| lines.push(l.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lines.len(), 8, "{lines:?}");
    let n = usize::try_from(N).unwrap();
    let expected = [
        ("registry_info", 2),
        ("repositories", n),
        ("blobs", n),
        ("repository_blobs", n),
        ("manifests", n),
        ("manifest_references", n),
        ("tags", n),
        ("uploads", 3),
    ];
    let reported: Vec<(&str, usize)> = report
        .tables
        .iter()
        .map(|(t, rows)| (*t, usize::try_from(*rows).unwrap()))
        .collect();
    assert_eq!(reported, expected);

    let mut sqlite = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .connect()
        .await
        .expect("open SQLite");
    let mut pg_conn = sqlx::postgres::PgConnectOptions::from_str(&url)
        .expect("url")
        .connect()
        .await
        .expect("connect PostgreSQL");
    let (s, p) = (&mut sqlite, &mut pg_conn);
    same_rows!(s, p, "registry_info", "key, value", "key", (String, String));
    same_rows!(
        s,
        p,
        "repositories",
        "id, name, created_at",
        "id",
        (i64, String, i64)
    );
    same_rows!(
        s,
        p,
        "blobs",
        "digest, size, created_at, last_used",
        "digest",
        (String, i64, i64, i64)
    );
    same_rows!(
        s,
        p,
        "repository_blobs",
        "repository_id, digest, created_at",
        "repository_id, digest",
        (i64, String, i64)
    );
    type ManifestRow = (
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        Vec<u8>,
        i64,
        Option<i64>,
        Option<i64>,
    );
    same_rows!(
        s,
        p,
        "manifests",
        "repository_id, digest, media_type, artifact_type, subject, annotations, size, payload,
         created_at, last_pulled, cache_ttl",
        "repository_id, digest",
        ManifestRow
    );
    same_rows!(
        s,
        p,
        "manifest_references",
        "repository_id, manifest_digest, child_digest, kind",
        "repository_id, manifest_digest",
        (i64, String, String, String)
    );
    same_rows!(
        s,
        p,
        "tags",
        "repository_id, name, manifest_digest, updated_at",
        "repository_id, name",
        (i64, String, String, i64)
    );
    same_rows!(
        s,
        p,
        "uploads",
        "id, repository, size, hash_state, started_at, updated_at",
        "id",
        (String, String, i64, Option<Vec<u8>>, i64, i64)
    );
    // The next repository gets the id after the highest copied.
    let next: (i64,) = sqlx::query_as(
        "INSERT INTO repositories (name, created_at) VALUES ('new', 0) RETURNING id",
    )
    .fetch_one(&mut pg_conn)
    .await
    .expect("insert a repository");
    assert_eq!(next.0, N * 3 + 1);
}

/// Peak memory stays bounded whatever the payloads add up to: 48 manifests of 4 MiB
/// (192 MiB) go over while `ferry migrate-metadata` stays well under that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_are_copied_in_bounded_memory() {
    use sqlx::{ConnectOptions, Connection};
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("SKIP: /usr/bin/time is not installed (apt-get install time)");
        return;
    }
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let url = pg.create_database("large");
    let dir = support::cli::tempdir();
    let path = dir.path().join("metadata.db");
    ferry::metadata::sqlite::open(&path)
        .await
        .expect("create the SQLite database")
        .close()
        .await;
    let mut sqlite = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("open SQLite");
    let mut tx = sqlite.begin().await.expect("begin");
    sqlx::query("INSERT INTO repositories (id, name, created_at) VALUES (1, 'big', 0)")
        .execute(&mut *tx)
        .await
        .expect("repository");
    let mut rng = Rng::new(11);
    let mut payload = vec![0u8; 4 << 20];
    for i in 0..48 {
        rng.fill(&mut payload);
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, size, payload, created_at)
             VALUES (1, $1, $2, $3, $4, 0)",
        )
        .bind(sha256(&payload))
        .bind(OCI_MANIFEST)
        .bind(payload.len() as i64)
        .bind(&payload[..])
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("manifest {i}: {e}"));
    }
    tx.commit().await.expect("commit");
    drop(sqlite);

    let mut cmd = std::process::Command::new(time);
    cmd.arg("-v")
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(["migrate-metadata", "--quiet", "--from"])
        .arg(&path)
        .args(["--to", &url]);
    let out = run_within(&mut cmd, TOOL_TIMEOUT);
    assert!(out.status.success(), "{}", shown(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in:\n{stderr}"));
    assert_eq!(pg_rows(&pg, "large", "manifests"), 48);
    eprintln!(
        "ferry migrate-metadata: peak RSS {} MiB for 192 MiB of payloads",
        peak_kib / 1024
    );
    assert!(
        peak_kib < 120 * 1024,
        "peak RSS {peak_kib} KiB for 192 MiB of payloads"
    );
}
