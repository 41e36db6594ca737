//! The OCI distribution API operations the workloads use.

use crate::prng::{Blob, BlobSpec};
use crate::tls::Tls;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Client, Method, StatusCode};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const OCTET: &str = "application/octet-stream";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

const BIG: Duration = Duration::from_secs(600);
const SMALL: Duration = Duration::from_secs(60);

pub fn client(max_idle: usize, tls: Option<&Tls>) -> Result<Client> {
    client_with_auth(max_idle, None, tls)
}

/// A client that sends `authorization` (e.g. `Basic ...` or `Bearer ...`)
/// on every request, as docker does once logged in or holding a token; with `tls`, one that
/// trusts the bench's self-signed certificate (and only it).
pub fn client_with_auth(
    max_idle: usize,
    authorization: Option<&str>,
    tls: Option<&Tls>,
) -> Result<Client> {
    let mut headers = HeaderMap::new();
    if let Some(a) = authorization {
        let mut v = reqwest::header::HeaderValue::from_str(a)?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut builder = Client::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&tls.pem)?);
    }
    Ok(builder
        .default_headers(headers)
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(max_idle)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()?)
}

#[derive(Clone)]
pub struct Reg {
    pub http: Client,
    pub base: String,
}

/// Resolve a Location/Link target against the registry base URL.
pub fn resolve(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        format!("{base}/{loc}")
    }
}

fn add_query(url: &str, kv: &str) -> String {
    if url.contains('?') {
        format!("{url}&{kv}")
    } else {
        format!("{url}?{kv}")
    }
}

async fn err_body(what: &str, resp: reqwest::Response) -> anyhow::Error {
    let st = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    anyhow::anyhow!("{what}: HTTP {st}: {body}")
}

fn location(base: &str, h: &HeaderMap) -> Result<String> {
    let l = h
        .get(LOCATION)
        .context("response without Location")?
        .to_str()?;
    Ok(resolve(base, l))
}

