//! ferry-bench: runs the same workloads against Ferry and Distribution
//! (registry:2), alternating A/B/A/B, and prints each figure for both with the
//! ratio. See bench/README.md.

mod auth;
mod ceilings;
mod client;
mod contend;
mod docker;
mod image;
mod mirror;
mod prng;
mod rate;
mod report;
mod s3;
mod server;
mod tls;

use anyhow::{Context, Result, bail};
use auth::AuthMode;
use bytes::Bytes;
use clap::Parser;
use client::{ACCEPT_MANIFESTS, Reg};
use prng::{BlobSpec, seed_of};
use report::{Layout, Ratio, Row, Target, UsageRow};
use reqwest::Method;
use s3::{Backend, BackendKind};
use server::{Kind, S3Bucket, Sampler, Server, Storage};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[derive(Parser, Debug)]
#[command(about = "A/B benchmark: Ferry vs Distribution (registry:2)")]
struct Args {
    /// Everything at a tenth of the size (finishes in under three minutes).
    #[arg(long)]
    quick: bool,
    /// Storage backend to benchmark: fs (default: Ferry vs Distribution on
    /// the filesystem) or s3 (Ferry on a local S3 server, s3s-fs, next to
    /// Ferry on the filesystem; default workloads push,pull).
    #[arg(long, default_value = "fs")]
    storage: String,
    /// S3 mode: one Ferry-on-s3s-fs column per part size, in MiB
    /// (storage.s3.chunksize); the first is compared with the filesystem.
    #[arg(long, default_value = "5,16", value_delimiter = ',')]
    s3_chunk_sizes: Vec<u64>,
    /// S3 mode: leave out the column that copies each blob to its digest key
    /// with one CopyObject (multipartcopythresholdsize 5 GiB) instead of
    /// 32 MiB UploadPartCopy requests.
    #[arg(long)]
    no_s3_single_copy: bool,
    /// Size of the big blobs (push, pull, push4) in MiB. Default: 1024 (fs)
    /// or 256 (s3); a tenth of that with --quick, at least 64 MiB for s3 so
    /// blobs still take the multipart copy path (above 32 MiB).
    #[arg(long)]
    blob_mib: Option<u64>,
    /// Path to the s3s-fs binary (cargo install s3s-fs --features binary).
    #[arg(long, default_value = "s3s-fs")]
    s3s_fs_bin: String,
    /// S3 mode: also run Ferry and Distribution against moto_server
    /// (pip install 'moto[server]'), the one S3 server here Distribution's
    /// S3 driver works with.
    #[arg(long)]
    moto: bool,
    /// Path to the moto_server binary.
    #[arg(long, default_value = "moto_server")]
    moto_bin: String,
    /// Path to the ferry binary.
    #[arg(long, default_value = "target/release/ferry")]
    ferry_bin: String,
    /// Path to the Distribution binary.
    #[arg(long, default_value = "docker-registry")]
    distribution_bin: String,
    /// Only run against one registry: ferry or distribution.
    #[arg(long)]
    only: Option<String>,
    /// A/B repetitions per workload (A/B/A/B = 2).
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Comma-separated subset of workloads:
    /// push,pull,small,manifest,catalog,rate,skopeo,docker,push4,contend
    /// (default all; docker is skipped with a note when the engine is not
    /// usable), or
    /// mirror alone (opt-in: pull-through Ferry vs Distribution proxy vs direct).
    #[arg(long)]
    workloads: Option<String>,
    /// Directory for temporary data (must be a real disk, not tmpfs).
    #[arg(long, default_value = "bench/.work")]
    workdir: PathBuf,
    /// Where to write the results table.
    #[arg(long, default_value = "bench/results/latest.md")]
    out: PathBuf,
    /// README whose results section is replaced after a full (non --quick) run.
    #[arg(long)]
    readme: Option<PathBuf>,
    /// Free-text description of the Ferry build (e.g. git commit), for the report.
    #[arg(long, default_value = "")]
    ferry_version: String,
    /// Keep the temporary data directory (for debugging).
    #[arg(long)]
    keep: bool,
    /// Access control, comma-separated: none (open registries, the default),
    /// htpasswd (Basic on every request), token (Bearer JWT on every
    /// request). Each mode gets its own Ferry and Distribution columns,
    /// alternated within every repetition, so `--auth none,htpasswd,token`
    /// measures the cost of access control in one run. Filesystem storage
    /// only; without --workloads, runs the manifest workload only.
    #[arg(long, default_value = "none", value_delimiter = ',')]
    auth: Vec<String>,
    /// Leave out the "Ferry no-fsync" column: Ferry under eatmydata
    /// (LD_PRELOAD=libeatmydata.so, fsync a no-op), run for the blob push
    /// workloads only, as the reference "a registry that does not fsync".
    #[arg(long)]
    no_nosync_reference: bool,
    /// Both registries serve HTTPS, with a self-signed certificate the bench makes with
    /// openssl (its client trusts it; wrk and h2load do not check). Over TLS Distribution
    /// speaks HTTP/2, so the rate workload's HTTP/2 rows compare both registries.
    /// Filesystem storage, no --auth; workloads push, pull, small, manifest, catalog, rate,
    /// push4 (default manifest,rate).
    #[arg(long)]
    tls: bool,
}

/// The distinct `--auth` modes, in the order given.
fn auth_modes(args: &Args) -> Result<Vec<AuthMode>> {
    let mut modes = Vec::new();
    for a in &args.auth {
        let m = AuthMode::parse(a)?;
        if !modes.contains(&m) {
            modes.push(m);
        }
    }
    if modes.is_empty() {
        modes.push(AuthMode::None);
    }
    Ok(modes)
}

/// The repositories the wanted workloads touch, for the token's `access`
/// claim (only those: the manifest workload's token names one repository,
/// like the token docker fetches for one pull, so its size is typical).
fn token_repos(args: &Args) -> Vec<String> {
    let mut v = Vec::new();
    if wanted(args, "manifest") {
        v.push("bench/hot".to_string());
    }
    for rep in 0..args.reps {
        if wanted(args, "push") || wanted(args, "pull") {
            for mode in ["monolithic", "chunked", "streamed"] {
                v.push(format!("bench/push-{mode}-{rep}"));
            }
        }
        if wanted(args, "small") {
            v.push(format!("bench/small-{rep}"));
        }
        if wanted(args, "push4") {
            for i in 0..4 {
                v.push(format!("bench/push4-{rep}-{i}"));
            }
        }
        if wanted(args, "contend") {
            for i in 0..4 {
                v.push(format!("bench/contend-{rep}-{i}"));
            }
        }
    }
    v
}

struct Sizes {
    big: u64,
    chunk: usize,
    small_count: usize,
    manifest_reqs: usize,
    repos: usize,
    tags: usize,
    /// The real clients' image (skopeo, docker): one random file per layer.
    layers: [u64; 5],
    /// MiB written by each dd run of the contended-disk workload.
    contend_mib: u64,
    ceil_sha: u64,
    ceil_disk: u64,
    ceil_loop: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                big: GIB / 10 / MIB * MIB,
                chunk: 8 << 20,
                small_count: 200,
                manifest_reqs: 2_000,
                repos: 1_000,
                tags: 500,
                layers: [48, 32, 16, 8, 4].map(|m| m * MIB / 10),
                contend_mib: 256,
                ceil_sha: 256 * MIB,
                ceil_disk: 256 * MIB,
                ceil_loop: GIB,
            }
        } else {
            Sizes {
                big: GIB,
                chunk: 8 << 20,
                small_count: 2_000,
                manifest_reqs: 20_000,
                repos: 10_000,
                tags: 5_000,
                layers: [48, 32, 16, 8, 4].map(|m| m * MIB),
                contend_mib: 1024,
                ceil_sha: GIB,
                ceil_disk: GIB,
                ceil_loop: 4 * GIB,
            }
        }
    }

    fn big_label(&self) -> String {
        if self.big >= GIB {
            format!("{} GiB", self.big / GIB)
        } else {
            format!("{} MiB", self.big / MIB)
        }
    }
}

/// One registry under test.
struct Target_ {
    kind: Kind,
    /// Column header.
    label: String,
    storage: Storage,
    /// Index into `Bench::backends` of the S3 server this one stores into.
    backend: Option<usize>,
    server: Option<Server>,
    reg: Option<Reg>,
    /// Why it is unavailable (failed to start, died).
    down: Option<String>,
    /// Ferry without fsync (the reference column): runs only while
    /// `Bench::nosync_now` is set, i.e. for the blob push workloads.
    nosync: bool,
}

struct Bench {
    targets: Vec<Target_>,
    backends: Vec<Backend>,
    layout: Layout,
    rows: Vec<Row>,
    usage: Vec<UsageRow>,
    reps: usize,
    notes: Vec<String>,
    /// Run the no-fsync reference column too (the blob push workloads).
    nosync_now: bool,
}

