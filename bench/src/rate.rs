//! Workload 8: keep-alive request rate of the reads users make most.
//!
//! `wrk` (HTTP/1.1 keep-alive) and `h2load` (HTTP/2, h2c with prior
//! knowledge) drive manifest GETs, tag lists and catalog pages; blob HEADs go
//! through a small raw-socket loop, because wrk 4.1 and `h2load --h1` both
//! wait for a body after a HEAD answer that carries `Content-Length`
//! (wg/wrk#198), so they never complete one. Every answer is checked once
//! with reqwest before each run (status, entries), and a run with any
//! non-2xx answer or socket error fails its figure. The server's CPU per
//! request is the `utime+stime` it used between the start and the end of the
//! load generator, divided by the requests completed.

use crate::client::{ACCEPT_MANIFESTS, Reg, count_entries};
use crate::report::Target;
use crate::{Bench, TinyImage, par, run_cmd_async, server};
use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connections of every load generator (h2load: × `STREAMS` streams each).
const CONNS: usize = 16;
/// Concurrent streams per HTTP/2 connection.
const STREAMS: usize = 10;
/// The repository with the 500-tag list; its first tag is the manifest read.
const REPO: &str = "bench/rate";
/// Tags on `REPO`, in both modes (cheap to set up; the target is set at 500).
const TAGS: usize = 500;

pub struct Opts {
    pub quick: bool,
    /// Repositories of the catalog setup (`cat/r00000`, ...).
    pub repos: usize,
    /// Tags on `bench/tags` (catalog setup).
    pub tags: usize,
    /// Where h2load writes its per-request log.
    pub dir: PathBuf,
    /// The registries serve HTTPS (`--tls`): HTTP/2 by ALPN, and no raw HEAD loop.
    pub tls: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Wrk,
    H2load,
    RawHead,
}

