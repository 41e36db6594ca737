//! Shared test harness: start a Ferry (or a reference Distribution) on a random loopback
//! port with its own temporary data directory, and stop it when the handle drops. The
//! helpers live in submodules: [`oci`] (media types, digests, manifests), [`http`] (the one
//! HTTP client and its [`Resp`]), [`cli`] (driving command-line tools), [`tls`]
//! (certificates made with `openssl`, TLS clients), [`token`] (Docker token auth: test keys
//! and certificates, minted tokens, a token server), [`postgres`] (a throwaway PostgreSQL
//! server), [`balancer`] (nginx round-robin in front of several servers); `oci` and `http`
//! are re-exported here, so a test file needs only `use support::*;`.
//!
//! Storage: by default Ferry stores blobs in the filesystem under its data directory. With
//! `FERRY_TEST_STORAGE=s3`, every Ferry-flavored [`TestRegistry`] gets its own S3 server
//! ([`S3Server`], `s3s-fs` over a temporary directory) and is configured with
//! Distribution's `storage.s3` keys instead; its metadata database stays under its data
//! directory (`data/ferry/metadata.db`). Distribution-flavored registries always use the
//! filesystem.
//!
//! Metadata: SQLite under the data directory by default. With `FERRY_TEST_METADATA=postgres`,
//! every Ferry-flavored [`TestRegistry`] started with [`TestRegistry::start_with`] gets its
//! own PostgreSQL server ([`postgres::PostgresServer`]) and `REGISTRY_DATABASE_URL`.
#![allow(dead_code)]

pub mod balancer;
pub mod cli;
pub mod http;
pub mod oci;
pub mod postgres;
pub mod relay;
pub mod tls;
pub mod token;

// Each test binary compiles this module and uses a different part of it (hence also the
// `dead_code` allowance above).
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use oci::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which registry implementation a [`TestRegistry`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// This crate's `ferry serve`.
    Ferry,
    /// Debian's `docker-registry` (CNCF Distribution 2.8), the reference.
    Distribution,
}

/// The registry under test: Ferry, or the reference Distribution when
/// `FERRY_TEST_FLAVOR=distribution` (to check the tests themselves against the reference).
pub fn flavor() -> Flavor {
    match std::env::var("FERRY_TEST_FLAVOR").as_deref() {
        Ok("distribution") => Flavor::Distribution,
        Ok("ferry") | Ok("") | Err(_) => Flavor::Ferry,
        Ok(other) => panic!("FERRY_TEST_FLAVOR={other}: expected `ferry` or `distribution`"),
    }
}

/// Starts the registry under test with deletes enabled.
pub fn start() -> TestRegistry {
    TestRegistry::start_with(flavor(), &[])
}

/// Starts the registry under test with extra `REGISTRY_*` overrides.
pub fn start_env(env: &[(&str, &str)]) -> TestRegistry {
    TestRegistry::start_with(flavor(), env)
}

/// The config file [`TestRegistry::start_with_config`] writes into the registry's directory.
const FERRY_CONFIG: &str = "ferry.yml";

/// A registry process on `127.0.0.1:<random port>` over a temporary data directory.
pub struct TestRegistry {
    pub flavor: Flavor,
    pub addr: SocketAddr,
    /// `host:port`, as clients name the registry (`127.0.0.1:PORT`).
    pub host: String,
    /// `http://host:port`.
    pub url: String,
    /// Root of the data directory (`storage.filesystem.rootdirectory` on the filesystem; on
    /// S3 it holds the metadata database, `ferry/metadata.db`).
    pub root: PathBuf,
    /// Extra `REGISTRY_*` environment overrides given at start, reused by `restart`.
    pub env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Everything the server printed (stdout and stderr), collected in the background.
    log_path: PathBuf,
    /// The S3 bucket blobs go to, when the registry runs on S3.
    s3_target: Option<S3Target>,
    /// The S3 server this registry owns (`FERRY_TEST_STORAGE=s3`), dropped with it.
    s3: Option<S3Server>,
    /// The PostgreSQL server this registry owns (`FERRY_TEST_METADATA=postgres`), dropped
    /// with it.
    postgres: Option<postgres::PostgresServer>,
}

