//! The `mirror` workload (opt-in): pulls through a Ferry mirror
//! (`proxy.remoteurl`) and through Distribution in proxy mode, both in front
//! of the same upstream (a plain Ferry on loopback), against pulling from the
//! upstream directly. Cold pull (first time through the mirror), warm pull
//! (again), N concurrent cold pulls of one image; MB/s, and the requests and
//! bytes the upstream served per pull, read from its access log.

use crate::client::{ACCEPT_MANIFESTS, OCI_MANIFEST, Reg};
use crate::prng::{BlobSpec, seed_of};
use crate::report::{Layout, Ratio, Row, Target};
use crate::server::{free_port, spawn_listening, stop_child};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Concurrent clients in the concurrent cold pull.
const CONC: usize = 4;
/// Layers per image.
const LAYERS: u64 = 4;

pub struct Opts {
    pub ferry_bin: String,
    pub distribution_bin: String,
    pub quick: bool,
    pub reps: usize,
    pub dir: PathBuf,
}

struct Proc {
    child: Option<Child>,
    base: String,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

/// A plain Ferry (upstream, access log at info) or a Ferry mirror of `upstream`.
fn start_ferry(bin: &str, dir: &Path, upstream: Option<&str>) -> Result<Proc> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let log = dir.join("server.log");
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("REGISTRY_HTTP_ADDR", &addr)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data)
        .env_remove("RUST_LOG");
    match upstream {
        // The upstream's access log is how requests to it are counted.
        None => cmd.env("REGISTRY_LOG_LEVEL", "info"),
        Some(u) => cmd
            .env("REGISTRY_LOG_LEVEL", "warn")
            .env("REGISTRY_PROXY_REMOTEURL", u),
    };
    let child = spawn_listening(cmd, "Ferry", &addr, &log)?;
    Ok(Proc {
        child: Some(child),
        base: format!("http://{addr}"),
        log,
    })
}

fn start_distribution(bin: &str, dir: &Path, upstream: &str) -> Result<Proc> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let log = dir.join("server.log");
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             \x20 cache:\n    blobdescriptor: inmemory\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: ferry-bench-secret\n\
             proxy:\n  remoteurl: {upstream}\n",
            data.display()
        ),
    )?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg(&cfg);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    let child = spawn_listening(cmd, "Distribution", &addr, &log)?;
    Ok(Proc {
        child: Some(child),
        base: format!("http://{addr}"),
        log,
    })
}

/// (requests, bytes sent) in the upstream's access log so far.
fn access_totals(log: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut n = 0;
    let mut bytes = 0;
    for l in text.lines().filter(|l| l.contains("ferry::access")) {
        n += 1;
        if let Some(i) = l.find("bytes_out=") {
            let digits: String = l[i + 10..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            bytes += digits.parse::<u64>().unwrap_or(0);
        }
    }
    (n, bytes)
}

/// The totals once the log has stopped growing (a line is written when its
/// response body is done), at most 3 s.
async fn settled_totals(log: &Path) -> (u64, u64) {
    let mut last = access_totals(log);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = access_totals(log);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

struct Image {
    repo: String,
    tag: String,
    config: Bytes,
    config_digest: String,
    layers: Vec<BlobSpec>,
    manifest: Bytes,
}

impl Image {
    fn new(repo: String, tag: String, layers: Vec<BlobSpec>) -> Image {
        let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", l.digest)).collect();
        let config = Bytes::from(format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}}}}",
            diff_ids.join(",")
        ));
        let config_digest = crate::prng::sha256_digest(&config);
        let descs: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{}\",\"size\":{}}}",
                    l.digest, l.len
                )
            })
            .collect();
        let manifest = Bytes::from(format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\
             \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\
             \"layers\":[{}]}}",
            config.len(),
            descs.join(",")
        ));
        Image {
            repo,
            tag,
            config,
            config_digest,
            layers,
            manifest,
        }
    }

    fn bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.len).sum::<u64>() + self.config.len() as u64
    }

    async fn push(&self, reg: &Reg) -> Result<()> {
        reg.push_small(&self.repo, &self.config_digest, self.config.clone())
            .await?;
        for l in &self.layers {
            reg.push_monolithic(&self.repo, &l.generate()).await?;
        }
        reg.put_manifest(&self.repo, &self.tag, &self.manifest)
            .await
    }

    /// What a client pull does: the manifest by tag, then the config and all
    /// layers at once. Returns the bytes received.
    async fn pull(&self, reg: &Reg) -> Result<u64> {
        let r = reg
            .http
            .get(reg.url(&format!("/v2/{}/manifests/{}", self.repo, self.tag)))
            .header("Accept", ACCEPT_MANIFESTS)
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET manifest: {}", r.status());
        }
        let body = r.bytes().await?;
        if body != self.manifest {
            bail!("GET manifest: the body differs from the pushed manifest");
        }
        let mut n = body.len() as u64;
        let config = BlobSpec {
            seed: 0,
            len: self.config.len() as u64,
            digest: self.config_digest.clone(),
        };
        let mut hs = Vec::new();
        for spec in std::iter::once(config).chain(self.layers.iter().cloned()) {
            let reg = reg.clone();
            let repo = self.repo.clone();
            hs.push(tokio::spawn(
                async move { reg.pull(&repo, &spec, false).await },
            ));
        }
        for h in hs {
            n += h.await??;
        }
        Ok(n)
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// `CONC` clients pulling `img` at once; aggregate MB/s.
async fn pull_concurrent(img: &std::sync::Arc<Image>, reg: &Reg) -> Result<f64> {
    let t = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..CONC {
        let img = img.clone();
        let reg = reg.clone();
        hs.push(tokio::spawn(async move { img.pull(&reg).await }));
    }
    let mut n = 0;
    for h in hs {
        n += h.await??;
    }
    Ok(mbps(n, t.elapsed()))
}

