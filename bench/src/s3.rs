//! The local S3 servers the S3 mode runs registries against (s3s-fs, and
//! optionally moto), and a minimal AWS Signature V4 client to measure their
//! raw PUT/GET speed.

use crate::prng::BlobSpec;
use crate::server::{free_port, spawn_listening, stop_child};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use reqwest::{Client, Method, StatusCode};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const ACCESS_KEY: &str = "ferrybench";
pub const SECRET_KEY: &str = "ferrybench-secret-key";
pub const REGION: &str = "us-east-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// `s3s-fs`: objects as files in a directory, SigV4 checked.
    S3sFs,
    /// `moto_server`: Python, objects in memory or spooled to temporary files.
    Moto,
}

impl BackendKind {
    pub fn label(self) -> &'static str {
        match self {
            BackendKind::S3sFs => "s3s-fs",
            BackendKind::Moto => "moto",
        }
    }
}

pub struct Backend {
    pub kind: BackendKind,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub pid: u32,
    /// s3s-fs: the root directory (one subdirectory per bucket); moto: its TMPDIR.
    pub root: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Backend {
    /// Starts s3s-fs over a fresh `dir/data` holding one directory per bucket
    /// (s3s-fs has no CreateBucket that survives; a directory is a bucket).
    pub fn start_s3s_fs(bin: &str, dir: &Path, buckets: &[&str]) -> Result<Backend> {
        let root = dir.join("data");
        for b in buckets {
            std::fs::create_dir_all(root.join(b))?;
        }
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
        ])
        .arg(&root);
        Self::spawn(BackendKind::S3sFs, cmd, dir, root, port)
    }

    /// Starts moto_server with its temporary files under `dir/tmp`; buckets are
    /// created with `create_buckets` once it listens. moto checks no signatures.
    pub fn start_moto(bin: &str, dir: &Path) -> Result<Backend> {
        let root = dir.join("tmp");
        std::fs::create_dir_all(&root)?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("TMPDIR", &root);
        Self::spawn(BackendKind::Moto, cmd, dir, root, port)
    }

    fn spawn(
        kind: BackendKind,
        cmd: Command,
        dir: &Path,
        root: PathBuf,
        port: u16,
    ) -> Result<Backend> {
        std::fs::create_dir_all(dir)?;
        let log_path = dir.join("server.log");
        let addr = format!("127.0.0.1:{port}");
        let child = spawn_listening(cmd, kind.label(), &addr, &log_path)?;
        Ok(Backend {
            kind,
            endpoint: format!("http://{addr}"),
            pid: child.id(),
            root,
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

    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        log.lines().rev().take(n).collect::<Vec<_>>().join(" | ")
    }

    pub fn s3(&self, http: &Client) -> S3Client {
        S3Client {
            http: http.clone(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// SIGTERM to our own child, by PID; SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- SigV4 -------------------------------------------------------------------

fn sha256_hex(data: &[u8]) -> String {
    crate::prng::hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `(20261122T215750Z, 20261122)` for a Unix time.
fn amz_dates(unix: u64) -> (String, String) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let date = format!("{y:04}{m:02}{d:02}");
    (
        format!(
            "{date}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ),
        date,
    )
}

/// The headers (`x-amz-date`, `x-amz-content-sha256`, `authorization`) that
/// sign `method host path` (no query) with the given payload hash.
fn sign(
    method: &Method,
    host: &str,
    path: &str,
    payload_hash: &str,
) -> Vec<(&'static str, String)> {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (stamp, date) = amz_dates(unix);
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{stamp}\n\n{signed}\n{payload_hash}"
    );
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    let k = hmac(&k, REGION.as_bytes());
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    let sig = crate::prng::hex(&hmac(&k, to_sign.as_bytes()));
    vec![
        ("x-amz-date", stamp),
        ("x-amz-content-sha256", payload_hash.to_string()),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={sig}"
            ),
        ),
    ]
}

/// Raw object operations against one S3 server, path-style, SigV4-signed.
#[derive(Clone)]
pub struct S3Client {
    http: Client,
    endpoint: String,
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl S3Client {
    fn request(&self, method: Method, path: &str, payload_hash: &str) -> reqwest::RequestBuilder {
        let host = self.endpoint.trim_start_matches("http://");
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.endpoint))
            .timeout(Duration::from_secs(600));
        for (k, v) in sign(&method, host, path, payload_hash) {
            req = req.header(k, v);
        }
        req
    }

    async fn check(what: &str, r: reqwest::Response) -> Result<reqwest::Response> {
        if r.status().is_success() {
            return Ok(r);
        }
        let st = r.status();
        let body: String = r
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        bail!("{what}: HTTP {st}: {body}")
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let r = self
            .request(Method::PUT, &format!("/{bucket}"), EMPTY_SHA256)
            .header("content-length", "0")
            .send()
            .await?;
        if r.status() == StatusCode::CONFLICT {
            return Ok(()); // already there
        }
        Self::check(&format!("PUT /{bucket}"), r).await.map(|_| ())
    }

    /// PutObject streaming the blob; with `signed_payload` the payload hash is
    /// the blob's SHA-256 (its digest, precomputed), which the server checks;
    /// otherwise `UNSIGNED-PAYLOAD`.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        spec: &BlobSpec,
        signed_payload: bool,
    ) -> Result<()> {
        let hash = if signed_payload {
            spec.digest.trim_start_matches("sha256:").to_string()
        } else {
            "UNSIGNED-PAYLOAD".into()
        };
        let path = format!("/{bucket}/{key}");
        let reader = spec.reader(1 << 20);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(reader, |mut r| async move {
                r.next_chunk().map(|c| (Ok::<Bytes, std::io::Error>(c), r))
            }));
        let r = self
            .request(Method::PUT, &path, &hash)
            .header("content-length", spec.len.to_string())
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .with_context(|| format!("PUT {path}"))?;
        Self::check(&format!("PUT {path}"), r).await.map(|_| ())
    }

    /// GetObject, body drained; returns the byte count.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<u64> {
        let path = format!("/{bucket}/{key}");
        let r = self
            .request(Method::GET, &path, EMPTY_SHA256)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let mut r = Self::check(&format!("GET {path}"), r).await?;
        let mut n = 0u64;
        while let Some(c) = r.chunk().await? {
            n += c.len() as u64;
        }
        Ok(n)
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let path = format!("/{bucket}/{key}");
        let r = self
            .request(Method::DELETE, &path, EMPTY_SHA256)
            .send()
            .await?;
        Self::check(&format!("DELETE {path}"), r).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_dates(0), ("19700101T000000Z".into(), "19700101".into()));
        // 2026-11-22 21:57:50 UTC
        assert_eq!(amz_dates(1_795_384_670).0, "20261122T215750Z");
        assert_eq!(amz_dates(951_782_400).1, "20000229");
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        assert_eq!(
            crate::prng::hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