impl TestRegistry {
    /// A Ferry with deletes enabled, on a fresh data directory.
    pub fn start() -> Self {
        Self::start_with(Flavor::Ferry, &[])
    }

    /// A registry of `flavor` with extra environment overrides, e.g.
    /// `[("REGISTRY_STORAGE_DELETE_ENABLED", "false")]`.
    pub fn start_with(flavor: Flavor, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).expect("data dir");
        // A test that names its storage gets that; otherwise FERRY_TEST_STORAGE decides.
        let explicit_storage = env.iter().any(|(k, _)| {
            *k == "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" || *k == "REGISTRY_STORAGE_S3_BUCKET"
        });
        let (s3, s3_target) =
            if flavor == Flavor::Ferry && storage() == Storage::S3 && !explicit_storage {
                let server = S3Server::new();
                let target = server.target(DEFAULT_BUCKET);
                (Some(server), Some(target))
            } else {
                (None, None)
            };
        // Likewise the metadata database: FERRY_TEST_METADATA, unless the test names one.
        let explicit_database = env.iter().any(|(k, _)| k.starts_with("REGISTRY_DATABASE_"));
        let mut env: Vec<(&str, &str)> = env.to_vec();
        let (postgres, url) =
            if flavor == Flavor::Ferry && metadata() == Metadata::Postgres && !explicit_database {
                let server = postgres::PostgresServer::try_start()
                    .unwrap_or_else(|e| panic!("FERRY_TEST_METADATA=postgres: {e}"));
                let url = server.create_database("ferry");
                (Some(server), url)
            } else {
                (None, String::new())
            };
        if postgres.is_some() {
            env.push(("REGISTRY_DATABASE_URL", &url));
        }
        let mut me = Self::start_full(flavor, dir, root, &env, s3, s3_target);
        me.postgres = postgres;
        me
    }

    /// The PostgreSQL server holding this registry's metadata, if it runs on one.
    pub fn postgres(&mut self) -> Option<&mut postgres::PostgresServer> {
        self.postgres.as_mut()
    }

    /// A Ferry (filesystem storage) reading `yaml` as its config file, with `env` on top.
    pub fn start_with_config(yaml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).expect("data dir");
        std::fs::write(dir.path().join(FERRY_CONFIG), yaml).expect("config");
        let root_env = root.display().to_string();
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.push(("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root_env));
        Self::start_full(Flavor::Ferry, dir, root, &env, None, None)
    }

    /// A Ferry storing its blobs in `bucket` of `s3` (a server the caller owns and keeps
    /// alive longer than the registry), whatever `FERRY_TEST_STORAGE` says. `env` may set
    /// `REGISTRY_STORAGE_S3_ROOTDIRECTORY` and any other override.
    pub fn start_on_s3(s3: &S3Server, bucket: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).expect("data dir");
        Self::start_full(Flavor::Ferry, dir, root, env, None, Some(s3.target(bucket)))
    }

    /// A registry of `flavor` over the data directory `root` (and the S3 bucket of
    /// `s3_target`, if any), with its log and configs in `dir`, started on a free port.
    fn start_full(
        flavor: Flavor,
        dir: tempfile::TempDir,
        root: PathBuf,
        env: &[(&str, &str)],
        s3: Option<S3Server>,
        s3_target: Option<S3Target>,
    ) -> Self {
        let log_path = dir.path().join("server.log");
        let mut me = TestRegistry {
            flavor,
            addr: "127.0.0.1:0".parse().unwrap(),
            host: String::new(),
            url: String::new(),
            root,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir,
            child: None,
            log_path,
            s3_target,
            s3,
            postgres: None,
        };
        me.spawn_on_free_port();
        me
    }

    /// Where this registry keeps its blobs.
    pub fn storage(&self) -> Storage {
        if self.s3_target.is_some() {
            Storage::S3
        } else {
            Storage::Filesystem
        }
    }

    /// The S3 server this registry owns (with `FERRY_TEST_STORAGE=s3`), e.g. to stop and
    /// start it under the registry.
    pub fn s3(&mut self) -> Option<&mut S3Server> {
        self.s3.as_mut()
    }

    /// The directory holding Distribution's layout (`docker/registry/v2/...`) as files: the
    /// data directory on the filesystem; on S3 the bucket's directory in the S3 server's
    /// store (s3s-fs keeps an object `<key>` as the file `<bucket dir>/<key>`) below the
    /// configured `rootdirectory`.
    pub fn storage_root(&self) -> PathBuf {
        match &self.s3_target {
            None => self.root.clone(),
            Some(t) => {
                let prefix = self
                    .env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "REGISTRY_STORAGE_S3_ROOTDIRECTORY")
                    .map(|(_, v)| v.trim_matches('/').to_string())
                    .unwrap_or_default();
                if prefix.is_empty() {
                    t.bucket_dir.clone()
                } else {
                    t.bucket_dir.join(prefix)
                }
            }
        }
    }

    /// The `REGISTRY_*` storage settings the server is started with (before the extra
    /// overrides in [`TestRegistry::env`]): the filesystem root, or the S3 keys and the
    /// metadata database's path. Other processes on the same data (`ferry-gc`) need them.
    pub fn storage_env(&self) -> Vec<(String, String)> {
        let mut env = vec![];
        let mut set = |k: &str, v: &str| env.push((k.to_string(), v.to_string()));
        match &self.s3_target {
            None => set(
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                self.root.to_str().expect("utf-8 path"),
            ),
            Some(t) => {
                set("REGISTRY_STORAGE_S3_BUCKET", &t.bucket);
                set("REGISTRY_STORAGE_S3_REGIONENDPOINT", &t.endpoint);
                set("REGISTRY_STORAGE_S3_REGION", S3_REGION);
                set("REGISTRY_STORAGE_S3_ACCESSKEY", &t.access_key);
                set("REGISTRY_STORAGE_S3_SECRETKEY", &t.secret_key);
                set("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true");
                set("REGISTRY_STORAGE_S3_SECURE", "false");
                if !self.env.iter().any(|(k, _)| k == "REGISTRY_DATABASE_URL") {
                    let db = self.root.join("ferry").join("metadata.db");
                    set("REGISTRY_DATABASE_PATH", db.to_str().expect("utf-8 path"));
                }
            }
        }
        env
    }

    /// Empties the registry's storage (blobs and metadata) while it is stopped, as if it
    /// had never been used.
    pub fn wipe_storage(&mut self) {
        assert!(self.child.is_none(), "wipe_storage needs a stopped server");
        std::fs::remove_dir_all(&self.root).expect("remove data dir");
        std::fs::create_dir_all(&self.root).expect("data dir");
        if let Some(t) = &self.s3_target {
            std::fs::remove_dir_all(&t.bucket_dir).expect("remove bucket dir");
            std::fs::create_dir_all(&t.bucket_dir).expect("bucket dir");
        }
        // The metadata too, when it is in PostgreSQL: a new, empty database of the same name.
        if let Some(server) = &self.postgres {
            server.psql("postgres", "DROP DATABASE ferry WITH (FORCE)");
            server.create_database("ferry");
        }
    }

    /// Path of the server's temporary directory (holds `data/`, the log and configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9` the server: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// Start the server again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn(self.addr);
        self.wait_ready();
    }

    fn spawn_on_free_port(&mut self) {
        // A port freed by the OS can be taken by someone else before the server binds it:
        // try a few.
        for _ in 0..5 {
            let addr = free_port();
            self.spawn(addr);
            if self.try_wait_ready() {
                return;
            }
            self.kill9();
        }
        panic!("registry did not start; log:\n{}", self.log());
    }

    fn spawn(&mut self, addr: SocketAddr) {
        self.addr = addr;
        self.host = addr.to_string();
        self.url = format!("http://{addr}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = match self.flavor {
            Flavor::Ferry => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
                cmd.arg("serve");
                // A config file written by `start_with_config`.
                let config = self.dir.path().join(FERRY_CONFIG);
                if config.exists() {
                    cmd.arg(config);
                }
                cmd
            }
            Flavor::Distribution => {
                let config = self.dir.path().join("distribution.yml");
                std::fs::write(&config, distribution_config(&self.root)).expect("config");
                let mut cmd = Command::new("docker-registry");
                cmd.arg("serve").arg(config);
                cmd
            }
        };
        cmd.env("REGISTRY_HTTP_ADDR", addr.to_string())
            .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
            .env("REGISTRY_LOG_LEVEL", "info");
        if self.s3_target.is_some() {
            // One storage driver only: two are a configuration error, as in Distribution.
            cmd.env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY");
        }
        for (k, v) in self.storage_env() {
            cmd.env(k, v);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn registry"));
    }

    fn try_wait_ready(&mut self) -> bool {
        wait_listening(self.child.as_mut(), self.addr)
    }

    fn wait_ready(&mut self) {
        assert!(
            self.try_wait_ready(),
            "registry did not become ready; log:\n{}",
            self.log()
        );
    }

    /// Whether the server process is still running (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stop with SIGTERM and wait for the exit status (graceful shutdown).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait")
    }

    /// Peak resident set size of the server so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // The test failed: what the servers said is gone with their temp dirs otherwise.
            eprintln!(
                "--- {:?} registry log (last 100 lines) ---\n{}",
                self.flavor,
                tail(&self.log(), 100)
            );
            if let Some(s3) = &self.s3 {
                eprintln!(
                    "--- s3s-fs log (last 100 lines) ---\n{}",
                    tail(&s3.log(), 100)
                );
            }
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a server spawned as `child` accepts connections on `addr` within
/// [`READY_TIMEOUT`]; `false` at once if it exits first (port taken, bad config, ...).
pub fn wait_listening(mut child: Option<&mut Child>, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(child) = child.as_mut()
            && let Ok(Some(_)) = child.try_wait()
        {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A loopback port the OS reports free right now.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn distribution_config(root: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n",
        root.display()
    )
}

/// Run a command, panic with its output if it fails, return its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    stdout_of_success(cmd, out)
}

