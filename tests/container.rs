//! Ferry in a container, with the real Docker engine: the image `deploy/Dockerfile` makes
//! (built offline by `deploy/build-local-image.sh`), the compose file, and static checks of
//! the systemd units and Kubernetes manifests.
//!
//! The image is built once per test run (shared by the tests of this file, see [`image`])
//! under a tag naming the run; watcher processes remove it when the run ends, and any
//! container these tests labelled when their test process exits. Tests that need the engine
//! print `SKIP: ...` and pass when `docker info` finds none.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{DOCKER_MANIFEST, http, try_http};

/// Label on every container these tests start: `<LABEL>=<run id>`.
const LABEL: &str = "org.ferry.container-test";
/// Bound on waiting for a container to answer or become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The image must stay this small (registry:2 is about 25 MB).
const MAX_IMAGE_BYTES: u64 = 30_000_000;
/// The command line the image runs by default (Distribution's config path wins).
const CONFIGS: [&str; 2] = ["/etc/docker/registry/config.yml", "/etc/ferry/config.yml"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// Commands

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

/// `docker ARGS`, which must succeed; its stdout, trimmed.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn engine_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("docker")
            .arg("info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn is_root() -> bool {
    support::run(Command::new("id").arg("-u")).trim() == "0"
}

fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// A process-wide id labelling this process's containers.
fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(nonce)
}

// ---------------------------------------------------------------------------------------
// The image, built once per test run

/// The test image's tag, or `None` (after a `SKIP:` line) without a Docker engine.
///
/// One image serves the whole test run: the first test to get here builds it, under a file
/// lock; under `cargo test` once per test process, under `cargo nextest` (a process per
/// test) once per nextest run, whose id names the image.
fn image(test: &str) -> Option<&'static str> {
    if !engine_available() {
        eprintln!("SKIP: {test}: no Docker engine (docker info failed)");
        return None;
    }
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let image = IMAGE.get_or_init(|| {
        // Whatever happens to this process, its containers go with it.
        spawn_reaper(std::process::id(), None);
        build_image_once()
    });
    match image {
        Ok(tag) => Some(tag),
        Err(e) => panic!("{e}"),
    }
}

/// Where cargo puts this build's outputs (`.../target`), from the test executable's path
/// (`target/[<triple>/]<profile>/deps/container-*`): the directory holding cargo's
/// `.rustc_info.json`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .find(|dir| dir.join(".rustc_info.json").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo().join("target"))
}

/// Bound on building the image (a cold static build on a busy 2-core machine).
const IMAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(1500);

/// Builds the image unless another process of this test run already has: the tag names
/// the run, and a file lock in the target directory lets one process build while the
/// others wait. It is removed when the test runner (nextest, or this process) exits.
fn build_image_once() -> Result<String, String> {
    let (run, runner) = match std::env::var("NEXTEST_RUN_ID") {
        Ok(id) => (id, std::os::unix::process::parent_id()),
        Err(_) => (run_id().to_string(), std::process::id()),
    };
    let tag = format!("ferry-container-test:{run}");
    let lock = std::fs::File::create(target_dir().join("ferry-container-test.lock"))
        .map_err(|e| format!("image lock file: {e}"))?;
    lock.lock().map_err(|e| format!("image lock: {e}"))?;
    if docker(&["image", "inspect", &tag]).status.success() {
        return Ok(tag);
    }
    spawn_reaper(runner, Some(&tag));
    let started = Instant::now();
    let mut script = Command::new("timeout");
    script
        .arg(IMAGE_BUILD_TIMEOUT.as_secs().to_string())
        .arg(repo().join("deploy/build-local-image.sh"))
        .arg(&tag)
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo())
        .stdin(Stdio::null());
    // Built by deploy/static-cargo (as tests/run.sh builds the suite), the `ferry` under test
    // is the image's binary already: the script takes it instead of building its own.
    if cfg!(target_feature = "crt-static") {
        script.env("FERRY_BINARY", env!("CARGO_BIN_EXE_ferry"));
    }
    let out = script
        .output()
        .map_err(|e| format!("cannot run deploy/build-local-image.sh: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "deploy/build-local-image.sh {tag} failed ({}):\n{stderr}",
            out.status
        ));
    }
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &tag])
        .parse()
        .map_err(|e| format!("image size: {e}"))?;
    eprintln!(
        "built {tag} in {:.0?}: {size} bytes ({:.1} MB) uncompressed",
        started.elapsed(),
        size as f64 / 1e6
    );
    Ok(tag)
}