/// A request body streaming `blob` in 1 MiB views of its memory (no copy in the client).
fn stream_body(blob: &Blob) -> reqwest::Body {
    let pieces = blob.pieces(1 << 20).map(Ok::<Bytes, std::io::Error>);
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

impl Reg {
    pub fn new(http: Client, base: &str) -> Reg {
        Reg {
            http,
            base: base.to_string(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn ping(&self) -> Result<()> {
        let r = self
            .http
            .get(self.url("/v2/"))
            .timeout(SMALL)
            .send()
            .await?;
        if r.status() != StatusCode::OK {
            return Err(err_body("GET /v2/", r).await);
        }
        Ok(())
    }

    pub async fn start_upload(&self, repo: &str) -> Result<String> {
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header(CONTENT_LENGTH, "0")
            .timeout(SMALL)
            .send()
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(err_body("POST upload", r).await);
        }
        location(&self.base, r.headers())
    }

    async fn finish_put(
        &self,
        loc: &str,
        digest: &str,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<()> {
        let url = add_query(loc, &format!("digest={digest}"));
        let mut req = self.http.put(url).timeout(BIG).header(CONTENT_TYPE, OCTET);
        req = match body {
            Some((b, len)) => req.header(CONTENT_LENGTH, len.to_string()).body(b),
            None => req.header(CONTENT_LENGTH, "0"),
        };
        let r = req.send().await?;
        if r.status() != StatusCode::CREATED {
            return Err(err_body("PUT upload", r).await);
        }
        Ok(())
    }

    /// POST, then PUT ?digest= with the whole body (Content-Length set).
    pub async fn push_monolithic(&self, repo: &str, blob: &Blob) -> Result<()> {
        let loc = self.start_upload(repo).await?;
        self.finish_put(&loc, &blob.digest, Some((stream_body(blob), blob.len())))
            .await
    }

    /// POST, then PATCH with Content-Range per `chunk` bytes, then PUT ?digest=.
    pub async fn push_chunked(&self, repo: &str, blob: &Blob, chunk: usize) -> Result<()> {
        let mut loc = self.start_upload(repo).await?;
        let mut off = 0u64;
        for c in blob.pieces(chunk) {
            let n = c.len() as u64;
            let r = self
                .http
                .patch(&loc)
                .timeout(BIG)
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_LENGTH, n.to_string())
                .header("Content-Range", format!("{}-{}", off, off + n - 1))
                .body(c)
                .send()
                .await?;
            if r.status() != StatusCode::ACCEPTED {
                return Err(err_body("PATCH chunk", r).await);
            }
            loc = location(&self.base, r.headers())?;
            off += n;
        }
        self.finish_put(&loc, &blob.digest, None).await
    }

    /// Streamed pushes of every blob of `specs` at once, to `<prefix>-<i>`;
    /// waits for all of them, then reports the first failure. The bytes pushed.
    pub async fn push_streamed_at_once(&self, prefix: &str, blobs: &[Blob]) -> Result<u64> {
        let pushes: Vec<_> = blobs
            .iter()
            .enumerate()
            .map(|(i, blob)| {
                let (reg, blob, repo) = (self.clone(), blob.clone(), format!("{prefix}-{i}"));
                tokio::spawn(async move { reg.push_streamed(&repo, &blob).await })
            })
            .collect();
        let mut result = Ok(blobs.iter().map(Blob::len).sum());
        for push in pushes {
            if let Err(e) = push.await.map_err(anyhow::Error::from).and_then(|r| r) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// POST, then one PATCH streaming the whole blob (chunked transfer
    /// encoding, no Content-Range), then PUT ?digest=.
    pub async fn push_streamed(&self, repo: &str, blob: &Blob) -> Result<()> {
        let loc = self.start_upload(repo).await?;
        let r = self
            .http
            .patch(&loc)
            .timeout(BIG)
            .header(CONTENT_TYPE, OCTET)
            .body(stream_body(blob))
            .send()
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(err_body("PATCH stream", r).await);
        }
        let loc = location(&self.base, r.headers())?;
        self.finish_put(&loc, &blob.digest, None).await
    }

    /// Small in-memory blob: POST + PUT ?digest= with body.
    pub async fn push_small(&self, repo: &str, digest: &str, data: Bytes) -> Result<()> {
        let loc = self.start_upload(repo).await?;
        let len = data.len() as u64;
        self.finish_put(&loc, digest, Some((reqwest::Body::from(data), len)))
            .await
    }

    /// Cross-repository mount; falls back to an upload if the registry opens a
    /// session instead (202).
    pub async fn mount_or_push(
        &self,
        repo: &str,
        from: &str,
        digest: &str,
        data: &Bytes,
    ) -> Result<()> {
        let r = self
            .http
            .post(self.url(&format!(
                "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
            )))
            .header(CONTENT_LENGTH, "0")
            .timeout(SMALL)
            .send()
            .await?;
        match r.status() {
            StatusCode::CREATED => Ok(()),
            StatusCode::ACCEPTED => {
                let loc = location(&self.base, r.headers())?;
                self.finish_put(
                    &loc,
                    digest,
                    Some((reqwest::Body::from(data.clone()), data.len() as u64)),
                )
                .await
            }
            _ => Err(err_body("POST mount", r).await),
        }
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, body: &Bytes) -> Result<()> {
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header(CONTENT_TYPE, OCI_MANIFEST)
            .body(body.clone())
            .timeout(SMALL)
            .send()
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(err_body("PUT manifest", r).await);
        }
        Ok(())
    }

    /// GET a blob, streaming; returns the byte count. With `verify`, hashes
    /// the bytes and checks the digest.
    pub async fn pull(&self, repo: &str, spec: &BlobSpec, verify: bool) -> Result<u64> {
        let mut r = self
            .http
            .get(self.url(&format!("/v2/{repo}/blobs/{}", spec.digest)))
            .timeout(BIG)
            .send()
            .await?;
        if r.status() != StatusCode::OK {
            return Err(err_body("GET blob", r).await);
        }
        let mut n = 0u64;
        let mut h = verify.then(Sha256::new);
        while let Some(c) = r.chunk().await? {
            n += c.len() as u64;
            if let Some(h) = h.as_mut() {
                h.update(&c);
            }
        }
        if n != spec.len {
            bail!("pulled {n} bytes, expected {}", spec.len);
        }
        if let Some(h) = h {
            let got = format!("sha256:{}", crate::prng::hex(&h.finalize()));
            if got != spec.digest {
                bail!("pulled blob hashes to {got}, expected {}", spec.digest);
            }
        }
        Ok(n)
    }

    /// One request, body drained; returns the status.
    pub async fn simple(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<StatusCode> {
        let mut req = self.http.request(method, self.url(path)).timeout(SMALL);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        let mut r = req.send().await?;
        let st = r.status();
        while r.chunk().await?.is_some() {}
        Ok(st)
    }

    /// Walk a paginated listing (`_catalog` or `tags/list`) following `Link:
    /// rel="next"`; returns (entries, pages).
    pub async fn walk_listing(
        &self,
        first: &str,
        key: &str,
        max_pages: usize,
    ) -> Result<(usize, usize)> {
        let mut url = self.url(first);
        let mut entries = 0usize;
        let mut pages = 0usize;
        loop {
            let r = self.http.get(&url).timeout(BIG).send().await?;
            if r.status() != StatusCode::OK {
                return Err(err_body("GET listing", r).await);
            }
            let next = r
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_next_link);
            let body = r.bytes().await?;
            entries +=
                count_entries(&body, key).with_context(|| format!("parsing listing from {url}"))?;
            pages += 1;
            match next {
                Some(n) if pages < max_pages => url = resolve(&self.base, &n),
                Some(_) => bail!("listing did not end after {max_pages} pages"),
                None => return Ok((entries, pages)),
            }
        }
    }
}

/// `</v2/_catalog?last=x&n=100>; rel="next"` -> `/v2/_catalog?last=x&n=100`
pub fn parse_next_link(v: &str) -> Option<String> {
    for part in v.split(',') {
        let part = part.trim();
        if part.contains("rel=\"next\"") || part.contains("rel=next") {
            let s = part.find('<')?;
            let e = part.find('>')?;
            return Some(part[s + 1..e].to_string());
        }
    }
    None
}

/// Count strings in the JSON array under `key` without a JSON dependency
/// (repository names and tags cannot contain quotes).
pub fn count_entries(body: &[u8], key: &str) -> Result<usize> {
    let s = std::str::from_utf8(body)?;
    let k = format!("\"{key}\"");
    let Some(p) = s.find(&k) else {
        bail!("no {key} in response")
    };
    let rest = &s[p + k.len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .context("malformed")?
        .trim_start();
    if rest.starts_with("null") {
        return Ok(0);
    }
    let rest = rest.strip_prefix('[').context("malformed array")?;
    let end = rest.find(']').context("unterminated array")?;
    Ok(rest[..end].matches('"').count() / 2)
}