/// What a correct answer is.
#[derive(Clone)]
enum Expect {
    /// 200 with exactly these bytes.
    Body(Bytes),
    /// 200 (HEAD).
    Ok,
    /// 200 with this many entries under the key; `complete`: no `Link` to
    /// a next page.
    Entries(&'static str, usize, bool),
}

#[derive(Clone)]
struct Figure {
    /// Row ids: rate, p99, CPU per request.
    ids: [&'static str; 3],
    workload: String,
    metric: String,
    path: String,
    tool: Tool,
    expect: Expect,
    target: Option<f64>,
}

/// One load-generator run: requests/s, p99 latency (ms), requests completed.
#[derive(Debug, PartialEq)]
pub struct Rate {
    pub rate: f64,
    pub p99_ms: f64,
    pub requests: u64,
}

/// Runs the workload; the catalog setup (`cat/r*`, `bench/tags`) must be done.
pub async fn run(b: &mut Bench, o: &Opts) {
    let secs = if o.quick { 2 } else { 5 };
    let img = Arc::new(TinyImage::new(crate::prng::seed_of(&[18])));
    let tag = |i: usize| format!("t{i:03}");
    let mid = format!("cat/r{:05}", o.repos / 2 - 1);
    let h1 = match o.tls {
        true => format!("HTTP/1.1 over TLS, wrk {CONNS} conns"),
        false => format!("HTTP/1.1, wrk {CONNS} conns"),
    };
    let h2 = match o.tls {
        true => format!("HTTP/2 over TLS, h2load {CONNS} conns × {STREAMS} streams"),
        false => format!("HTTP/2 h2c, h2load {CONNS} conns × {STREAMS} streams"),
    };
    let manifest = format!("/v2/{REPO}/manifests/{}", tag(0));
    let tags_path = format!("/v2/{REPO}/tags/list");
    let fig = |ids, workload: &str, metric: String, path: &str, tool, expect, target| Figure {
        ids,
        workload: format!("8. rate: {workload}"),
        metric,
        path: path.to_string(),
        tool,
        expect,
        target,
    };
    let figures = vec![
        fig(
            ["rate-mget", "rate-mget-p99", "rate-mget-cpu"],
            "manifest GET",
            format!("by tag, {h1}"),
            &manifest,
            Tool::Wrk,
            Expect::Body(img.manifest.clone()),
            Some(3.0),
        ),
        fig(
            ["rate-h2-mget", "rate-h2-mget-p99", "rate-h2-mget-cpu"],
            "manifest GET",
            format!("by tag, {h2}"),
            &manifest,
            Tool::H2load,
            Expect::Body(img.manifest.clone()),
            None,
        ),
        fig(
            ["rate-head", "rate-head-p99", "rate-head-cpu"],
            "blob HEAD",
            format!("HTTP/1.1, raw-socket loop, {CONNS} conns"),
            &format!("/v2/{REPO}/blobs/{}", img.layer_digest),
            Tool::RawHead,
            Expect::Ok,
            None,
        ),
        fig(
            ["rate-tags", "rate-tags-p99", "rate-tags-cpu"],
            "tags/list",
            format!("{TAGS} tags, {h1}"),
            &tags_path,
            Tool::Wrk,
            Expect::Entries("tags", TAGS, true),
            Some(10.0),
        ),
        fig(
            ["rate-h2-tags", "rate-h2-tags-p99", "rate-h2-tags-cpu"],
            "tags/list",
            format!("{TAGS} tags, {h2}"),
            &tags_path,
            Tool::H2load,
            Expect::Entries("tags", TAGS, true),
            None,
        ),
        fig(
            ["rate-tags-big", "rate-tags-big-p99", "rate-tags-big-cpu"],
            "tags/list",
            format!("{} tags (bench/tags), {h1}", o.tags),
            "/v2/bench/tags/tags/list",
            Tool::Wrk,
            Expect::Entries("tags", o.tags, true),
            None,
        ),
        fig(
            ["rate-cat", "rate-cat-p99", "rate-cat-cpu"],
            "_catalog",
            format!("first page n=100 of {} repos, {h1}", o.repos),
            "/v2/_catalog?n=100",
            Tool::Wrk,
            Expect::Entries("repositories", 100, false),
            Some(50.0),
        ),
        fig(
            ["rate-cat-mid", "rate-cat-mid-p99", "rate-cat-mid-cpu"],
            "_catalog",
            format!("page n=100 after {mid}, {h1}"),
            &format!("/v2/_catalog?n=100&last={mid}"),
            Tool::Wrk,
            Expect::Entries("repositories", 100, false),
            Some(50.0),
        ),
    ];
    eprintln!(
        "== 8. keep-alive request rate: wrk / h2load / raw HEAD loop, {secs} s per run, {CONNS} connections"
    );
    for f in &figures {
        let r = b.row(f.ids[0], &f.workload, &f.metric, "req/s", true, 0);
        if let Some(t) = f.target {
            r.target = Target::Ratio(t);
        }
        b.row(f.ids[1], &f.workload, "p99 latency", "ms", false, 2);
        b.row(
            f.ids[2],
            &f.workload,
            "server CPU per request",
            "µs",
            false,
            1,
        );
    }
    let all_ids: Vec<&str> = figures.iter().flat_map(|f| f.ids).collect();

    // Setup (not measured): one tiny image tagged TAGS times.
    let i2 = img.clone();
    b.setup(&format!("{REPO} with {TAGS} tags"), &all_ids, move |reg| {
        let img = i2.clone();
        async move {
            img.push(&reg, REPO, &tag(0)).await?;
            let r2 = reg.clone();
            let deadline = Instant::now() + Duration::from_secs(300);
            let done = par(TAGS - 1, 16, deadline, move |i| {
                let (reg, img) = (r2.clone(), img.clone());
                async move { reg.put_manifest(REPO, &tag(i + 1), &img.manifest).await }
            })
            .await?;
            ensure!(done == TAGS - 1, "setup timed out after {done} tags");
            Ok(())
        }
    })
    .await;

    // Which registries answer h2c with prior knowledge (Distribution 2.8
    // has no h2c at all: HTTP/2 only over TLS), or with --tls, HTTP/2 by ALPN.
    let h2c = Arc::new(Mutex::new(HashSet::new()));
    let h2c2 = h2c.clone();
    let h2_ids: Vec<&str> = figures
        .iter()
        .filter(|f| f.tool == Tool::H2load)
        .flat_map(|f| f.ids)
        .collect();
    b.setup("h2c probe (h2load -n 10)", &h2_ids, move |reg| {
        let h2c = h2c2.clone();
        async move {
            let url = reg.url("/v2/");
            let mut cmd = Command::new("h2load");
            cmd.args(["-n", "10", "-c", "1"]).arg(&url);
            let out = run_cmd_async(cmd, Duration::from_secs(30)).await?;
            if parse_h2load(&out).is_ok() {
                h2c.lock().unwrap().insert(reg.base.clone());
            }
            Ok(())
        }
    })
    .await;
    let mut pids = Vec::new();
    for t in &b.targets {
        if let (Some(s), Some(reg), None) = (&t.server, &t.reg, &t.down) {
            pids.push((reg.base.clone(), s.pid));
            // The no-fsync reference runs the push workloads only: nothing to note.
            if !t.nosync && !h2c.lock().unwrap().contains(&reg.base) {
                let how = match o.tls {
                    true => "no HTTP/2 over TLS (ALPN h2)",
                    false => {
                        "no answer to HTTP/2 with prior knowledge on its plain-HTTP port (h2c)"
                    }
                };
                b.notes
                    .push(format!("{}: {how}; its HTTP/2 rows are n/a", t.label));
            }
        }
    }
    if o.tls {
        b.notes
            .push("--tls: the raw HEAD loop speaks plain HTTP only; its rows are n/a".to_string());
    }
    let pids = Arc::new(pids);
    let tls = o.tls;

    let dur = Duration::from_secs(secs);
    if let Err(e) = std::fs::create_dir_all(&o.dir) {
        eprintln!("  {}: {e} (h2load's logs go there)", o.dir.display());
    }
    for f in figures {
        let (f, pids, h2c, dir) = (Arc::new(f), pids.clone(), h2c.clone(), o.dir.clone());
        let key = format!("{}, {}", f.workload.trim_start_matches("8. "), f.metric);
        b.ab(&key, &f.ids.clone(), move |reg, rep| {
            let (f, pids, h2c, dir) = (f.clone(), pids.clone(), h2c.clone(), dir.clone());
            async move {
                if f.tool == Tool::H2load && !h2c.lock().unwrap().contains(&reg.base) {
                    return Ok(vec![]); // n/a: no h2c
                }
                if f.tool == Tool::RawHead && tls {
                    return Ok(vec![]); // n/a: plain HTTP only
                }
                check(&reg, &f.path, &f.expect).await?;
                let pid = pids
                    .iter()
                    .find(|(base, _)| *base == reg.base)
                    .map(|p| p.1)
                    .context("no server process")?;
                settle(&pids).await;
                let url = reg.url(&f.path);
                let accept = matches!(f.expect, Expect::Body(_)).then_some(ACCEPT_MANIFESTS);
                let cpu0 = server::cpu_seconds(pid).context("reading the server's CPU time")?;
                let r = match f.tool {
                    Tool::Wrk => wrk(&url, accept, dur).await?,
                    Tool::H2load => {
                        let port = reg.base.rsplit(':').next().unwrap_or("0");
                        let log = dir.join(format!("h2load-{}-{port}-{rep}.log", f.ids[0]));
                        let r = h2load(&url, accept, dur, &log).await;
                        let _ = std::fs::remove_file(&log);
                        r?
                    }
                    Tool::RawHead => raw_head(&reg.base, &f.path, CONNS, dur).await?,
                };
                let cpu = server::cpu_seconds(pid).context("reading the server's CPU time")? - cpu0;
                Ok(vec![
                    (f.ids[0], r.rate),
                    (f.ids[1], r.p99_ms),
                    (f.ids[2], cpu * 1e6 / r.requests as f64),
                ])
            }
        })
        .await;
    }
}

/// One request with reqwest: the answer must be what `expect` says.
async fn check(reg: &Reg, path: &str, expect: &Expect) -> Result<()> {
    let method = match expect {
        Expect::Ok => reqwest::Method::HEAD,
        _ => reqwest::Method::GET,
    };
    let r = reg
        .http
        .request(method.clone(), reg.url(path))
        .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS)
        .timeout(Duration::from_secs(120))
        .send()
        .await?;
    let status = r.status();
    let link = r.headers().contains_key(reqwest::header::LINK);
    let body = r.bytes().await?;
    ensure!(
        status == reqwest::StatusCode::OK,
        "{method} {path}: HTTP {status}"
    );
    match expect {
        Expect::Body(want) => ensure!(
            body == *want,
            "GET {path}: {} bytes, not the manifest pushed",
            body.len()
        ),
        Expect::Ok => {}
        Expect::Entries(key, n, complete) => {
            let got = count_entries(&body, key)?;
            ensure!(got == *n, "GET {path}: {got} {key}, expected {n}");
            ensure!(
                !(*complete && link),
                "GET {path}: a Link to a next page, expected every entry in one answer"
            );
        }
    }
    Ok(())
}

/// Waits (up to 20 s) until no server uses CPU, so that work left over from
/// the previous run (Distribution keeps walking its catalog for requests the
/// client has given up on) is not measured against the next one.
async fn settle(pids: &[(String, u32)]) {
    let total = || -> f64 {
        pids.iter()
            .filter_map(|(_, p)| server::cpu_seconds(*p))
            .sum()
    };
    let t = Instant::now();
    let mut last = total();
    while t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = total();
        // One clock tick (10 ms) in 200 ms is idle.
        if now - last <= 0.011 {
            break;
        }
        last = now;
    }
    if t.elapsed() > Duration::from_millis(500) {
        eprintln!(
            "      waited {:.1} s for the registries to go idle",
            t.elapsed().as_secs_f64()
        );
    }
}

