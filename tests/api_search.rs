//! Health (`/health/live`, `/health/ready`, `ferry healthcheck`), Docker's `/v1/_ping` and
//! `docker search` (`/v1/search`), outside the /v2/ API.

mod support;

use support::*;

#[tokio::test]
async fn health_live_and_v1_ping_answer_200_empty_json() {
    let reg = start();
    let api = Api::new(&reg);
    for path in ["/health/live", "/v1/_ping"] {
        let r = api.get(path).await;
        r.expect(200);
        assert_eq!(r.json(), serde_json::json!({}), "{path}: {r:?}");
    }
}

/// `/health/ready` answers 200 while the database and the store answer, without
/// credentials even where access control is on; 503 naming the store once its data is
/// gone, while `/health/live` stays 200.
#[tokio::test]
async fn health_ready_follows_the_stores() {
    if skip_on_s3("removes the filesystem data directory") {
        return;
    }
    let reg = start();
    let api = Api::new(&reg);
    api.get("/health/ready").await.expect(200);
    std::fs::remove_dir_all(reg.storage_root().join("docker")).unwrap();
    let r = api.get("/health/ready").await;
    r.expect(503);
    assert_eq!(
        r.json(),
        serde_json::json!({"ready": false, "failing": ["storage"]}),
        "{r:?}"
    );
    api.get("/health/live").await.expect(200);

    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("ci", "ci-pw")).unwrap();
    let locked = TestRegistry::start_with_config(
        &format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: R\n    path: {}\n",
            htpasswd.display()
        ),
        &[],
    );
    let anonymous = Api::new(&locked);
    anonymous.get("/health/ready").await.expect(200);
    anonymous.get("/v2/").await.expect(401);
}

/// `ferry healthcheck` (the image's `HEALTHCHECK`) with `reg`'s address and environment.
fn healthcheck(reg: &TestRegistry) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["healthcheck", "--timeout", "10"])
        .env("REGISTRY_HTTP_ADDR", reg.addr.to_string())
        .envs(reg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    support::cli::run_within(&mut cmd, std::time::Duration::from_secs(30))
}