type Metrics = Vec<(&'static str, f64)>;

impl Bench {
    fn row(
        &mut self,
        id: &str,
        workload: &str,
        metric: &str,
        unit: &str,
        higher_better: bool,
        decimals: usize,
    ) -> &mut Row {
        self.rows.push(Row {
            id: id.into(),
            workload: workload.into(),
            metric: metric.into(),
            unit: unit.into(),
            higher_better,
            samples: vec![vec![]; self.targets.len()],
            errors: vec![None; self.targets.len()],
            target: Target::None,
            ceiling: None,
            decimals,
        });
        self.rows.last_mut().unwrap()
    }

    /// Row `{id}-cpug`: the server's CPU seconds per GiB the workload moved,
    /// filled from the `{id}-bytes` metric (see `ab`).
    fn cpug_row(&mut self, id: &str, workload: &str, what: &str) {
        self.row(
            &format!("{id}-cpug"),
            workload,
            &format!("{what}: server CPU per GiB moved"),
            "CPU-s/GiB",
            false,
            2,
        );
    }

    /// Row `id` takes the peak RSS the sampler recorded during workload `key`.
    fn rss_from_sampler(&mut self, key: &str, id: &str) {
        let u = self.usage.iter().find(|u| u.key == key).cloned();
        if let (Some(u), Some(r)) = (u, self.row_mut(id)) {
            r.samples = u.rss;
        }
    }

    fn row_mut(&mut self, id: &str) -> Option<&mut Row> {
        self.rows.iter_mut().find(|r| r.id == id)
    }

    fn usage_mut(&mut self, key: &str) -> &mut UsageRow {
        if let Some(i) = self.usage.iter().position(|u| u.key == key) {
            return &mut self.usage[i];
        }
        self.usage.push(UsageRow::new(key, self.targets.len()));
        self.usage.last_mut().unwrap()
    }

    fn mark_error(&mut self, k: usize, row_ids: &[&str], e: &anyhow::Error) {
        let msg = format!("{e:#}");
        eprintln!("    {} error: {msg}", self.targets[k].label);
        for id in row_ids {
            if let Some(r) = self.row_mut(id) {
                r.errors[k].get_or_insert(msg.clone());
            }
        }
        let label = self.targets[k].label.clone();
        self.notes
            .push(format!("{label} {}: {msg}", row_ids.join("/")));
    }

    /// Column `k` takes part in the current workload.
    fn runs(&self, k: usize) -> bool {
        let t = &self.targets[k];
        t.down.is_none() && t.reg.is_some() && (!t.nosync || self.nosync_now)
    }

    fn check_alive(&mut self) {
        let mut dead = vec![None; self.backends.len()];
        for (i, be) in self.backends.iter_mut().enumerate() {
            if !be.alive() {
                dead[i] = Some(format!("{} exited: {}", be.kind.label(), be.log_tail(3)));
            }
        }
        for t in &mut self.targets {
            if t.down.is_none()
                && let Some(msg) = t.backend.and_then(|i| dead[i].clone())
            {
                eprintln!("  !! {}: {msg}", t.label);
                t.down = Some(msg);
            }
            if t.down.is_none()
                && let Some(s) = &mut t.server
                && !s.alive()
            {
                let log = std::fs::read_to_string(&s.log_path).unwrap_or_default();
                let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                t.down = Some(format!("server exited: {tail}"));
                eprintln!("  !! {} is no longer running: {tail}", t.label);
            }
        }
    }

    /// Runs `f` for each rep against each available registry, A/B/A/B,
    /// sampling the server's RSS and CPU and recording the returned metrics
    /// into the rows with those ids. A registry that errors is not retried.
    // `k` indexes several per-column vectors while `self` is borrowed mutably.
    #[allow(clippy::needless_range_loop)]
    async fn ab<F, Fut>(&mut self, usage_key: &str, row_ids: &[&str], f: F)
    where
        F: Fn(Reg, usize) -> Fut,
        Fut: Future<Output = Result<Metrics>>,
    {
        let mut failed = vec![false; self.targets.len()];
        for rep in 0..self.reps {
            for k in 0..self.targets.len() {
                self.check_alive();
                if failed[k] || !self.runs(k) {
                    continue;
                }
                let reg = self.targets[k].reg.clone().unwrap();
                let pid = self.targets[k].server.as_ref().unwrap().pid;
                let backend_pid = self.targets[k].backend.map(|i| self.backends[i].pid);
                unsafe { libc::sync() };
                let sampler = Sampler::start(pid, backend_pid);
                let self_cpu0 = server::cpu_seconds(std::process::id()).unwrap_or(0.0);
                let host0 = server::host_cpu();
                let t = Instant::now();
                let res = f(reg, rep).await;
                let usage = sampler.finish();
                let self_cpu = server::cpu_seconds(std::process::id()).unwrap_or(0.0) - self_cpu0;
                let busy = server::host_busy_pct(host0, server::host_cpu());
                match res {
                    // Not applicable to this registry: the row says n/a.
                    Ok(metrics) if metrics.is_empty() => {
                        eprintln!("    rep {rep} {:<12} n/a", self.targets[k].label);
                    }
                    Ok(metrics) => {
                        let desc: Vec<String> = metrics
                            .iter()
                            .map(|(id, v)| format!("{id}={}", report::fmt(*v, 2)))
                            .collect();
                        let backend = match (usage.backend_cpu_s, self.targets[k].backend) {
                            (Some(c), Some(i)) => {
                                format!(", {} CPU {c:.2} s", self.backends[i].kind.label())
                            }
                            _ => String::new(),
                        };
                        eprintln!(
                            "    rep {rep} {:<12} {}  [{:.1} s, server peak RSS {:.0} MiB, server CPU {:.2} s{backend}, bench client CPU {:.2} s, all cores {busy:.0} % busy]",
                            self.targets[k].label,
                            desc.join(" "),
                            t.elapsed().as_secs_f64(),
                            usage.peak_rss_mib,
                            usage.cpu_s,
                            self_cpu
                        );
                        for (id, v) in metrics {
                            if let Some(r) = self.row_mut(id) {
                                r.samples[k].push(v);
                            }
                            // A request count `x-reqs` gives row `x-cpu`: the
                            // server's CPU per request, in µs, which a busy
                            // machine disturbs less than the rate.
                            if let Some(prefix) = id.strip_suffix("-reqs")
                                && v > 0.0
                                && let Some(r) = self.row_mut(&format!("{prefix}-cpu"))
                            {
                                r.samples[k].push(usage.cpu_s * 1e6 / v);
                            }
                            // A byte count `x-bytes` gives row `x-cpug`: the
                            // server's CPU seconds per GiB moved, which shows
                            // efficiency even when the disk is the limit.
                            if let Some(prefix) = id.strip_suffix("-bytes")
                                && v > 0.0
                                && let Some(r) = self.row_mut(&format!("{prefix}-cpug"))
                            {
                                r.samples[k].push(usage.cpu_s * GIB as f64 / v);
                            }
                        }
                        let u = self.usage_mut(usage_key);
                        u.rss[k].push(usage.peak_rss_mib);
                        u.cpu[k].push(usage.cpu_s);
                        if let Some(c) = usage.backend_cpu_s {
                            u.backend_cpu[k].push(c);
                        }
                    }
                    Err(e) => {
                        failed[k] = true;
                        self.mark_error(k, row_ids, &e);
                    }
                }
            }
        }
    }

    /// Untimed per-registry setup; failures mark the given rows.
    // `k` indexes several per-column vectors while `self` is borrowed mutably.
    #[allow(clippy::needless_range_loop)]
    async fn setup<F, Fut>(&mut self, what: &str, row_ids: &[&str], f: F) -> Vec<bool>
    where
        F: Fn(Reg) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut ok = vec![false; self.targets.len()];
        for k in 0..self.targets.len() {
            self.check_alive();
            if !self.runs(k) {
                continue;
            }
            let t = Instant::now();
            match f(self.targets[k].reg.clone().unwrap()).await {
                Ok(()) => {
                    ok[k] = true;
                    eprintln!(
                        "    setup {what} on {}: {:.1} s",
                        self.targets[k].label,
                        t.elapsed().as_secs_f64()
                    );
                }
                Err(e) => self.mark_error(k, row_ids, &e.context(format!("setup {what}"))),
            }
        }
        ok
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Run `n` jobs over `conc` concurrent workers, bounded by `deadline`.
async fn par<F, Fut>(n: usize, conc: usize, deadline: Instant, f: F) -> Result<usize>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for _ in 0..conc {
        let (f, next, done) = (f.clone(), next.clone(), done.clone());
        hs.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() > deadline {
                    return Ok::<(), anyhow::Error>(());
                }
                f(i).await.with_context(|| format!("job {i}"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in hs {
        h.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

fn small_manifest(config: &str, config_len: usize, layer: &str, layer_len: usize) -> Bytes {
    Bytes::from(format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config}\",\"size\":{config_len}}},\
         \"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{layer}\",\"size\":{layer_len}}}]}}"
    ))
}

struct TinyImage {
    config: Bytes,
    config_digest: String,
    layer: Bytes,
    layer_digest: String,
    manifest: Bytes,
}

impl TinyImage {
    fn new(seed: u64) -> TinyImage {
        let layer = BlobSpec {
            seed,
            len: 1024,
            digest: String::new(),
        }
        .bytes();
        let layer_digest = prng::sha256_digest(&layer);
        let config = Bytes::from(format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{layer_digest}\"]}}}}"
        ));
        let config_digest = prng::sha256_digest(&config);
        let manifest = small_manifest(&config_digest, config.len(), &layer_digest, layer.len());
        TinyImage {
            config,
            config_digest,
            layer,
            layer_digest,
            manifest,
        }
    }

    async fn push(&self, reg: &Reg, repo: &str, tag: &str) -> Result<()> {
        reg.push_small(repo, &self.config_digest, self.config.clone())
            .await?;
        reg.push_small(repo, &self.layer_digest, self.layer.clone())
            .await?;
        reg.put_manifest(repo, tag, &self.manifest).await
    }
}

/// Runs `cmd` to completion within `timeout` (killed by its PID after it);
/// returns its standard output.
fn run_cmd(cmd: &mut std::process::Command, timeout: Duration) -> Result<String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {desc}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(_st) = child.try_wait()? {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "{desc} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .chars()
                        .take(500)
                        .collect::<String>()
                );
            }
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{desc} timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn run_cmd_async(mut cmd: std::process::Command, timeout: Duration) -> Result<String> {
    tokio::task::spawn_blocking(move || run_cmd(&mut cmd, timeout)).await?
}

/// Rate, median and p99 latency (ms), and number of requests made, of up to
/// `total` requests over `conc` connections.
async fn hammer(
    reg: Reg,
    conc: usize,
    total: usize,
    limit: Duration,
    method: Method,
    path: String,
    accept: Option<&'static str>,
) -> Result<(f64, f64, f64, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    // Warm the connections up.
    let mut warm = Vec::new();
    for _ in 0..conc {
        let (reg, m, p) = (reg.clone(), method.clone(), path.clone());
        warm.push(tokio::spawn(async move { reg.simple(m, &p, accept).await }));
    }
    for w in warm {
        let st = w.await??;
        if !st.is_success() {
            bail!("{method} {path}: HTTP {st}");
        }
    }
    let t = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..conc {
        let (reg, m, p, next) = (reg.clone(), method.clone(), path.clone(), next.clone());
        hs.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / conc + 1);
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= total || Instant::now() > deadline {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t0 = Instant::now();
                let st = reg.simple(m.clone(), &p, accept).await?;
                if !st.is_success() {
                    bail!("{m} {p}: HTTP {st}");
                }
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut all = Vec::new();
    for h in hs {
        all.extend(h.await??);
    }
    let secs = t.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| {
        all[((all.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(all.len() - 1)]
    };
    Ok((all.len() as f64 / secs, pct(0.50), pct(0.99), all.len()))
}

/// Untimed setup of the catalog workloads: `repos` repositories of one tiny
/// image (`cat/r00000`, ..., blobs cross-mounted) and `tags` tags on
/// `bench/tags`. Failures mark the rows `ids`.
async fn catalog_setup(b: &mut Bench, repos: usize, tags: usize, ids: &[&str]) {
    let img = Arc::new(TinyImage::new(seed_of(&[8])));
    let i2 = img.clone();
    b.setup(&format!("{repos} repos + {tags} tags"), ids, move |reg| {
        let img = i2.clone();
        async move {
            img.push(&reg, "cat/r00000", "v1").await?;
            let deadline = Instant::now() + Duration::from_secs(600);
            let (r2, i3) = (reg.clone(), img.clone());
            let done = par(repos - 1, 16, deadline, move |i| {
                let (reg, img) = (r2.clone(), i3.clone());
                async move {
                    let repo = format!("cat/r{:05}", i + 1);
                    reg.mount_or_push(&repo, "cat/r00000", &img.config_digest, &img.config)
                        .await?;
                    reg.mount_or_push(&repo, "cat/r00000", &img.layer_digest, &img.layer)
                        .await?;
                    reg.put_manifest(&repo, "v1", &img.manifest).await
                }
            })
            .await?;
            anyhow::ensure!(done == repos - 1, "setup timed out after {done} repos");
            img.push(&reg, "bench/tags", "t00000").await?;
            let (r2, i3) = (reg.clone(), img.clone());
            let done = par(tags - 1, 16, deadline, move |i| {
                let (reg, img) = (r2.clone(), i3.clone());
                async move {
                    reg.put_manifest("bench/tags", &format!("t{:05}", i + 1), &img.manifest)
                        .await
                }
            })
            .await?;
            anyhow::ensure!(done == tags - 1, "setup timed out after {done} tags");
            Ok(())
        }
    })
    .await;
}

/// Median wall time (ms) of up to `iters` listing walks, bounded by `budget`;
/// checks that each walk returns `expect` entries (at least, when `at_least`).
async fn time_listing(
    reg: &Reg,
    first: &str,
    key: &str,
    expect: usize,
    at_least: bool,
    iters: usize,
    budget: Duration,
) -> Result<f64> {
    let start = Instant::now();
    let mut times = Vec::new();
    let max_pages = expect / 50 + 100;
    for _ in 0..iters {
        let t = Instant::now();
        let (n, pages) = reg.walk_listing(first, key, max_pages).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if times.len() == 1 {
            eprintln!(
                "      {first}: {n} entries in {pages} page(s), {:.1} ms",
                times[0]
            );
        }
        if n < expect || (!at_least && n != expect) {
            bail!(
                "{first}: listed {n} entries, expected {}{expect}",
                if at_least { "≥ " } else { "" }
            );
        }
        if start.elapsed() > budget {
            break;
        }
    }
    Ok(report::median(&times))
}

fn machine_info(workdir: &Path) -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let sha_ni = cpuinfo.split_whitespace().any(|w| w == "sha_ni");
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or("?".into());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let os = read("/etc/os-release")
        .lines()
        .find(|l| l.starts_with("PRETTY_NAME="))
        .map(|l| {
            l.trim_start_matches("PRETTY_NAME=")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default();
    // Filesystem holding the work dir: longest matching mount point.
    let wd = std::fs::canonicalize(workdir).unwrap_or(workdir.to_path_buf());
    let mut best: Option<(String, String, String)> = None;
    for l in read("/proc/self/mounts").lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        if wd.starts_with(f[1])
            && best
                .as_ref()
                .map(|b| f[1].len() > b.1.len())
                .unwrap_or(true)
        {
            best = Some((f[0].into(), f[1].into(), f[2].into()));
        }
    }
    let disk = match best {
        Some((dev, mnt, fs)) => {
            let name = dev.trim_start_matches("/dev/");
            let rot = read(&format!("/sys/block/{name}/queue/rotational"));
            let size = read(&format!("/sys/block/{name}/size"))
                .trim()
                .parse::<f64>()
                .map(|s| format!(", {:.0} GiB", s * 512.0 / GIB as f64))
                .unwrap_or_default();
            let rot = match rot.trim() {
                "1" => ", reports rotational",
                "0" => ", non-rotational",
                _ => "",
            };
            format!("{dev} ({fs} on {mnt}{size}{rot})")
        }
        None => "?".into(),
    };
    vec![
        (
            "CPU".into(),
            format!(
                "{model}, {nproc} cores{}",
                if sha_ni { ", SHA-NI" } else { "" }
            ),
        ),
        ("Memory".into(), mem),
        ("Disk (work dir)".into(), disk),
        ("Kernel".into(), format!("Linux {kernel}")),
        ("OS".into(), os),
    ]
}

fn fs_type(p: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type as i64)
}

fn free_bytes(p: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Removes the run directory on exit (also on error or panic).
struct DirGuard(PathBuf, bool);
impl Drop for DirGuard {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    match args.storage.as_str() {
        "fs" => {
            if args.moto {
                bail!("--moto goes with --storage s3");
            }
        }
        "s3" => {
            if args.workloads.is_none() {
                args.workloads = Some("push,pull".into());
            }
            if args.s3_chunk_sizes.is_empty()
                || args
                    .s3_chunk_sizes
                    .iter()
                    .any(|&c| !(5..=5120).contains(&c))
            {
                bail!("--s3-chunk-sizes: part sizes are 5 to 5120 MiB");
            }
        }
        other => bail!("--storage {other}: expected fs or s3"),
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if wanted(&args, "mirror") && args.workloads.as_deref().map(str::trim) != Some("mirror") {
        bail!("--workloads mirror runs alone (with --storage fs, no --auth)");
    }
    let modes = auth_modes(&args)?;
    if modes != [AuthMode::None] {
        if args.storage != "fs" {
            bail!("--auth goes with --storage fs");
        }
        if args.workloads.is_none() {
            args.workloads = Some("manifest".into());
        }
        if wanted(&args, "skopeo") || wanted(&args, "docker") {
            bail!(
                "--auth: the skopeo and docker workloads run without credentials; leave them out"
            );
        }
        if wanted(&args, "rate") {
            bail!(
                "--auth: the rate workload's load generators run without credentials; leave it out"
            );
        }
        if modes.contains(&AuthMode::Token) && wanted(&args, "catalog") {
            bail!(
                "--auth token: the catalog workload's thousands of repositories do not fit in one token; leave it out"
            );
        }
    }
    if args.tls {
        if args.storage != "fs" || modes != [AuthMode::None] {
            bail!("--tls goes with --storage fs and no --auth");
        }
        if args.workloads.is_none() {
            args.workloads = Some("manifest,rate".into());
        }
        for w in ["skopeo", "docker", "contend", "mirror"] {
            if wanted(&args, w) {
                bail!("--tls: the {w} workload runs over plain HTTP only; leave it out");
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// Workloads that run only when named in `--workloads` (the mirror runs alone).
const OPT_IN: &[&str] = &["mirror"];

fn wanted(args: &Args, w: &str) -> bool {
    match &args.workloads {
        None => !OPT_IN.contains(&w),
        Some(list) => list.split(',').any(|x| x.trim() == w),
    }
}

async fn run(args: Args) -> Result<()> {
    let total_t = Instant::now();
    let mut sizes = Sizes::new(args.quick);
    if let Some(m) = args.blob_mib {
        sizes.big = m * MIB;
    } else if args.storage == "s3" {
        // s3s-fs copies a blob to its digest key at ~10-20 MB/s, so a full
        // run at 1 GiB per blob would take half an hour.
        sizes.big = if args.quick { 64 * MIB } else { 256 * MIB };
    }
    let started_at = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    let load_start = loadavg();
    std::fs::create_dir_all(&args.workdir)?;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    if fs_type(&args.workdir) == Some(TMPFS_MAGIC) {
        bail!(
            "{} is on tmpfs; point --workdir at a real disk",
            args.workdir.display()
        );
    }
    let run_dir = args.workdir.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let run_dir = std::fs::canonicalize(&run_dir)?;
    let _guard = DirGuard(run_dir.clone(), args.keep);

    if args.workloads.as_deref().map(str::trim) == Some("mirror") {
        let (_, _, md) = mirror::run(&mirror::Opts {
            ferry_bin: args.ferry_bin.clone(),
            distribution_bin: args.distribution_bin.clone(),
            quick: args.quick,
            reps: args.reps,
            dir: run_dir.join("mirror"),
        })
        .await?;
        let md = format!(
            "# ferry-bench mirror, {started_at}\n\nLoad average at start: {load_start}, at end: {}. Total {:.0} s.\n\n{md}",
            loadavg(),
            total_t.elapsed().as_secs_f64()
        );
        if let Some(d) = args.out.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&args.out, &md)?;
        println!("{md}");
        return Ok(());
    }
    let kinds: Vec<Kind> = match args.only.as_deref() {
        None => vec![Kind::Ferry, Kind::Distribution],
        Some("ferry") => vec![Kind::Ferry],
        Some("distribution") => vec![Kind::Distribution],
        Some(o) => bail!("--only {o}: expected ferry or distribution"),
    };
    let auths = auth_modes(&args)?;
    let plan = column_plan(&args, &auths);
    let selected = plan.iter().filter(|c| kinds.contains(&c.kind)).count();
    if selected == 0 {
        bail!(
            "--only {}: no such column with --storage {}",
            args.only.as_deref().unwrap_or(""),
            args.storage
        );
    }

    // Disk needed: every pushed GiB stays on disk (per registry), plus slack.
    let big_blobs = [("push", 3), ("push4", 4), ("contend", 4)]
        .iter()
        .filter(|(w, _)| wanted(&args, w))
        .map(|(_, n)| n)
        .sum::<u64>()
        .max(if wanted(&args, "pull") { 1 } else { 0 });
    let per_reg = sizes.big * big_blobs * args.reps as u64
        + sizes.small_count as u64 * 64 * 1024 * args.reps as u64
        + 512 * MIB;
    // The no-fsync reference column runs the three blob pushes only.
    let per_nosync = sizes.big * 3 * args.reps as u64 + 512 * MIB;
    let need = plan
        .iter()
        .filter(|c| kinds.contains(&c.kind))
        .map(|c| if c.nosync { per_nosync } else { per_reg })
        .sum::<u64>()
        + sizes.ceil_disk
        + 4 * GIB;
    if let Some(free) = free_bytes(&run_dir)
        && free < need
    {
        bail!(
            "need about {:.1} GiB free under {}, have {:.1} GiB",
            need as f64 / GIB as f64,
            run_dir.display(),
            free as f64 / GIB as f64
        );
    }

    eprintln!(
        "== ferry-bench ({} mode, {} reps, work dir {}, load average {load_start})",
        if args.quick { "quick" } else { "full" },
        args.reps,
        run_dir.display()
    );

    // ---- Ceilings -------------------------------------------------------
    eprintln!("== machine ceilings");
    let mut ceil = ceilings::Ceilings {
        sha256: ceilings::sha256_one_core(sizes.ceil_sha),
        ..Default::default()
    };
    eprintln!("  sha256 one core: {:.0} MB/s", ceil.sha256);
    ceil.prng = ceilings::prng_one_core(sizes.ceil_sha);
    eprintln!("  PRNG one core: {:.0} MB/s", ceil.prng);
    ceil.disk_bytes = sizes.ceil_disk;
    // The disk of a VM is noisy: median of three.
    let mut disk = Vec::new();
    for _ in 0..3 {
        disk.push(ceilings::disk_write(&run_dir, sizes.ceil_disk, true)?);
    }
    ceil.disk_write = report::median(&disk);
    let disk_samples = disk
        .iter()
        .map(|d| format!("{d:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "  synced sequential write ({} MiB + fsync, median of 3): {:.0} MB/s ({disk_samples})",
        sizes.ceil_disk / MIB,
        ceil.disk_write
    );
    // The same writes without the fsync: the bound of a registry that never
    // syncs (the no-fsync Ferry column).
    let mut disk_nosync = Vec::new();
    for _ in 0..3 {
        disk_nosync.push(ceilings::disk_write(&run_dir, sizes.ceil_disk, false)?);
    }
    ceil.disk_write_nosync = report::median(&disk_nosync);
    let disk_nosync_samples = join(&disk_nosync);
    eprintln!(
        "  unsynced sequential write ({} MiB, no fsync, median of 3): {:.0} MB/s ({disk_nosync_samples})",
        sizes.ceil_disk / MIB,
        ceil.disk_write_nosync
    );
    // And past the page cache, as Ferry writes uploads (where the filesystem allows it).
    let mut disk_direct = Vec::new();
    for _ in 0..3 {
        match ceilings::disk_write_direct(&run_dir, sizes.ceil_disk) {
            Ok(v) => disk_direct.push(v),
            Err(e) => {
                eprintln!("  O_DIRECT write: not here ({e})");
                break;
            }
        }
    }
    let disk_direct_samples = join(&disk_direct);
    if !disk_direct.is_empty() {
        ceil.disk_write_direct = report::median(&disk_direct);
        eprintln!(
            "  synced O_DIRECT write ({} MiB + fsync, median of 3): {:.0} MB/s ({disk_direct_samples})",
            sizes.ceil_disk / MIB,
            ceil.disk_write_direct
        );
    }
    ceil.loopback = ceilings::loopback(sizes.ceil_loop).await?;
    eprintln!("  loopback TCP, one stream: {:.0} MB/s", ceil.loopback);

    // ---- Test data --------------------------------------------------------
    let t = Instant::now();
    let modes = ["monolithic", "chunked", "streamed"];
    let mut items = Vec::new();
    if wanted(&args, "push") || wanted(&args, "pull") {
        for (m, _) in modes.iter().enumerate() {
            for rep in 0..args.reps {
                items.push((seed_of(&[1, m as u64, rep as u64]), sizes.big));
            }
        }
    }
    let n_push = items.len();
    // S3 mode: one more blob for the raw PUT/GET of the S3 servers.
    if args.storage == "s3" {
        items.push((seed_of(&[9]), sizes.big));
    }
    let n_ceil = items.len() - n_push;
    if wanted(&args, "push4") {
        for rep in 0..args.reps {
            for i in 0..4 {
                items.push((seed_of(&[7, rep as u64, i]), sizes.big));
            }
        }
    }
    let n_push4 = items.len() - n_push - n_ceil;
    if wanted(&args, "contend") {
        for rep in 0..args.reps {
            for i in 0..4 {
                items.push((seed_of(&[11, rep as u64, i]), sizes.big));
            }
        }
    }
    eprintln!(
        "== precomputing digests of {} blobs of {} (streamed, never held in memory)",
        items.len(),
        sizes.big_label()
    );
    let specs = tokio::task::spawn_blocking(move || BlobSpec::compute_many(&items)).await?;
    let (push_specs, rest) = specs.split_at(n_push);
    let (ceiling_specs, rest) = rest.split_at(n_ceil);
    let (push4_specs, contend_specs) = rest.split_at(n_push4);
    let push_specs: Vec<BlobSpec> = push_specs.to_vec();
    let ceiling_specs: Vec<BlobSpec> = ceiling_specs.to_vec();
    let push4_specs: Vec<BlobSpec> = push4_specs.to_vec();
    let contend_specs: Vec<BlobSpec> = contend_specs.to_vec();
    eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());

    // Small blobs: sizes 4-64 KiB, held in memory (≈ 70 MB at full size).
    let small: Arc<Vec<Vec<(String, Bytes)>>> = Arc::new(if wanted(&args, "small") {
        (0..args.reps)
            .map(|rep| {
                let mut r = prng::Rng::new(seed_of(&[3, rep as u64]));
                (0..sizes.small_count)
                    .map(|i| {
                        let len = r.range(4096, 65536);
                        let b = BlobSpec {
                            seed: seed_of(&[4, rep as u64, i as u64]),
                            len,
                            digest: String::new(),
                        }
                        .bytes();
                        (prng::sha256_digest(&b), b)
                    })
                    .collect()
            })
            .collect()
    } else {
        vec![]
    });

    // The real clients' source images, built with umoci (setup, not
    // measured): one per repetition for skopeo and one for docker, each with
    // its own content, so no registry ever sees a layer twice.
    let skopeo_dir = run_dir.join("skopeo");
    let docker_dir = run_dir.join("docker");
    let mut skopeo_ok: Option<String> = None;
    let mut docker_ok: Option<String> = None;
    if wanted(&args, "docker") {
        match docker::check() {
            Ok(v) => eprintln!("== docker engine {v}"),
            Err(e) => {
                eprintln!("== docker engine not usable, the docker workload is skipped: {e:#}");
                docker_ok = Some(format!("{e:#}"));
            }
        }
    }
    let mut images = Vec::new();
    if wanted(&args, "skopeo") {
        images.push((&skopeo_dir, 5, &mut skopeo_ok));
    }
    if wanted(&args, "docker") && docker_ok.is_none() {
        images.push((&docker_dir, 10, &mut docker_ok));
    }
    for (dir, seed, ok) in images {
        eprintln!(
            "== building {} OCI image(s) with umoci in {} (layers: {} of random data)",
            args.reps,
            dir.display(),
            image::describe(&sizes.layers)
        );
        let t = Instant::now();
        let res: Result<()> = (0..args.reps).try_for_each(|rep| {
            image::build(
                &dir.join(format!("src-{rep}")),
                &dir.join(format!("files-{rep}")),
                &[seed, rep as u64],
                &sizes.layers,
            )
        });
        match res {
            Ok(()) => eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!("  umoci failed: {e:#}");
                *ok = Some(format!("umoci: {e:#}"));
            }
        }
    }

    // ---- TLS --------------------------------------------------------------
    let tls = match args.tls {
        true => Some(tls::self_signed(&run_dir.join("tls"))?),
        false => None,
    };

    // ---- S3 servers -------------------------------------------------------
    let http = client::client(64, tls.as_ref())?;
    let mut backends: Vec<Backend> = Vec::new();
    let mut s3_ceilings: Vec<S3Ceiling> = Vec::new();
    let mut backend_down: Vec<(BackendKind, String)> = Vec::new();
    for bk in [BackendKind::S3sFs, BackendKind::Moto] {
        let buckets: Vec<String> = plan
            .iter()
            .filter(|c| kinds.contains(&c.kind))
            .filter_map(|c| match &c.storage {
                PlanStorage::S3 {
                    backend, bucket, ..
                } if *backend == bk => Some(bucket.clone()),
                _ => None,
            })
            .collect();
        if buckets.is_empty() {
            continue;
        }
        let dir = run_dir.join(bk.label());
        let mut all: Vec<&str> = buckets.iter().map(|b| b.as_str()).collect();
        all.push(CEILING_BUCKET);
        let started = match bk {
            BackendKind::S3sFs => Backend::start_s3s_fs(&args.s3s_fs_bin, &dir, &all),
            BackendKind::Moto => Backend::start_moto(&args.moto_bin, &dir),
        };
        match started {
            Ok(be) => {
                eprintln!(
                    "== {} listening on {} (pid {}, data {})",
                    bk.label(),
                    be.endpoint,
                    be.pid,
                    be.root.display()
                );
                let c = be.s3(&http);
                let mut ok = Ok(());
                for b in &all {
                    if let Err(e) = c.create_bucket(b).await {
                        ok = Err(e);
                        break;
                    }
                }
                match ok {
                    Ok(()) => backends.push(be),
                    Err(e) => {
                        eprintln!("  {}: creating buckets failed: {e:#}", bk.label());
                        backend_down.push((bk, format!("creating buckets: {e:#}")));
                    }
                }
            }
            Err(e) => {
                eprintln!("  {} could not be started: {e:#}", bk.label());
                backend_down.push((bk, format!("{e:#}")));
            }
        }
    }
    // Raw PUT/GET of one object the size of a pushed blob: what the S3 server
    // itself can take, without a registry in front.
    for be in &backends {
        let spec = &ceiling_specs[0];
        eprintln!(
            "== raw {} speed, {} object",
            be.kind.label(),
            sizes.big_label()
        );
        match s3_ceiling(be, &http, &ceiling_specs).await {
            Ok(c) => {
                eprintln!(
                    "  PUT signed payload {:.0} MB/s ({}), PUT UNSIGNED-PAYLOAD {:.0} MB/s ({}), GET {:.0} MB/s ({})",
                    report::median(&c.put_signed),
                    join(&c.put_signed),
                    report::median(&c.put_unsigned),
                    join(&c.put_unsigned),
                    report::median(&c.get),
                    join(&c.get)
                );
                s3_ceilings.push(c);
            }
            Err(e) => eprintln!(
                "  raw {} measurement failed ({} bytes): {e:#}",
                be.kind.label(),
                spec.len
            ),
        }
    }

    // ---- Access control ---------------------------------------------------
    let mut prepared: Vec<(AuthMode, auth::Prepared)> = Vec::new();
    for &m in &auths {
        let dir = run_dir.join("auth");
        let p = match m {
            AuthMode::None => continue,
            AuthMode::Htpasswd => auth::htpasswd(&dir)?,
            AuthMode::Token => {
                auth::token(&dir, &token_repos(&args), Duration::from_secs(6 * 3600))?
            }
        };
        eprintln!(
            "== --auth {}: {:?}, client sends {} ({} bytes)",
            m.name(),
            p.server,
            p.header.split(' ').next().unwrap_or(""),
            p.header.len()
        );
        prepared.push((m, p));
    }

    // ---- Servers ----------------------------------------------------------
    eprintln!("== starting registries");
    let mut targets = Vec::new();
    for col in &plan {
        let backend = match &col.storage {
            PlanStorage::S3 { backend, .. } => backends.iter().position(|b| b.kind == *backend),
            PlanStorage::Fs => None,
        };
        let storage = match &col.storage {
            PlanStorage::Fs => Storage::Fs,
            PlanStorage::S3 {
                bucket,
                chunk_size,
                copy_threshold,
                ..
            } => Storage::S3(S3Bucket {
                endpoint: backend
                    .map(|i| backends[i].endpoint.clone())
                    .unwrap_or_default(),
                bucket: bucket.clone(),
                access_key: s3::ACCESS_KEY.into(),
                secret_key: s3::SECRET_KEY.into(),
                chunk_size: *chunk_size,
                copy_threshold: *copy_threshold,
                bucket_dir: backend
                    .filter(|&i| backends[i].kind == BackendKind::S3sFs)
                    .map(|i| backends[i].root.join(bucket)),
            }),
        };
        let mut t = Target_ {
            kind: col.kind,
            label: col.label.clone(),
            storage,
            backend,
            server: None,
            reg: None,
            down: None,
            nosync: col.nosync,
        };
        if !kinds.contains(&col.kind) {
            t.down = Some("not selected (--only)".into());
            targets.push(t);
            continue;
        }
        if let PlanStorage::S3 { backend: bk, .. } = &col.storage
            && backend.is_none()
        {
            let why = backend_down
                .iter()
                .find(|(k, _)| k == bk)
                .map(|(_, w)| w.clone())
                .unwrap_or_default();
            t.down = Some(format!("{} unavailable: {why}", bk.label()));
            targets.push(t);
            continue;
        }
        let bin = match col.kind {
            Kind::Ferry => &args.ferry_bin,
            Kind::Distribution => &args.distribution_bin,
        };
        let dir = run_dir.join(&col.dir);
        let auth = prepared
            .iter()
            .find(|(m, _)| *m == col.auth)
            .map(|(_, p)| p);
        let reg_http = match auth {
            Some(p) => client::client_with_auth(64, Some(&p.header), tls.as_ref())?,
            None => http.clone(),
        };
        // eatmydata's library turns fsync, fdatasync, sync_file_range, sync
        // and O_SYNC/O_DSYNC opens into no-ops in a dynamically linked process.
        let env: &[(&str, &str)] = if col.nosync {
            &[("LD_PRELOAD", "libeatmydata.so")]
        } else {
            &[]
        };
        match Server::start(
            col.kind,
            bin,
            &dir,
            &t.storage,
            auth.map(|p| &p.server),
            tls.as_ref(),
            env,
        ) {
            Ok(s) => {
                let reg = Reg::new(reg_http, &s.base);
                let preloaded = !col.nosync || server::maps_contain(s.pid, "libeatmydata");
                match reg.ping().await {
                    Ok(()) if !preloaded => {
                        let why = "libeatmydata.so is not mapped into the process (a statically linked binary ignores LD_PRELOAD; Debian: apt-get install eatmydata)";
                        eprintln!("  {}: {why}", col.label);
                        t.down = Some(why.into());
                    }
                    Ok(()) => {
                        eprintln!(
                            "  {} listening on {} (pid {}, data {})",
                            col.label,
                            s.base,
                            s.pid,
                            s.data_dir.display()
                        );
                        t.reg = Some(reg);
                    }
                    Err(e) => {
                        eprintln!("  {} is up but GET /v2/ failed: {e:#}", col.label);
                        t.down = Some(format!("GET /v2/ failed: {e:#}"));
                    }
                }
                t.server = Some(s);
            }
            Err(e) => {
                eprintln!("  {} could not be started: {e:#}", col.label);
                t.down = Some(format!("{e:#}"));
            }
        }
        targets.push(t);
    }
    let layout = layout_of(&args, &plan, &auths);
    let mut b = Bench {
        targets,
        backends,
        layout,
        rows: vec![],
        usage: vec![],
        reps: args.reps,
        notes: vec![],
        nosync_now: false,
    };
    for t in &b.targets {
        if let Some(d) = &t.down {
            b.notes.push(format!("{} unavailable: {d}", t.label));
        }
    }
    let s3_mode = args.storage == "s3";
    // S3 mode: push and pull are read against the raw speed of s3s-fs.
    let s3s = s3_ceilings.iter().find(|c| c.kind == BackendKind::S3sFs);
    let push_ceiling = match (s3_mode, s3s) {
        (false, _) => Some(("synced disk write".to_string(), ceil.disk_write)),
        (true, Some(c)) => Some(("raw s3s-fs PUT".to_string(), report::median(&c.put_signed))),
        (true, None) => None,
    };
    let pull_ceiling = match (s3_mode, s3s) {
        (false, _) => Some(("loopback".to_string(), ceil.loopback)),
        (true, Some(c)) => Some(("raw s3s-fs GET".to_string(), report::median(&c.get))),
        (true, None) => None,
    };
    let big = sizes.big_label();
    let reps = args.reps;

    // ---- 1. Blob push -----------------------------------------------------
    if wanted(&args, "push") {
        for mode in modes.iter() {
            let id = format!("push-{mode}");
            let r = b.row(
                &id,
                "1. blob push",
                &format!("{mode}, {big}"),
                "MB/s",
                true,
                0,
            );
            if !s3_mode {
                r.target = Target::RatioAndCeiling(1.5, 0.85);
            }
            r.ceiling = push_ceiling.clone();
        }
        for mode in modes.iter() {
            b.cpug_row(&format!("push-{mode}"), "1. blob push", mode);
        }
        // The no-fsync reference column (if any) runs these three only.
        b.nosync_now = true;
        for (m, mode) in modes.iter().enumerate() {
            eprintln!("== 1. push {mode} {big}");
            let id = format!("push-{mode}");
            let specs = &push_specs[m * reps..(m + 1) * reps];
            let chunk = sizes.chunk;
            let idref: &'static str = Box::leak(id.clone().into_boxed_str());
            let bytes_id: &'static str = Box::leak(format!("{id}-bytes").into_boxed_str());
            let cpug_id = format!("{id}-cpug");
            b.ab(
                &format!("push {mode} {big}"),
                &[idref, cpug_id.as_str()],
                move |reg, rep| async move {
                    let blob = specs[rep].generate();
                    let repo = format!("bench/push-{mode}-{rep}");
                    let t = Instant::now();
                    match *mode {
                        "monolithic" => reg.push_monolithic(&repo, &blob).await?,
                        "chunked" => reg.push_chunked(&repo, &blob, chunk).await?,
                        _ => reg.push_streamed(&repo, &blob).await?,
                    }
                    Ok(vec![
                        (idref, mbps(blob.len(), t.elapsed())),
                        (bytes_id, blob.len() as f64),
                    ])
                },
            )
            .await;
        }
        b.nosync_now = false;
    }

    // ---- 2. Blob pull -----------------------------------------------------
    if wanted(&args, "pull") {
        eprintln!("== 2. pull {big}");
        let r = b.row(
            "pull-1",
            "2. blob pull",
            &format!("single, {big}"),
            "MB/s",
            true,
            0,
        );
        if !s3_mode {
            r.target = Target::Ratio(1.2);
        }
        r.ceiling = pull_ceiling.clone();
        let r = b.row(
            "pull-4",
            "2. blob pull",
            &format!("4 concurrent, {big} each, aggregate"),
            "MB/s",
            true,
            0,
        );
        if !s3_mode {
            r.target = Target::Ratio(1.2);
        }
        b.cpug_row("pull-1", "2. blob pull", "single");
        b.cpug_row("pull-4", "2. blob pull", "4 concurrent");
        let spec = push_specs[0].clone();
        let pushed_already = wanted(&args, "push");
        let s2 = spec.clone();
        // Make sure the blob is there (it is, if the push workload ran), and
        // verify its bytes hash to the digest once, untimed.
        b.setup(
            "pull blob + full sha256 verification",
            &["pull-1", "pull-4"],
            move |reg| {
                let spec = s2.clone();
                async move {
                    if !pushed_already {
                        reg.push_monolithic("bench/push-monolithic-0", &spec.generate())
                            .await?;
                    }
                    reg.pull("bench/push-monolithic-0", &spec, true)
                        .await
                        .map(|_| ())
                }
            },
        )
        .await;
        let sp = &spec;
        // Single pulls from the filesystem are short (about a second): three
        // per repetition, median. From S3 they take ten times longer: one.
        let pulls = if s3_mode { 1 } else { 3 };
        b.ab(
            "pull single",
            &["pull-1", "pull-1-cpug"],
            move |reg, _rep| async move {
                let mut v = Vec::new();
                let mut bytes = 0;
                for _ in 0..pulls {
                    let t = Instant::now();
                    let n = reg.pull("bench/push-monolithic-0", sp, false).await?;
                    v.push(mbps(n, t.elapsed()));
                    bytes += n;
                }
                Ok(vec![
                    ("pull-1", report::median(&v)),
                    ("pull-1-bytes", bytes as f64),
                ])
            },
        )
        .await;
        b.ab(
            "pull 4 concurrent",
            &["pull-4", "pull-4-cpug"],
            move |reg, _rep| async move {
                let t = Instant::now();
                let mut hs = Vec::new();
                for _ in 0..4 {
                    let (reg, spec) = (reg.clone(), sp.clone());
                    hs.push(tokio::spawn(async move {
                        reg.pull("bench/push-monolithic-0", &spec, false).await
                    }));
                }
                let mut n = 0;
                for h in hs {
                    n += h.await??;
                }
                Ok(vec![
                    ("pull-4", mbps(n, t.elapsed())),
                    ("pull-4-bytes", n as f64),
                ])
            },
        )
        .await;
    }

    // ---- 3. Small blobs ---------------------------------------------------
    if wanted(&args, "small") {
        let count = sizes.small_count;
        eprintln!("== 3. {count} small blobs (4-64 KiB), 8 concurrent clients");
        b.row(
            "small",
            "3. small blobs",
            &format!("{count} × 4–64 KiB, 8 clients"),
            "blobs/s",
            true,
            0,
        );
        let small = small.clone();
        b.ab("small blobs", &["small"], move |reg, rep| {
            let small = small.clone();
            async move {
                let t = Instant::now();
                let repo = format!("bench/small-{rep}");
                let done = par(
                    count,
                    8,
                    Instant::now() + Duration::from_secs(120),
                    move |i| {
                        let (reg, small, repo) = (reg.clone(), small.clone(), repo.clone());
                        async move {
                            let (d, data) = &small[rep][i];
                            reg.push_small(&repo, d, data.clone()).await
                        }
                    },
                )
                .await?;
                Ok(vec![("small", done as f64 / t.elapsed().as_secs_f64())])
            }
        })
        .await;
    }

    // ---- 4. Manifest GET / blob HEAD ---------------------------------------
    if wanted(&args, "manifest") {
        let n = sizes.manifest_reqs;
        eprintln!("== 4. manifest GET and blob HEAD, 32 connections, {n} requests each");
        b.row(
            "mget-rate",
            "4. manifest GET",
            &format!("{n} req, 32 conns"),
            "req/s",
            true,
            0,
        )
        .target = Target::Ratio(3.0);
        b.row("mget-p99", "4. manifest GET", "p99 latency", "ms", false, 2);
        b.row(
            "mget-cpu",
            "4. manifest GET",
            "server CPU per request",
            "µs",
            false,
            0,
        );
        b.row(
            "head-rate",
            "4. blob HEAD",
            &format!("{n} req, 32 conns"),
            "req/s",
            true,
            0,
        );
        b.row("head-p99", "4. blob HEAD", "p99 latency", "ms", false, 2);
        b.row(
            "head-cpu",
            "4. blob HEAD",
            "server CPU per request",
            "µs",
            false,
            0,
        );
        let img = Arc::new(TinyImage::new(seed_of(&[6])));
        let i2 = img.clone();
        b.setup(
            "tiny image bench/hot:latest",
            &[
                "mget-rate",
                "mget-p99",
                "mget-cpu",
                "head-rate",
                "head-p99",
                "head-cpu",
            ],
            move |reg| {
                let img = i2.clone();
                async move { img.push(&reg, "bench/hot", "latest").await }
            },
        )
        .await;
        let limit = Duration::from_secs(60);
        b.ab(
            "manifest GET",
            &["mget-rate", "mget-p99", "mget-cpu"],
            move |reg, _| async move {
                let (rate, _p50, p99, reqs) = hammer(
                    reg,
                    32,
                    n,
                    limit,
                    Method::GET,
                    "/v2/bench/hot/manifests/latest".into(),
                    Some(ACCEPT_MANIFESTS),
                )
                .await?;
                Ok(vec![
                    ("mget-rate", rate),
                    ("mget-p99", p99),
                    ("mget-reqs", reqs as f64),
                ])
            },
        )
        .await;
        let path = format!("/v2/bench/hot/blobs/{}", img.layer_digest);
        let path = &path;
        b.ab(
            "blob HEAD",
            &["head-rate", "head-p99", "head-cpu"],
            move |reg, _| async move {
                let (rate, _p50, p99, reqs) =
                    hammer(reg, 32, n, limit, Method::HEAD, path.clone(), None).await?;
                Ok(vec![
                    ("head-rate", rate),
                    ("head-p99", p99),
                    ("head-reqs", reqs as f64),
                ])
            },
        )
        .await;
    }

    // ---- 5. Catalog and tag listing ----------------------------------------
    let mut catalog_done = false;
    if wanted(&args, "catalog") {
        let (repos, tags) = (sizes.repos, sizes.tags);
        eprintln!("== 5. _catalog over {repos} repositories, tags/list over {tags} tags");
        let ids = ["cat-full", "cat-page", "tags-full", "tags-page"];
        b.row(
            "cat-full",
            "5. catalog",
            &format!("_catalog, {repos} repos, full listing"),
            "ms",
            false,
            1,
        )
        .target = Target::Ratio(20.0);
        b.row(
            "cat-page",
            "5. catalog",
            "_catalog, paginated walk n=100",
            "ms",
            false,
            1,
        )
        .target = Target::Ratio(20.0);
        b.row(
            "tags-full",
            "5. tag list",
            &format!("tags/list, {tags} tags, full listing"),
            "ms",
            false,
            1,
        )
        .target = Target::Ratio(20.0);
        b.row(
            "tags-page",
            "5. tag list",
            "tags/list, paginated walk n=100",
            "ms",
            false,
            1,
        )
        .target = Target::Ratio(20.0);
        catalog_setup(&mut b, repos, tags, &ids).await;
        catalog_done = true;
        // Iterations stop once a listing has taken this long in total (one walk
        // of Distribution's catalog over 10,000 repos takes ~15 s).
        let budget = Duration::from_secs(if args.quick { 3 } else { 5 });
        b.ab("catalog + tag listing", &ids, move |reg, _| async move {
            let cf =
                time_listing(&reg, "/v2/_catalog", "repositories", repos, true, 5, budget).await?;
            let cp = time_listing(
                &reg,
                "/v2/_catalog?n=100",
                "repositories",
                repos,
                true,
                3,
                budget,
            )
            .await?;
            let tf = time_listing(
                &reg,
                "/v2/bench/tags/tags/list",
                "tags",
                tags,
                false,
                5,
                budget,
            )
            .await?;
            let tp = time_listing(
                &reg,
                "/v2/bench/tags/tags/list?n=100",
                "tags",
                tags,
                false,
                3,
                budget,
            )
            .await?;
            Ok(vec![
                ("cat-full", cf),
                ("cat-page", cp),
                ("tags-full", tf),
                ("tags-page", tp),
            ])
        })
        .await;
    }

    // ---- 8. Keep-alive request rate (wrk, h2load) ----------------------------
    if wanted(&args, "rate") {
        if !catalog_done {
            eprintln!(
                "== 8. setup: _catalog over {} repositories, {} tags",
                sizes.repos, sizes.tags
            );
            catalog_setup(&mut b, sizes.repos, sizes.tags, &[]).await;
        }
        let opts = rate::Opts {
            quick: args.quick,
            repos: sizes.repos,
            tags: sizes.tags,
            dir: run_dir.join("rate"),
            tls: args.tls,
        };
        rate::run(&mut b, &opts).await;
    }

    // ---- 6. Real clients: skopeo copy, docker push / pull ------------------
    let total_layers: u64 = sizes.layers.iter().sum();
    let image_label = format!(
        "{}-layer image ({:.0} MiB)",
        sizes.layers.len(),
        total_layers as f64 / MIB as f64
    );
    if wanted(&args, "skopeo") {
        eprintln!("== 6. skopeo copy of a {image_label} in and out");
        b.row(
            "skopeo-in",
            "6. skopeo copy",
            &format!("push {image_label}"),
            "s",
            false,
            2,
        );
        b.cpug_row("skopeo-in", "6. skopeo copy", "push");
        b.row(
            "skopeo-out",
            "6. skopeo copy",
            "pull it back into a fresh OCI layout",
            "s",
            false,
            2,
        );
        b.cpug_row("skopeo-out", "6. skopeo copy", "pull");
        let ids = [
            "skopeo-in",
            "skopeo-in-cpug",
            "skopeo-out",
            "skopeo-out-cpug",
        ];
        if let Some(e) = skopeo_ok.clone() {
            for k in 0..b.targets.len() {
                b.mark_error(k, &ids, &anyhow::anyhow!("{e}"));
            }
        } else {
            let sd = &skopeo_dir;
            b.ab("skopeo copy in", &ids[..2], move |reg, rep| async move {
                let host = docker::host_of(&reg.base).to_string();
                let src = sd.join(format!("src-{rep}"));
                let bytes = image::blob_bytes(&src)?;
                let mut cmd = std::process::Command::new("skopeo");
                cmd.args([
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                ])
                .arg(format!("oci:{}:v1", src.display()))
                .arg(format!("docker://{host}/bench/img-{rep}:v1"));
                let t = Instant::now();
                run_cmd_async(cmd, Duration::from_secs(300)).await?;
                Ok(vec![
                    ("skopeo-in", t.elapsed().as_secs_f64()),
                    ("skopeo-in-bytes", bytes as f64),
                ])
            })
            .await;
            b.ab("skopeo copy out", &ids[2..], move |reg, rep| async move {
                let host = docker::host_of(&reg.base).to_string();
                let port = host.rsplit(':').next().unwrap_or("0").to_string();
                let dest = sd.join(format!("out-{rep}-{port}"));
                let mut cmd = std::process::Command::new("skopeo");
                cmd.args([
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                ])
                .arg(format!("docker://{host}/bench/img-{rep}:v1"))
                .arg(format!("oci:{}:v1", dest.display()));
                let t = Instant::now();
                let r = run_cmd_async(cmd, Duration::from_secs(300)).await;
                let secs = t.elapsed().as_secs_f64();
                let bytes = image::blob_bytes(&dest);
                let _ = std::fs::remove_dir_all(&dest);
                r?;
                Ok(vec![
                    ("skopeo-out", secs),
                    ("skopeo-out-bytes", bytes? as f64),
                ])
            })
            .await;
        }
    }
    if wanted(&args, "docker") {
        match &docker_ok {
            Some(e) => {
                eprintln!("== 6. docker: skipped ({e})");
                b.notes.push(format!(
                    "docker workload skipped: the docker engine is not usable here ({e})"
                ));
            }
            None => docker::workload(&mut b, &docker_dir, &image_label).await,
        }
    }

    // ---- 7b. Four concurrent 1 GiB streamed pushes (RSS) ---------------------
    if wanted(&args, "push4") {
        eprintln!("== 7. four concurrent streamed pushes of {big} each");
        b.row(
            "push4-rate",
            "7. 4 × concurrent push",
            &format!("4 × {big} streamed, aggregate"),
            "MB/s",
            true,
            0,
        );
        b.row(
            "push4-rss",
            "7. 4 × concurrent push",
            "server peak RSS",
            "MiB",
            false,
            1,
        )
        .target = Target::FerryAtMost(64.0);
        b.cpug_row("push4", "7. 4 × concurrent push", "4 pushes");
        let specs = &push4_specs;
        b.ab(
            "4 concurrent streamed pushes",
            &["push4-rate", "push4-rss", "push4-cpug"],
            move |reg, rep| async move {
                let blobs: Vec<_> = specs[rep * 4..][..4]
                    .iter()
                    .map(BlobSpec::generate)
                    .collect();
                let t = Instant::now();
                let bytes = reg
                    .push_streamed_at_once(&format!("bench/push4-{rep}"), &blobs)
                    .await?;
                Ok(vec![
                    ("push4-rate", mbps(bytes, t.elapsed())),
                    ("push4-bytes", bytes as f64),
                ])
            },
        )
        .await;
        b.rss_from_sampler("4 concurrent streamed pushes", "push4-rss");
    }

    if wanted(&args, "contend") {
        contend::workload(&mut b, &contend_specs, &run_dir, sizes.contend_mib, &big).await;
    }

    // ---- Stop and report ---------------------------------------------------
    b.check_alive();
    let mut sizes_on_disk = Vec::new();
    for t in &mut b.targets {
        if let Some(s) = &mut t.server {
            s.stop();
            // moto keeps objects in memory and temporary files: no directory to measure.
            if matches!(&t.storage, Storage::S3(bk) if bk.bucket_dir.is_none()) {
                continue;
            }
            let du = std::process::Command::new("du")
                .arg("-sb")
                .arg(&s.data_dir)
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                });
            if let Some(du) = du {
                sizes_on_disk.push(format!("{} {:.2} GiB", t.label, du as f64 / GIB as f64));
            }
        }
    }
    for be in &mut b.backends {
        be.stop();
    }
    let elapsed = total_t.elapsed().as_secs_f64();
    let load_end = loadavg();

    let machine = machine_info(&run_dir);
    let run_bytes = std::process::Command::new("du")
        .arg("-sb")
        .arg(&run_dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut md = String::new();
    md.push_str(&format!(
        "## Results ({} run, {})\n\n",
        if args.quick { "--quick" } else { "full" },
        started_at
    ));
    let ferry_version = if args.ferry_version.is_empty() {
        "?"
    } else {
        &args.ferry_version
    };
    if s3_mode {
        let cols: Vec<String> = b
            .targets
            .iter()
            .filter(|t| t.down.as_deref() != Some("not selected (--only)"))
            .map(|t| match &t.storage {
                Storage::Fs => format!("**{}**: filesystem storage", t.label),
                Storage::S3(bk) => format!(
                    "**{}**: bucket `{}` on {}, `storage.s3.chunksize` (part size) {}",
                    t.label,
                    bk.bucket,
                    t.backend.map(|i| b.backends[i].kind.label()).unwrap_or("?"),
                    bk.chunk_size.map(|c| format!("{} MiB", c / MIB)).unwrap_or(match t.kind {
                        Kind::Ferry => "left at Ferry's default, 5 MiB".into(),
                        Kind::Distribution => "left at Distribution's default, 10 MiB".into(),
                    })
                ) + &bk
                    .copy_threshold
                    .map(|c| format!(", `multipartcopythresholdsize` {} MiB (the blob reaches its digest key with one CopyObject instead of 32 MiB UploadPartCopy requests)", c / MIB))
                    .unwrap_or_default(),
            })
            .collect();
        md.push_str(&format!(
            "Ferry `{ferry_version}`{}, s3s-fs `{}`{}; loopback HTTP/1.1 everywhere, {} repetitions per workload alternating between the columns; each figure is the median over repetitions (`~` marks repetitions more than 15 % apart). Ratios are oriented so that **> 1 means the first-named column is better** (throughput: its value ÷ the other's). Total bench time {:.0} s.\n\nColumns: {}.\n\n",
            if args.moto { format!(", Distribution `{}`", distribution_version(&args.distribution_bin)) } else { String::new() },
            tool_version(&args.s3s_fs_bin),
            if args.moto { format!(", moto `{}`", moto_version()) } else { String::new() },
            args.reps,
            elapsed,
            cols.join("; ")
        ));
    } else {
        md.push_str(&format!(
            "Ferry `{}` vs Distribution `{}`, filesystem storage, loopback {}, {} A/B/A/B repetitions per workload; each figure is the median over repetitions (`~` marks repetitions more than 15 % apart). Ratio is oriented so that **> 1 means Ferry is better** (throughput: Ferry ÷ Distribution; time, latency, memory: Distribution ÷ Ferry). Total bench time {:.0} s.\n\n",
            ferry_version,
            distribution_version(&args.distribution_bin),
            match args.tls {
                true => "HTTPS (`--tls`: one self-signed EC P-256 certificate, each side's default TLS settings)",
                false => "HTTP/1.1",
            },
            args.reps,
            elapsed
        ));
    }
    if auths != [AuthMode::None] {
        let described: Vec<String> = auths
            .iter()
            .map(|m| match m {
                AuthMode::None => "**open** (no `auth:`; the columns without a suffix)".to_string(),
                AuthMode::Htpasswd => format!(
                    "**htpasswd** (`auth.htpasswd`, one user, bcrypt cost {} as `htpasswd -B` writes it; `Authorization: Basic` on every request)",
                    auth::BCRYPT_COST
                ),
                AuthMode::Token => "**token** (`auth.token` with a self-signed RSA certificate as `rootcertbundle`; one RS256 JWT naming it by `x5c`, granting pull and push on the repositories the workloads use (`bench/hot` alone for the manifest workload), sent as `Authorization: Bearer` on every request)".to_string(),
            })
            .collect();
        md.push_str(&format!(
            "Access control: {}. All columns' registries run for the whole bench and are alternated within each repetition; `… ÷ open` compares a registry with access control to the same registry open (< 1: slower or costlier with it). *Server CPU per request* is the registry's user+system CPU during a repetition divided by the requests made, less disturbed by a busy machine than the rate.\n\n",
            described.join("; ")
        ));
    }
    md.push_str(&report::main_table(&b.layout, &b.rows));
    let backend_names: Vec<Option<String>> = b
        .targets
        .iter()
        .map(|t| t.backend.map(|i| b.backends[i].kind.label().to_string()))
        .collect();
    if s3_mode {
        md.push_str("\n### Server resources per workload\n\nPeak RSS is the maximum VmRSS of the registry sampled every 5 ms while the workload ran (max over repetitions); CPU is user+system seconds consumed by the registry process during one repetition (median), and for S3 columns also by the S3 server process.\n\n");
    } else {
        md.push_str("\n### Server resources per workload\n\nPeak RSS is the maximum VmRSS sampled every 5 ms while the workload ran (max over repetitions); CPU is user+system seconds consumed by the server process during one repetition (median). Ratios > 1 mean Ferry uses less.\n\n");
    }
    md.push_str(&report::usage_table(&b.layout, &backend_names, &b.usage));
    md.push_str("\n### Machine ceilings (same run)\n\n| Ceiling | Value |\n|---|--:|\n");
    md.push_str(&format!(
        "| SHA-256, one core (sha2 0.11) | {:.0} MB/s |\n",
        ceil.sha256
    ));
    md.push_str(&format!("| Synced sequential write ({} MiB, 8 MiB writes, fsync; median of {disk_samples} MB/s) | {:.0} MB/s |\n", ceil.disk_bytes / MIB, ceil.disk_write));
    md.push_str(&format!("| Unsynced sequential write (the same writes, no fsync: into the page cache; median of {disk_nosync_samples} MB/s) | {:.0} MB/s |\n", ceil.disk_write_nosync));
    if ceil.disk_write_direct > 0.0 {
        md.push_str(&format!("| Synced sequential write with O_DIRECT (the same writes from an aligned buffer, past the page cache, fsync; median of {disk_direct_samples} MB/s) | {:.0} MB/s |\n", ceil.disk_write_direct));
    }
    md.push_str(&format!(
        "| Loopback TCP, one stream (in-process) | {:.0} MB/s |\n",
        ceil.loopback
    ));
    md.push_str(&format!(
        "| Bench PRNG data generation, one core | {:.0} MB/s |\n",
        ceil.prng
    ));
    for c in &s3_ceilings {
        let l = c.kind.label();
        let size = sizes.big_label();
        let checked = match c.kind {
            BackendKind::S3sFs => "s3s-fs checks the SHA-256",
            BackendKind::Moto => "moto does not check it",
        };
        md.push_str(&format!("| Raw {l} PutObject, one {size} object, signed payload ({checked}; median of {} MB/s) | {:.0} MB/s |\n", join(&c.put_signed), report::median(&c.put_signed)));
        md.push_str(&format!("| Raw {l} PutObject, one {size} object, `UNSIGNED-PAYLOAD` (median of {} MB/s) | {:.0} MB/s |\n", join(&c.put_unsigned), report::median(&c.put_unsigned)));
        md.push_str(&format!(
            "| Raw {l} GetObject of it (median of {} MB/s) | {:.0} MB/s |\n",
            join(&c.get),
            report::median(&c.get)
        ));
    }
    md.push_str("\nMB = 10^6 bytes.\n\n### Machine\n\n| | |\n|---|---|\n");
    for (k, v) in &machine {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    md.push_str(&format!(
        "\nLoad average (1/5/15 min) at start: {load_start}; at end: {load_end}. The bench client shares the machine's cores with the server under test; figures from a busy machine are noisy.\n"
    ));
    if !sizes_on_disk.is_empty() {
        md.push_str(&format!(
            "\nData directories at the end: {}.\n",
            sizes_on_disk.join(", ")
        ));
    }
    // One upload is hashed on one core: its speed is bounded by SHA-256 there, whatever
    // the disk does. Say where each push stands against that bound too.
    let against_sha: Vec<String> = modes
        .iter()
        .filter_map(|mode| {
            let row = b.rows.iter().find(|r| r.id == format!("push-{mode}"))?;
            let ferry = row.value(0)?;
            Some(format!("{mode} {:.0} %", 100.0 * ferry / ceil.sha256))
        })
        .collect();
    if !against_sha.is_empty() && !s3_mode {
        b.notes.push(format!(
            "One push is hashed (SHA-256) on one core, which bounds it at {:.0} MB/s on this machine whatever the disk does; Ferry's pushes are at {} of that bound.",
            ceil.sha256,
            against_sha.join(", ")
        ));
    }
    if !b.notes.is_empty() {
        md.push_str("\n### Notes and errors\n\n");
        for n in &b.notes {
            md.push_str(&format!("- {}\n", n.replace('\n', " ")));
        }
    }
    md.push_str(&format!(
        "\n### Raw samples\n\n| Metric | {} |\n|---|{}\n",
        b.layout.labels.join(" | "),
        "---|".repeat(b.layout.labels.len())
    ));
    for r in &b.rows {
        let s = |k: usize| {
            r.samples[k]
                .iter()
                .map(|v| report::fmt(*v, r.decimals.max(1)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cells: Vec<String> = (0..b.layout.labels.len()).map(s).collect();
        md.push_str(&format!(
            "| {} — {} ({}) | {} |\n",
            r.workload,
            r.metric,
            r.unit,
            cells.join(" | ")
        ));
    }

    println!("\n{md}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &md).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    if let Some(readme) = &args.readme {
        // The S3 mode has its own section, fed by full runs of any workloads.
        let (a_mark, b_mark) = if s3_mode {
            ("<!-- s3-results:start -->", "<!-- s3-results:end -->")
        } else {
            ("<!-- results:start -->", "<!-- results:end -->")
        };
        let partial = if s3_mode {
            args.only.is_some() || args.moto
        } else {
            args.workloads.is_some() || args.only.is_some()
        };
        if args.quick || partial {
            eprintln!(
                "(not updating {}: only full runs of every workload on both registries go there)",
                readme.display()
            );
        } else if let Ok(text) = std::fs::read_to_string(readme) {
            let (aa, bm) = (a_mark, b_mark);
            if let (Some(a), Some(bb)) = (text.find(aa), text.find(bm)) {
                let new = format!("{}{aa}\n{md}\n{bm}{}", &text[..a], &text[bb + bm.len()..]);
                std::fs::write(readme, new)?;
                eprintln!("updated results in {}", readme.display());
            }
        }
    }
    eprintln!(
        "removing {:.1} GiB of temporary data (slow when the filesystem is mounted with discard)...",
        run_bytes as f64 / GIB as f64
    );
    let t = Instant::now();
    drop(b);
    drop(_guard);
    eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn distribution_version(bin: &str) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .last()
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or("?".into())
}

/// `--version` of a tool, last word of its first line.
fn tool_version(bin: &str) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .last()
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or("?".into())
}

fn join(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where one column's registry keeps its blobs.
enum PlanStorage {
    Fs,
    S3 {
        backend: BackendKind,
        bucket: String,
        chunk_size: Option<u64>,
        copy_threshold: Option<u64>,
    },
}

const NOSYNC_LABEL: &str = "Ferry no-fsync";

/// One column of the report: a registry and its storage.
struct ColPlan {
    kind: Kind,
    label: String,
    /// Directory under the run directory.
    dir: String,
    storage: PlanStorage,
    /// Access control the registry is started with.
    auth: AuthMode,
    /// Ferry under eatmydata (fsync is a no-op), for the blob pushes only.
    nosync: bool,
}

/// The columns for `--storage`: fs mode is Ferry vs Distribution on the
/// filesystem; S3 mode is Ferry on s3s-fs (one column per part size), Ferry
/// on the filesystem as the reference, and with `--moto` Ferry and
/// Distribution on moto.
///
/// With `--auth`, fs mode has one Ferry and one Distribution column per mode
/// (Ferry, Distribution, Ferry htpasswd, Distribution htpasswd, ...); the open
/// pair keeps its plain labels.
fn column_plan(args: &Args, modes: &[AuthMode]) -> Vec<ColPlan> {
    if args.storage != "s3" {
        let mut v = Vec::new();
        for &m in modes {
            let dir = match m {
                AuthMode::None => String::new(),
                _ => format!("-{}", m.name()),
            };
            v.push(ColPlan {
                kind: Kind::Ferry,
                label: format!("Ferry{}", m.suffix()),
                dir: format!("ferry{dir}"),
                storage: PlanStorage::Fs,
                auth: m,
                nosync: false,
            });
            v.push(ColPlan {
                kind: Kind::Distribution,
                label: format!("Distribution{}", m.suffix()),
                dir: format!("distribution{dir}"),
                storage: PlanStorage::Fs,
                auth: m,
                nosync: false,
            });
        }
        // The reference for "a registry that does not fsync at all".
        if modes == [AuthMode::None] && !args.no_nosync_reference && wanted(args, "push") {
            v.push(ColPlan {
                kind: Kind::Ferry,
                label: NOSYNC_LABEL.into(),
                dir: "ferry-nosync".into(),
                storage: PlanStorage::Fs,
                auth: AuthMode::None,
                nosync: true,
            });
        }
        return v;
    }
    let mut v: Vec<ColPlan> = args
        .s3_chunk_sizes
        .iter()
        .map(|&c| ColPlan {
            kind: Kind::Ferry,
            label: format!("Ferry S3 {c} MiB"),
            dir: format!("ferry-s3-{c}m"),
            storage: PlanStorage::S3 {
                backend: BackendKind::S3sFs,
                bucket: format!("ferry-{c}m"),
                chunk_size: Some(c * MIB),
                copy_threshold: None,
            },
            auth: AuthMode::None,
            nosync: false,
        })
        .collect();
    v.insert(
        1,
        ColPlan {
            kind: Kind::Ferry,
            label: "Ferry fs".into(),
            dir: "ferry-fs".into(),
            storage: PlanStorage::Fs,
            auth: AuthMode::None,
            nosync: false,
        },
    );
    if !args.no_s3_single_copy {
        // Same part size as the first column, but the blob reaches its digest
        // key with one CopyObject (s3s-fs: a file copy) instead of ranged
        // UploadPartCopy requests (s3s-fs: 4 KiB reads each).
        let c = args.s3_chunk_sizes[0];
        v.push(ColPlan {
            kind: Kind::Ferry,
            label: format!("Ferry S3 {c} MiB, 1 copy"),
            dir: format!("ferry-s3-{c}m-copy1"),
            storage: PlanStorage::S3 {
                backend: BackendKind::S3sFs,
                bucket: format!("ferry-{c}m-copy1"),
                chunk_size: Some(c * MIB),
                copy_threshold: Some(5 * GIB),
            },
            auth: AuthMode::None,
            nosync: false,
        });
    }
    if args.moto {
        // Both at their own default part size (Ferry 5 MiB, Distribution 10 MiB),
        // as a drop-in replacement would run.
        v.push(ColPlan {
            kind: Kind::Ferry,
            label: "Ferry on moto".into(),
            dir: "ferry-moto".into(),
            storage: PlanStorage::S3 {
                backend: BackendKind::Moto,
                bucket: "ferry".into(),
                chunk_size: None,
                copy_threshold: None,
            },
            auth: AuthMode::None,
            nosync: false,
        });
        v.push(ColPlan {
            kind: Kind::Distribution,
            label: "Distribution on moto".into(),
            dir: "distribution-moto".into(),
            storage: PlanStorage::S3 {
                backend: BackendKind::Moto,
                bucket: "distribution".into(),
                chunk_size: None,
                copy_threshold: None,
            },
            auth: AuthMode::None,
            nosync: false,
        });
    }
    v
}

fn layout_of(args: &Args, plan: &[ColPlan], modes: &[AuthMode]) -> Layout {
    let labels: Vec<String> = plan.iter().map(|c| c.label.clone()).collect();
    if args.storage != "s3" {
        let col = |kind: Kind, m: AuthMode| {
            plan.iter()
                .position(|c| c.kind == kind && c.auth == m)
                .unwrap_or(0)
        };
        // Ferry ÷ Distribution per mode (the first drives Target/Verdict).
        let mut ratios: Vec<Ratio> = modes
            .iter()
            .map(|&m| Ratio {
                a: col(Kind::Ferry, m),
                b: col(Kind::Distribution, m),
                header: match m {
                    AuthMode::None => "Ratio (>1 = Ferry better)".into(),
                    _ => format!("Ferry ÷ Distribution,{}", m.suffix()),
                },
                short: match m {
                    AuthMode::None => "D/F".into(),
                    _ => format!("D/F{}", m.suffix()),
                },
            })
            .collect();
        // The cost of access control: each mode against the open registry
        // of the same kind (< 1: slower with it).
        if modes.contains(&AuthMode::None) {
            for kind in [Kind::Ferry, Kind::Distribution] {
                for &m in modes.iter().filter(|&&m| m != AuthMode::None) {
                    ratios.push(Ratio {
                        a: col(kind, m),
                        b: col(kind, AuthMode::None),
                        header: format!("{}{} ÷ open", kind.label(), m.suffix()),
                        short: format!("{} open/{}", kind.label(), m.name()),
                    });
                }
            }
        }
        // Ferry against Ferry without fsync (blob pushes only).
        let mut ceiling_cols = vec![0, 1];
        let mut partial_cols = vec![];
        if let Some(n) = plan.iter().position(|c| c.nosync) {
            ratios.push(Ratio {
                a: col(Kind::Ferry, AuthMode::None),
                b: n,
                header: format!("Ferry ÷ {NOSYNC_LABEL}"),
                short: "no-fsync/F".into(),
            });
            ceiling_cols.push(n);
            partial_cols.push(n);
        }
        return Layout {
            labels,
            ratios,
            targets: modes.first() == Some(&AuthMode::None),
            ceiling_cols,
            usage_ratios: true,
            partial_cols,
        };
    }
    let fs = plan
        .iter()
        .position(|c| matches!(c.storage, PlanStorage::Fs))
        .unwrap_or(1);
    let mut ratios = Vec::new();
    let mut ceiling_cols = Vec::new();
    for (k, c) in plan.iter().enumerate() {
        if let PlanStorage::S3 {
            backend: BackendKind::S3sFs,
            chunk_size,
            copy_threshold,
            ..
        } = &c.storage
        {
            let mib = chunk_size.unwrap_or(5 * MIB) / MIB;
            let copy = if copy_threshold.is_some() {
                ", 1 copy"
            } else {
                ""
            };
            ratios.push(Ratio {
                a: k,
                b: fs,
                header: format!("S3 {mib} MiB{copy} ÷ fs"),
                short: format!("fs/S3 {mib} MiB{copy}"),
            });
            ceiling_cols.push(k);
        }
    }
    if args.moto {
        let f = plan.iter().position(|c| {
            c.kind == Kind::Ferry
                && matches!(
                    c.storage,
                    PlanStorage::S3 {
                        backend: BackendKind::Moto,
                        ..
                    }
                )
        });
        let d = plan.iter().position(|c| c.kind == Kind::Distribution);
        if let (Some(f), Some(d)) = (f, d) {
            ratios.push(Ratio {
                a: f,
                b: d,
                header: "Ferry ÷ Distribution on moto".into(),
                short: "D/F on moto".into(),
            });
        }
    }
    Layout {
        labels,
        ratios,
        targets: false,
        ceiling_cols,
        usage_ratios: false,
        partial_cols: vec![],
    }
}

const CEILING_BUCKET: &str = "raw";

/// Raw speed of one S3 server, MB/s per repetition.
struct S3Ceiling {
    kind: BackendKind,
    put_signed: Vec<f64>,
    put_unsigned: Vec<f64>,
    get: Vec<f64>,
}

/// Two rounds of PutObject (signed payload, then UNSIGNED-PAYLOAD) and
/// GetObject of one object the size of a pushed blob; each object is
/// deleted afterwards.
async fn s3_ceiling(be: &Backend, http: &reqwest::Client, specs: &[BlobSpec]) -> Result<S3Ceiling> {
    let spec = specs
        .first()
        .context("no blob for the raw S3 measurement")?;
    let c = be.s3(http);
    let mut out = S3Ceiling {
        kind: be.kind,
        put_signed: vec![],
        put_unsigned: vec![],
        get: vec![],
    };
    for round in 0..2 {
        for signed in [true, false] {
            let key = format!("raw-{round}-{}", if signed { "signed" } else { "unsigned" });
            unsafe { libc::sync() };
            let t = Instant::now();
            c.put(CEILING_BUCKET, &key, spec, signed).await?;
            let v = mbps(spec.len, t.elapsed());
            if signed {
                out.put_signed.push(v)
            } else {
                out.put_unsigned.push(v)
            }
            if !signed {
                let t = Instant::now();
                let n = c.get(CEILING_BUCKET, &key).await?;
                anyhow::ensure!(
                    n == spec.len,
                    "GET returned {n} bytes, expected {}",
                    spec.len
                );
                out.get.push(mbps(n, t.elapsed()));
            }
            c.delete(CEILING_BUCKET, &key).await?;
        }
    }
    Ok(out)
}

/// moto_server has no --version; ask the Python that has moto installed.
fn moto_version() -> String {
    std::process::Command::new("python3")
        .args(["-c", "import moto; print(moto.__version__)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or("?".into())
}