/// A detached process that waits for process `pid` to exit, then removes every container
/// labelled with this process's id (the tests remove theirs too; this covers panics and
/// interrupted runs) and the image `tag`, if given.
#[allow(clippy::zombie_processes)] // it must outlive us: never waited for
fn spawn_reaper(pid: u32, tag: Option<&str>) {
    let remove_image = tag
        .map(|t| format!("; docker rmi -f {t}"))
        .unwrap_or_default();
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         ids=$(docker ps -aq --filter label={LABEL}={run}); \
         [ -z \"$ids\" ] || docker rm -f -v $ids{remove_image}",
        run = run_id(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the cleanup watcher");
}

// ---------------------------------------------------------------------------------------
// Containers

/// A container of the test image; removed (with its anonymous volumes) on drop.
struct Container {
    id: String,
    /// Host port mapped to the registry's port.
    port: u16,
}

impl Container {
    /// `docker run -d` with the labels, a short health interval and a host port for
    /// `container_port`; `args` go before the image name, `cmd` after it.
    fn run(image: &str, container_port: u16, args: &[&str], cmd: &[&str]) -> Container {
        // A port the OS just reported free: another process could take it in between, so
        // retry a few times.
        for attempt in 0..5 {
            let port = support::free_port().port();
            let publish = format!("127.0.0.1:{port}:{container_port}");
            let label = format!("{LABEL}={}", run_id());
            let mut all = vec![
                "run",
                "-d",
                "--label",
                &label,
                "-p",
                &publish,
                "--health-interval",
                "1s",
                "--health-start-period",
                "30s",
            ];
            all.extend_from_slice(args);
            all.push(image);
            all.extend_from_slice(cmd);
            let out = docker(&all);
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() {
                return Container { id: stdout, port };
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !stdout.is_empty() {
                let _ = docker(&["rm", "-f", "-v", &stdout]);
            }
            assert!(
                attempt < 4
                    && (stderr.contains("address already in use")
                        || stderr.contains("port is already allocated")),
                "docker {all:?} failed:\n{stderr}"
            );
        }
        unreachable!()
    }

    /// `docker run -d` on the host's network (so the container reaches servers on the host's
    /// loopback), listening on a free loopback port; `args` go before the image name.
    fn run_on_host_network(image: &str, args: &[&str]) -> Container {
        let port = support::free_port().port();
        let addr = format!("REGISTRY_HTTP_ADDR=127.0.0.1:{port}");
        let label = format!("{LABEL}={}", run_id());
        let mut all = vec![
            "run",
            "-d",
            "--label",
            &label,
            "--network",
            "host",
            "-e",
            &addr,
            "--health-interval",
            "1s",
            "--health-start-period",
            "30s",
        ];
        all.extend_from_slice(args);
        all.push(image);
        Container {
            id: docker_ok(&all),
            port,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL of `path` on the published port.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    fn logs(&self) -> String {
        let out = docker(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.id])
    }

    /// Until `GET /v2/` answers 200 (bounded).
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(r) = try_http("GET", &self.url("/v2/"), &[], None)
                && r.status == 200
            {
                return;
            }
            if self.inspect("{{.State.Running}}") != "true" {
                panic!("container exited before answering; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "no answer on {} within {READY_TIMEOUT:?}; logs:\n{}",
            self.host(),
            self.logs()
        );
    }

    /// Until Docker's health status is `healthy` (bounded); the health log on failure.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut status = String::new();
        while Instant::now() < deadline {
            status = self.inspect("{{.State.Health.Status}}");
            if status == "healthy" {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "health status still {status:?} after {READY_TIMEOUT:?}; health log: {}\nlogs:\n{}",
            self.inspect("{{json .State.Health}}"),
            self.logs()
        );
    }

    /// Until the container has exited (bounded); its exit code.
    fn wait_exit(&self) -> i64 {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.inspect("{{.State.Running}}") == "false" {
                return self
                    .inspect("{{.State.ExitCode}}")
                    .parse()
                    .expect("exit code");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("container still running after {READY_TIMEOUT:?}");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.id]);
    }
}

/// Local image names to `docker rmi` when the test ends.
struct LocalImages(Vec<String>);

impl Drop for LocalImages {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rmi", "-f", name]);
        }
    }
}

/// Imports a one-layer image made from a tarball of a few files (no network needed) as
/// `name`; returns its image ID.
fn import_image(name: &str, dir: &Path) -> String {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("hello.txt"),
        format!("hello from {name} {}\n", nonce()),
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/ferry-test"), "ferry container test\n").unwrap();
    let tarball = dir.join("rootfs.tar");
    support::run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    let id = docker_ok(&["import", tarball.to_str().unwrap(), name]);
    assert!(id.starts_with("sha256:"), "docker import printed {id:?}");
    id
}

/// The manifest digest `docker push` reports.
fn push(name: &str) -> String {
    let out = docker_ok(&["push", name]);
    out.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .to_string()
}

/// Pushes `name`, removes it locally, pulls it back: same image ID, and the digest the
/// engine records is the pushed one. Returns the digest.
fn push_remove_pull(name: &str, image_id: &str) -> String {
    let digest = push(name);
    docker_ok(&["rmi", name]);
    assert!(
        !docker(&["image", "inspect", name]).status.success(),
        "{name} still present"
    );
    pull_and_check(name, image_id, &digest);
    digest
}

fn pull_and_check(name: &str, image_id: &str, digest: &str) {
    docker_ok(&["pull", name]);
    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", name]),
        image_id,
        "pulled image differs from the pushed one"
    );
    let repo_digests = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        name,
    ]);
    assert!(
        repo_digests.contains(digest),
        "pulled RepoDigests {repo_digests} lack the pushed digest {digest}"
    );
}

// ---------------------------------------------------------------------------------------
// Files

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tests with the engine

/// The image's own metadata: small, port 5000, the volume, the command line and health
/// check without a shell, and what is in it.
#[test]
fn image_is_small_and_shaped_like_registry2() {
    let Some(image) = image("image_is_small_and_shaped_like_registry2") else {
        return;
    };
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", image])
        .parse()
        .unwrap();
    eprintln!("image size: {size} bytes ({:.1} MB)", size as f64 / 1e6);
    assert!(
        size < MAX_IMAGE_BYTES,
        "image is {size} bytes, over {MAX_IMAGE_BYTES}"
    );

    let config: Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        image,
    ]))
    .unwrap();
    assert!(config["ExposedPorts"].get("5000/tcp").is_some(), "{config}");
    assert!(
        config["Volumes"].get("/var/lib/registry").is_some(),
        "{config}"
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/ferry"])
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["serve", CONFIGS[0], CONFIGS[1]])
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!([
            "CMD",
            "/usr/local/bin/ferry",
            "healthcheck",
            CONFIGS[0],
            CONFIGS[1]
        ])
    );

    // No shell: the health check and entrypoint must not need one.
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "true",
    ]);
    assert!(!out.status.success(), "the image has a shell");
    let version = docker_ok(&["run", "--rm", image, "--version"]);
    assert!(
        version.starts_with("ferry "),
        "ferry --version printed {version:?}"
    );
}

