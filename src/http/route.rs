//! Turns a `/v2/...` path (or Docker's `/v1/search`) into the API resource it names. Repository names contain `/`
//! and may even contain `blobs` or `manifests` components, so paths are read from the end.
//!
//! The raw path is split at `/` first and each segment percent-decoded afterwards, so an
//! encoded slash (`%2F`) never creates a component: in a repository name it makes the name
//! invalid (`NAME_INVALID`), in an upload id or a reference it is simply part of a value
//! that then fails its own validation.

use axum::http::Method;
use percent_encoding::percent_decode_str;
use uuid::Uuid;

use crate::oci::{Digest, NameError, Reference, RepositoryName};
use crate::registry::context::{Access, Action};

/// An API resource, with its path parameters still unvalidated.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v1/search` (`docker search`; Docker's v1 API, the one v1 path served besides
    /// `/v1/_ping`)
    Search,
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
        if path == "/v1/search" {
            return Some(Route::Search);
        }
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

/// One API endpoint (method and resource) with its parameters validated: the request edge
/// parses the path once, and every later layer (authorization, the handlers) sees this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET`/`HEAD /v2/`.
    Base,
    /// `GET /v2/_catalog`.
    Catalog,
    /// `GET /v1/search` (its query parameters are read by the handler).
    Search,
    /// `GET /v2/<name>/tags/list`.
    Tags {
        /// Repository.
        name: RepositoryName,
    },
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    GetManifest {
        /// Repository.
        name: RepositoryName,
        /// Tag or digest.
        reference: Reference,
        /// Headers only.
        head: bool,
    },
    /// `PUT /v2/<name>/manifests/<reference>`.
    PutManifest {
        /// Repository.
        name: RepositoryName,
        /// Tag or digest.
        reference: Reference,
    },
    /// `DELETE /v2/<name>/manifests/<reference>`.
    DeleteManifest {
        /// Repository.
        name: RepositoryName,
        /// Tag or digest.
        reference: Reference,
    },
    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`.
    GetBlob {
        /// Repository.
        name: RepositoryName,
        /// Digest.
        digest: Digest,
        /// Headers only.
        head: bool,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    DeleteBlob {
        /// Repository.
        name: RepositoryName,
        /// Digest.
        digest: Digest,
    },
    /// `POST /v2/<name>/blobs/uploads/` (new session, monolithic upload or mount).
    StartUpload {
        /// Repository.
        name: RepositoryName,
    },
    /// `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.
    Upload {
        /// Repository.
        name: RepositoryName,
        /// Session id.
        id: Uuid,
        /// Which of the four.
        step: UploadStep,
    },
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers {
        /// Repository.
        name: RepositoryName,
        /// Subject digest.
        digest: Digest,
    },
}

/// What a request does to an upload session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadStep {
    /// `GET`: progress.
    Status,
    /// `PATCH`: a chunk or stream.
    Chunk,
    /// `PUT ?digest=`: completion.
    Finish,
    /// `DELETE`: cancel.
    Cancel,
}

/// Why a request names no endpoint, with the spec's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum EndpointError {
    /// Not an API path (`404 NAME_UNKNOWN`, as Distribution answers unknown paths).
    NotFound,
    /// An API path, but not with this method (`405 UNSUPPORTED`).
    MethodNotAllowed,
    /// A parameter fails validation: the error the spec gives for this endpoint.
    Invalid(InvalidParameter),
}

/// A path parameter that fails validation, with the error code the endpoint answers.
#[derive(Debug, PartialEq, Eq)]
pub enum InvalidParameter {
    /// `400 NAME_INVALID`.
    Name(String),
    /// `400 DIGEST_INVALID`.
    Digest(String),
    /// A reference on `PUT`/`DELETE`: `400` (`MANIFEST_INVALID` for a tag,
    /// `DIGEST_INVALID` for a digest).
    Reference(NameError),
    /// A reference on `GET`/`HEAD`: `404 MANIFEST_UNKNOWN` (the only failure the spec's
    /// endpoint table lists for manifest reads, and registry:2's answer).
    UnknownManifest,
    /// An upload id that is no session's: `404 BLOB_UPLOAD_UNKNOWN`.
    UnknownUpload,
}