async fn wrk(url: &str, accept: Option<&str>, dur: Duration) -> Result<Rate> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2".to_string(),
        format!("-c{CONNS}"),
        format!("-d{}s", dur.as_secs()),
        "--latency".into(),
        "--timeout".into(),
        "30s".into(),
    ]);
    if let Some(a) = accept {
        cmd.arg("-H").arg(format!("Accept: {a}"));
    }
    cmd.arg(url);
    let out = run_cmd_async(cmd, dur + Duration::from_secs(60)).await?;
    parse_wrk(&out).with_context(|| format!("wrk {url}"))
}

async fn h2load(
    url: &str,
    accept: Option<&str>,
    dur: Duration,
    log: &std::path::Path,
) -> Result<Rate> {
    let mut cmd = Command::new("h2load");
    cmd.args([
        format!("-c{CONNS}"),
        format!("-m{STREAMS}"),
        "-t2".into(),
        format!("-D{}", dur.as_secs()),
    ])
    .arg(format!("--log-file={}", log.display()));
    if let Some(a) = accept {
        cmd.arg("-H").arg(format!("Accept: {a}"));
    }
    cmd.arg(url);
    let out = run_cmd_async(cmd, dur + Duration::from_secs(60)).await?;
    let (rate, requests) = parse_h2load(&out).with_context(|| format!("h2load {url}"))?;
    let text = std::fs::read_to_string(log).context("reading h2load's log")?;
    let p99_ms = h2load_log_p99(&text).with_context(|| format!("h2load {url}"))?;
    Ok(Rate {
        rate,
        p99_ms,
        requests,
    })
}

