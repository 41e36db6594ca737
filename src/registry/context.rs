//! Who asks the registry for what: the request context every operation receives from the
//! request edge. Authorization (the access-control issue) decides on it; a caching layer
//! (the pull-through mirror) reads it; the access log names it.

use crate::oci::RepositoryName;

/// What a caller may do to a repository, as token scopes name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, push manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The scope spelling (`pull`, `push`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// The access a request needs: the access layer (`crate::auth`) checks it against the
/// caller between `classify` and `dispatch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// `GET /v2/`: only that the caller may use the registry at all.
    Base,
    /// `registry:catalog:*`.
    Catalog,
    /// `repository:<name>:<actions>`.
    Repository {
        /// The repository.
        name: RepositoryName,
        /// What is done to it (a cross-repository mount also needs `pull` on its source,
        /// which the handler checks when it knows the source).
        actions: &'static [Action],
    },
}

impl Access {
    /// The token scope string, e.g. `repository:team/app:pull,push` (`None` for the base).
    pub fn scope(&self) -> Option<String> {
        match self {
            Access::Base => None,
            Access::Catalog => Some("registry:catalog:*".to_string()),
            Access::Repository { name, actions } => Some(format!(
                "repository:{name}:{}",
                actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (or an anonymous token).
    Anonymous,
    /// An authenticated user: the htpasswd user, or the token's subject.
    User(String),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Anonymous => f.write_str("(anonymous)"),
            Caller::User(name) => f.write_str(name),
        }
    }
}

/// What the caller of one request may do, as the access layer decided it (the access rules
/// for this caller, or what its token grants). Services ask it through
/// [`RequestContext::may`], e.g. to filter the catalog.
pub trait Rights: Send + Sync + std::fmt::Debug {
    /// Whether the caller may do `action` to `repository`.
    fn may(&self, repository: &str, action: Action) -> bool;
}

/// One request as the registry services see it.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Unique per request (in the access log and error logs).
    pub id: String,
    /// Who is calling.
    pub caller: Caller,
    /// What the request does.
    pub access: Access,
    /// What the caller may do; `None`: everything (no access control configured).
    pub rights: Option<std::sync::Arc<dyn Rights>>,
    /// containerd's `?ns=<registry host>` query parameter: the registry a mirror is asked
    /// to stand in for (only ever a key into the mirror's configured upstreams).
    pub namespace: Option<String>,
    /// The HTTP request behind the operation (set by `classify`), as notifications report
    /// it; `None` for the registry's own operations (the mirror's cache fills).
    pub request: Option<std::sync::Arc<RequestFacts>>,
}

/// What notifications say about the request behind an event (Distribution's `request`
/// record), and the base of the URLs they name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The client's address (`X-Forwarded-For`'s first entry, `X-Real-Ip`, else the peer).
    pub addr: String,
    /// The `Host` the client named.
    pub host: String,
    /// The HTTP method.
    pub method: String,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// `scheme://host` of the registry as the client reaches it (as `Location` URLs are
    /// built); empty when the request names no host.
    pub base_url: String,
}

impl RequestContext {
    /// A context for `access` by an anonymous caller.
    pub fn anonymous(id: String, access: Access) -> Self {
        RequestContext {
            id,
            caller: Caller::Anonymous,
            access,
            rights: None,
            namespace: None,
            request: None,
        }
    }

    /// Whether the caller may do `action` to `repository` (always, without access control).
    pub fn may(&self, repository: &RepositoryName, action: Action) -> bool {
        self.rights
            .as_ref()
            .is_none_or(|rights| rights.may(repository.as_str(), action))
    }

    /// Whether access control restricts this caller at all.
    pub fn is_restricted(&self) -> bool {
        self.rights.is_some()
    }

    /// A fresh request id.
    pub fn new_id() -> String {
        // Unique, not secret: a random prefix drawn once per process and a counter, in the
        // form of a simple UUID (32 hex digits). No system call per request, unlike
        // drawing a random UUID each time.
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix:016x}{n:016x}")
    }
}
