//! The mirror's client of one upstream registry: the distribution API over reqwest, with the
//! Docker registry token flow (a `401` with `WWW-Authenticate: Bearer realm=..,service=..,
//! scope=..` is answered by asking the realm for a token, anonymously or with the configured
//! credentials, cached per scope until it expires; a `Basic` challenge is answered with the
//! credentials), Docker Hub's conventions (`docker.io` is `registry-1.docker.io`, official
//! images live under `library/`), and timeouts on connecting and on idle reads.
//!
//! Redirects are followed by hand: only to `http`/`https` URLs, and never with the
//! `Authorization` header (blob redirects go to object storage or a CDN, which must not see
//! the upstream's credentials or tokens).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use super::stats::Stats;
use crate::oci::Digest;
use crate::oci::manifest::MAX_MANIFEST_SIZE;

/// The manifest media types asked for (never schema1).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Docker Hub's API host.
const DOCKER_HUB: &str = "registry-1.docker.io";

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upstream may send nothing while a response is read.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The most time a manifest, token or `HEAD` request may take as a whole.
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// The API URL of a registry host as clients name it (`docker.io` is Docker Hub's API host).
pub fn default_url(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" => format!("https://{DOCKER_HUB}"),
        other => format!("https://{other}"),
    }
}

/// One upstream as configured: where it is and whom to log in as.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// The registry's base URL (scheme and authority, no path), e.g.
    /// `https://registry-1.docker.io`.
    pub url: String,
    /// User for the token server or Basic auth.
    pub username: Option<String>,
    /// Its password (never logged: see the `Debug` impl).
    pub password: Option<String>,
    /// `proxy.ttl`: cached content not pulled for this long expires (`None`: never).
    pub ttl: Option<Duration>,
}

impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl UpstreamSettings {
    /// Checks and normalises the settings of one upstream.
    pub fn new(
        url: &str,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<Self, String> {
        let parsed = Url::parse(url.trim())
            .map_err(|e| format!("expected a URL such as https://registry-1.docker.io ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("expected an http or https URL, got {url:?}"));
        }
        let Some(host) = parsed.host_str() else {
            return Err(format!("the URL {url:?} names no host"));
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("credentials go in username and password, not in the URL".to_string());
        }
        let url = if host == "docker.io" || host == "index.docker.io" {
            default_url(host)
        } else {
            let mut base = format!("{}://{host}", parsed.scheme());
            if let Some(port) = parsed.port() {
                base.push_str(&format!(":{port}"));
            }
            base
        };
        if username.is_some() != password.is_some() {
            return Err("username and password go together".to_string());
        }
        Ok(UpstreamSettings {
            url,
            username,
            password,
            ttl: None,
        })
    }
}

/// Why the upstream could not give what was asked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream says it does not have it (`404`).
    #[error("not found upstream")]
    NotFound,
    /// Down, timing out, rate-limiting, failing, refusing our credentials: try later.
    #[error("{0}")]
    Unavailable(String),
    /// It answered with something wrong (a digest that does not match, a manifest too large).
    #[error("{0}")]
    Invalid(String),
}

/// A manifest as the upstream sent it.
pub struct FetchedManifest {
    /// The exact bytes.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
}

/// A client of one upstream registry.
pub struct Upstream {
    /// How it is named in logs and errors (its base URL).
    pub name: String,
    /// How long its content stays cached after the last pull (`None`: forever).
    pub ttl: Option<Duration>,
    base: Url,
    /// Docker Hub: single-component names get `library/`.
    docker_hub: bool,
    settings: UpstreamSettings,
    client: reqwest::Client,
    /// Bearer tokens by scope, with when they expire.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic auth (and credentials are configured).
    basic: AtomicBool,
    stats: std::sync::Arc<Stats>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

impl Upstream {
    /// A client for `settings` (ring as rustls's provider, as everywhere in Ferry).
    pub fn new(settings: UpstreamSettings, stats: std::sync::Arc<Stats>) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = Url::parse(&settings.url).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
        Ok(Upstream {
            name: settings.url.clone(),
            ttl: settings.ttl,
            docker_hub: base.host_str() == Some(DOCKER_HUB),
            base,
            settings,
            client,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
            stats,
        })
    }

    /// The host (and port) of its URL, as `?ns=` and name prefixes spell it.
    pub fn host(&self) -> String {
        match (self.base.host_str(), self.base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        }
    }

    /// Whether this is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.docker_hub
    }

    /// The repository name the upstream knows `name` by (`alpine` is `library/alpine` on
    /// Docker Hub).
    pub fn remote_name(&self, name: &str) -> String {
        if self.docker_hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        }
    }

    /// `HEAD` of a manifest: its digest (`Docker-Content-Digest`), `None` if the upstream
    /// does not say.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .send(Method::HEAD, &path, repository, Some(MANIFEST_ACCEPT), true)
            .await?;
        Ok(content_digest(response.headers()))
    }

    /// `GET` of a manifest: its bytes (at most [`MAX_MANIFEST_SIZE`]) and media type.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .send(Method::GET, &path, repository, Some(MANIFEST_ACCEPT), true)
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.failed(format!("reading a manifest: {e}")))?;
            if body.len() + chunk.len() > MAX_MANIFEST_SIZE {
                return Err(UpstreamError::Invalid(format!(
                    "the upstream's manifest {repository}:{reference} is larger than {MAX_MANIFEST_SIZE} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchedManifest {
            body: body.freeze(),
            content_type,
        })
    }

    /// `HEAD` of a blob: its size.
    pub async fn head_blob(&self, repository: &str, digest: &Digest) -> Result<u64, UpstreamError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let response = self
            .send(Method::HEAD, &path, repository, None, true)
            .await?;
        response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                UpstreamError::Invalid("the upstream's blob HEAD has no Content-Length".to_string())
            })
    }

    /// `GET` of a blob (redirects followed without credentials): the response, whose body
    /// the caller streams.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Response, UpstreamError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        self.send(Method::GET, &path, repository, None, false).await
    }

    /// Counts and describes a failure.
    fn failed(&self, why: String) -> UpstreamError {
        self.stats.upstream_error();
        UpstreamError::Unavailable(format!("upstream {}: {why}", self.name))
    }

    /// Sends a request, answering an auth challenge once, following redirects without
    /// credentials, and sorts the answer: 2xx is the response, 404 `NotFound`, anything
    /// else (and no answer) `Unavailable`. `small`: a request with a whole-request timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        repository: &str,
        accept: Option<&str>,
        small: bool,
    ) -> Result<Response, UpstreamError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| UpstreamError::Invalid(format!("bad upstream URL for {path}: {e}")))?;
        let scope = format!("repository:{repository}:pull");
        let mut answered_challenge = false;
        loop {
            let mut request = self.client.request(method.clone(), url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if small {
                request = request.timeout(SMALL_REQUEST_TIMEOUT);
            }
            if let Some(authorization) = self.authorization(&scope) {
                request = request.header(AUTHORIZATION, authorization);
            }
            self.stats.upstream_request();
            let response = request
                .send()
                .await
                .map_err(|e| self.failed(describe(&e)))?;
            self.log_rate_limit(response.headers());
            if response.status() == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                match challenge {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope: asked,
                    }) => {
                        let token_scope = asked.unwrap_or_else(|| scope.clone());
                        self.fetch_token(&realm, service.as_deref(), &token_scope, &scope)
                            .await?;
                        continue;
                    }
                    Some(Challenge::Basic) if self.settings.username.is_some() => {
                        self.basic.store(true, Ordering::Relaxed);
                        continue;
                    }
                    _ => {}
                }
            }
            let response = if response.status().is_redirection() {
                self.follow_redirects(&method, response, accept, small)
                    .await?
            } else {
                response
            };
            return self.sort(response, &method, path);
        }
    }

    /// Follows redirects (at most [`MAX_REDIRECTS`]) to http(s) URLs, never sending the
    /// `Authorization` header.
    async fn follow_redirects(
        &self,
        method: &Method,
        mut response: Response,
        accept: Option<&str>,
        small: bool,
    ) -> Result<Response, UpstreamError> {
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.failed("a redirect without a Location".to_string()))?;
            let next = response
                .url()
                .join(location)
                .map_err(|e| self.failed(format!("a redirect to a bad URL: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(self.failed(format!("refusing a redirect to a {} URL", next.scheme())));
            }
            let mut request = self.client.request(method.clone(), next);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if small {
                request = request.timeout(SMALL_REQUEST_TIMEOUT);
            }
            self.stats.upstream_request();
            response = request
                .send()
                .await
                .map_err(|e| self.failed(describe(&e)))?;
        }
        Err(self.failed("too many redirects".to_string()))
    }

    fn sort(
        &self,
        response: Response,
        method: &Method,
        path: &str,
    ) -> Result<Response, UpstreamError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(UpstreamError::NotFound);
        }
        let why = match status {
            StatusCode::TOO_MANY_REQUESTS => "rate limited (429 Too Many Requests)".to_string(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                format!("access refused ({status}): check proxy.username and proxy.password")
            }
            other => format!("{method} {path} answered {other}"),
        };
        Err(self.failed(why))
    }

    /// The `Authorization` header for `scope`, if we have one.
    fn authorization(&self, scope: &str) -> Option<String> {
        if let Ok(tokens) = self.tokens.lock()
            && let Some((token, expires)) = tokens.get(scope)
            && *expires > Instant::now()
        {
            return Some(format!("Bearer {token}"));
        }
        if self.basic.load(Ordering::Relaxed)
            && let (Some(user), Some(password)) = (&self.settings.username, &self.settings.password)
        {
            return Some(basic(user, password));
        }
        None
    }

    /// Asks the token server at `realm` for a token for `scope` and caches it under
    /// `cache_key`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        cache_key: &str,
    ) -> Result<(), UpstreamError> {
        let mut url = Url::parse(realm)
            .map_err(|e| self.failed(format!("the token realm {realm:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.failed(format!("refusing a token realm of scheme {}", url.scheme())));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self.client.get(url).timeout(SMALL_REQUEST_TIMEOUT);
        if let (Some(user), Some(password)) = (&self.settings.username, &self.settings.password) {
            request = request.header(AUTHORIZATION, basic(user, password));
        }
        self.stats.upstream_request();
        let response = request
            .send()
            .await
            .map_err(|e| self.failed(format!("token server: {}", describe(&e))))?;
        if !response.status().is_success() {
            return Err(self.failed(format!("the token server answered {}", response.status())));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.failed(format!("token server: {e}")))?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.failed(format!("the token server's answer is not JSON: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.failed("the token server's answer holds no token".to_string()))?;
        // The spec's default lifetime is 60 s; keep a margin so a token is not sent expired.
        let lifetime = answer.expires_in.unwrap_or(60).max(60);
        let expires = Instant::now() + Duration::from_secs(lifetime.saturating_sub(10));
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|_, (_, e)| *e > Instant::now());
            tokens.insert(cache_key.to_string(), (token, expires));
        }
        Ok(())
    }

    fn log_rate_limit(&self, headers: &HeaderMap) {
        if let Some(remaining) = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
        {
            tracing::info!(upstream = %self.name, remaining, "upstream rate limit");
        }
    }
}

/// `Docker-Content-Digest` of a response, if valid.
fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A request error, without the URL's query (which may hold a token scope) repeated.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(rest);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `key=value` or `key="quoted, value"` pairs separated by commas.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((key.trim().to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://t/token"),
            Some(Challenge::Bearer {
                realm: "http://t/token".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn settings_normalise_docker_hub_and_refuse_bad_urls() {
        let s = UpstreamSettings::new("https://docker.io", None, None).unwrap();
        assert_eq!(s.url, "https://registry-1.docker.io");
        let s = UpstreamSettings::new("http://127.0.0.1:5000/", None, None).unwrap();
        assert_eq!(s.url, "http://127.0.0.1:5000");
        assert!(UpstreamSettings::new("ftp://x", None, None).is_err());
        assert!(UpstreamSettings::new("https://x", Some("u".into()), None).is_err());
        let s =
            UpstreamSettings::new("https://x", Some("u".into()), Some("hunter2".into())).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn docker_hub_names_get_library() {
        let stats = std::sync::Arc::new(Stats::default());
        let hub = Upstream::new(
            UpstreamSettings::new("https://docker.io", None, None).unwrap(),
            stats.clone(),
        )
        .unwrap();
        assert_eq!(hub.remote_name("alpine"), "library/alpine");
        assert_eq!(hub.remote_name("grafana/grafana"), "grafana/grafana");
        let other = Upstream::new(
            UpstreamSettings::new("https://ghcr.io", None, None).unwrap(),
            stats,
        )
        .unwrap();
        assert_eq!(other.remote_name("alpine"), "alpine");
    }
}