/// HEAD `path` in a loop over `conns` keep-alive connections for `dur`: each
/// answer is read up to the blank line after its headers and must be 200.
async fn raw_head(base: &str, path: &str, conns: usize, dur: Duration) -> Result<Rate> {
    let addr = base.trim_start_matches("http://").to_string();
    let req = Arc::new(format!("HEAD {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    let t = Instant::now();
    let deadline = t + dur;
    let mut hs = Vec::new();
    for _ in 0..conns {
        let (addr, req) = (addr.clone(), req.clone());
        hs.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await?;
            s.set_nodelay(true)?;
            let mut lat = Vec::new();
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 4096];
            while Instant::now() < deadline {
                let t0 = Instant::now();
                s.write_all(req.as_bytes()).await?;
                buf.clear();
                let end = loop {
                    let n =
                        tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await??;
                    ensure!(n > 0, "HEAD: connection closed by the server");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break e + 4;
                    }
                    ensure!(buf.len() < 65536, "HEAD: headers over 64 KiB");
                };
                ensure!(end == buf.len(), "HEAD: bytes after the headers");
                if !buf.starts_with(b"HTTP/1.1 200 ") {
                    let line = String::from_utf8_lossy(&buf);
                    bail!("HEAD: {}", line.lines().next().unwrap_or(""));
                }
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in hs {
        all.extend(h.await??);
    }
    let secs = t.elapsed().as_secs_f64();
    ensure!(!all.is_empty(), "HEAD: no answer in {dur:?}");
    Ok(Rate {
        rate: all.len() as f64 / secs,
        p99_ms: percentile(&mut all, 0.99),
        requests: all.len() as u64,
    })
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p).ceil() as usize).saturating_sub(1);
    v[i.min(v.len() - 1)]
}

