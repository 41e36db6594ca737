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

/// The access a request needs: where authorization is decided (nothing is refused yet; the
/// access-control issue checks it against the caller).
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
    /// No credentials (the only caller until access control lands).
    Anonymous,
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
}

impl RequestContext {
    /// A context for `access` by an anonymous caller.
    pub fn anonymous(id: String, access: Access) -> Self {
        RequestContext {
            id,
            caller: Caller::Anonymous,
            access,
        }
    }

    /// A fresh request id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}