impl Endpoint {
    /// The endpoint `method` `path` names.
    pub fn parse(method: &Method, path: &str) -> Result<Endpoint, EndpointError> {
        let route = Route::parse(path).ok_or(EndpointError::NotFound)?;
        let invalid = EndpointError::Invalid;
        let name = |n: &str| {
            RepositoryName::parse(n).map_err(|e| invalid(InvalidParameter::Name(e.to_string())))
        };
        let digest = |d: &str| {
            d.parse::<Digest>()
                .map_err(|e| invalid(InvalidParameter::Digest(e.to_string())))
        };
        let head = method == Method::HEAD;
        let read = method == Method::GET || head;
        let endpoint = match route {
            Route::Base if read => Endpoint::Base,
            Route::Catalog if method == Method::GET => Endpoint::Catalog,
            Route::Search if method == Method::GET => Endpoint::Search,
            Route::Tags { name: n } if method == Method::GET => Endpoint::Tags { name: name(&n)? },
            Route::Referrers { name: n, digest: d } if method == Method::GET => {
                Endpoint::Referrers {
                    name: name(&n)?,
                    digest: digest(&d)?,
                }
            }
            Route::Manifest { name: n, reference } if read => {
                let name = name(&n)?;
                let reference = Reference::parse(&reference)
                    .map_err(|_| invalid(InvalidParameter::UnknownManifest))?;
                Endpoint::GetManifest {
                    name,
                    reference,
                    head,
                }
            }
            Route::Manifest { name: n, reference }
                if method == Method::PUT || method == Method::DELETE =>
            {
                let name = name(&n)?;
                let reference = Reference::parse(&reference)
                    .map_err(|e| invalid(InvalidParameter::Reference(e)))?;
                if method == Method::PUT {
                    Endpoint::PutManifest { name, reference }
                } else {
                    Endpoint::DeleteManifest { name, reference }
                }
            }
            Route::Blob { name: n, digest: d } if read => Endpoint::GetBlob {
                name: name(&n)?,
                digest: digest(&d)?,
                head,
            },
            Route::Blob { name: n, digest: d } if method == Method::DELETE => {
                Endpoint::DeleteBlob {
                    name: name(&n)?,
                    digest: digest(&d)?,
                }
            }
            Route::UploadStart { name: n } if method == Method::POST => {
                Endpoint::StartUpload { name: name(&n)? }
            }
            Route::Upload { name: n, id } => {
                let step = match *method {
                    Method::GET => UploadStep::Status,
                    Method::PATCH => UploadStep::Chunk,
                    Method::PUT => UploadStep::Finish,
                    Method::DELETE => UploadStep::Cancel,
                    _ => return Err(EndpointError::MethodNotAllowed),
                };
                let name = name(&n)?;
                let id =
                    Uuid::parse_str(&id).map_err(|_| invalid(InvalidParameter::UnknownUpload))?;
                Endpoint::Upload { name, id, step }
            }
            _ => return Err(EndpointError::MethodNotAllowed),
        };
        Ok(endpoint)
    }

