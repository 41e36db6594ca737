//! Disk contention for the `contend` workload: `dd if=/dev/zero
//! of=<dir>/contend bs=1M count=N oflag=direct` writing to the registries'
//! filesystem, restarted until stopped, so a workload runs against a disk
//! someone else is writing to. Every dd is bounded (count and time) and
//! killed by its PID; the file is removed at the end.

use crate::Bench;
use crate::prng::BlobSpec;
use crate::report::Target;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Workload 7, contended: the four concurrent streamed pushes of `push4`
/// (fresh blobs, `specs[rep * 4 + i]`) while dd writes `mib` MiB runs into
/// `dir`, on the registries' filesystem. Aggregate MB/s, the server's peak
/// RSS, its CPU per GiB and what dd wrote meanwhile.
pub async fn workload(b: &mut Bench, specs: &[BlobSpec], dir: &Path, mib: u64, big: &str) {
    eprintln!(
        "== 7. four concurrent streamed pushes of {big} each while dd writes to the same disk"
    );
    let w = "7. 4 × push, disk contended";
    let key = "4 concurrent streamed pushes, dd writing";
    b.row(
        "contend-rate",
        w,
        &format!("4 × {big} streamed, aggregate, while dd oflag=direct writes"),
        "MB/s",
        true,
        0,
    );
    b.row("contend-rss", w, "server peak RSS", "MiB", false, 1)
        .target = Target::FerryAtMost(64.0);
    b.cpug_row("contend", w, "4 pushes");
    b.row(
        "contend-dd",
        w,
        "dd's own writes meanwhile (context, not a score)",
        "MB/s",
        true,
        0,
    );
    let ids = ["contend-rate", "contend-rss", "contend-cpug", "contend-dd"];
    b.ab(key, &ids, move |reg, rep| async move {
        let blobs: Vec<_> = specs[rep * 4..][..4]
            .iter()
            .map(BlobSpec::generate)
            .collect();
        let dd = Contender::start(dir, mib, Duration::from_secs(900));
        let t = Instant::now();
        let pushed = reg
            .push_streamed_at_once(&format!("bench/contend-{rep}"), &blobs)
            .await;
        let secs = t.elapsed().as_secs_f64();
        let written = dd.finish()?;
        let bytes = pushed?;
        eprintln!(
            "      dd: {} run(s), {:.0} MiB in {:.1} s",
            written.runs,
            written.bytes as f64 / (1 << 20) as f64,
            written.secs
        );
        Ok(vec![
            ("contend-rate", bytes as f64 / 1e6 / secs),
            ("contend-bytes", bytes as f64),
            ("contend-dd", written.mbps()),
        ])
    })
    .await;
    b.rss_from_sampler(key, "contend-rss");
}

pub struct Contender {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<Written>>>,
    path: PathBuf,
}

/// What the dd runs wrote while the contender ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    pub bytes: u64,
    pub secs: f64,
    pub runs: usize,
}

impl Written {
    pub fn mbps(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / 1e6 / self.secs
        } else {
            0.0
        }
    }
}

impl Contender {
    /// Starts writing `mib` MiB per dd run into `dir/contend`, restarting dd
    /// until `finish` (or `limit` has passed).
    pub fn start(dir: &Path, mib: u64, limit: Duration) -> Contender {
        let stop = Arc::new(AtomicBool::new(false));
        let path = dir.join("contend");
        let (s2, p2) = (stop.clone(), path.clone());
        let handle = std::thread::spawn(move || run(&p2, mib, limit, &s2));
        Contender {
            stop,
            handle: Some(handle),
            path,
        }
    }

    /// Stops the dd running now (by PID) and removes the file.
    pub fn finish(mut self) -> Result<Written> {
        self.stop.store(true, Ordering::Relaxed);
        let w = match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("contender thread panicked"))?,
            None => Ok(Written::default()),
        };
        let _ = std::fs::remove_file(&self.path);
        w
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn run(path: &Path, mib: u64, limit: Duration, stop: &AtomicBool) -> Result<Written> {
    let t = Instant::now();
    let mut w = Written::default();
    while !stop.load(Ordering::Relaxed) && t.elapsed() < limit {
        let mut child = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", path.display()))
            .args(["bs=1M", &format!("count={mib}"), "oflag=direct"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning dd")?;
        w.runs += 1;
        let killed = loop {
            if child.try_wait()?.is_some() {
                break false;
            }
            if stop.load(Ordering::Relaxed) || t.elapsed() >= limit {
                // Child::kill is SIGKILL to this dd's PID only.
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // dd truncates the file when it starts; what it holds now is what
        // this run wrote (O_DIRECT: on the disk, not in the page cache).
        w.bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if killed {
            break;
        }
    }
    w.secs = t.elapsed().as_secs_f64();
    Ok(w)
}
