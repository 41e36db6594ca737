//! Cross-site request forgery: a state-changing form (`POST`) is accepted only when the
//! browser says it comes from a page of this registry: its `Origin` (sent by browsers with
//! every `POST`), or when there is none its `Referer`, names the host the request was sent
//! to (`Host`). Neither present, or either naming another host: refused. Basic credentials,
//! which a browser attaches to any request to the registry, are then useless to another
//! site's form.

use axum::http::{HeaderMap, header};

/// Whether a `POST` with these headers, sent to `host` (the `Host` header, or HTTP/2's
/// `:authority`), comes from this registry's own pages.
pub fn same_origin(headers: &HeaderMap, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let Ok(url) = url::Url::parse(source) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Some(source_host) = url.host_str() else {
        return false;
    };
    let authority = match url.port() {
        Some(port) => format!("{source_host}:{port}"),
        None => source_host.to_string(),
    };
    authority.eq_ignore_ascii_case(host)
        || url
            .port_or_known_default()
            .is_some_and(|port| format!("{source_host}:{port}").eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn same_origin(h: HeaderMap) -> bool {
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        super::same_origin(&h, host.as_deref())
    }

    #[test]
    fn only_this_hosts_pages() {
        let host = ("host", "reg.example:5000");
        assert!(same_origin(headers(&[
            host,
            ("origin", "http://reg.example:5000")
        ])));
        assert!(same_origin(headers(&[
            host,
            ("referer", "https://reg.example:5000/ui/r/a")
        ])));
        assert!(same_origin(headers(&[
            ("host", "reg.example"),
            ("origin", "https://reg.example")
        ])));
        assert!(same_origin(headers(&[
            ("host", "reg.example:443"),
            ("origin", "https://reg.example")
        ])));
        assert!(!same_origin(headers(&[
            host,
            ("origin", "http://evil.example:5000")
        ])));
        assert!(!same_origin(headers(&[host, ("origin", "null")])));
        assert!(!same_origin(headers(&[host])));
        assert!(!same_origin(headers(&[
            host,
            ("referer", "http://reg.example:5001/")
        ])));
        // Origin wins over a matching Referer.
        assert!(!same_origin(headers(&[
            host,
            ("origin", "http://evil.example"),
            ("referer", "http://reg.example:5000/ui/")
        ])));
    }
}
