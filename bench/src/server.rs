//! Starting, stopping and observing the two registries under test.

use crate::auth::ServerAuth;
use crate::tls::Tls;
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ferry,
    Distribution,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ferry => "Ferry",
            Kind::Distribution => "Distribution",
        }
    }
}

/// Where a registry keeps its blobs.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A fresh data directory.
    Fs,
    /// A bucket on a local S3 server.
    S3(S3Bucket),
}

#[derive(Clone, Debug)]
pub struct S3Bucket {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// `storage.s3.chunksize` in bytes; None leaves the registry's default.
    pub chunk_size: Option<u64>,
    /// `storage.s3.multipartcopythresholdsize` in bytes; None leaves the default.
    pub copy_threshold: Option<u64>,
    /// Directory holding the bucket's objects (for the size at the end), if known.
    pub bucket_dir: Option<PathBuf>,
}

#[allow(dead_code)]
pub struct Server {
    pub kind: Kind,
    pub base: String,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

/// Ferry's `tags.maxtags` (default 1000, which caps `n` too): above the
/// 5,000 tags of the catalog setup.
const TAGS_MAX: &str = "10000";

pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Spawns `cmd` (output to `log_path`, killed with SIGTERM if the bench dies)
/// and waits until `addr` accepts connections.
pub fn spawn_listening(mut cmd: Command, what: &str, addr: &str, log_path: &Path) -> Result<Child> {
    let log = std::fs::File::create(log_path)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // If the bench tool dies, take the server down with it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {what} ({:?})", cmd.get_program()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            bail!("{what} exited during startup ({status}): {tail}");
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not accept connections on {addr} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    /// Starts `kind` on `storage`, with access control when `auth` is set
    /// (open registry otherwise, as before).
    /// `env`: extra environment variables for the server process. With `tls`, HTTPS.
    pub fn start(
        kind: Kind,
        bin: &str,
        dir: &Path,
        storage: &Storage,
        auth: Option<&ServerAuth>,
        tls: Option<&Tls>,
        env: &[(&str, &str)],
    ) -> Result<Server> {
        std::fs::create_dir_all(dir)?;
        let data_dir = match storage {
            Storage::Fs => dir.join("data"),
            Storage::S3(b) => b.bucket_dir.clone().unwrap_or(dir.to_path_buf()),
        };
        if let Storage::Fs = storage {
            std::fs::create_dir_all(&data_dir)?;
        }
        let log_path = dir.join("server.log");
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        match (kind, storage) {
            (Kind::Ferry, Storage::Fs) => {
                cmd.arg("serve")
                    .env("REGISTRY_HTTP_ADDR", &addr)
                    .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data_dir)
                    .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
                    .env("REGISTRY_LOG_LEVEL", "warn")
                    // One tags/list answer without `n` carries every tag, as
                    // Distribution 2.8's does (it has no such limit).
                    .env("REGISTRY_TAGS_MAXTAGS", TAGS_MAX);
            }
            (Kind::Ferry, Storage::S3(b)) => {
                // Not REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: two drivers
                // are a configuration error. The metadata database, which
                // would otherwise go under the (unused) data directory, goes
                // into this server's directory.
                cmd.arg("serve")
                    .env("REGISTRY_HTTP_ADDR", &addr)
                    .env("REGISTRY_STORAGE_S3_BUCKET", &b.bucket)
                    .env("REGISTRY_STORAGE_S3_REGIONENDPOINT", &b.endpoint)
                    .env("REGISTRY_STORAGE_S3_REGION", "us-east-1")
                    .env("REGISTRY_STORAGE_S3_ACCESSKEY", &b.access_key)
                    .env("REGISTRY_STORAGE_S3_SECRETKEY", &b.secret_key)
                    .env("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true")
                    .env("REGISTRY_DATABASE_PATH", dir.join("metadata.db"))
                    .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
                    .env("REGISTRY_LOG_LEVEL", "warn")
                    .env("REGISTRY_TAGS_MAXTAGS", TAGS_MAX);
                if let Some(c) = b.chunk_size {
                    cmd.env("REGISTRY_STORAGE_S3_CHUNKSIZE", c.to_string());
                }
                if let Some(c) = b.copy_threshold {
                    cmd.env(
                        "REGISTRY_STORAGE_S3_MULTIPARTCOPYTHRESHOLDSIZE",
                        c.to_string(),
                    );
                }
            }
            (Kind::Distribution, _) => {
                // The registry:2 image's stock config (inmemory blob descriptor
                // cache), minus auth/health, on loopback, with upload purging
                // off so no background sweep runs during a measurement.
                let driver = match storage {
                    Storage::Fs => {
                        format!("  filesystem:\n    rootdirectory: {}\n", data_dir.display())
                    }
                    // Blobs are served through the registry (as Ferry does by
                    // default), not redirected to the S3 server.
                    Storage::S3(b) => format!(
                        "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: us-east-1\n    regionendpoint: {}\n    \
                         bucket: {}\n    secure: false\n    v4auth: true\n    forcepathstyle: true\n{}\
                         \x20 redirect:\n    disable: true\n",
                        b.access_key,
                        b.secret_key,
                        b.endpoint,
                        b.bucket,
                        b.chunk_size
                            .map(|c| format!("    chunksize: {c}\n"))
                            .unwrap_or_default()
                            + &b.copy_threshold
                                .map(|c| format!("    multipartcopythresholdsize: {c}\n"))
                                .unwrap_or_default()
                    ),
                };
                let auth_yaml = auth.map(|a| a.distribution_yaml()).unwrap_or_default();
                let tls_yaml = tls
                    .map(|t| {
                        format!(
                            "  tls:\n    certificate: {}\n    key: {}\n",
                            t.certificate.display(),
                            t.key.display()
                        )
                    })
                    .unwrap_or_default();
                let cfg = dir.join("config.yml");
                std::fs::write(
                    &cfg,
                    format!(
                        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                         storage:\n{driver}  delete:\n    enabled: true\n\
                         \x20 cache:\n    blobdescriptor: inmemory\n\
                         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
                         http:\n  addr: {addr}\n  secret: ferry-bench-secret\n{tls_yaml}{auth_yaml}"
                    ),
                )?;
                cmd.arg("serve").arg(&cfg);
                // Keep the environment from overriding our config.
                for (k, _) in std::env::vars() {
                    if k.starts_with("REGISTRY_") {
                        cmd.env_remove(k);
                    }
                }
                // Distribution's S3 driver (aws-sdk-go) panics on an
                // AWS_CA_BUNDLE it cannot use; it talks plain HTTP here anyway.
                cmd.env_remove("AWS_CA_BUNDLE");
            }
        }
        if let (Kind::Ferry, Some(a)) = (kind, auth) {
            for (k, v) in a.ferry_env() {
                cmd.env(k, v);
            }
        }
        if let (Kind::Ferry, Some(t)) = (kind, tls) {
            cmd.env("REGISTRY_HTTP_TLS_CERTIFICATE", &t.certificate)
                .env("REGISTRY_HTTP_TLS_KEY", &t.key);
        }
        cmd.envs(env.iter().copied());
        let child = spawn_listening(cmd, kind.label(), &addr, &log_path)?;
        let pid = child.id();
        Ok(Server {
            kind,
            base: format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }),
            pid,
            data_dir,
            log_path,
            child: Some(child),
        })
    }

    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Only ever signals our own child.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a running process has a file whose path contains `needle` mapped
