//! Tag listing and the catalog: byte-wise order, `n`/`last` pagination and `Link` headers.

mod support;

use reqwest::Method;
use support::*;

/// The target of a `Link: <url>; rel="next"` header, if any.
fn next_link(r: &Resp) -> Option<String> {
    let link = r.header("link")?;
    assert!(
        link.contains("rel=\"next\""),
        "Link header must be rel=\"next\":\n{r:?}"
    );
    let start = link.find('<').expect("Link has <") + 1;
    let end = link.find('>').expect("Link has >");
    Some(link[start..end].to_string())
}

/// Follows `Link` headers from `first`, checking each page's size; returns every entry.
async fn walk(
    api: &Api,
    first: &str,
    key: &str,
    n: usize,
    expect_prefix: &str,
) -> (Vec<String>, usize) {
    let mut all = vec![];
    let mut url = first.to_string();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 100, "pagination does not end");
        let r = api.get(&url).await;
        r.expect(200);
        let page = string_list(&r.json()[key]);
        assert!(page.len() <= n, "page larger than n={n}:\n{r:?}");
        all.extend(page.clone());
        match next_link(&r) {
            Some(next) => {
                assert!(
                    next.starts_with(expect_prefix),
                    "Link should point at {expect_prefix}...:\n{r:?}"
                );
                assert!(next.contains(&format!("n={n}")), "Link keeps n:\n{r:?}");
                assert!(next.contains("last="), "Link carries last:\n{r:?}");
                assert_eq!(page.len(), n, "only full pages have a next link:\n{r:?}");
                url = next;
            }
            None => break,
        }
    }
    (all, pages)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort(); // byte-wise
    v
}

const TAGS: &[&str] = &[
    "latest",
    "B",
    "a",
    "_x",
    "1.0",
    "Z9",
    "a-b",
    "a.b",
    "a_b",
    "v1.0.0",
    "v1.0.0-rc1",
    "0",
];

#[tokio::test]
async fn tags_are_listed_in_byte_wise_order() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "tags/repo";
    let img = api.push_image(repo, "", 0).await;
    for t in TAGS {
        api.push_manifest(repo, t, OCI_MANIFEST, &img.manifest)
            .await;
    }
    let r = api.get(&format!("/v2/{repo}/tags/list")).await;
    r.expect(200);
    assert!(
        r.must_header("content-type")
            .starts_with("application/json")
    );
    let v = r.json();
    assert_eq!(v["name"], repo);
    let expected = sorted(TAGS.iter().map(|s| s.to_string()).collect());
    assert_eq!(string_list(&v["tags"]), expected, "{r:?}");
    assert!(r.header("link").is_none(), "no Link without n:\n{r:?}");
}

#[tokio::test]
async fn tags_pagination() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "tags/paged";
    let img = api.push_image(repo, "", 0).await;
    for t in TAGS {
        api.push_manifest(repo, t, OCI_MANIFEST, &img.manifest)
            .await;
    }
    let all = sorted(TAGS.iter().map(|s| s.to_string()).collect());
    let prefix = format!("/v2/{repo}/tags/list?");
    for n in [1usize, 4, 5, 12, 100] {
        let (listed, pages) = walk(
            &api,
            &format!("/v2/{repo}/tags/list?n={n}"),
            "tags",
            n,
            &prefix,
        )
        .await;
        assert_eq!(listed, all, "walking pages of {n}");
        assert_eq!(pages, all.len().div_ceil(n).max(1), "pages of {n}");
    }

    // `last` is exclusive, whether or not it names an existing tag.
    let r = api.get(&format!("/v2/{repo}/tags/list?last=a.b")).await;
    r.expect(200);
    let after: Vec<String> = all.iter().filter(|t| t.as_str() > "a.b").cloned().collect();
    assert_eq!(string_list(&r.json()["tags"]), after, "{r:?}");
    let r = api.get(&format!("/v2/{repo}/tags/list?n=2&last=Y")).await;
    r.expect(200);
    assert_eq!(string_list(&r.json()["tags"]), vec!["Z9", "_x"], "{r:?}");
    assert!(next_link(&r).is_some());
    let r = api.get(&format!("/v2/{repo}/tags/list?last=zzz")).await;
    r.expect(200);
    assert!(string_list(&r.json()["tags"]).is_empty(), "{r:?}");

    // n=0 asks for nothing.
    let r = api.get(&format!("/v2/{repo}/tags/list?n=0")).await;
    r.expect(200);
    assert!(string_list(&r.json()["tags"]).is_empty(), "{r:?}");
}

#[tokio::test]
async fn tags_of_an_unknown_repository() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("some/repo", "v1", 0).await;
    for repo in ["no/repo", "some", "some/repo/deeper"] {
        api.get(&format!("/v2/{repo}/tags/list"))
            .await
            .expect_error(404, &["NAME_UNKNOWN"]);
    }
}