/// A wrk duration (`63.23ms`, `217.00us`, `1.02s`, `2.00m`) in ms.
fn wrk_ms(s: &str) -> Result<f64> {
    let num = |x: &str| x.parse::<f64>().with_context(|| format!("wrk time {s:?}"));
    Ok(if let Some(x) = s.strip_suffix("us") {
        num(x)? / 1e3
    } else if let Some(x) = s.strip_suffix("ms") {
        num(x)?
    } else if let Some(x) = s.strip_suffix('s') {
        num(x)? * 1e3
    } else if let Some(x) = s.strip_suffix('m') {
        num(x)? * 60e3
    } else if let Some(x) = s.strip_suffix('h') {
        num(x)? * 3600e3
    } else {
        bail!("wrk time {s:?}: no unit")
    })
}

/// wrk's report (with `--latency`): requests/s, p99 and requests. Any
/// non-2xx/3xx answer or socket error is an error, so a rate of errors is
/// never taken for a rate.
pub fn parse_wrk(out: &str) -> Result<Rate> {
    let (mut rate, mut p99, mut requests) = (None, None, None);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rate = Some(v.trim().parse::<f64>()?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = Some(wrk_ms(v.trim())?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            bail!("{} answers were not 2xx or 3xx", v.trim());
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            bail!("socket errors:{v}");
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests = Some(n.trim().parse::<u64>()?);
        }
    }
    let requests = requests.context("no request count in wrk's output")?;
    ensure!(requests > 0, "no request completed");
    Ok(Rate {
        rate: rate.context("no Requests/sec in wrk's output")?,
        p99_ms: p99.context("no 99% latency in wrk's output (--latency)")?,
        requests,
    })
}

/// h2load's summary: (requests/s, requests succeeded). Any failed, errored
/// or timed-out request, or any answer other than 2xx, is an error.
pub fn parse_h2load(out: &str) -> Result<(f64, u64)> {
    let (mut rate, mut ok) = (None, None);
    // "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"
    let counts = |rest: &str| -> Vec<(String, u64)> {
        rest.split(',')
            .filter_map(|p| {
                let (n, what) = p.trim().split_once(' ')?;
                Some((what.to_string(), n.parse().ok()?))
            })
            .collect()
    };
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // "finished in 2.00s, 91405.50 req/s, 2.44MB/s"
            let r = rest
                .split(',')
                .find_map(|p| p.trim().strip_suffix(" req/s"))
                .context("no req/s in h2load's output")?;
            rate = Some(r.parse::<f64>()?);
        } else if let Some(rest) = line.strip_prefix("requests:") {
            for (what, n) in counts(rest) {
                match what.as_str() {
                    "succeeded" => ok = Some(n),
                    "failed" | "errored" | "timeout" if n > 0 => {
                        bail!("{n} requests {what}")
                    }
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes:") {
            for (what, n) in counts(rest) {
                ensure!(what == "2xx" || n == 0, "{n} answers {what}");
            }
        }
    }
    let ok = ok.context("no request counts in h2load's output")?;
    ensure!(ok > 0, "no request succeeded");
    Ok((
        rate.context("no `finished in` line in h2load's output")?,
        ok,
    ))
}

