//! The tests' HTTP client, over reqwest: every response is read whole into a [`Resp`] that
//! records the request too, so a failed assertion shows the exact exchange. [`Api`] is the
//! async client of one registry (requests, uploads, pushes of blobs, manifests and images);
//! [`http`] sends one request from a test without an async runtime; [`raw_request`] writes
//! to a plain socket for what reqwest cannot send.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::TestRegistry;
use super::oci::*;

/// A complete response: status, headers and body, plus the request that produced it.
pub struct Resp {
    pub request: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.request)?;
        writeln!(f, "-> {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {}", v.to_str().unwrap_or("<binary>"))?;
        }
        let shown = &self.body[..self.body.len().min(2000)];
        write!(f, "\n{}", String::from_utf8_lossy(shown))?;
        if self.body.len() > shown.len() {
            write!(f, "... ({} bytes in all)", self.body.len())?;
        }
        Ok(())
    }
}

impl Resp {
    /// A header's value as a string (first one), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header that must be present.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("missing header {name} in response:\n{self:?}"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{self:?}"))
    }

    /// Panics with the whole exchange unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "expected status {status}, got:\n{self:?}"
        );
        self
    }

    /// Asserts an error response: `status`, JSON content type, and a body
    /// `{"errors":[{"code":..,"message":..}]}` whose first code is one of `codes`.
    /// For HEAD requests (no body) only the status is checked.
    #[track_caller]
    pub fn expect_error(&self, status: u16, codes: &[&str]) -> &Self {
        self.expect(status);
        if self.request.starts_with("HEAD ") {
            return self;
        }
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error response must have Content-Type application/json:\n{self:?}"
        );
        let body = self.json();
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("error body has no \"errors\" array:\n{self:?}"));
        assert!(!errors.is_empty(), "empty errors array:\n{self:?}");
        for e in errors {
            assert!(e["code"].is_string(), "error without a code:\n{self:?}");
            assert!(
                e["message"].is_string(),
                "error without a message:\n{self:?}"
            );
        }
        let code = errors[0]["code"].as_str().unwrap();
        assert!(
            codes.contains(&code),
            "expected error code among {codes:?}, got {code}:\n{self:?}"
        );
        self
    }

    /// The value of a `Range: 0-<end>` header as `end + 1` (the byte count it reports).
    #[track_caller]
    pub fn range_len(&self) -> u64 {
        let r = self.must_header("range");
        let (start, end) = r
            .split_once('-')
            .unwrap_or_else(|| panic!("bad Range header {r:?}:\n{self:?}"));
        assert_eq!(start, "0", "Range must start at 0:\n{self:?}");
        let end: u64 = end.parse().unwrap();
        end + 1
    }
}

/// An HTTP client that follows no redirects and opens a fresh connection for every request
/// (tests restart servers on the same port: never reuse a connection to a dead one); its
/// requests fail after `timeout` (a guard against a hung server, not a performance check).
pub fn client(timeout: Duration) -> Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// A reqwest client builder. reqwest's TLS is rustls without a bundled crypto provider (the
/// build carries ring only, no aws-lc): ring is installed as the process's provider first.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
}

/// Sends a request and reads the whole response; the error names the request.
pub async fn try_send(rb: RequestBuilder) -> Result<Resp, String> {
    let (client, req) = rb.build_split();
    let req = req.expect("request");
    let line = format!("{} {}", req.method(), req.url());
    let mut request = line.clone();
    for (k, v) in req.headers() {
        request.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("<binary>")));
    }
    if let Some(b) = req.body().and_then(|b| b.as_bytes()) {
        let shown = &b[..b.len().min(1000)];
        request.push_str(&format!("\n\n{}", String::from_utf8_lossy(shown)));
        if b.len() > shown.len() {
            request.push_str(&format!("... ({} bytes in all)", b.len()));
        }
    }
    let resp = client
        .execute(req)
        .await
        .map_err(|e| format!("{line} failed: {e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{line}: reading the body failed: {e:?}"))?;
    Ok(Resp {
        request,
        status,
        headers,
        body,
    })
}

/// [`try_send`], panicking when the request fails.
pub async fn send(rb: RequestBuilder) -> Resp {
    try_send(rb).await.unwrap_or_else(|e| panic!("{e}"))
}