#[tokio::test]
async fn deleted_tags_leave_the_list() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "tags/del";
    let a = api.push_image(repo, "a", 0).await;
    api.push_manifest(repo, "b", OCI_MANIFEST, &a.manifest)
        .await;
    api.push_image(repo, "c", 0).await;
    api.delete(&format!("/v2/{repo}/manifests/b"))
        .await
        .expect(202);
    assert_eq!(api.tags(repo).await, vec!["a", "c"]);
    api.delete(&format!("/v2/{repo}/manifests/{}", a.digest))
        .await
        .expect(202);
    assert_eq!(api.tags(repo).await, vec!["c"]);
}

const REPOS: &[&str] = &[
    "z", "a/b", "a", "0", "a-b", "a.b", "b/c/d", "a/b/c", "lib/x_y",
];

#[tokio::test]
async fn catalog_lists_repositories_sorted() {
    let reg = start();
    let api = Api::new(&reg);
    let r = api.get("/v2/_catalog").await;
    r.expect(200);
    assert!(string_list(&r.json()["repositories"]).is_empty(), "{r:?}");

    for repo in REPOS {
        api.push_image(repo, "v1", 0).await;
    }
    let r = api.get("/v2/_catalog").await;
    r.expect(200);
    assert!(
        r.must_header("content-type")
            .starts_with("application/json")
    );
    let expected = sorted(REPOS.iter().map(|s| s.to_string()).collect());
    assert_eq!(string_list(&r.json()["repositories"]), expected, "{r:?}");
    assert!(r.header("link").is_none(), "no Link without n:\n{r:?}");
}

#[tokio::test]
async fn catalog_pagination() {
    let reg = start();
    let api = Api::new(&reg);
    for repo in REPOS {
        api.push_image(repo, "v1", 0).await;
    }
    let all = sorted(REPOS.iter().map(|s| s.to_string()).collect());
    for n in [1usize, 2, 3, 9, 50] {
        let (listed, pages) = walk(
            &api,
            &format!("/v2/_catalog?n={n}"),
            "repositories",
            n,
            "/v2/_catalog?",
        )
        .await;
        assert_eq!(listed, all, "walking pages of {n}");
        assert_eq!(pages, all.len().div_ceil(n).max(1), "pages of {n}");
    }
    let r = api.get("/v2/_catalog?n=3&last=a.b").await;
    r.expect(200);
    let after: Vec<String> = all
        .iter()
        .filter(|t| t.as_str() > "a.b")
        .take(3)
        .cloned()
        .collect();
    assert_eq!(string_list(&r.json()["repositories"]), after, "{r:?}");
    let r = api.get("/v2/_catalog?n=0").await;
    r.expect(200);
    assert!(string_list(&r.json()["repositories"]).is_empty(), "{r:?}");
}

#[tokio::test]
async fn a_repository_is_listed_as_soon_as_it_holds_a_blob() {
    let reg = start();
    let api = Api::new(&reg);
    assert!(api.catalog().await.is_empty());
    // A blob alone puts a repository in the catalog (clients' test suites push a blob and
    // then list repositories), by upload and by mount alike.
    let digest = api.push_blob("team/blobs-only", b"layer bytes").await;
    assert_eq!(api.catalog().await, vec!["team/blobs-only"]);
    let r = api
        .send(api.req(
            Method::POST,
            &format!("/v2/team/mounted/blobs/uploads/?mount={digest}&from=team/blobs-only"),
        ))
        .await;
    r.expect(201);
    assert_eq!(api.catalog().await, vec!["team/blobs-only", "team/mounted"]);
    // An upload that was started but not finished lists nothing.
    api.start_upload("team/unfinished").await;
    assert_eq!(api.catalog().await, vec!["team/blobs-only", "team/mounted"]);
    // Pagination counts such repositories like any other.
    let r = api.get("/v2/_catalog?n=1").await;
    r.expect(200);
    assert_eq!(
        string_list(&r.json()["repositories"]),
        vec!["team/blobs-only"]
    );
}

#[tokio::test]
async fn a_repository_whose_manifests_were_deleted_stays_while_it_holds_blobs() {
    let reg = start();
    let api = Api::new(&reg);
    let gone = api.push_image("team/gone", "v1", 1).await;
    let one = api.push_image("team/stays", "v1", 0).await;
    api.push_image("team/stays", "v2", 0).await;
    assert_eq!(api.catalog().await, vec!["team/gone", "team/stays"]);

    api.delete(&format!("/v2/team/gone/manifests/{}", gone.digest))
        .await
        .expect(202);
    api.delete(&format!("/v2/team/stays/manifests/{}", one.digest))
        .await
        .expect(202);
    // registry:2 keeps listing a repository whose blobs are still linked; it leaves the
    // catalog when the garbage collector removes the links (tests/gc.rs).
    assert_eq!(api.catalog().await, vec!["team/gone", "team/stays"]);
    // Pushing again works as before.
    api.push_image("team/gone", "v1", 0).await;
    assert_eq!(api.catalog().await, vec!["team/gone", "team/stays"]);
}
