//! `docker search`: repository names that contain a term, one page of them, and how many
//! there are in all. Answered from the metadata ([`MetadataStore::search_repositories`]),
//! holding only the page asked for; a restricted caller sees (and counts) only the
//! repositories it may pull, as in `_catalog`.

use super::context::{Action, RequestContext};
use super::{Registry, RegistryError};
use crate::metadata::MetadataStore;
use crate::oci::RepositoryName;

/// The page size when the client names none (Docker's default limit).
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// The largest page size (Docker's and Quay's); larger requests get pages of this size.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Matching names read from the metadata at a time.
const BATCH: u32 = 500;
/// The longest query looked for: no repository name is longer (a longer one matches none).
const MAX_QUERY_LEN: usize = 255;
/// Descriptions are cut to this many characters (Docker shows the first few dozen).
const MAX_DESCRIPTION_CHARS: usize = 500;

/// A search as the client asked for it (`q`, `n`, `page`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchRequest {
    /// The term names must contain (any case; empty: every name).
    pub query: String,
    /// Results per page, 1..=[`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// The page, from 1.
    pub page: u64,
}

impl SearchRequest {
    /// From the query parameters. A missing or empty `n` is [`DEFAULT_PAGE_SIZE`], a larger
    /// one than [`MAX_PAGE_SIZE`] is cut to it; a missing or empty `page` is 1. `n` or
    /// `page` that is not a positive integer is `PAGINATION_NUMBER_INVALID`.
    pub fn parse(
        q: Option<&str>,
        n: Option<&str>,
        page: Option<&str>,
    ) -> Result<Self, RegistryError> {
        let positive = |value: Option<&str>, what: &str| -> Result<Option<u64>, RegistryError> {
            match value {
                None | Some("") => Ok(None),
                Some(v) => match v.parse::<u64>() {
                    Ok(number) if number >= 1 => Ok(Some(number)),
                    _ => Err(RegistryError::PaginationNumberInvalid(format!(
                        "{what} must be a positive integer, not {:?}",
                        v.chars().take(50).collect::<String>()
                    ))),
                },
            }
        };
        let page_size = positive(n, "n")?.map_or(DEFAULT_PAGE_SIZE, |n| {
            n.min(u64::from(MAX_PAGE_SIZE)) as u32
        });
        let page = positive(page, "page")?.unwrap_or(1);
        Ok(SearchRequest {
            query: q.unwrap_or_default().to_string(),
            page_size,
            page,
        })
    }

    /// How many matches come before this page.
    fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(u64::from(self.page_size))
    }
}

/// One page of search results.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchPage {
    /// The names on this page, in byte-wise order.
    pub names: Vec<String>,
    /// Each name's description (`""` when it has none), in the same order.
    pub descriptions: Vec<String>,
    /// How many names match in all (on every page).
    pub total: u64,
}

impl Registry {
    /// The page of names matching `request` the caller may see, and how many there are.
    pub(super) async fn search(
        &self,
        cx: &RequestContext,
        request: &SearchRequest,
    ) -> Result<SearchPage, RegistryError> {
        if request.query.chars().count() > MAX_QUERY_LEN {
            return Ok(SearchPage {
                names: Vec::new(),
                descriptions: Vec::new(),
                total: 0,
            });
        }
        search(self.metadata.as_ref(), cx, request).await
    }
}

/// [`Registry::search`] over `metadata`: one pass over the matching names, counting them
/// all and keeping those of the page.
async fn search(
    metadata: &dyn MetadataStore,
    cx: &RequestContext,
    request: &SearchRequest,
) -> Result<SearchPage, RegistryError> {
    let first = request.offset();
    let end = first.saturating_add(u64::from(request.page_size));
    let mut names = Vec::new();
    let mut total = 0u64;
    let mut last: Option<String> = None;
    loop {
        let batch = metadata
            .search_repositories(&request.query, last.as_deref(), BATCH)
            .await?;
        let ended = batch.len() < BATCH as usize;
        last = batch.last().cloned();
        for name in batch {
            let visible = !cx.is_restricted()
                || RepositoryName::parse(&name).is_ok_and(|n| cx.may(&n, Action::Pull));
            if !visible {
                continue;
            }
            if (first..end).contains(&total) {
                names.push(name);
            }
            total += 1;
        }
        if ended {
            break;
        }
    }
    let mut descriptions = Vec::with_capacity(names.len());
    for name in &names {
        let description = metadata.repository_description(name).await?;
        descriptions.push(description.map_or_else(String::new, |d| {
            d.chars().take(MAX_DESCRIPTION_CHARS).collect()
        }));
    }
    Ok(SearchPage {
        names,
        descriptions,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(n: Option<&str>, page: Option<&str>) -> Result<(u32, u64), RegistryError> {
        SearchRequest::parse(Some("x"), n, page).map(|r| (r.page_size, r.page))
    }

    #[test]
    fn page_size_and_page() {
        assert_eq!(parse(None, None).unwrap(), (25, 1));
        assert_eq!(parse(Some(""), Some("")).unwrap(), (25, 1));
        assert_eq!(parse(Some("1"), Some("3")).unwrap(), (1, 3));
        assert_eq!(parse(Some("100"), None).unwrap(), (100, 1));
        assert_eq!(parse(Some("101"), None).unwrap(), (100, 1));
        assert_eq!(parse(Some("18446744073709551615"), None).unwrap(), (100, 1));
        for bad in ["0", "-1", "x", "1.5", " 2", "18446744073709551616"] {
            assert!(parse(Some(bad), None).is_err(), "n={bad}");
            assert!(parse(None, Some(bad)).is_err(), "page={bad}");
        }
    }

    #[test]
    fn offsets_never_overflow() {
        let request = SearchRequest {
            query: String::new(),
            page_size: 100,
            page: u64::MAX,
        };
        assert_eq!(request.offset(), u64::MAX);
        let request = SearchRequest { page: 3, ..request };
        assert_eq!(request.offset(), 200);
    }
}
