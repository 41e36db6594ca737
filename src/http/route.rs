//! Turns a `/v2/...` path into the API resource it names. Repository names contain `/`
//! and may even contain `blobs` or `manifests` components, so paths are read from the end.
//!
//! The raw path is split at `/` first and each segment percent-decoded afterwards, so an
//! encoded slash (`%2F`) never creates a component: in a repository name it makes the name
//! invalid (`NAME_INVALID`), in an upload id or a reference it is simply part of a value
//! that then fails its own validation.

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
    /// `/v2/<name>/blobs/uploads/<id>`; `id` may be anything (even contain `/`): the
    /// handler answers `BLOB_UPLOAD_UNKNOWN` for an id that is not a session's.
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

/// One decoded path segment. A segment that does not decode to UTF-8 is kept as sent; it
/// then fails validation as a name, digest, reference or session id.
fn decode(segment: &str) -> String {
    match percent_decode_str(segment).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => segment.to_string(),
    }
}

/// A repository name from its raw segments. A segment that decodes to something containing
/// `/` stays encoded, so the name cannot pass validation (`a%2Fb` is not the name `a/b`).
fn name_of(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|segment| {
            let decoded = decode(segment);
            if decoded.contains('/') {
                (*segment).to_string()
            } else {
                decoded
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Route {
    /// Parses a request path; `None` when it is not an API path.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Route::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if decode(rest) == "_catalog" {
            return Some(Route::Catalog);
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let literal = |i: usize, word: &str| decode(segments[i]) == word;
        let n = segments.len();
        // `<name>/blobs/uploads/` (the trailing slash is optional).
        let without_slash = if segments[n - 1].is_empty() { n - 1 } else { n };
        if without_slash >= 3
            && literal(without_slash - 2, "blobs")
            && literal(without_slash - 1, "uploads")
        {
            return Some(Route::UploadStart {
                name: name_of(&segments[..without_slash - 2]),
            });
        }
        if n >= 3 && literal(n - 2, "tags") && literal(n - 1, "list") {
            return Some(Route::Tags {
                name: name_of(&segments[..n - 2]),
            });
        }
        if n >= 4 && literal(n - 3, "blobs") && literal(n - 2, "uploads") {
            return Some(Route::Upload {
                name: name_of(&segments[..n - 3]),
                id: decode(segments[n - 1]),
            });
        }
        if n >= 3 {
            let name = name_of(&segments[..n - 2]);
            let last = decode(segments[n - 1]);
            match decode(segments[n - 2]).as_str() {
                "manifests" => {
                    return Some(Route::Manifest {
                        name,
                        reference: last,
                    });
                }
                "blobs" => return Some(Route::Blob { name, digest: last }),
                "referrers" => return Some(Route::Referrers { name, digest: last }),
                _ => {}
            }
        }
        // Anything else below `<name>/blobs/uploads/` names an upload that cannot exist
        // (`.../uploads/../x`, an id with slashes): an unknown upload, not an unknown path.
        let uploads =
            (1..n.saturating_sub(2)).find(|&i| literal(i, "blobs") && literal(i + 1, "uploads"))?;
        Some(Route::Upload {
            name: name_of(&segments[..uploads]),
            id: segments[uploads + 2..].join("/"),
        })
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