/// `ferry healthcheck` asks `/health/ready`: healthy under `auth` without credentials
/// (where `/v2/` answers 401), unhealthy (exit 1, naming the path and the 503) once the
/// store's data is gone.
#[test]
fn healthcheck_asks_readiness() {
    if skip_on_s3("removes the filesystem data directory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("ci", "ci-pw")).unwrap();
    let locked = TestRegistry::start_with_config(
        &format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: R\n    path: {}\n",
            htpasswd.display()
        ),
        &[],
    );
    let out = healthcheck(&locked);
    assert!(out.status.success(), "{out:?}\n{}", locked.log());
    assert!(locked.log().contains("/health/ready"), "{}", locked.log());

    std::fs::remove_dir_all(locked.storage_root().join("docker")).unwrap();
    let out = healthcheck(&locked);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GET /health/ready") && stderr.contains("503"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// docker search: GET /v1/search
// ---------------------------------------------------------------------------------------

/// Makes `names` exist (a blob linked into each is enough for the catalog, and search).
async fn make_repositories(api: &Api, names: &[&str]) {
    for name in names {
        api.push_blob(name, format!("search test {name}").as_bytes())
            .await;
    }
}

/// The result names of a search answer.
fn names(answer: &serde_json::Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array: {answer}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

/// Manifest annotations `{"org.opencontainers.image.description": description}`.
fn described(description: &str) -> serde_json::Value {
    serde_json::json!({"annotations": {"org.opencontainers.image.description": description}})
}

/// A result's description is the description annotation of the repository's most recently
/// tagged manifest that has one (not of an untagged one); none is `""`.
#[tokio::test]
async fn search_shows_the_description_of_the_latest_tagged_manifest() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image_with("desc/app", "v1", 1, described("first <b>one</b>"))
        .await;
    make_repositories(&api, &["desc/plain"]).await;
    let descriptions = || async {
        let answer = api.get("/v1/search?q=desc").await.expect(200).json();
        assert_eq!(names(&answer), ["desc/app", "desc/plain"], "{answer}");
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        results
            .iter()
            .map(|r| r["description"].as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(descriptions().await, ["first <b>one</b>", ""]);
    next_second().await; // tags' push times are in seconds
    api.push_image_with("desc/app", "v2", 1, described("second"))
        .await;
    api.push_image_with("desc/app", "", 1, described("untagged"))
        .await;
    assert_eq!(descriptions().await, ["second", ""]);
}

/// Names containing the term, in any case, in byte-wise order, each in Docker's result
/// shape; an empty term lists every repository; the query is echoed as sent.
#[tokio::test]
async fn search_finds_names_containing_the_term() {
    let reg = start();
    let api = Api::new(&reg);
    make_repositories(
        &api,
        &[
            "team/app",
            "team/web",
            "other/application",
            "tools",
            "apps/x",
        ],
    )
    .await;

    let r = api.get("/v1/search?q=app").await;
    r.expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let answer = r.json();
    assert_eq!(names(&answer), ["apps/x", "other/application", "team/app"]);
    assert_eq!(answer["query"], "app");
    assert_eq!(answer["num_results"], 3);
    assert_eq!(answer["num_pages"], 1);
    assert_eq!(answer["page"], 1);
    assert_eq!(answer["page_size"], 25);
    assert_eq!(
        answer["results"][2],
        serde_json::json!({
            "name": "team/app",
            "description": "",
            "is_official": false,
            "is_automated": false,
            "star_count": 0,
        })
    );

    let answer = api.get("/v1/search?q=APP").await.expect(200).json();
    assert_eq!(names(&answer), ["apps/x", "other/application", "team/app"]);
    assert_eq!(answer["query"], "APP");

    // A term with a slash, as `docker search host/team/web` sends it.
    let answer = api.get("/v1/search?q=team%2Fw").await.expect(200).json();
    assert_eq!(names(&answer), ["team/web"]);

    for path in ["/v1/search", "/v1/search?q=", "/v1/search?n=25"] {
        let answer = api.get(path).await.expect(200).json();
        assert_eq!(answer["num_results"], 5, "{path}: {answer}");
        assert_eq!(
            names(&answer),
            [
                "apps/x",
                "other/application",
                "team/app",
                "team/web",
                "tools"
            ],
            "{path}"
        );
    }

    let answer = api
        .get("/v1/search?q=nothing-like-it")
        .await
        .expect(200)
        .json();
    assert_eq!(names(&answer), Vec::<String>::new());
    assert_eq!(answer["num_results"], 0);
    assert_eq!(answer["num_pages"], 0);
}

/// `n` results per page (default 25, at most 100), `page` from 1; `num_results` and
/// `num_pages` count every page; a page past the end is empty.
#[tokio::test]
async fn search_pages() {
    let reg = start();
    let api = Api::new(&reg);
    let all: Vec<String> = (0..7).map(|i| format!("pg/db{i}")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    make_repositories(&api, &refs).await;
    make_repositories(&api, &["unrelated"]).await;

    let mut seen = Vec::new();
    for page in 1..=3 {
        let answer = api
            .get(&format!("/v1/search?q=pg&n=3&page={page}"))
            .await
            .expect(200)
            .json();
        assert_eq!(answer["num_results"], 7, "{answer}");
        assert_eq!(answer["num_pages"], 3, "{answer}");
        assert_eq!(answer["page"], page);
        assert_eq!(answer["page_size"], 3);
        seen.extend(names(&answer));
    }
    assert_eq!(seen, all);
    let answer = api
        .get("/v1/search?q=pg&n=3&page=4")
        .await
        .expect(200)
        .json();
    assert_eq!(names(&answer), Vec::<String>::new());
    assert_eq!(answer["num_results"], 7);
    let last = api
        .get("/v1/search?q=pg&n=1&page=7")
        .await
        .expect(200)
        .json();
    assert_eq!(names(&last), ["pg/db6"]);
    assert_eq!(last["num_pages"], 7);
    // A page so far out that its offset overflows u64 is just empty.
    let far = format!("/v1/search?q=pg&n=100&page={}", u64::MAX);
    let answer = api.get(&far).await.expect(200).json();
    assert_eq!(names(&answer), Vec::<String>::new());

    // n bounds: 1 is the least, more than 100 is cut to 100.
    let one = api.get("/v1/search?q=pg&n=1").await.expect(200).json();
    assert_eq!(names(&one), ["pg/db0"]);
    assert_eq!(one["num_pages"], 7);
    for n in ["100", "101", "5000", "18446744073709551615"] {
        let answer = api
            .get(&format!("/v1/search?q=pg&n={n}"))
            .await
            .expect(200)
            .json();
        assert_eq!(answer["page_size"], 100, "n={n}");
        assert_eq!(names(&answer), all, "n={n}");
    }
}

/// `n` or `page` that is not a positive integer: `400 PAGINATION_NUMBER_INVALID`, never a
/// 500; odd terms and query strings are just terms; only GET is served.
#[tokio::test]
async fn search_refuses_malformed_numbers() {
    let reg = start();
    let api = Api::new(&reg);
    make_repositories(&api, &["team/app"]).await;
    for bad in [
        "0",
        "-1",
        "abc",
        "1.5",
        "%201",
        "1e3",
        "18446744073709551616",
        "99999999999999999999999999",
    ] {
        for param in ["n", "page"] {
            api.get(&format!("/v1/search?q=app&{param}={bad}"))
                .await
                .expect_error(400, &["PAGINATION_NUMBER_INVALID"]);
        }
    }
    let long = "a".repeat(10_000);
    for q in [
        "%00",
        "%FF%FE",
        "%E2%9C%93",
        "*",
        "..",
        "%25",
        long.as_str(),
    ] {
        let answer = api
            .get(&format!("/v1/search?q={q}"))
            .await
            .expect(200)
            .json();
        assert_eq!(answer["num_results"], 0, "q={q}");
    }
    // Stray percent signs are kept as they are (and `%` is no number).
    let answer = api.get("/v1/search?q=%ZZ").await.expect(200).json();
    assert_eq!(answer["query"], "%ZZ");
    api.get("/v1/search?q=app&n=%")
        .await
        .expect_error(400, &["PAGINATION_NUMBER_INVALID"]);
    // Repeated parameters: the first counts.
    let answer = api.get("/v1/search?q=app&q=zzz").await.expect(200).json();
    assert_eq!(names(&answer), ["team/app"]);
    let post = api.send(api.req(reqwest::Method::POST, "/v1/search")).await;
    post.expect(405);
    api.get("/v1/search/").await.expect(404);
}

/// Under `auth.htpasswd`: without valid credentials `401` with the challenge `/v2/` sends
/// (Basic without anonymous rules); with rules, each caller finds (and counts) only what
/// it may pull, anonymous callers included.
#[tokio::test]
async fn search_follows_the_access_rules() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!(
            "{}{}",
            htpasswd_line("ci", "ci-pw"),
            htpasswd_line("dev", "dev-pw")
        ),
    )
    .unwrap();
    let auth = format!(
        "version: 0.1\nauth:\n  htpasswd:\n    realm: R\n    path: {}\n",
        htpasswd.display()
    );

    // No rules: logged-in users everything, anonymous callers nothing.
    let locked = TestRegistry::start_with_config(&auth, &[]);
    let ci = Api::with_authorization(&locked, &basic("ci", "ci-pw"));
    make_repositories(&ci, &["team/app", "public/app"]).await;
    let anonymous = Api::new(&locked);
    let base = anonymous.get("/v2/").await;
    base.expect(401);
    let search = anonymous.get("/v1/search?q=app").await;
    search.expect_error(401, &["UNAUTHORIZED"]);
    assert_eq!(
        search.header("www-authenticate"),
        base.header("www-authenticate")
    );
    assert_eq!(search.header("www-authenticate"), Some("Basic realm=\"R\""));
    Api::with_authorization(&locked, &basic("ci", "wrong"))
        .get("/v1/search?q=app")
        .await
        .expect_error(401, &["UNAUTHORIZED"]);
    Api::with_authorization(&locked, "Basic !!!")
        .get("/v1/search?q=app")
        .await
        .expect(401);
    let answer = ci.get("/v1/search?q=app").await.expect(200).json();
    assert_eq!(names(&answer), ["public/app", "team/app"]);
    drop(locked);

    // Rules: anonymous callers pull public/**, dev pulls team/*, ci pulls and pushes all.
    let rules = format!(
        "{auth}  access:\n    - repositories: [\"public/**\"]\n      anonymous: true\n      actions: [pull]\n    - repositories: [\"team/*\"]\n      users: [dev]\n      actions: [pull]\n    - repositories: [\"**\"]\n      users: [ci]\n      actions: [pull, push]\n"
    );
    let ruled = TestRegistry::start_with_config(&rules, &[]);
    let ci = Api::with_authorization(&ruled, &basic("ci", "ci-pw"));
    make_repositories(
        &ci,
        &[
            "public/app",
            "public/web/app",
            "team/app",
            "team/deep/app",
            "secret/app",
        ],
    )
    .await;
    let answer = ci.get("/v1/search?q=app").await.expect(200).json();
    assert_eq!(answer["num_results"], 5, "{answer}");
    let answer = Api::new(&ruled)
        .get("/v1/search?q=app")
        .await
        .expect(200)
        .json();
    assert_eq!(names(&answer), ["public/app", "public/web/app"]);
    assert_eq!(answer["num_results"], 2);
    let dev = Api::with_authorization(&ruled, &basic("dev", "dev-pw"));
    let answer = dev.get("/v1/search?q=app&n=1").await.expect(200).json();
    // dev's rights are its rules plus the anonymous ones.
    assert_eq!(answer["num_results"], 3, "{answer}");
    assert_eq!(answer["num_pages"], 3);
    assert_eq!(names(&answer), ["public/app"]);
    let answer = dev
        .get("/v1/search?q=app&n=1&page=3")
        .await
        .expect(200)
        .json();
    assert_eq!(names(&answer), ["team/app"]);
    Api::with_authorization(&ruled, &basic("dev", "wrong"))
        .get("/v1/search?q=app")
        .await
        .expect(401);
}

/// `docker search 127.0.0.1:<port>/<term>` through the Docker engine (which asks
/// `/v1/_ping`, then `/v1/search`) lists the matching repositories.
#[tokio::test]
async fn docker_search_lists_matching_repositories() {
    if !support::cli::docker_available() {
        eprintln!("SKIP: docker engine not available");
        return;
    }
    let reg = start();
    let api = Api::new(&reg);
    make_repositories(
        &api,
        &[
            "searchme/alpha",
            "searchme/beta",
            "team/searchme-too",
            "other/thing",
        ],
    )
    .await;
    api.push_image_with("searchme/alpha", "1", 1, described("The alpha image"))
        .await;
    let host = reg.host.clone();
    let search = move |term: &str, limit: &str| {
        let out = std::process::Command::new("docker")
            .args([
                "search",
                "--format",
                "{{.Name}}|{{.Description}}|{{.StarCount}}",
            ])
            .args(["--limit", limit])
            .arg(format!("{host}/{term}"))
            .output()
            .expect("docker search runs");
        assert!(out.status.success(), "docker search {term}: {out:?}");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let found = tokio::task::spawn_blocking(move || {
        (
            search("searchme", "25"),
            search("nothing-like-it", "25"),
            search("searchme", "1"),
        )
    })
    .await
    .unwrap();
    let bare = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split('|').next().unwrap_or_default().to_string())
            .collect()
    };
    // The engine may or may not prefix the registry: compare the names' ends.
    let all = bare(&found.0);
    assert_eq!(all.len(), 3, "{all:?}");
    for (name, want) in all
        .iter()
        .zip(["searchme/alpha", "searchme/beta", "team/searchme-too"])
    {
        assert!(name.ends_with(want), "{all:?}");
    }
    assert!(
        found.0[0].ends_with("|The alpha image|0")
            && found.0[1..].iter().all(|l| l.ends_with("||0")),
        "{:?}",
        found.0
    );
    assert_eq!(found.1, Vec::<String>::new());
    assert_eq!(bare(&found.2).len(), 1, "{:?}", found.2);
    assert!(reg.log().contains("/v1/search"), "{}", reg.log());
}