    /// The access this endpoint needs.
    pub fn access(&self) -> Access {
        const PULL: &[Action] = &[Action::Pull];
        const PUSH: &[Action] = &[Action::Pull, Action::Push];
        const DELETE: &[Action] = &[Action::Delete];
        let repository = |name: &RepositoryName, actions| Access::Repository {
            name: name.clone(),
            actions,
        };
        match self {
            Endpoint::Base => Access::Base,
            // Search lists repository names as the catalog does (and filters them the
            // same way).
            Endpoint::Catalog | Endpoint::Search => Access::Catalog,
            Endpoint::Tags { name }
            | Endpoint::GetManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::Referrers { name, .. } => repository(name, PULL),
            Endpoint::PutManifest { name, .. }
            | Endpoint::StartUpload { name }
            | Endpoint::Upload { name, .. } => repository(name, PUSH),
            Endpoint::DeleteManifest { name, .. } | Endpoint::DeleteBlob { name, .. } => {
                repository(name, DELETE)
            }
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
        assert_eq!(Route::parse("/v1/search"), Some(Route::Search));
        assert_eq!(Route::parse("/v1/search/"), None);
        assert_eq!(Route::parse("/v1/other"), None);
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

    fn endpoint(method: Method, path: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(&method, path)
    }

    #[test]
    fn endpoints_carry_validated_parameters_and_their_access() {
        let name = RepositoryName::parse("team/app").unwrap();
        let e = endpoint(Method::HEAD, "/v2/team/app/manifests/v1").unwrap();
        assert_eq!(
            e,
            Endpoint::GetManifest {
                name: name.clone(),
                reference: Reference::parse("v1").unwrap(),
                head: true
            }
        );
        assert_eq!(
            e.access().scope().as_deref(),
            Some("repository:team/app:pull")
        );
        let e = endpoint(
            Method::PATCH,
            "/v2/team/app/blobs/uploads/8a9f7d4c-6b1e-4f55-9d8e-1c2b3a4d5e6f",
        )
        .unwrap();
        assert_eq!(
            e.access().scope().as_deref(),
            Some("repository:team/app:pull,push")
        );
        let e = endpoint(Method::DELETE, "/v2/team/app/manifests/v1").unwrap();
        assert_eq!(
            e.access().scope().as_deref(),
            Some("repository:team/app:delete")
        );
        assert_eq!(
            endpoint(Method::GET, "/v2/_catalog")
                .unwrap()
                .access()
                .scope()
                .as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(
            endpoint(Method::GET, "/v2/").unwrap().access(),
            Access::Base
        );
    }

    #[test]
    fn endpoint_errors_follow_the_spec_table() {
        use InvalidParameter as P;
        let invalid = |m, p| match endpoint(m, p) {
            Err(EndpointError::Invalid(why)) => why,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(
            invalid(Method::GET, "/v2/x/manifests/-bad"),
            P::UnknownManifest
        );
        assert_eq!(
            invalid(Method::HEAD, "/v2/x/manifests/sha256:abc"),
            P::UnknownManifest
        );
        assert!(matches!(
            invalid(Method::PUT, "/v2/x/manifests/-bad"),
            P::Reference(_)
        ));
        assert!(matches!(
            invalid(Method::GET, "/v2/X/tags/list"),
            P::Name(_)
        ));
        assert!(matches!(
            invalid(Method::GET, "/v2/a%2Fb/tags/list"),
            P::Name(_)
        ));
        assert!(matches!(
            invalid(Method::GET, "/v2/x/blobs/sha256:1"),
            P::Digest(_)
        ));
        assert_eq!(
            invalid(Method::PATCH, "/v2/x/blobs/uploads/..%2F.."),
            P::UnknownUpload
        );
        assert_eq!(
            invalid(Method::DELETE, "/v2/x/blobs/uploads/../y"),
            P::UnknownUpload
        );
        assert_eq!(
            endpoint(Method::GET, "/v2/x/other/y"),
            Err(EndpointError::NotFound)
        );
        assert_eq!(
            endpoint(Method::POST, "/v2/x/manifests/v1"),
            Err(EndpointError::MethodNotAllowed)
        );
        assert_eq!(
            endpoint(
                Method::POST,
                "/v2/x/blobs/uploads/8a9f7d4c-6b1e-4f55-9d8e-1c2b3a4d5e6f"
            ),
            Err(EndpointError::MethodNotAllowed)
        );
    }
}