/// p99 (ms) from h2load's `--log-file`: one line per request, start time
/// (µs), status, duration (µs), tab-separated. Any non-2xx status is an error.
pub fn h2load_log_p99(log: &str) -> Result<f64> {
    let mut ms = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(f.len() >= 3, "h2load log line {line:?}");
        let status: u16 = f[1].trim().parse()?;
        ensure!((200..300).contains(&status), "an answer was HTTP {status}");
        ms.push(f[2].trim().parse::<f64>()? / 1e3);
    }
    ensure!(!ms.is_empty(), "empty h2load log");
    Ok(percentile(&mut ms, 0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OK: &str = "Running 2s test @ http://127.0.0.1:15001/v2/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.79ms   13.96ms 156.21ms   89.29%
    Req/Sec   779.47    159.41     1.23k    75.00%
  Latency Distribution
     50%   10.44ms
     75%   17.80ms
     90%   27.71ms
     99%   63.23ms
  3110 requests in 2.00s, 519.35KB read
Requests/sec:   1551.67
Transfer/sec:    259.12KB
";

    const WRK_404: &str = "Running 1s test @ http://127.0.0.1:15003/v2/nothing/manifests/x
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00ms  496.09us   7.11ms   81.32%
    Req/Sec     8.18k   646.34     8.88k    81.82%
  Latency Distribution
     50%    0.95ms
     75%    1.22ms
     90%    1.49ms
     99%    2.59ms
  17884 requests in 1.10s, 4.14MB read
  Non-2xx or 3xx responses: 17884
Requests/sec:  16257.22
Transfer/sec:      3.77MB
";

    /// What wrk 4.1 prints for a HEAD whose answer has a Content-Length.
    const WRK_HEAD: &str = "Running 1s test @ http://127.0.0.1:15001/v2/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.10s, 2.64KB read
Requests/sec:      0.00
Transfer/sec:      2.40KB
";

    const H2LOAD_OK: &str = "starting benchmark...
spawning thread #0: 4 total client(s). 2000 total requests
Application protocol: h2c
progress: 10% done
progress: 100% done

finished in 768.68ms, 2601.88 req/s, 71.77KB/s
requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 55.17KB (56492) total, 15.89KB (16272) headers (space savings 93.69%), 3.91KB (4000) data
                     min         max         mean         sd        +/- sd
time for request:       37us    279.83ms     11.23ms     48.15ms    96.00%
time for connect:      303us       540us       402us       100us    75.00%
time to 1st byte:   209.89ms    210.20ms    210.03ms       128us    50.00%
req/s           :     882.33      884.22      883.09        0.80    75.00%
";

    const H2LOAD_404: &str = "finished in 1.00s, 10928.00 req/s, 1.13MB/s
requests: 10928 total, 10930 started, 10928 done, 0 succeeded, 10928 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 10928 4xx, 0 5xx
";

    /// Distribution 2.8 closes the connection on the HTTP/2 preface.
    const H2LOAD_NO_H2C: &str = "Application protocol: h2c
finished in 1.03ms, 0.00 req/s, 327.11KB/s
requests: 10 total, 2 started, 0 done, 0 succeeded, 10 failed, 10 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
";

    #[test]
    fn wrk_report() {
        assert_eq!(
            parse_wrk(WRK_OK).unwrap(),
            Rate {
                rate: 1551.67,
                p99_ms: 63.23,
                requests: 3110
            }
        );
    }

    #[test]
    fn wrk_errors_are_not_a_rate() {
        let e = parse_wrk(WRK_404).unwrap_err().to_string();
        assert!(e.contains("17884 answers were not 2xx"), "{e}");
        let socket = WRK_OK.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        let e = parse_wrk(&socket).unwrap_err().to_string();
        assert!(e.contains("read 3"), "{e}");
        assert!(parse_wrk(WRK_HEAD).is_err());
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }

    #[test]
    fn wrk_units() {
        assert_eq!(wrk_ms("217.00us").unwrap(), 0.217);
        assert_eq!(wrk_ms("3.05ms").unwrap(), 3.05);
        assert_eq!(wrk_ms("1.50s").unwrap(), 1500.0);
        assert_eq!(wrk_ms("2.00m").unwrap(), 120_000.0);
        assert!(wrk_ms("12").is_err());
    }

    #[test]
    fn h2load_report() {
        assert_eq!(parse_h2load(H2LOAD_OK).unwrap(), (2601.88, 2000));
        let e = parse_h2load(H2LOAD_404).unwrap_err().to_string();
        assert!(e.contains("10928 requests failed"), "{e}");
        assert!(parse_h2load(H2LOAD_NO_H2C).is_err());
        let e = parse_h2load(&H2LOAD_OK.replace("2000 2xx, 0 3xx", "1999 2xx, 1 3xx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 answers 3xx"), "{e}");
    }

    #[test]
    fn h2load_log() {
        let mut log = String::new();
        for i in 1..=100 {
            log.push_str(&format!("1796117545887306\t200\t{}\n", i * 1000));
        }
        assert_eq!(h2load_log_p99(&log).unwrap(), 99.0);
        let bad = "1796117633639894\t404\t568\n";
        assert!(h2load_log_p99(bad).is_err());
        assert!(h2load_log_p99("").is_err());
    }
}