/// The quick start: `docker run -d -p ...:5000 -v <dir>:/var/lib/registry`, push, pull, the
/// blobs on the host, health, a clean stop, a new container on the same data, and ferry-gc.
#[test]
fn push_pull_stop_and_restart_on_the_same_volume() {
    let Some(image) = image("push_pull_stop_and_restart_on_the_same_volume") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Not created: Docker makes it (root-owned, empty) as for /opt/data/registry.
    let data = tmp.path().join("registry");
    let volume = format!("{}:/var/lib/registry", data.display());
    let c = Container::run(image, 5000, &["-v", &volume], &[]);
    c.wait_ready();
    c.wait_healthy();

    let name = format!("{}/ferry-test/app:1", c.host());
    let mut local = LocalImages(vec![name.clone()]);
    let image_id = import_image(&name, tmp.path());
    let digest = push_remove_pull(&name, &image_id);

    let catalog = http("GET", &c.url("/v2/_catalog"), &[], None);
    assert_eq!(catalog.status, 200);
    assert!(
        catalog.text().contains("ferry-test/app"),
        "catalog: {catalog:?}"
    );
    // The image's own config does not enable deletes (registry:2's default).
    let del = http(
        "DELETE",
        &c.url(&format!("/v2/ferry-test/app/manifests/{digest}")),
        &[],
        None,
    );
    assert_eq!(del.status, 405, "DELETE with deletes disabled: {del:?}");

    // Blobs in Distribution's layout on the host, owned by the unprivileged user the
    // entrypoint handed the empty directory to.
    let blobs = files_under(&data.join("docker/registry/v2/blobs"));
    assert!(
        blobs.iter().any(|p| p.ends_with("data")),
        "no blob data under {}/docker/registry/v2/blobs: {blobs:?}",
        data.display()
    );
    let logs = c.logs();
    assert!(
        logs.contains("running as uid 1000"),
        "entrypoint log:\n{logs}"
    );
    for b in &blobs {
        assert_eq!(
            std::fs::metadata(b).unwrap().uid(),
            1000,
            "{} not owned by 1000",
            b.display()
        );
    }
    assert!(
        data.join("ferry/metadata.db").exists(),
        "no metadata.db in the volume"
    );

    // ferry-gc is in the image and runs against the live data.
    if option_env!("CARGO_BIN_EXE_ferry-gc").is_none() {
        eprintln!("SKIP: ferry-gc not built yet (no ferry-gc binary in this crate)");
    } else {
        // As the README says, and bare (embedded defaults: the same /var/lib/registry).
        for args in [
            vec![
                "exec",
                &c.id,
                "ferry-gc",
                "--dry-run",
                CONFIGS[0],
                CONFIGS[1],
            ],
            vec!["exec", &c.id, "ferry-gc", "--dry-run"],
        ] {
            let out = docker(&args);
            assert!(
                out.status.success(),
                "docker {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // It ran as the owner of the data, like the server: nothing in the volume is root's.
        for f in files_under(&data) {
            assert_eq!(
                std::fs::metadata(&f).unwrap().uid(),
                1000,
                "{} is not 1000's",
                f.display()
            );
        }
        // Still serving, data untouched by a dry run.
        docker_ok(&["rmi", &name]);
        pull_and_check(&name, &image_id, &digest);
    }

    // docker stop: SIGTERM is handled, the server drains and exits 0.
    docker_ok(&["stop", "-t", "30", &c.id]);
    assert_eq!(
        c.inspect("{{.State.ExitCode}}"),
        "0",
        "exit code after docker stop; logs:\n{}",
        c.logs()
    );
    assert!(
        c.logs().contains("SIGTERM"),
        "no SIGTERM line in the log:\n{}",
        c.logs()
    );
    drop(c);

    // A new container on the same directory serves the same image.
    let c2 = Container::run(image, 5000, &["-v", &volume], &[]);
    c2.wait_ready();
    let name2 = format!("{}/ferry-test/app:1", c2.host());
    local.0.push(name2.clone());
    docker_ok(&["rmi", "-f", &name]);
    pull_and_check(&name2, &image_id, &digest);
    let logs = c2.logs();
    assert!(
        logs.contains("running as 1000:1000, the owner of"),
        "entrypoint log:\n{logs}"
    );
}

/// `docker exec <container> ferry backup <configs> /backup` (README, deploy/README.md)
/// while the registry serves; a new container on the backup directory serves the image.
#[test]
fn backup_through_docker_exec_is_served_by_a_new_container() {
    let Some(image) = image("backup_through_docker_exec_is_served_by_a_new_container") else {
        return;
    };
    if !is_root() {
        eprintln!("SKIP: giving the backup directory to uid 1000 needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("registry");
    // `ferry backup` runs as the data's owner (uid 1000): the backup volume must be its.
    let backup = tmp.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    std::os::unix::fs::chown(&backup, Some(1000), Some(1000)).unwrap();
    let volumes = [
        "-v",
        &format!("{}:/var/lib/registry", data.display()),
        "-v",
        &format!("{}:/backup", backup.display()),
    ];
    let c = Container::run(image, 5000, &volumes, &[]);
    c.wait_ready();
    let name = format!("{}/ferry-test/backup:1", c.host());
    let mut local = LocalImages(vec![name.clone()]);
    let image_id = import_image(&name, tmp.path());
    let digest = push(&name);
    let summary = docker_ok(&[
        "exec", &c.id, "ferry", "backup", CONFIGS[0], CONFIGS[1], "/backup",
    ]);
    assert!(
        backup.join("ferry/metadata.db").exists(),
        "no metadata.db in the backup; ferry backup said:\n{summary}"
    );

    let restored = Container::run(
        image,
        5000,
        &["-v", &format!("{}:/var/lib/registry", backup.display())],
        &[],
    );
    restored.wait_ready();
    let name2 = format!("{}/ferry-test/backup:1", restored.host());
    local.0.push(name2.clone());
    docker_ok(&["rmi", "-f", &name]);
    pull_and_check(&name2, &image_id, &digest);
}

/// A Distribution config.yml mounted at registry:2's path is used, and REGISTRY_* variables
/// override it, for the server and for the health check.
#[test]
fn distribution_config_and_environment_overrides() {
    let Some(image) = image("distribution_config_and_environment_overrides") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yml");
    std::fs::write(
        &config,
        "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n",
    )
    .unwrap();
    let mount = format!("{}:{}:ro", config.display(), CONFIGS[0]);
    let data = format!("{}:/var/lib/registry", tmp.path().join("data").display());
    let c = Container::run(
        image,
        5001,
        &["-v", &mount, "-v", &data, "-e", "REGISTRY_HTTP_ADDR=:5001"],
        &[],
    );
    c.wait_ready();
    c.wait_healthy();

    let name = format!("{}/ferry-test/cfg:1", c.host());
    let _local = LocalImages(vec![name.clone()]);
    import_image(&name, tmp.path());
    let digest = push(&name);
    // Deletes are enabled by the mounted config (the image's own disables them).
    let del = http(
        "DELETE",
        &c.url("/v2/ferry-test/cfg/manifests/1"),
        &[],
        None,
    );
    assert_eq!(del.status, 202, "DELETE of a tag: {del:?}");
    let gone = http(
        "GET",
        &c.url("/v2/ferry-test/cfg/manifests/1"),
        &[("Accept", DOCKER_MANIFEST)],
        None,
    );
    assert_eq!(gone.status, 404, "tag still served after DELETE");
    let by_digest = http(
        "DELETE",
        &c.url(&format!("/v2/ferry-test/cfg/manifests/{digest}")),
        &[],
        None,
    );
    assert_eq!(by_digest.status, 202, "DELETE of a manifest: {by_digest:?}");

    // registry:2's maintenance scripts run unchanged: `bin/registry garbage-collect CONFIG`
    // (relative to the container's working directory, as registry:2 guides write it).
    let version = docker_ok(&["exec", &c.id, "bin/registry", "--version"]);
    assert!(version.contains("Ferry"), "registry --version: {version}");
    let blob_files = || {
        files_under(&tmp.path().join("data/docker/registry/v2/blobs"))
            .into_iter()
            .filter(|p| p.ends_with("data"))
            .count()
    };
    let before = blob_files();
    let dry = docker_ok(&[
        "exec",
        &c.id,
        "bin/registry",
        "garbage-collect",
        "--dry-run",
        CONFIGS[0],
    ]);
    assert!(dry.contains("would remove"), "dry run printed: {dry}");
    assert_eq!(blob_files(), before, "a dry run removed files");
    // Nothing used in the current second is collected, even without a grace window.
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for _ in 0..30 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if now > second {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let real = docker_ok(&[
        "exec",
        &c.id,
        "bin/registry",
        "garbage-collect",
        "-m",
        "--grace",
        "0s",
        CONFIGS[0],
    ]);
    assert!(real.contains("removed:"), "collection printed: {real}");
    assert!(
        blob_files() < before,
        "bin/registry garbage-collect freed nothing ({before} blob files before and after):\n{real}"
    );
    let catalog = http("GET", &c.url("/v2/_catalog"), &[], None);
    assert!(
        !catalog.text().contains("ferry-test/cfg"),
        "the emptied repository is still listed: {catalog:?}"
    );
}

/// The image on S3, configured as `registry:2` users do it: `REGISTRY_STORAGE=s3` switches
/// the driver (the image's own config names the filesystem), the bucket and endpoint come from
/// `REGISTRY_STORAGE_S3_*`, the credentials from `AWS_*`, and the endpoint is a host name
/// (resolved by the static binary in a `scratch` image, here through `/etc/hosts`). Push and
/// pull back, also after a restart; the layers are objects under Distribution's keys and the
/// volume holds only the metadata database.
#[test]
fn s3_storage_from_the_environment() {
    let Some(image) = image("s3_storage_from_the_environment") else {
        return;
    };
    let s3 = support::S3Server::new();
    let target = s3.target("ferry-image");
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let data = format!("{}:/var/lib/registry", data_dir.display());
    let endpoint = target.endpoint.replace("127.0.0.1", "s3.ferry.test");
    let env = [
        "REGISTRY_STORAGE=s3".to_string(),
        format!("REGISTRY_STORAGE_S3_BUCKET={}", target.bucket),
        format!("REGISTRY_STORAGE_S3_REGIONENDPOINT={endpoint}"),
        "REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true".to_string(),
        format!("AWS_ACCESS_KEY_ID={}", target.access_key),
        format!("AWS_SECRET_ACCESS_KEY={}", target.secret_key),
    ];
    let mut args = vec!["-v", &data, "--add-host", "s3.ferry.test:127.0.0.1"];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    let c = Container::run_on_host_network(image, &args);
    c.wait_ready();
    c.wait_healthy();
    assert!(
        c.logs().contains("s3://ferry-image/"),
        "startup log does not name the bucket:\n{}",
        c.logs()
    );

    let name = format!("{}/ferry-test/s3:1", c.host());
    let _local = LocalImages(vec![name.clone()]);
    let image_id = import_image(&name, tmp.path());
    let digest = push_remove_pull(&name, &image_id);

    let blobs: Vec<PathBuf> = files_under(&target.bucket_dir.join("docker/registry/v2/blobs"))
        .into_iter()
        .filter(|p| p.ends_with("data"))
        .collect();
    assert!(
        blobs.len() >= 3,
        "expected layer, config and manifest objects in the bucket, found {blobs:?}"
    );
    assert!(
        !data_dir.join("docker").exists(),
        "blobs were written to the volume instead of the bucket"
    );
    assert!(
        data_dir.join("ferry/metadata.db").exists(),
        "no metadata database in the volume"
    );

    docker_ok(&["restart", &c.id]);
    c.wait_ready();
    docker_ok(&["rmi", &name]);
    pull_and_check(&name, &image_id, &digest);
}

/// Moving from registry:2: its volume is root-owned and holds its images. A real
/// Distribution (Debian's `docker-registry`, as root) fills a directory through the engine;
/// then Ferry's image on that directory, by default, serves it (as root, saying so) and the
/// image pushed to registry:2 pulls from Ferry. A non-root `--user` on it gets a clear message
/// instead of a vague failure, and changes nothing.
#[test]
fn existing_root_owned_registry2_volume() {
    let Some(image) = image("existing_root_owned_registry2_volume") else {
        return;
    };
    if !is_root() {
        eprintln!(
            "SKIP: existing_root_owned_registry2_volume: the test must run as root to make a root-owned volume"
        );
        return;
    }
    if Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIP: existing_root_owned_registry2_volume: docker-registry (Distribution) not installed"
        );
        return;
    }
    // registry:2's data, written by Distribution running as root.
    let mut distribution = support::TestRegistry::start_with(support::Flavor::Distribution, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let old_name = format!("{}/legacy/app:1", distribution.host);
    let mut local = LocalImages(vec![old_name.clone()]);
    let image_id = import_image(&old_name, tmp.path());
    let digest = push(&old_name);
    distribution.terminate();
    let data = distribution.root.clone();
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), 0);
    let volume = format!("{}:/var/lib/registry", data.display());

    // A non-root user on it: a clear message, and the server does not start.
    let c = Container::run(image, 5000, &["--user", "1000:1000", "-v", &volume], &[]);
    let code = c.wait_exit();
    let logs = c.logs();
    assert_ne!(
        code, 0,
        "served from a volume it cannot write; logs:\n{logs}"
    );
    assert!(
        logs.contains("data directory /var/lib/registry is not writable by uid 1000"),
        "no clear message about the data directory:\n{logs}"
    );
    assert!(
        !data.join("ferry").exists(),
        "the failed start wrote into the volume"
    );
    drop(c);

    // The default: runs as root, like registry:2, says why, and adopts registry:2's images.
    let c = Container::run(image, 5000, &["-v", &volume], &[]);
    c.wait_ready();
    c.wait_healthy();
    let logs = c.logs();
    assert!(
        logs.contains("WARNING: running as root because"),
        "entrypoint log:\n{logs}"
    );
    let catalog = http("GET", &c.url("/v2/_catalog"), &[], None);
    assert!(
        catalog.text().contains("legacy/app"),
        "registry:2's repository is not in Ferry's catalog: {catalog:?}\nlogs:\n{logs}"
    );
    let name = format!("{}/legacy/app:1", c.host());
    local.0.push(name.clone());
    docker_ok(&["rmi", "-f", &old_name]);
    pull_and_check(&name, &image_id, &digest);
    // And it takes new pushes.
    let new_name = format!("{}/ferry-test/root:1", c.host());
    local.0.push(new_name.clone());
    let new_id = import_image(&new_name, &tmp.path().join("new"));
    push_remove_pull(&new_name, &new_id);
    assert_eq!(
        std::fs::metadata(&data).unwrap().uid(),
        0,
        "the entrypoint changed the owner of existing data"
    );
}

/// `docker compose -f deploy/compose.yml up -d`: the same, as a compose service with a named
/// volume, a mounted config and a health check.
#[test]
fn compose_service() {
    let Some(image) = image("compose_service") else {
        return;
    };
    let compose: Vec<&str> = if docker(&["compose", "version"]).status.success() {
        vec!["docker", "compose"]
    } else if Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        vec!["docker-compose"]
    } else {
        eprintln!(
            "SKIP: compose_service: neither `docker compose` nor `docker-compose` is installed"
        );
        return;
    };
    let project = format!("ferrytest{}", run_id().replace('-', ""));
    let port = support::free_port().port().to_string();
    let file = repo().join("deploy/compose.yml");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(compose[0]);
        cmd.args(&compose[1..])
            .arg("-f")
            .arg(&file)
            .args(["-p", &project])
            .args(args)
            .env("FERRY_IMAGE", image)
            .env("FERRY_PORT", &port)
            .env("FERRY_HEALTH_INTERVAL", "1s")
            .stdin(Stdio::null());
        cmd.output().expect("run compose")
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "-v", "--remove-orphans", "-t", "30"]);
        }
    }
    let _down = Down(&run);
    let out = run(&["up", "-d", "--no-build"]);
    assert!(
        out.status.success(),
        "compose up failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&run(&["ps", "-q", "registry"]).stdout)
        .trim()
        .to_string();
    assert!(!id.is_empty(), "compose started no registry container");
    // Watch it like any container, without removing it (compose down does).
    let c = std::mem::ManuallyDrop::new(Container {
        id,
        port: port.parse().unwrap(),
    });
    c.wait_ready();
    c.wait_healthy();
    let name = format!("{}/ferry-test/compose:1", c.host());
    let _local = LocalImages(vec![name.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let image_id = import_image(&name, tmp.path());
    push_remove_pull(&name, &image_id);
    // The named volume is a copy of the image's /var/lib/registry, owned by 1000.
    let logs = c.logs();
    assert!(
        logs.contains("running as 1000:1000, the owner of /var/lib/registry"),
        "log:\n{logs}"
    );
}

// ---------------------------------------------------------------------------------------
// Static checks (no engine needed)

/// Every YAML document of deploy/ as JSON, through python3's yaml module (installed with pip
/// when missing).
fn yaml_documents(files: &[PathBuf]) -> Value {
    let has_yaml = |python: &str| {
        Command::new(python)
            .args(["-c", "import yaml"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_yaml("python3") {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "pyyaml"])
            .status();
        assert!(
            has_yaml("python3"),
            "python3 cannot import yaml, and pip install pyyaml failed"
        );
    }
    let script = "import json, sys, yaml\n\
                  out = {}\n\
                  for f in sys.argv[1:]:\n\
                  \x20   with open(f) as h:\n\
                  \x20       out[f] = [d for d in yaml.safe_load_all(h) if d is not None]\n\
                  print(json.dumps(out))\n";
    let out = support::run(Command::new("python3").arg("-c").arg(script).args(files));
    serde_json::from_str(&out).expect("python printed JSON")
}

/// Every document of a [`yaml_documents`] answer, files in order.
fn documents_of(all: &Value) -> Vec<&Value> {
    all.as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .collect()
}

/// The one document of `kind` among `docs` (from `dir`, for the message).
fn one_of_kind<'a>(docs: &[&'a Value], kind: &str, dir: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().copied().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {dir}");
    found[0]
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// `ferry healthcheck CONFIG` loads the config first: exit 2 means it is invalid (1 is only
/// "nobody answers").
fn assert_ferry_accepts_config(path: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("healthcheck")
        .arg(path)
        .args(["--timeout", "1"])
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:9")
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "ferry rejects {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_manifests_are_valid() {
    let dir = repo().join("deploy/kubernetes");
    let files = yaml_files(&dir);
    let all = yaml_documents(&files);
    let docs = documents_of(&all);
    let of_kind = |kind: &str| one_of_kind(&docs, kind, "deploy/kubernetes");
    for d in &docs {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "document without apiVersion/kind: {d}"
        );
    }

    let config = of_kind("ConfigMap");
    let pvc = of_kind("PersistentVolumeClaim");
    let deployment = of_kind("Deployment");
    let service = of_kind("Service");
    let kustomization = of_kind("Kustomization");
    assert_eq!(deployment["apiVersion"], "apps/v1");

    // The kustomization lists every manifest file.
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} missing from kustomization.yaml"
            );
        }
    }

    // The ConfigMap's config.yml is a config Ferry accepts, storing under the volume.
    let config_yml = config["data"]["config.yml"]
        .as_str()
        .expect("ConfigMap data config.yml");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.yml");
    std::fs::write(&path, config_yml).unwrap();
    assert_ferry_accepts_config(&path);
    let parsed = yaml_documents(std::slice::from_ref(&path));
    let parsed = &parsed[path.to_str().unwrap()][0];
    assert_eq!(
        parsed["storage"]["filesystem"]["rootdirectory"],
        "/var/lib/registry"
    );
    assert_eq!(parsed["http"]["addr"], ":5000");

    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");
    assert!(pvc["spec"]["resources"]["requests"]["storage"].is_string());

    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "one writer of the SQLite metadata");
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "selector does not match the pod labels");
    }
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[k], v,
            "Service selector does not match the pod labels"
        );
    }
    assert_eq!(service["spec"]["ports"][0]["port"], 5000);

    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert!(
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["containerPort"] == 5000)
    );
    // Readiness: the database and the store answer; liveness: the process serves. Neither
    // needs credentials (`/v2/` would answer 401 under `auth`).
    for (probe, path) in [
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], 5000, "{probe}");
    }
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| -> &Value {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount_of = |path: &str| -> &str {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))["name"]
            .as_str()
            .unwrap()
    };
    assert_eq!(
        volume(mount_of("/var/lib/registry"))["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    assert_eq!(
        volume(mount_of("/etc/docker/registry"))["configMap"]["name"],
        config["metadata"]["name"]
    );
    // Non-root, with a writable /tmp under a read-only root file system.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    mount_of("/tmp");
}

