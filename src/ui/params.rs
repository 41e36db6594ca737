//! What a page is asked for: the query string and the path below `/ui/r/`, checked. Anything
//! malformed is a [`BadRequest`] (a `400` page), never a panic or a `500`.

use crate::oci::{Digest, Reference, RepositoryName};

/// Default and largest page sizes.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest `n` accepted.
pub const MAX_PAGE: u32 = 200;
/// The longest `q` or `last` accepted (a repository name's limit, and a tag's is shorter).
const MAX_TEXT: usize = 255;

/// A malformed request, with what to tell the user.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// `?q=&last=&n=` of a list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Search text (repositories only).
    pub q: String,
    /// The last entry of the previous page.
    pub last: Option<String>,
    /// Page size.
    pub n: u32,
}

/// Parses a list's query string.
pub fn list_query(query: Option<&str>) -> Result<ListQuery, BadRequest> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| BadRequest("the query string is malformed".to_string()))?;
    let mut parsed = ListQuery {
        n: DEFAULT_PAGE,
        ..ListQuery::default()
    };
    for (key, value) in pairs {
        match key.as_str() {
            "q" => parsed.q = bounded("q", value)?.trim().to_lowercase(),
            "last" if !value.is_empty() => parsed.last = Some(bounded("last", value)?),
            "n" => {
                parsed.n = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        BadRequest(format!("n must be a number from 1 to {MAX_PAGE}"))
                    })?;
            }
            _ => {}
        }
    }
    Ok(parsed)
}

/// One named parameter of a query string or form (`None` when absent).
pub fn single(query: Option<&str>, name: &str) -> Result<Option<String>, BadRequest> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| BadRequest("the query string is malformed".to_string()))?;
    Ok(pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
}

fn bounded(key: &str, value: String) -> Result<String, BadRequest> {
    if value.len() > MAX_TEXT {
        return Err(BadRequest(format!(
            "{key} is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(value)
}

/// What a path below `/ui/r/` names.
#[derive(Debug, PartialEq, Eq)]
pub enum RepoPath {
    /// `<name>`: the repository's tags.
    Tags(RepositoryName),
    /// `<name>/-/manifest/<digest>`.
    Manifest(RepositoryName, Digest),
    /// `<name>/-/delete`.
    Delete(RepositoryName),
}

/// Parses the path below `/ui/r/`. `-` never starts a name component, so `/-/` separates
/// the name from what follows.
pub fn repo_path(path: &str) -> Result<RepoPath, BadRequest> {
    let (name, rest) = match path.split_once("/-/") {
        Some((name, rest)) => (name, Some(rest)),
        None => (path.trim_end_matches('/'), None),
    };
    let name = RepositoryName::parse(name)
        .map_err(|_| BadRequest("not a valid repository name".to_string()))?;
    match rest {
        None => Ok(RepoPath::Tags(name)),
        Some("delete") => Ok(RepoPath::Delete(name)),
        Some(rest) => match rest.strip_prefix("manifest/") {
            Some(digest) => {
                let digest = digest
                    .parse()
                    .map_err(|_| BadRequest("not a valid digest".to_string()))?;
                Ok(RepoPath::Manifest(name, digest))
            }
            None => Err(BadRequest("no such page".to_string())),
        },
    }
}

/// A tag or digest to delete.
pub fn reference(value: Option<String>) -> Result<Reference, BadRequest> {
    let value = value.ok_or_else(|| BadRequest("which tag or digest?".to_string()))?;
    Reference::parse(&value).map_err(|_| BadRequest("not a valid tag or digest".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries() {
        assert_eq!(list_query(None).unwrap().n, DEFAULT_PAGE);
        let q = list_query(Some("q=App&last=a%2Fb&n=3&x=1")).unwrap();
        assert_eq!(
            (q.q.as_str(), q.last.as_deref(), q.n),
            ("app", Some("a/b"), 3)
        );
        for bad in [
            "n=0",
            "n=201",
            "n=x",
            "n=-1",
            "q=%ZZ&n=%",
            "last=".to_string().as_str(),
        ] {
            if bad == "last=" {
                assert!(list_query(Some(bad)).is_ok());
                continue;
            }
            assert!(list_query(Some(bad)).is_err(), "{bad}");
        }
        assert!(list_query(Some(&format!("q={}", "a".repeat(300)))).is_err());
    }

    #[test]
    fn repo_paths() {
        assert!(matches!(repo_path("team/app"), Ok(RepoPath::Tags(n)) if n.as_str() == "team/app"));
        assert!(matches!(repo_path("team/app/"), Ok(RepoPath::Tags(_))));
        assert!(matches!(repo_path("a/-/delete"), Ok(RepoPath::Delete(_))));
        let d = format!("a/b/-/manifest/sha256:{}", "0".repeat(64));
        assert!(matches!(repo_path(&d), Ok(RepoPath::Manifest(..))));
        for bad in [
            "",
            "A",
            "a/-/manifest/sha256:zz",
            "a/-/other",
            "a/../b",
            "a/-/manifest/",
        ] {
            assert!(repo_path(bad).is_err(), "{bad}");
        }
    }
}
