//! The machine's physical limits, measured in the same run.

use crate::prng::Rng;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, Default)]
pub struct Ceilings {
    /// SHA-256 on one core, MB/s (10^6 bytes per second).
    pub sha256: f64,
    /// Sequential write of `disk_bytes` followed by fsync, MB/s.
    pub disk_write: f64,
    /// The same writes without the fsync (page cache only), MB/s: what a
    /// registry that does not fsync at all is bounded by.
    pub disk_write_nosync: f64,
    /// The same writes with `O_DIRECT` from an aligned buffer, then fsync, MB/s: past the
    /// page cache, as Ferry writes uploads.
    pub disk_write_direct: f64,
    pub disk_bytes: u64,
    /// One loopback TCP stream, MB/s.
    pub loopback: f64,
    /// PRNG generation on one core (the bench's own data source), MB/s.
    pub prng: f64,
}

pub fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

pub fn sha256_one_core(total: u64) -> f64 {
    let mut buf = vec![0u8; 8 << 20];
    Rng::new(1).fill(&mut buf);
    let mut h = Sha256::new();
    h.update(&buf); // warm up
    let mut h = Sha256::new();
    let t = Instant::now();
    let mut done = 0u64;
    while done < total {
        h.update(&buf);
        done += buf.len() as u64;
    }
    std::hint::black_box(h.finalize());
    mbps(done, t.elapsed().as_secs_f64())
}

pub fn prng_one_core(total: u64) -> f64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut r = Rng::new(2);
    let t = Instant::now();
    let mut done = 0u64;
    while done < total {
        r.fill(&mut buf);
        std::hint::black_box(&buf);
        done += buf.len() as u64;
    }
    mbps(done, t.elapsed().as_secs_f64())
}

/// Sequential 8 MiB writes of `total` bytes and an fsync at the end, the way a
/// registry writes a blob; time includes the fsync. With `sync` false, no
/// fsync: the time to get the bytes into the page cache.
pub fn disk_write(dir: &Path, total: u64, sync: bool) -> Result<f64> {
    let path = dir.join("ceiling-disk-write.bin");
    let mut buf = vec![0u8; 8 << 20];
    Rng::new(3).fill(&mut buf);
    unsafe { libc::sync() };
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&path)?;
        let mut done = 0u64;
        while done < total {
            let n = (total - done).min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            done += n as u64;
        }
        if sync {
            f.sync_all()?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(mbps(total, secs))
}

/// Sequential 8 MiB `O_DIRECT` writes of `total` bytes from an aligned buffer, then an
/// fsync (the time includes it): the disk's synced write speed past the page cache.
pub fn disk_write_direct(dir: &Path, total: u64) -> Result<f64> {
    use std::os::unix::fs::OpenOptionsExt;
    const ALIGN: usize = 4096;
    let path = dir.join("ceiling-disk-write-direct.bin");
    let size = 8 << 20;
    let mut storage = vec![0u8; size + ALIGN];
    let start = storage.as_ptr().align_offset(ALIGN);
    let buf = &mut storage[start..start + size];
    Rng::new(4).fill(buf);
    unsafe { libc::sync() };
    let t = Instant::now();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        let mut done = 0u64;
        while done < total {
            f.write_all(buf)?;
            done += size as u64;
        }
        f.sync_all()?;
    }
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(mbps(total.div_ceil(size as u64) * size as u64, secs))
}

/// One TCP stream over loopback, in-process: 256 KiB writes, reader drains.
pub async fn loopback(total: u64) -> Result<f64> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await?;
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok::<u64, std::io::Error>(got)
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let buf = vec![7u8; 256 << 10];
    let t = Instant::now();
    let mut done = 0u64;
    while done < total {
        s.write_all(&buf).await?;
        done += buf.len() as u64;
    }
    s.shutdown().await?;
    drop(s);
    let got = reader.await??;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(got == done, "loopback: sent {done}, received {got}");
    Ok(mbps(done, secs))
}