/// The stdout of `cmd`'s finished run `out`; panic with its output if it failed.
pub fn stdout_of_success(cmd: &Command, out: std::process::Output) -> String {
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where a blob's bytes live in Distribution's layout: under the data directory on the
/// filesystem; on S3 the file s3s-fs keeps for the object
/// `<rootdirectory>/docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data` of the bucket.
pub fn blob_data_path(reg: &TestRegistry, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest has an algorithm");
    reg.storage_root()
        .join("docker/registry/v2/blobs")
        .join(alg)
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Every regular file below `dir` (relative path → size); none if `dir` does not exist.
pub fn files_under(dir: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                walk(base, &entry.path(), out);
            } else if ty.is_file() {
                let size = entry.metadata().unwrap().len();
                out.insert(entry.path().strip_prefix(base).unwrap().to_path_buf(), size);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Waits until the Unix second has changed since the call: everything done before the call
/// is then strictly older than a `--grace 0s` collector's cutoff. At most one second.
pub async fn next_second() {
    let start = unix_now().as_secs();
    while unix_now().as_secs() <= start {
        let left = Duration::from_secs(1) - Duration::from_nanos(unix_now().subsec_nanos() as u64);
        tokio::time::sleep(left + Duration::from_millis(5)).await;
    }
}

/// Waits until the Unix second is at least `second`.
pub async fn until_second(second: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while unix_now().as_secs() < second {
        assert!(Instant::now() < deadline, "clock did not reach {second}");
        let left = Duration::from_secs(1) - Duration::from_nanos(unix_now().subsec_nanos() as u64);
        tokio::time::sleep(left + Duration::from_millis(5)).await;
    }
}

/// `ferry-gc <args>` over `reg`'s data (its storage settings and overrides): its output.
pub fn ferry_gc(reg: &TestRegistry, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry-gc"));
    cmd.args(args);
    for (k, v) in reg.storage_env().into_iter().chain(reg.env.iter().cloned()) {
        cmd.env(k, v);
    }
    cli::run_within(&mut cmd, Duration::from_secs(60))
}

/// An htpasswd line as `htpasswd -Bbn` writes it (`$2y$`, a low cost to keep tests fast).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash(password, 4).expect("bcrypt");
    format!("{user}:{}\n", hash.replacen("$2b$", "$2y$", 1))
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Lines of a reader, for following a process's output.
pub fn lines(r: impl std::io::Read) -> impl Iterator<Item = String> {
    BufReader::new(r).lines().map_while(Result::ok)
}

impl TestRegistry {
    /// A registry of `flavor` over an existing data directory `root` (for example one
    /// another registry wrote and was stopped on), on the filesystem whatever
    /// `FERRY_TEST_STORAGE` says. Only the log and config live in this handle's own
    /// temporary directory: whoever owns `root` must keep it alive longer.
    pub fn start_on(flavor: Flavor, root: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_full(flavor, dir, root.to_path_buf(), env, None, None)
    }
}

/// Runs `ferry serve` with exactly `env` as its `REGISTRY_*` settings (plus a free
/// address) and waits, at most 60 s, for it to exit; returns the exit status and what it
/// printed. A server still running then is killed and the test fails: it should have
/// refused to start.
pub fn serve_expecting_exit(env: &[(String, String)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("serve");
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("REGISTRY_HTTP_ADDR", free_port().to_string())
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .env("REGISTRY_LOG_LEVEL", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log);
    let mut child = cmd.spawn().expect("spawn ferry serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (
                status,
                std::fs::read_to_string(&log_path).unwrap_or_default(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferry serve was still running after 60 s instead of refusing to start; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ferry <args>` with the environment the registry was started with (its storage
/// settings and extra overrides), as another process on the same data runs.
impl TestRegistry {
    pub fn ferry_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(args)
            .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
            .env("REGISTRY_LOG_LEVEL", "info")
            .stdin(Stdio::null());
        if self.s3_target.is_some() {
            cmd.env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY");
        }
        for (k, v) in self.storage_env().into_iter().chain(self.env.clone()) {
            cmd.env(k, v);
        }
        cmd
    }
}

// ---------------------------------------------------------------------------------------
// Storage backends
// ---------------------------------------------------------------------------------------

/// The region Ferry is configured with on S3 (s3s-fs accepts any).
pub const S3_REGION: &str = "us-east-1";
/// The bucket a registry started under `FERRY_TEST_STORAGE=s3` uses on its own server.
pub const DEFAULT_BUCKET: &str = "ferry";

/// Where Ferry-flavored registries keep their blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `storage.filesystem.rootdirectory` (the default).
    Filesystem,
    /// `storage.s3` on an [`S3Server`] each registry owns.
    S3,
}

/// The storage the suite runs on: S3 when `FERRY_TEST_STORAGE=s3`, else the filesystem.
pub fn storage() -> Storage {
    match std::env::var("FERRY_TEST_STORAGE").as_deref() {
        Ok("s3") => Storage::S3,
        Ok("filesystem") | Ok("") | Err(_) => Storage::Filesystem,
        Ok(other) => panic!("FERRY_TEST_STORAGE={other}: expected `filesystem` or `s3`"),
    }
}

/// Where Ferry-flavored registries keep their metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metadata {
    /// SQLite under the data directory (the default).
    Sqlite,
    /// PostgreSQL on a server each registry owns.
    Postgres,
}

/// The metadata database the suite runs on: PostgreSQL when `FERRY_TEST_METADATA=postgres`,
/// else SQLite.
pub fn metadata() -> Metadata {
    match std::env::var("FERRY_TEST_METADATA").as_deref() {
        Ok("postgres") => Metadata::Postgres,
        Ok("sqlite") | Ok("") | Err(_) => Metadata::Sqlite,
        Ok(other) => panic!("FERRY_TEST_METADATA={other}: expected `sqlite` or `postgres`"),
    }
}

/// Prints `SKIP: <reason>` and returns true when the suite runs on S3: for the few tests
/// that only make sense on the filesystem. Use as `if skip_on_s3("...") { return; }`.
pub fn skip_on_s3(reason: &str) -> bool {
    if storage() == Storage::S3 {
        eprintln!("SKIP: {reason} (FERRY_TEST_STORAGE=s3)");
        true
    } else {
        false
    }
}

/// A bucket of an [`S3Server`], as a registry is configured with it.
#[derive(Clone, Debug)]
pub struct S3Target {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// The bucket's directory in the server's store: object `<key>` is the file
    /// `<bucket_dir>/<key>`.
    pub bucket_dir: PathBuf,
}

/// An S3 server (`s3s-fs`, which checks request signatures) on `127.0.0.1:<random port>`
/// over a temporary directory; killed when the handle drops. A bucket is a directory of
/// the store ([`S3Server::bucket_dir`]), an object a file below it.
pub struct S3Server {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    log_path: PathBuf,
}

impl S3Server {
    /// A running server with an empty store holding the bucket [`DEFAULT_BUCKET`].
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("s3s-fs.log");
        let nonce = hex::encode(uuid::Uuid::new_v4().as_bytes());
        let mut me = S3Server {
            addr: "127.0.0.1:0".parse().unwrap(),
            endpoint: String::new(),
            access_key: format!("FERRYTEST{}", &nonce[..11].to_uppercase()),
            secret_key: nonce,
            dir,
            child: None,
            log_path,
        };
        std::fs::create_dir_all(me.store_dir()).expect("store dir");
        me.create_bucket(DEFAULT_BUCKET);
        for _ in 0..5 {
            me.addr = free_port();
            me.endpoint = format!("http://{}", me.addr);
            me.spawn();
            if me.try_wait_ready() {
                return me;
            }
            me.stop();
        }
        panic!("s3s-fs did not start; log:\n{}", me.log());
    }

    /// The server's root directory (`s3s-fs <ROOT>`): one directory per bucket, and
    /// s3s-fs's own hidden files (metadata, multipart parts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The directory of `bucket` (which may not exist yet).
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.store_dir().join(bucket)
    }

    /// Creates `bucket` (an empty directory) if it does not exist; returns its directory.
    pub fn create_bucket(&self, bucket: &str) -> PathBuf {
        let dir = self.bucket_dir(bucket);
        std::fs::create_dir_all(&dir).expect("bucket dir");
        dir
    }

    /// `bucket` (created if missing) as a registry is configured with it.
    pub fn target(&self, bucket: &str) -> S3Target {
        S3Target {
            endpoint: self.endpoint.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            bucket: bucket.to_string(),
            bucket_dir: self.create_bucket(bucket),
        }
    }

    /// Files s3s-fs keeps for multipart uploads not yet completed or aborted, in its root
    /// directory: the parts (`.upload_id-<id>.part-<n>`), the upload records
    /// (`.upload-<id>.json`) and their metadata (`.bucket-<b>.object-<k>.upload-<id>...`).
    pub fn multipart_staging(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.store_dir())
            .expect("store dir")
            .map(|e| e.expect("dir entry"))
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(".upload_id-") || name.contains(".upload-")
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Everything s3s-fs logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (SIGKILL, by its process id); the store stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store; returns once it accepts
    /// connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is already running");
        self.spawn();
        assert!(
            self.try_wait_ready(),
            "s3s-fs did not start again on {}; log:\n{}",
            self.addr,
            self.log()
        );
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = Command::new(s3s_fs_binary());
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--access-key")
            .arg(&self.access_key)
            .arg("--secret-key")
            .arg(&self.secret_key)
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "s3s_fs=warn,s3s=warn");
        }
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        );
    }

    fn try_wait_ready(&mut self) -> bool {
        wait_listening(self.child.as_mut(), self.addr)
    }
}

impl Default for S3Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `s3s-fs` executable: on PATH, else in cargo's bin directory (where
/// `cargo install` puts it; tests/run.sh installs it).
fn s3s_fs_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs is not installed: run tests/run.sh, which installs it \
                 (cargo install s3s-fs@0.14.1 --locked --features binary)"
            )
        })
}
