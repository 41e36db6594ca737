//! Shared test harness: start a Ferry (or a reference Distribution) on a random loopback
//! port with its own temporary data directory, and stop it when the handle drops.
#![allow(dead_code)]

pub mod cli;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A registry process on `127.0.0.1:<random port>` over a temporary data directory.
pub struct TestRegistry {
    pub flavor: Flavor,
    pub addr: SocketAddr,
    /// `host:port`, as clients name the registry (`127.0.0.1:PORT`).
    pub host: String,
    /// `http://host:port`.
    pub url: String,
    /// Root of the data directory (`storage.filesystem.rootdirectory`).
    pub root: PathBuf,
    /// Extra `REGISTRY_*` environment overrides given at start, reused by `restart`.
    pub env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Everything the server printed (stdout and stderr), collected in the background.
    log_path: PathBuf,
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
        Self::start_in(flavor, dir, root, env)
    }

    /// A registry of `flavor` over the data directory `root`, with its log and configs in
    /// `dir`, started on a free port.
    fn start_in(
        flavor: Flavor,
        dir: tempfile::TempDir,
        root: PathBuf,
        env: &[(&str, &str)],
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
        };
        me.spawn_on_free_port();
        me
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
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &self.root)
            .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
            .env("REGISTRY_LOG_LEVEL", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn registry"));
    }

    fn try_wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false; // exited (port taken, bad config, ...)
                }
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_ready(&mut self) {
        assert!(
            self.try_wait_ready(),
            "registry did not become ready; log:\n{}",
            self.log()
        );
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
    }
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

/// Lines of a reader, for following a process's output.
pub fn lines(r: impl std::io::Read) -> impl Iterator<Item = String> {
    BufReader::new(r).lines().map_while(Result::ok)
}

impl TestRegistry {
    /// A registry of `flavor` over an existing data directory `root` (for example one
    /// another registry wrote and was stopped on). Only the log and config live in this
    /// handle's own temporary directory: whoever owns `root` must keep it alive longer.
    pub fn start_on(flavor: Flavor, root: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(flavor, dir, root.to_path_buf(), env)
    }
}
