//! Turns a `/v2/...` path into the API resource it names. Repository names contain `/`
//! and may even contain `blobs` or `manifests` components, so paths are read from the end.

use percent_encoding::percent_decode_str;

/// An API resource, with its path parameters still unvalidated.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags {
        /// Repository.
        name: String,
    },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        /// Repository.
        name: String,
        /// Tag or digest.
        reference: String,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// Repository.
        name: String,
        /// Digest.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart {
        /// Repository.
        name: String,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload {
        /// Repository.
        name: String,
        /// Session id.
        id: String,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// Repository.
        name: String,
        /// Subject digest.
        digest: String,
    },
}

impl Route {
    /// Parses a request path; `None` when it is not an API path.
    pub fn parse(path: &str) -> Option<Route> {
        let decoded = percent_decode_str(path).decode_utf8().ok()?;
        let rest = decoded.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Route::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        for suffix in ["/blobs/uploads/", "/blobs/uploads"] {
            if let Some(name) = rest.strip_suffix(suffix) {
                return Some(Route::UploadStart {
                    name: name.to_string(),
                });
            }
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Some(Route::Tags {
                name: name.to_string(),
            });
        }
        let (head, last) = rest.rsplit_once('/')?;
        if let Some(name) = head.strip_suffix("/blobs/uploads") {
            return Some(Route::Upload {
                name: name.to_string(),
                id: last.to_string(),
            });
        }
        let (name, kind) = head.rsplit_once('/')?;
        let (name, last) = (name.to_string(), last.to_string());
        match kind {
            "manifests" => Some(Route::Manifest {
                name,
                reference: last,
            }),
            "blobs" => Some(Route::Blob { name, digest: last }),
            "referrers" => Some(Route::Referrers { name, digest: last }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn routes_parse_from_the_end() {
        assert_eq!(Route::parse("/v2/"), Some(Route::Base));
        assert_eq!(Route::parse("/v2"), Some(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            Route::parse("/v2/a/b/tags/list"),
            Some(Route::Tags { name: s("a/b") })
        );
        assert_eq!(
            Route::parse("/v2/a/manifests/b/manifests/v1"),
            Some(Route::Manifest {
                name: s("a/manifests/b"),
                reference: s("v1")
            })
        );
        assert_eq!(
            Route::parse("/v2/x/blobs/sha256%3Aab"),
            Some(Route::Blob {
                name: s("x"),
                digest: s("sha256:ab")
            })
        );
        assert_eq!(
            Route::parse("/v2/x/blobs/uploads/"),
            Some(Route::UploadStart { name: s("x") })
        );
        assert_eq!(
            Route::parse("/v2/x/blobs/uploads/blobs/uploads/"),
            Some(Route::UploadStart {
                name: s("x/blobs/uploads")
            })
        );
        assert_eq!(
            Route::parse("/v2/x/blobs/uploads/123"),
            Some(Route::Upload {
                name: s("x"),
                id: s("123")
            })
        );
        assert_eq!(
            Route::parse("/v2/x/referrers/sha256:1"),
            Some(Route::Referrers {
                name: s("x"),
                digest: s("sha256:1")
            })
        );
        assert_eq!(Route::parse("/v2/x"), None);
        assert_eq!(Route::parse("/v1/x/tags/list"), None);
        assert_eq!(Route::parse("/v2/x/other/y"), None);
    }
}