/// deploy/compose-ha.yml: three replicas of the image over PostgreSQL and S3 behind the
/// balancer, probed by readiness, with settings Ferry accepts.
#[test]
fn compose_ha_file_is_valid() {
    let compose_path = repo().join("deploy/compose-ha.yml");
    let all = yaml_documents(std::slice::from_ref(&compose_path));
    let compose = &all[compose_path.to_str().unwrap()][0];
    let service = &compose["services"]["registry"];
    assert_eq!(service["deploy"]["replicas"], 3);
    let env = &service["environment"];
    let url = env["REGISTRY_DATABASE_URL"].as_str().unwrap();
    assert!(
        url.starts_with("postgres://") && url.contains("@db:5432/"),
        "{url}"
    );
    assert_eq!(env["REGISTRY_STORAGE"], "s3");
    assert_eq!(service["healthcheck"]["test"][1], "/usr/local/bin/ferry");
    assert_eq!(service["healthcheck"]["test"][2], "healthcheck");
    for dependency in ["db", "bucket"] {
        assert!(
            service["depends_on"].get(dependency).is_some(),
            "{dependency}"
        );
    }
    let balancer = &compose["services"]["balancer"];
    assert!(
        balancer["volumes"][0]
            .as_str()
            .unwrap()
            .starts_with("./nginx-ha.conf:"),
        "{balancer}"
    );
    let nginx = std::fs::read_to_string(repo().join("deploy/nginx-ha.conf")).unwrap();
    for directive in [
        "proxy_request_buffering off;",
        "client_max_body_size 0;",
        "proxy_set_header Host $http_host;",
        "server registry:5000",
    ] {
        assert!(nginx.contains(directive), "nginx-ha.conf lacks {directive}");
    }
    // The replicas' settings, as the environment gives them on top of deploy/config.yml:
    // Ferry parses them (it stops before connecting only if it rejects them, exit 2).
    let mut check = Command::new(env!("CARGO_BIN_EXE_ferry"));
    check
        .arg("healthcheck")
        .arg(repo().join("deploy/config.yml"))
        .args(["--timeout", "1"])
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:9");
    for (key, value) in env.as_object().unwrap() {
        let value = value
            .as_str()
            .unwrap()
            .replace("${FERRY_DB_PASSWORD:-change-me-db}", "pw");
        let value = value.replace("${FERRY_S3_SECRET:-change-me-s3-secret}", "secret");
        check.env(key, value);
    }
    let out = check.output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "ferry rejects compose-ha's settings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// deploy/kubernetes/ha/: three replicas of the single-node manifests' image over PostgreSQL
/// and S3, probed, kept at two through disruptions, collected by a CronJob that never
/// overlaps itself; the database URL and the S3 credentials come from the Secret, and
/// Ferry accepts the configuration the pods get (the ConfigMap plus those variables).
#[test]
fn kubernetes_ha_manifests_are_valid() {
    let dir = repo().join("deploy/kubernetes/ha");
    let files = yaml_files(&dir);
    let all = yaml_documents(&files);
    let docs = documents_of(&all);
    let of_kind = |kind: &str| one_of_kind(&docs, kind, "deploy/kubernetes/ha");
    let config = of_kind("ConfigMap");
    let secret = of_kind("Secret");
    let deployment = of_kind("Deployment");
    let service = of_kind("Service");
    let pdb = of_kind("PodDisruptionBudget");
    let cronjob = of_kind("CronJob");
    let migrate = of_kind("Job");
    let kustomization = of_kind("Kustomization");

    // The kustomization lists every manifest but the one-off migration Job.
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let is_job = all[f.to_str().unwrap()][0]["kind"] == "Job";
        if name != "kustomization.yaml" {
            assert_eq!(
                listed.contains(&name),
                !is_job,
                "{name}: kustomization.yaml should list every manifest but the migration Job"
            );
        }
    }
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        support::run(Command::new("kubectl").arg("kustomize").arg(&dir));
    } else {
        eprintln!("NOTE: kubectl not installed; kustomization not rendered");
    }

    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for (what, selector) in [
        ("Deployment", &spec["selector"]["matchLabels"]),
        ("Service", &service["spec"]["selector"]),
        (
            "PodDisruptionBudget",
            &pdb["spec"]["selector"]["matchLabels"],
        ),
    ] {
        let selector = selector.as_object().unwrap();
        assert!(!selector.is_empty(), "{what} selects nothing");
        for (k, v) in selector {
            assert_eq!(&pod_labels[k], v, "{what} selector does not match the pods");
        }
    }
    let min = pdb["spec"]["minAvailable"].as_u64().expect("minAvailable");
    assert!(
        (1..3).contains(&min),
        "the budget should keep some replicas and let one go: minAvailable {min}"
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 5000);

    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    for (probe, path) in [
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], 5000, "{probe}");
    }
    let single = yaml_documents(&[repo().join("deploy/kubernetes/deployment.yaml")]);
    let single_image = single.as_object().unwrap().values().next().unwrap()[0]["spec"]["template"]
        ["spec"]["containers"][0]["image"]
        .clone();
    assert_eq!(c["image"], single_image, "the single-node manifests' image");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);

    // Secrets come from the Secret, by keys it has; the ConfigMap is mounted at registry:2's path.
    let secret_data = secret["stringData"].as_object().expect("Secret stringData");
    let env_of = |container: &Value, what: &str| -> Vec<(String, String)> {
        container["env"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no env"))
            .iter()
            .map(|e| {
                let name = e["name"].as_str().unwrap().to_string();
                let value = match e["value"].as_str() {
                    Some(v) => v.to_string(),
                    None => {
                        let r = &e["valueFrom"]["secretKeyRef"];
                        assert_eq!(r["name"], secret["metadata"]["name"], "{what}: {name}");
                        let key = r["key"].as_str().unwrap();
                        secret_data
                            .get(key)
                            .unwrap_or_else(|| panic!("{what}: {name}: no {key} in the Secret"))
                            .as_str()
                            .unwrap()
                            .to_string()
                    }
                };
                (name, value)
            })
            .collect()
    };
    let config_mount = |pod: &Value, container: &Value, what: &str| {
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/etc/docker/registry")
            .unwrap_or_else(|| panic!("{what}: no config mounted"));
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{what}: no volume {}", mount["name"]));
        assert_eq!(
            volume["configMap"]["name"], config["metadata"]["name"],
            "{what}: config volume"
        );
    };
    let server_env = env_of(c, "Deployment");
    for key in [
        "REGISTRY_DATABASE_URL",
        "REGISTRY_STORAGE_S3_ACCESSKEY",
        "REGISTRY_STORAGE_S3_SECRETKEY",
    ] {
        assert!(
            server_env.iter().any(|(k, _)| k == key),
            "Deployment: {key} not set"
        );
    }
    config_mount(pod, c, "Deployment");
    assert_eq!(
        c["args"],
        serde_json::json!(["serve", "/etc/docker/registry/config.yml"])
    );

    // The collector: the same image, configuration and secrets, never two at once.
    let job = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let gc = &job["containers"][0];
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(gc["image"], c["image"]);
    assert_eq!(gc["command"][0], "/usr/local/bin/ferry-gc");
    assert_eq!(gc["args"][0], "/etc/docker/registry/config.yml");
    assert_eq!(
        env_of(gc, "CronJob"),
        server_env,
        "the collector's environment"
    );
    config_mount(job, gc, "CronJob");

    // The migration Job: the single node's volume into the Secret's database.
    let mpod = &migrate["spec"]["template"]["spec"];
    let m = &mpod["containers"][0];
    assert_eq!(m["image"], c["image"]);
    assert_eq!(m["args"][0], "migrate-metadata");
    assert!(
        env_of(m, "Job")
            .iter()
            .any(|(k, _)| k == "REGISTRY_DATABASE_URL"),
        "the migration needs the database URL"
    );
    let single_pvc = yaml_documents(&[repo().join("deploy/kubernetes/pvc.yaml")]);
    let single_pvc = &single_pvc.as_object().unwrap().values().next().unwrap()[0];
    assert!(
        mpod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == single_pvc["metadata"]["name"]),
        "the migration Job mounts the single node's volume"
    );

    // What the pods get, the ConfigMap's config.yml plus the Secret's variables, is a
    // configuration Ferry accepts, on S3 and PostgreSQL.
    let config_yml = config["data"]["config.yml"].as_str().expect("config.yml");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.yml");
    std::fs::write(&path, config_yml).unwrap();
    let parsed = yaml_documents(std::slice::from_ref(&path));
    let parsed = &parsed[path.to_str().unwrap()][0];
    assert!(parsed["storage"]["s3"]["bucket"].is_string(), "{parsed}");
    assert!(parsed["storage"].get("filesystem").is_none(), "{parsed}");
    assert_eq!(parsed["http"]["addr"], ":5000");
    let url = &server_env
        .iter()
        .find(|(k, _)| k == "REGISTRY_DATABASE_URL")
        .unwrap()
        .1;
    assert!(url.starts_with("postgres://"), "{url}");
    let mut check = Command::new(env!("CARGO_BIN_EXE_ferry"));
    check
        .arg("healthcheck")
        .arg(&path)
        .args(["--timeout", "1"])
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:9")
        .envs(server_env.iter().map(|(k, v)| (k, v)));
    let out = check.output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "ferry rejects the HA manifests' settings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_file_and_image_config_are_valid() {
    let compose_path = repo().join("deploy/compose.yml");
    let config_path = repo().join("deploy/config.yml");
    let all = yaml_documents(&[compose_path.clone(), config_path.clone()]);
    let compose = &all[compose_path.to_str().unwrap()][0];
    let service = &compose["services"]["registry"];
    let volumes: Vec<&str> = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("registry-data:/var/lib/registry")),
        "{volumes:?}"
    );
    assert!(
        compose["volumes"].get("registry-data").is_some(),
        "named volume not declared"
    );
    assert!(
        volumes
            .iter()
            .any(|v| v.contains(":/etc/docker/registry/config.yml")),
        "{volumes:?}"
    );
    assert_eq!(service["healthcheck"]["test"][1], "/usr/local/bin/ferry");
    assert_eq!(service["build"]["dockerfile"], "deploy/Dockerfile");

    let config = &all[config_path.to_str().unwrap()][0];
    assert_eq!(
        config["storage"]["filesystem"]["rootdirectory"],
        "/var/lib/registry"
    );
    assert_eq!(config["http"]["addr"], ":5000");
    assert_ferry_accepts_config(&config_path);
}