// Row indices.
const COLD: usize = 0;
const WARM: usize = 1;
const COLD_REQ: usize = 2;
const WARM_REQ: usize = 3;
const COLD_MIB: usize = 4;
const CONC_MBPS: usize = 5;
const CONC_REQ: usize = 6;
const CONC_MIB: usize = 7;

/// Column indices: the two mirrors, then the upstream itself.
const DIRECT: usize = 2;

pub async fn run(o: &Opts) -> Result<(Layout, Vec<Row>, String)> {
    let layer = if o.quick { 16 * MIB } else { 128 * MIB };
    let total_mib = layer * LAYERS / MIB;
    let labels = vec![
        "Ferry mirror".to_string(),
        "Distribution proxy".to_string(),
        "Direct (upstream)".to_string(),
    ];
    let layout = Layout {
        labels: labels.clone(),
        ratios: vec![
            Ratio {
                a: 0,
                b: 1,
                header: "Ferry ÷ Distribution (>1 = Ferry better)".into(),
                short: "D/F".into(),
            },
            Ratio {
                a: 0,
                b: 2,
                header: "Ferry ÷ direct (>1 = Ferry better)".into(),
                short: "U/F".into(),
            },
        ],
        targets: false,
        ceiling_cols: vec![],
        usage_ratios: false,
        partial_cols: vec![],
    };
    let mk = |id: &str, metric: &str, unit: &str, higher: bool, dec: usize| Row {
        id: id.into(),
        workload: format!("mirror ({total_mib} MiB, {LAYERS} layers)"),
        metric: metric.into(),
        unit: unit.into(),
        higher_better: higher,
        samples: vec![Vec::new(); 3],
        errors: vec![None; 3],
        target: Target::None,
        ceiling: None,
        decimals: dec,
    };
    let mut rows = vec![
        mk("cold", "cold pull", "MB/s", true, 0),
        mk("warm", "warm pull", "MB/s", true, 0),
        mk(
            "cold_req",
            "upstream requests per cold pull",
            "requests",
            false,
            0,
        ),
        mk(
            "warm_req",
            "upstream requests per warm pull",
            "requests",
            false,
            0,
        ),
        mk("cold_mib", "upstream bytes per cold pull", "MiB", false, 0),
        mk(
            "conc",
            &format!("{CONC} concurrent cold pulls, aggregate"),
            "MB/s",
            true,
            0,
        ),
        mk(
            "conc_req",
            &format!("upstream requests for {CONC} concurrent cold pulls"),
            "requests",
            false,
            0,
        ),
        mk(
            "conc_mib",
            &format!("upstream bytes for {CONC} concurrent cold pulls"),
            "MiB",
            false,
            0,
        ),
    ];

    std::fs::create_dir_all(&o.dir)?;
    let upstream = start_ferry(&o.ferry_bin, &o.dir.join("upstream"), None)?;
    let ferry = start_ferry(
        &o.ferry_bin,
        &o.dir.join("ferry-mirror"),
        Some(&upstream.base),
    )?;
    let dist = start_distribution(
        &o.distribution_bin,
        &o.dir.join("distribution-proxy"),
        &upstream.base,
    )?;
    let http = crate::client::client(64, None)?;
    let up = Reg::new(http.clone(), &upstream.base);
    let regs = [
        Reg::new(http.clone(), &ferry.base),
        Reg::new(http.clone(), &dist.base),
        up.clone(),
    ];
    for r in &regs {
        r.ping().await.context("ping")?;
    }
    let ulog = upstream.log.clone();

    for rep in 0..o.reps {
        eprintln!("== mirror: repetition {}/{}", rep + 1, o.reps);
        // Fresh content and names per repetition: every cold pull is cold.
        let mut items = Vec::new();
        for img in 0..2u64 {
            for i in 0..LAYERS {
                items.push((seed_of(&[11, rep as u64, img, i]), layer));
            }
        }
        let specs = BlobSpec::compute_many(&items);
        let single = Image::new(
            format!("mirror/r{rep}-single"),
            format!("t{rep}"),
            specs[..LAYERS as usize].to_vec(),
        );
        let conc = std::sync::Arc::new(Image::new(
            format!("mirror/r{rep}-conc"),
            format!("t{rep}"),
            specs[LAYERS as usize..].to_vec(),
        ));
        single.push(&up).await.context("push to the upstream")?;
        conc.push(&up).await.context("push to the upstream")?;
        let bytes = single.bytes();
        // A/B alternation of the mirrors; the direct pull first (it warms the
        // upstream's page cache for both mirrors alike).
        let order: Vec<usize> = if rep % 2 == 0 {
            vec![DIRECT, 0, 1]
        } else {
            vec![DIRECT, 1, 0]
        };
        for &k in &order {
            let reg = &regs[k];
            for (row, row_req) in [(COLD, COLD_REQ), (WARM, WARM_REQ)] {
                let before = settled_totals(&ulog).await;
                let t = Instant::now();
                match single.pull(reg).await {
                    Ok(n) if n == bytes + single.manifest.len() as u64 => {
                        rows[row].samples[k].push(mbps(n, t.elapsed()));
                        let after = settled_totals(&ulog).await;
                        rows[row_req].samples[k].push((after.0 - before.0) as f64);
                        if row == COLD {
                            rows[COLD_MIB].samples[k]
                                .push((after.1 - before.1) as f64 / MIB as f64);
                        }
                    }
                    Ok(n) => {
                        rows[row].errors[k] = Some(format!("pulled {n} bytes"));
                    }
                    Err(e) => {
                        eprintln!("   {}: {e:#}", labels[k]);
                        rows[row].errors[k] = Some(format!("{e:#}"));
                    }
                }
            }
        }
        for &k in &order {
            let before = settled_totals(&ulog).await;
            match pull_concurrent(&conc, &regs[k]).await {
                Ok(v) => {
                    rows[CONC_MBPS].samples[k].push(v);
                    let after = settled_totals(&ulog).await;
                    rows[CONC_REQ].samples[k].push((after.0 - before.0) as f64);
                    rows[CONC_MIB].samples[k].push((after.1 - before.1) as f64 / MIB as f64);
                }
                Err(e) => {
                    eprintln!("   {}: {e:#}", labels[k]);
                    rows[CONC_MBPS].errors[k] = Some(format!("{e:#}"));
                }
            }
        }
    }
    let md = format!(
        "## Mirror\n\nUpstream: a plain Ferry on loopback holding one image ({total_mib} MiB in {LAYERS} layers of seeded random data, fresh content and repository per repetition). \
         Ferry mirror (`REGISTRY_PROXY_REMOTEURL`) and Distribution (`proxy: remoteurl:`) in front of it, fresh data directories; the direct column pulls from the upstream itself. \
         A pull is the manifest by tag, then the config and all layers at once. Cold = first pull through the mirror, warm = the same again; {CONC} concurrent = {CONC} clients pulling another fresh image at once. \
         Upstream requests and bytes are counted from the upstream's access log (`ferry::access` lines). {} repetitions, the mirrors alternating.\n\n{}",
        o.reps,
        crate::report::main_table(&layout, &rows)
    );
    drop(dist);
    drop(ferry);
    drop(upstream);
    Ok((layout, rows, md))
}