/// (e.g. a library loaded with LD_PRELOAD), from /proc/<pid>/maps.
pub fn maps_contain(pid: u32, needle: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().any(|l| l.contains(needle)))
        .unwrap_or(false)
}

/// SIGTERM to our own child (by its PID), up to 10 s to exit, then SIGKILL; reaps it.
pub fn stop_child(mut child: Child) {
    if let Ok(None) = child.try_wait() {
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm; utime and stime are fields 14, 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tck)
}

/// Resident set size in KiB, from /proc/<pid>/status VmRSS.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            return v.trim().trim_end_matches("kB").trim().parse().ok();
        }
    }
    None
}

/// Samples a server's VmRSS every 5 ms on a background thread while a workload
/// runs; CPU time is the utime+stime delta between start and finish.
pub struct Sampler {
    pid: u32,
    cpu0: f64,
    /// The storage backend process (S3 server), whose CPU is measured too.
    backend: Option<(u32, f64)>,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub peak_rss_mib: f64,
    pub cpu_s: f64,
    pub backend_cpu_s: Option<f64>,
}

impl Sampler {
    pub fn start(pid: u32, backend: Option<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let (s2, p2) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                if let Some(r) = rss_kib(pid) {
                    p2.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let backend = backend.map(|b| (b, cpu_seconds(b).unwrap_or(0.0)));
        Sampler {
            pid,
            cpu0: cpu_seconds(pid).unwrap_or(0.0),
            backend,
            stop,
            peak,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Some(r) = rss_kib(self.pid) {
            self.peak.fetch_max(r, Ordering::Relaxed);
        }
        let cpu1 = cpu_seconds(self.pid).unwrap_or(self.cpu0);
        let backend_cpu_s = self
            .backend
            .map(|(b, c0)| cpu_seconds(b).unwrap_or(c0) - c0);
        Usage {
            peak_rss_mib: self.peak.load(Ordering::Relaxed) as f64 / 1024.0,
            cpu_s: cpu1 - self.cpu0,
            backend_cpu_s,
        }
    }
}

/// (busy, total) jiffies over all CPUs from /proc/stat; steal counts as busy.
pub fn host_cpu() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return (0, 0);
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4]; // idle + iowait
    (total - idle, total)
}

pub fn host_busy_pct(a: (u64, u64), b: (u64, u64)) -> f64 {
    let (db, dt) = (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1));
    if dt == 0 {
        0.0
    } else {
        db as f64 * 100.0 / dt as f64
    }
}
