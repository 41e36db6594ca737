//! Header names and values of the distribution API, and the `Location` URLs.

use axum::http::HeaderMap;
use axum::http::header::HOST;

/// `Docker-Distribution-API-Version`, on every response.
pub const API_VERSION: &str = "docker-distribution-api-version";
/// `Docker-Content-Digest`.
pub const CONTENT_DIGEST: &str = "docker-content-digest";
/// `Docker-Upload-UUID`.
pub const UPLOAD_UUID: &str = "docker-upload-uuid";
/// `OCI-Subject`, on a manifest PUT whose manifest has a subject.
pub const OCI_SUBJECT: &str = "oci-subject";
/// `OCI-Filters-Applied`, on a filtered referrers response.
pub const OCI_FILTERS_APPLIED: &str = "oci-filters-applied";

/// The `Range` value of an upload holding `size` bytes (`0-0` when empty, as Distribution).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// How `Location` headers are written (`http.host`, `http.relativeurls`).
#[derive(Clone, Debug, Default)]
pub struct UrlBuilder {
    /// `http.host`: an absolute base such as `https://registry.example.com`.
    pub host: Option<String>,
    /// `http.relativeurls`: answer with paths only.
    pub relative: bool,
    /// The server speaks HTTPS (`http.tls`): URLs built from the request are `https://`
    /// unless `X-Forwarded-Proto` says otherwise.
    pub https: bool,
}

impl UrlBuilder {
    /// The URL of `path` as the client should follow it.
    pub fn url(&self, request: &HeaderMap, path: &str) -> String {
        if self.relative {
            return path.to_string();
        }
        self.absolute(request, path)
    }

    /// The absolute URL of `path` even with `http.relativeurls` (a token realm must be
    /// absolute); only the path when the request names no host.
    pub fn absolute(&self, request: &HeaderMap, path: &str) -> String {
        if let Some(host) = &self.host {
            return format!("{}{path}", host.trim_end_matches('/'));
        }
        let header = |name: &str| {
            request
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or("").trim())
        };
        let proto = header("x-forwarded-proto")
            .filter(|p| *p == "http" || *p == "https")
            .unwrap_or(if self.https { "https" } else { "http" });
        let host = header("x-forwarded-host")
            .or_else(|| header(HOST.as_str()))
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ']));
        match host {
            Some(host) => format!("{proto}://{host}{path}"),
            None => path.to_string(),
        }
    }
}

/// The facts notifications report about `request` (`RequestFacts::base_url` is left for
/// `dispatch`, which knows the URL policy).
pub fn request_facts(request: &axum::extract::Request) -> crate::registry::context::RequestFacts {
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    // Distribution's RemoteAddr: the first X-Forwarded-For entry, X-Real-Ip, the peer.
    let addr = header("x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .or_else(|| header("x-real-ip"))
        .map(str::to_string)
        .or_else(|| {
            request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.to_string())
        })
        .unwrap_or_default();
    let host = header(HOST.as_str())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    crate::registry::context::RequestFacts {
        addr,
        host,
        method: request.method().to_string(),
        user_agent: header("user-agent").unwrap_or_default().to_string(),
        base_url: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "reg:5000".parse().unwrap());
        let urls = UrlBuilder::default();
        assert_eq!(urls.url(&h, "/v2/x"), "http://reg:5000/v2/x");
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "pub.example".parse().unwrap());
        assert_eq!(urls.url(&h, "/v2/x"), "https://pub.example/v2/x");
        let relative = UrlBuilder {
            relative: true,
            ..Default::default()
        };
        assert_eq!(relative.url(&h, "/v2/x"), "/v2/x");
        let fixed = UrlBuilder {
            host: Some("https://r.example/".into()),
            ..Default::default()
        };
        assert_eq!(fixed.url(&h, "/v2/x"), "https://r.example/v2/x");
        let mut direct = HeaderMap::new();
        direct.insert(HOST, "reg:5000".parse().unwrap());
        let tls = UrlBuilder {
            https: true,
            ..Default::default()
        };
        assert_eq!(tls.url(&direct, "/v2/x"), "https://reg:5000/v2/x");
        direct.insert("x-forwarded-proto", "http".parse().unwrap());
        assert_eq!(tls.url(&direct, "/v2/x"), "http://reg:5000/v2/x");
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}