#[test]
fn systemd_units_verify() {
    let dir = repo().join("deploy/systemd");
    let service = std::fs::read_to_string(dir.join("ferry.service")).unwrap();
    for line in [
        "StateDirectory=registry",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecStart=/usr/local/bin/ferry serve /etc/ferry/config.yml",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "ferry.service lacks {line}"
        );
    }
    let gc = std::fs::read_to_string(dir.join("ferry-gc.service")).unwrap();
    assert!(
        gc.contains("ExecStart=/usr/local/bin/ferry-gc "),
        "ferry-gc.service runs ferry-gc"
    );
    let timer = std::fs::read_to_string(dir.join("ferry-gc.timer")).unwrap();
    assert!(timer.contains("Unit=ferry-gc.service"));

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd_units_verify: systemd-analyze not installed");
        return;
    }
    // verify wants the executables to exist: point the units at this build's binaries.
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ferry"), bin.join("ferry")).unwrap();
    let gc_bin = option_env!("CARGO_BIN_EXE_ferry-gc").unwrap_or("/bin/true");
    std::os::unix::fs::symlink(gc_bin, bin.join("ferry-gc")).unwrap();
    let units = ["ferry.service", "ferry-gc.service", "ferry-gc.timer"];
    for unit in units {
        let text = std::fs::read_to_string(dir.join(unit))
            .unwrap()
            .replace("/usr/local/bin/", &format!("{}/", bin.display()));
        std::fs::write(tmp.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| tmp.path().join(u)))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ferry"),
        "systemd-analyze verify:\n{stderr}"
    );
}

/// The entrypoint's own unit tests (a separate crate under deploy/, outside this package).
#[test]
fn entrypoint_unit_tests() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--quiet", "--locked", "--manifest-path"])
        .arg(repo().join("deploy/entrypoint/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir())
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("run cargo test for deploy/entrypoint");
    assert!(
        out.status.success(),
        "deploy/entrypoint tests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