/// One request to `url` from a test without an async runtime (on a runtime of this thread's
/// own); `Err` when no response came (e.g. nothing listens yet).
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Resp, String> {
    thread_local! {
        static BLOCKING: (tokio::runtime::Runtime, Client) = (
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
            client(Duration::from_secs(60)),
        );
    }
    BLOCKING.with(|(rt, client)| {
        let method = Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut rb = client.request(method, url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(body) = body {
            rb = rb.body(body);
        }
        rt.block_on(try_send(rb))
    })
}

/// [`try_http`], panicking when no response came.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Resp {
    try_http(method, url, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// Appends `param` to a URL that may already carry a query (Distribution's `_state`).
pub fn with_query(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// The upload id at the end of a session `Location`.
pub fn upload_id(location: &str) -> String {
    let path = location.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_string()
}

/// A client for one registry.
#[derive(Clone)]
pub struct Api {
    pub client: Client,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Api {
    pub fn new(reg: &TestRegistry) -> Self {
        Self::with_timeout(reg, Duration::from_secs(120))
    }

    /// A client whose requests fail after `timeout`.
    pub fn with_timeout(reg: &TestRegistry, timeout: Duration) -> Self {
        Api {
            client: client(timeout),
            url: reg.url.clone(),
        }
    }

    /// A client sending `authorization` as the `Authorization` header of every request.
    pub fn with_authorization(reg: &TestRegistry, authorization: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            authorization.parse().expect("header value"),
        );
        Api {
            client: client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(120))
                .default_headers(headers)
                .build()
                .expect("http client"),
            url: reg.url.clone(),
        }
    }

    /// An absolute URL for a path (`/v2/...`) or a `Location` (relative or absolute).
    pub fn abs(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.url, path_or_url)
        }
    }

    pub fn req(&self, method: Method, path_or_url: &str) -> RequestBuilder {
        self.client.request(method, self.abs(path_or_url))
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        send(rb).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(self.req(Method::HEAD, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// GET of a manifest with the `Accept` header a modern client sends.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Resp {
        let rb = self
            .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_MANIFESTS);
        self.send(rb).await
    }

    /// HEAD of a manifest with the `Accept` header a modern client sends.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Resp {
        let rb = self
            .req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_MANIFESTS);
        self.send(rb).await
    }

    /// `POST /v2/<repo>/blobs/uploads/`: asserts 202 and returns the absolute session URL.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send(self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
            .await;
        r.expect(202);
        self.abs(r.must_header("location"))
    }

    /// `PATCH` a chunk without `Content-Range` (streamed); returns the response.
    pub async fn patch(&self, location: &str, data: Vec<u8>) -> Resp {
        let rb = self
            .req(Method::PATCH, location)
            .header("Content-Type", "application/octet-stream")
            .body(data);
        self.send(rb).await
    }

    /// `PATCH` a chunk with `Content-Range: start-end`; returns the response.
    pub async fn patch_range(&self, location: &str, start: u64, data: Vec<u8>) -> Resp {
        let end = (start + data.len() as u64).saturating_sub(1);
        let rb = self
            .req(Method::PATCH, location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{start}-{end}"))
            .body(data);
        self.send(rb).await
    }

    /// `PUT <location>?digest=<digest>` with `data` as the final chunk (may be empty).
    pub async fn put_upload(&self, location: &str, digest: &str, data: Vec<u8>) -> Resp {
        let rb = self
            .req(
                Method::PUT,
                &with_query(location, &format!("digest={digest}")),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data);
        self.send(rb).await
    }

    /// Pushes `data` into `repo` as a monolithic upload (POST, then PUT with the body):
    /// asserts 201 and returns the sha256 digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let loc = self.start_upload(repo).await;
        self.put_upload(&loc, &digest, data.to_vec())
            .await
            .expect(201);
        digest
    }

    /// Pushes each blob's bytes into `repo`.
    pub async fn push_blobs(&self, repo: &str, blobs: &[&Blob]) {
        for b in blobs {
            let d = self.push_blob(repo, &b.data).await;
            assert_eq!(d, b.digest);
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type: media_type`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        let rb = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec());
        self.send(rb).await
    }

    /// Pushes a manifest and asserts 201 with the right `Docker-Content-Digest`.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let r = self.put_manifest(repo, reference, media_type, body).await;
        r.expect(201);
        let digest = sha256(body);
        assert_eq!(
            r.must_header("docker-content-digest"),
            digest,
            "manifest digest header:\n{r:?}"
        );
        digest
    }

    /// Pushes a small OCI image (random config, `layers` random layers of a few KiB) and
    /// tags it `reference` (a tag, or the manifest's digest if `reference` is empty).
    pub async fn push_image(&self, repo: &str, reference: &str, layers: usize) -> Image {
        self.push_image_with(repo, reference, layers, json!({}))
            .await
    }

    /// Like [`Api::push_image`], with extra manifest fields (e.g. `subject`, `annotations`).
    pub async fn push_image_with(
        &self,
        repo: &str,
        reference: &str,
        layers: usize,
        extra: Value,
    ) -> Image {
        let config = random_config();
        let layers: Vec<Blob> = (0..layers)
            .map(|i| Blob::new(OCI_LAYER, random_bytes(1024 * (i + 1) + 7)))
            .collect();
        self.push_image_of(repo, reference, config, layers, extra)
            .await
    }

    /// Pushes an OCI image of `layers` (and a random config) tagged `reference`.
    pub async fn push_layers(&self, repo: &str, reference: &str, layers: Vec<Blob>) -> Image {
        self.push_image_of(repo, reference, random_config(), layers, json!({}))
            .await
    }

    /// Pushes `config` and `layers` into `repo`, then an OCI manifest over them (with the
    /// `extra` fields) under `reference` (a tag, or empty for by-digest).
    pub async fn push_image_of(
        &self,
        repo: &str,
        reference: &str,
        config: Blob,
        layers: Vec<Blob>,
        extra: Value,
    ) -> Image {
        self.push_blob(repo, &config.data).await;
        for l in &layers {
            self.push_blob(repo, &l.data).await;
        }
        let manifest = oci_manifest(&config, &layers, extra);
        let digest = sha256(&manifest);
        let reference = if reference.is_empty() {
            digest.clone()
        } else {
            reference.to_string()
        };
        self.push_manifest(repo, &reference, OCI_MANIFEST, &manifest)
            .await;
        Image {
            media_type: OCI_MANIFEST.to_string(),
            manifest,
            digest,
            config,
            layers,
        }
    }

    /// Pushes `content` (whose digest is `digest`) into `repo` completely, with one streamed
    /// PATCH and a PUT; asserts 202 and the whole length acknowledged, then 201 and the digest.
    pub async fn push_content(&self, repo: &str, content: &Content, digest: &str) {
        self.push_content_patched(repo, content, digest, false)
            .await
    }

    /// Like [`Api::push_content`], but the PATCH announces its `Content-Length`, as Go
    /// clients (docker, skopeo, containerd) do: the server then reads the body in whatever
    /// pieces the socket holds, not in the 1 MiB chunks of a chunked body.
    pub async fn push_content_with_length(&self, repo: &str, content: &Content, digest: &str) {
        self.push_content_patched(repo, content, digest, true).await
    }

    async fn push_content_patched(
        &self,
        repo: &str,
        content: &Content,
        digest: &str,
        with_length: bool,
    ) {
        let loc = self.start_upload(repo).await;
        let mut patch = self
            .req(Method::PATCH, &loc)
            .header("Content-Type", "application/octet-stream");
        if with_length {
            patch = patch.header("Content-Length", content.len.to_string());
        }
        let r = self
            .send(patch.body(content.body(0, content.chunks(), None)))
            .await;
        r.expect(202);
        assert_eq!(r.range_len(), content.len, "{r:?}");
        let loc = self.abs(r.must_header("location"));
        let r = self.put_upload(&loc, digest, vec![]).await;
        r.expect(201);
        assert_eq!(r.must_header("docker-content-digest"), digest);
    }

    /// `GET /v2/<repo>/tags/list` (with an optional query) → the `tags` array.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{repo}/tags/list")).await;
        r.expect(200);
        string_list(&r.json()["tags"])
    }

    /// `GET /v2/_catalog` → the `repositories` array.
    pub async fn catalog(&self) -> Vec<String> {
        let r = self.get("/v2/_catalog").await;
        r.expect(200);
        string_list(&r.json()["repositories"])
    }

    /// GETs a blob as a stream, hashing it on the way: `(status, sha256 digest, length)`.
    pub async fn get_blob_digest(&self, repo: &str, digest: &str) -> (u16, String, u64) {
        use futures_util::StreamExt;
        let url = self.abs(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
        let status = resp.status().as_u16();
        let mut h = Sha256::new();
        let mut len = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.unwrap_or_else(|e| panic!("GET {url}: body: {e:?}"));
            len += piece.len() as u64;
            h.update(&piece);
        }
        (status, format!("sha256:{}", hex::encode(h.finalize())), len)
    }

    /// Checks that an image pushed earlier still pulls: manifest bytes and every blob.
    pub async fn assert_image_intact(&self, repo: &str, reference: &str, img: &Image) {
        let r = self.get_manifest(repo, reference).await;
        r.expect(200);
        assert!(
            r.body[..] == img.manifest[..],
            "manifest bytes changed:\n{r:?}"
        );
        assert_eq!(r.must_header("docker-content-digest"), img.digest);
        for b in std::iter::once(&img.config).chain(&img.layers) {
            let (status, digest, len) = self.get_blob_digest(repo, &b.digest).await;
            assert_eq!(status, 200, "blob {} of {repo}:{reference}", b.digest);
            assert_eq!(digest, b.digest);
            assert_eq!(len, b.data.len() as u64);
        }
    }
}

/// Size of the pieces [`Content`] generates.
pub const CHUNK: u64 = 1 << 20;

/// Large pseudo-random content generated on the fly, never held in memory as a whole:
/// a random 1 MiB block repeated, each repetition stamped with its index (so every chunk
/// differs and the digest depends on every byte's position).
#[derive(Clone)]
pub struct Content {
    block: Bytes,
    pub len: u64,
}

impl Content {
    pub fn new(len: u64) -> Self {
        Content {
            block: Bytes::from(random_bytes(CHUNK as usize)),
            len,
        }
    }

    /// Number of 1 MiB chunks (the last may be shorter).
    pub fn chunks(&self) -> u64 {
        self.len.div_ceil(CHUNK)
    }

    /// The `i`-th chunk.
    pub fn chunk(&self, i: u64) -> Bytes {
        let start = i * CHUNK;
        assert!(start < self.len, "chunk {i} past the end");
        let n = (self.len - start).min(CHUNK) as usize;
        let mut v = self.block[..n].to_vec();
        let stamp = i.to_le_bytes();
        let k = stamp.len().min(n);
        v[..k].copy_from_slice(&stamp[..k]);
        Bytes::from(v)
    }

    /// Byte offset where chunk `i` starts (or `len` for `i == chunks()`).
    pub fn offset(&self, i: u64) -> u64 {
        (i * CHUNK).min(self.len)
    }

    /// The sha256 digest of the whole content (generated once more, piece by piece).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for i in 0..self.chunks() {
            h.update(self.chunk(i));
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Chunks `from..to` as a streamed request body (chunked transfer encoding). With
    /// `pause = Some((k, tx))`, the body signals `tx` after `k` chunks and then stalls
    /// forever: the request is still in flight when the test acts (e.g. kills the server).
    pub fn body(
        &self,
        from: u64,
        to: u64,
        pause: Option<(u64, tokio::sync::oneshot::Sender<()>)>,
    ) -> reqwest::Body {
        let me = self.clone();
        let (pause_at, tx) = match pause {
            Some((k, tx)) => (Some(from + k), Some(tx)),
            None => (None, None),
        };
        let stream = futures_util::stream::unfold((from, tx), move |(i, mut tx)| {
            let me = me.clone();
            async move {
                if Some(i) == pause_at {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    futures_util::future::pending::<()>().await;
                }
                if i >= to {
                    return None;
                }
                Some((Ok::<Bytes, std::io::Error>(me.chunk(i)), (i + 1, tx)))
            }
        });
        reqwest::Body::wrap_stream(stream)
    }
}

/// Sends one HTTP/1.1 request over a plain socket and reads the response even if the
/// server answered (and stopped reading) before the whole body was written, as Go clients
/// (docker, containerd, skopeo) do; reqwest reports such an early answer as a broken pipe.
/// Returns `(status, body)`.
pub fn raw_request(
    reg: &TestRegistry,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(reg.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reg.host,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // Write errors are expected when the server answers early.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut resp = vec![];
    let _ = s.read_to_end(&mut resp); // a reset after the response is fine
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response to {method} {path}: {text:?}"));
    let body = match text.find("\r\n\r\n") {
        Some(i) => resp[i + 4..].to_vec(),
        None => vec![],
    };
    (status, body)
}

/// An axum app served on `127.0.0.1:<random port>` from a thread and runtime of its own, so
/// synchronous and asynchronous tests alike can start one (the relay, the token server).
/// Shut down gracefully, and its thread joined, when dropped.
pub struct BackgroundServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// A listener on `127.0.0.1:<random port>` for [`BackgroundServer::start`] (bound first
    /// when the app must know its own address).
    pub fn listener() -> std::net::TcpListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        listener
    }

    /// Serves `app` on `listener`; `name` is for the panic message if serving fails.
    pub fn start(
        listener: std::net::TcpListener,
        app: axum::Router,
        name: &'static str,
    ) -> BackgroundServer {
        let addr = listener.local_addr().expect("addr");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect(name);
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect(name);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect(name);
            });
        });
        BackgroundServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
