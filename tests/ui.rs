//! The web UI (`/ui/`), over HTTP: the repository list (search, pagination), a tag page, a
//! multi-arch index, referrers, the image configuration, deletes (allowed, refused without
//! the right, with deletes disabled, from another origin), escaping, bad parameters, the
//! storage pages, and who sees what on an htpasswd registry. The same pages in a real
//! browser: `tests/ui_browser.rs`.

mod support;

use reqwest::Method;
use serde_json::json;
use support::*;

/// A page's body, checked to be an HTML page with the UI's headers.
fn page(r: &Resp, status: u16) -> String {
    r.expect(status);
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{r:?}"
    );
    let csp = r.must_header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.text()
}

/// A config blob for `os/arch` with `labels` and an environment, entrypoint and history.
fn config_for(arch: &str, labels: serde_json::Value) -> Blob {
    let body = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2026-11-30T10:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {
            "Env": ["PATH=/usr/bin", format!("NONCE={}", hex::encode(random_bytes(8)))],
            "Entrypoint": ["/bin/server"],
            "Cmd": ["--port", "80"],
            "Labels": labels,
        },
        "history": [{"created": "2026-11-30T10:00:00Z", "created_by": "COPY server /bin/server"}]
    });
    Blob::new(OCI_CONFIG, serde_json::to_vec(&body).unwrap())
}

/// Pushes an image of `arch` (one layer) to `repo` under `reference`.
async fn push_arch(api: &Api, repo: &str, reference: &str, arch: &str) -> Image {
    let layer = Blob::new(OCI_LAYER, random_bytes(3000));
    api.push_image_of(
        repo,
        reference,
        config_for(arch, json!({"org.opencontainers.image.title": "server"})),
        vec![layer],
        json!({}),
    )
    .await
}

/// Pushes an index over amd64 and arm64 images to `repo:tag`.
async fn push_multi_arch(api: &Api, repo: &str, tag: &str) -> (String, Image, Image) {
    let amd = push_arch(api, repo, "", "amd64").await;
    let arm = push_arch(api, repo, "", "arm64").await;
    let mut amd_d = amd.descriptor();
    amd_d["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm_d = arm.descriptor();
    arm_d["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index = oci_index(&[amd_d, arm_d], json!({}));
    let digest = api.push_manifest(repo, tag, OCI_INDEX, &index).await;
    (digest, amd, arm)
}

#[tokio::test]
async fn the_repository_list_searches_and_pages() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    for name in ["team/app", "team/web", "tools/app-x", "zeta"] {
        api.push_image(name, "v1", 1).await;
    }
    // `/` leads to the UI.
    let r = api.get("/").await;
    r.expect(303);
    assert_eq!(r.header("location"), Some("/ui/"));

    let all = page(&api.get("/ui/").await, 200);
    for name in ["team/app", "team/web", "tools/app-x", "zeta"] {
        assert!(
            all.contains(&format!("href=\"/ui/r/{name}\"")),
            "{name}: {all}"
        );
    }
    let found = page(&api.get("/ui/?q=APP").await, 200);
    assert!(found.contains("/ui/r/team/app\"") && found.contains("/ui/r/tools/app-x\""));
    assert!(!found.contains("/ui/r/team/web\"") && !found.contains("/ui/r/zeta\""));
    let none = page(&api.get("/ui/?q=nothing-like-it").await, 200);
    assert!(none.contains("No repository matches"), "{none}");

    // Pages of two, following the next link.
    let first = page(&api.get("/ui/?n=2").await, 200);
    assert!(first.contains("/ui/r/team/app\"") && first.contains("/ui/r/team/web\""));
    assert!(!first.contains("/ui/r/zeta\""));
    let next = first
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a next link")
        .replace("&amp;", "&");
    assert_eq!(next, "/ui/?last=team%2Fweb&n=2");
    let second = page(&api.get(&next).await, 200);
    assert!(second.contains("/ui/r/tools/app-x\"") && second.contains("/ui/r/zeta\""));
    assert!(!second.contains("rel=\"next\""), "{second}");

    // Malformed parameters: a 400 page, never a 500.
    for bad in [
        "/ui/?n=0",
        "/ui/?n=201",
        "/ui/?n=abc",
        "/ui/?n=99999999999999999999",
        "/ui/r/Not_A_Name",
        "/ui/r/team/app/-/manifest/sha256:xyz",
        "/ui/r/team/app/-/nothing",
        "/ui/r/team/app?n=-1",
    ] {
        page(&api.get(bad).await, 400);
    }
    let long = format!("/ui/?q={}", "a".repeat(300));
    page(&api.get(&long).await, 400);
    page(&api.get("/ui/r/no/such").await, 404);
    page(&api.get("/ui/nothing-here").await, 404);
    // The API is untouched.
    api.get("/v2/").await.expect(200);
    let style = api.get("/ui/style.css").await;
    style.expect(200);
    assert_eq!(
        style.header("content-type"),
        Some("text/css; charset=utf-8")
    );
}

#[tokio::test]
async fn a_tag_page_shows_sizes_platforms_digests_and_pull_commands() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let single = push_arch(&api, "team/app", "v1", "amd64").await;
    let (index, _, _) = push_multi_arch(&api, "team/app", "multi").await;
    for i in 0..5 {
        api.put_manifest("team/app", &format!("t{i}"), OCI_MANIFEST, &single.manifest)
            .await
            .expect(201);
    }
    let body = page(&api.get("/ui/r/team/app").await, 200);
    assert!(body.contains(">v1<") && body.contains(">multi<"), "{body}");
    assert!(body.contains("linux/amd64"), "{body}");
    assert!(body.contains("linux/arm64/v8"), "{body}");
    assert!(
        body.contains(&format!("docker pull {}/team/app:v1", reg.host)),
        "{body}"
    );
    assert!(body.contains(&format!("/ui/r/team/app/-/manifest/{}", single.digest)));
    assert!(body.contains(&format!("/ui/r/team/app/-/manifest/{index}")));
    let size: usize = single.config.data.len() + single.layers[0].data.len();
    assert!(
        body.contains(&format!("{:.1} KiB", size as f64 / 1024.0)),
        "size {size}: {body}"
    );
    // Pages of tags.
    let first = page(&api.get("/ui/r/team/app?n=3").await, 200);
    assert!(first.contains(">multi<") && first.contains(">t0<") && first.contains(">t1<"));
    assert!(
        first.contains("href=\"/ui/r/team/app?last=t1&amp;n=3\""),
        "{first}"
    );
    let last = page(&api.get("/ui/r/team/app?last=t3&n=3").await, 200);
    assert!(last.contains(">t4<") && last.contains(">v1<") && !last.contains(">t3<"));
}

#[tokio::test]
async fn an_index_page_lists_its_platforms_and_an_image_page_its_config_and_referrers() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let (index, amd, arm) = push_multi_arch(&api, "team/app", "multi").await;
    let body = page(
        &api.get(&format!("/ui/r/team/app/-/manifest/{index}")).await,
        200,
    );
    assert!(body.contains("Index "), "{body}");
    assert!(body.contains(&amd.digest) && body.contains(&arm.digest));
    assert!(body.contains("linux/amd64") && body.contains("linux/arm64/v8"));
    assert!(body.contains(&format!("docker pull {}/team/app@{index}", reg.host)));
    assert!(body.contains("<span class=\"tag\">multi</span>"), "{body}");

    // A signature and an SBOM referring to the amd64 image.
    let sbom = api
        .push_image_of(
            "team/app",
            "",
            Blob::new(OCI_EMPTY, b"{}".to_vec()),
            vec![Blob::new("application/spdx+json", random_bytes(100))],
            json!({"artifactType": SBOM_TYPE, "subject": amd.descriptor()}),
        )
        .await;
    let body = page(
        &api.get(&format!("/ui/r/team/app/-/manifest/{}", amd.digest))
            .await,
        200,
    );
    assert!(body.contains("Manifest "), "{body}");
    assert!(body.contains(SBOM_TYPE), "{body}");
    assert!(body.contains(&sbom.digest[..19]), "{body}");
    assert!(body.contains("/bin/server") && body.contains("PATH=/usr/bin"));
    assert!(body.contains("COPY server /bin/server"), "{body}");
    assert!(body.contains("org.opencontainers.image.title"), "{body}");
    assert!(body.contains(&amd.layers[0].digest) && body.contains(OCI_LAYER));
    // The referrer's own page names its subject and says its config is not an image's.
    let body = page(
        &api.get(&format!("/ui/r/team/app/-/manifest/{}", sbom.digest))
            .await,
        200,
    );
    assert!(
        body.contains(&amd.digest) && body.contains(SBOM_TYPE),
        "{body}"
    );
    assert!(body.contains("not an image configuration"), "{body}");
    page(
        &api.get(&format!(
            "/ui/r/team/app/-/manifest/sha256:{}",
            "0".repeat(64)
        ))
        .await,
        404,
    );
}

#[tokio::test]
async fn labels_and_annotations_are_shown_escaped() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let evil = "<script>alert(\"x\")</script>";
    let img = api
        .push_image_of(
            "team/app",
            "v1",
            config_for("amd64", json!({"evil": evil, evil: "key"})),
            vec![Blob::new(OCI_LAYER, random_bytes(100))],
            json!({"annotations": {"note": evil}}),
        )
        .await;
    let body = page(
        &api.get(&format!("/ui/r/team/app/-/manifest/{}", img.digest))
            .await,
        200,
    );
    assert!(!body.contains("<script"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        "{body}"
    );
    // A search term is escaped where it is repeated, and the Host in a pull command too.
    let body = page(&api.get("/ui/?q=%3Cscript%3E").await, 200);
    assert!(
        !body.contains("<script") && body.contains("&lt;script&gt;"),
        "{body}"
    );
    let r = api
        .send(
            api.req(Method::GET, "/ui/r/team/app")
                .header("Host", "x\"><script>y"),
        )
        .await;
    let body = page(&r, 200);
    assert!(!body.contains("<script") && body.contains("x&quot;&gt;&lt;script&gt;y"));
}

/// A delete's form, from the registry's own page.
async fn post_delete(api: &Api, repo: &str, reference: &str, origin: Option<&str>) -> Resp {
    let mut rb = api
        .req(Method::POST, &format!("/ui/r/{repo}/-/delete"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("reference", reference)]).unwrap());
    if let Some(origin) = origin {
        rb = rb.header("Origin", origin);
    }
    api.send(rb).await
}

#[tokio::test]
async fn deletes_need_a_confirmation_the_same_origin_and_deletes_enabled() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let img = api.push_image("team/app", "v1", 1).await;
    api.put_manifest("team/app", "v2", OCI_MANIFEST, &img.manifest)
        .await
        .expect(201);
    let tags = page(&api.get("/ui/r/team/app").await, 200);
    assert!(
        tags.contains("/ui/r/team/app/-/delete?reference=v1"),
        "{tags}"
    );
    // The confirmation step: a form posting back here.
    let confirm = page(&api.get("/ui/r/team/app/-/delete?reference=v1").await, 200);
    assert!(confirm.contains("method=\"post\""), "{confirm}");
    assert!(
        confirm.contains("name=\"reference\" value=\"v1\""),
        "{confirm}"
    );
    page(&api.get("/ui/r/team/app/-/delete").await, 400);
    page(
        &api.get("/ui/r/team/app/-/delete?reference=bad%20tag").await,
        400,
    );

    let own = format!("http://{}", reg.host);
    // Another origin, or none at all: refused, nothing deleted.
    page(
        &post_delete(&api, "team/app", "v1", Some("http://evil.example")).await,
        403,
    );
    page(&post_delete(&api, "team/app", "v1", None).await, 403);
    let referer = api
        .send(
            api.req(Method::POST, "/ui/r/team/app/-/delete")
                .header("Referer", "http://evil.example/ui/")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("reference=v1"),
        )
        .await;
    page(&referer, 403);
    assert_eq!(api.tags("team/app").await, ["v1", "v2"]);

    // From the registry's own page: the tag goes, the manifest stays.
    let done = page(&post_delete(&api, "team/app", "v1", Some(&own)).await, 200);
    assert!(done.contains("Deleted"), "{done}");
    assert_eq!(api.tags("team/app").await, ["v2"]);
    // A Referer from the registry's page will do when there is no Origin.
    let by_referer = api
        .send(
            api.req(Method::POST, "/ui/r/team/app/-/delete")
                .header(
                    "Referer",
                    format!("{own}/ui/r/team/app/-/delete?reference=x"),
                )
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("reference={}", img.digest)),
        )
        .await;
    page(&by_referer, 200);
    api.get_manifest("team/app", &img.digest).await.expect(404);
    page(&post_delete(&api, "team/app", "v1", Some(&own)).await, 404);
    page(&post_delete(&api, "team/app", "", Some(&own)).await, 400);

    // Deletes disabled: no delete link, and the form is refused.
    let off = TestRegistry::start_with(
        Flavor::Ferry,
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "false")],
    );
    let api = Api::new(&off);
    api.push_image("team/app", "v1", 1).await;
    let tags = page(&api.get("/ui/r/team/app").await, 200);
    assert!(!tags.contains("/-/delete"), "{tags}");
    page(&api.get("/ui/r/team/app/-/delete?reference=v1").await, 405);
    let own = format!("http://{}", off.host);
    page(&post_delete(&api, "team/app", "v1", Some(&own)).await, 405);
    assert_eq!(api.tags("team/app").await, ["v1"]);
}

#[tokio::test]
async fn the_storage_pages_show_totals_and_what_the_collector_would_reclaim() {
    let reg = TestRegistry::start();
    let api = Api::new(&reg);
    let img = api.push_image("team/app", "v1", 2).await;
    let body = page(&api.get("/ui/storage").await, 200);
    assert!(
        body.contains("Repositories") && body.contains("/ui/storage/gc"),
        "{body}"
    );
    let gc = page(&api.get("/ui/storage/gc").await, 200);
    assert!(gc.contains("ferry-gc --delete-untagged"), "{gc}");
    // Nothing is garbage yet (and what would be is inside the grace window anyway).
    assert!(gc.contains("<strong>0 B</strong>"), "{gc}");
    drop(img);
}

/// The users and rules of the access tests: alice may pull and delete in `team/`, bob
/// only pull in `team/`, anonymous callers pull `public/`.
const RULES: &str = "  access:
    - repositories: [\"team/**\"]
      users: [alice]
      actions: [pull, push, delete]
    - repositories: [\"team/**\"]
      users: [bob]
      actions: [pull]
    - repositories: [\"public/**\"]
      anonymous: true
      actions: [pull]
";

fn htpasswd_registry(rules: &str) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("htpasswd");
    std::fs::write(
        &path,
        [("alice", "alice-pw"), ("bob", "bob-pw")]
            .iter()
            .map(|(u, p)| htpasswd_line(u, p))
            .collect::<String>(),
    )
    .unwrap();
    TestRegistry::start_with_config(
        &format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: Test Realm\n    path: {}\n{rules}",
            path.display()
        ),
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
    )
}

#[tokio::test]
async fn an_htpasswd_registry_shows_each_caller_what_it_may_pull() {
    let reg = htpasswd_registry(RULES);
    let alice = Api::with_authorization(&reg, &basic("alice", "alice-pw"));
    let bob = Api::with_authorization(&reg, &basic("bob", "bob-pw"));
    let anonymous = Api::new(&reg);
    alice.push_image("team/app", "v1", 1).await;
    let r = alice.get("/ui/").await;
    let body = page(&r, 200);
    assert!(body.contains("/ui/r/team/app\""), "{body}");
    assert!(body.contains("Signed in as alice"), "{body}");

    // Anonymous: logged out view with the anonymous rules (no team/ repositories).
    let body = page(&anonymous.get("/ui/").await, 200);
    assert!(!body.contains("team/app"), "{body}");
    assert!(body.contains("/ui/login"), "{body}");
    page(&anonymous.get("/ui/r/team/app").await, 404);
    // Asking to log in, a wrong password, a bearer token: the Basic challenge.
    for api in [
        &anonymous,
        &Api::with_authorization(&reg, &basic("alice", "wrong")),
        &Api::with_authorization(&reg, "Bearer abc"),
    ] {
        let r = api.get("/ui/login").await;
        page(&r, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"Test Realm\"")
        );
    }
    let r = Api::with_authorization(&reg, &basic("alice", "wrong"))
        .get("/ui/")
        .await;
    page(&r, 401);
    let r = alice.get("/ui/login").await;
    r.expect(303);
    // Totals are for logged-in users.
    page(&anonymous.get("/ui/storage").await, 401);
    page(&bob.get("/ui/storage").await, 200);

    // bob may pull team/app but not delete.
    let body = page(&bob.get("/ui/r/team/app").await, 200);
    assert!(
        body.contains(">v1<") && !body.contains("/-/delete"),
        "{body}"
    );
    let own = format!("http://{}", reg.host);
    page(&post_delete(&bob, "team/app", "v1", Some(&own)).await, 403);
    page(&bob.get("/ui/r/team/app/-/delete?reference=v1").await, 403);
    assert_eq!(alice.tags("team/app").await, ["v1"]);
    // alice may.
    let body = page(&alice.get("/ui/r/team/app").await, 200);
    assert!(body.contains("/-/delete?reference=v1"), "{body}");
    page(
        &post_delete(&alice, "team/app", "v1", Some(&own)).await,
        200,
    );
    alice.get_manifest("team/app", "v1").await.expect(404);

    // Rules that give anonymous callers nothing: the list itself asks for a login.
    let closed = htpasswd_registry("");
    let r = Api::new(&closed).get("/ui/").await;
    page(&r, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Test Realm\"")
    );
    let alice = Api::with_authorization(&closed, &basic("alice", "alice-pw"));
    page(&alice.get("/ui/").await, 200);
}

#[tokio::test]
async fn the_ui_can_be_turned_off() {
    let reg = TestRegistry::start_with(Flavor::Ferry, &[("REGISTRY_UI_ENABLED", "false")]);
    let api = Api::new(&reg);
    api.get("/ui/").await.expect(404);
    api.get("/").await.expect(404);
    api.get("/v2/").await.expect(200);
}

/// Timings for the report, not assertions: the repository list over 10,000 repositories
/// and a tag page over 5,000 tags, in milliseconds per request (mean of 20 sequential
/// requests over loopback, after one warm-up). The registry is filled through the API: a
/// seed image, then per repository two cross-repository mounts and a manifest push (16 at
/// a time), and one manifest tagged 5,000 times. Run with
/// `cargo nextest run --run-ignored only -E 'test(bench_)' --no-capture`.
#[tokio::test]
#[ignore]
async fn bench_ui_pages_over_10000_repositories_and_5000_tags() {
    use futures_util::StreamExt;
    let reg = TestRegistry::start();
    let api = std::sync::Arc::new(Api::new(&reg));
    let seed = api.push_image("seed/app", "v1", 1).await;
    let started = std::time::Instant::now();
    let repos = 10_000;
    futures_util::stream::iter(0..repos)
        .map(|i| {
            let api = api.clone();
            let seed = seed.clone();
            async move {
                let name = format!("bench/r{i:05}");
                for blob in std::iter::once(&seed.config).chain(&seed.layers) {
                    let r = api
                        .send(api.req(
                            Method::POST,
                            &format!(
                                "/v2/{name}/blobs/uploads/?mount={}&from=seed/app",
                                blob.digest
                            ),
                        ))
                        .await;
                    r.expect(201);
                }
                api.put_manifest(&name, "v1", OCI_MANIFEST, &seed.manifest)
                    .await
                    .expect(201);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    println!("filled {repos} repositories in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    futures_util::stream::iter(0..5_000)
        .map(|i| {
            let api = api.clone();
            let seed = seed.clone();
            async move {
                api.put_manifest(
                    "seed/app",
                    &format!("t{i:04}"),
                    OCI_MANIFEST,
                    &seed.manifest,
                )
                .await
                .expect(201);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    println!("tagged 5,000 times in {:?}", started.elapsed());

    for (what, path) in [
        ("repository list, first page (50)", "/ui/"),
        (
            "repository list, page after bench/r05000",
            "/ui/?last=bench/r05000",
        ),
        ("repository search q=r0999 (10 matches)", "/ui/?q=r0999"),
        (
            "repository search q=zzz (no match, whole scan)",
            "/ui/?q=zzz",
        ),
        ("tag page, first page (50 of 5,001)", "/ui/r/seed/app"),
        ("tag page after t2500", "/ui/r/seed/app?last=t2500"),
        ("tag page, 200 per page", "/ui/r/seed/app?n=200"),
        ("API: _catalog?n=50, for comparison", "/v2/_catalog?n=50"),
    ] {
        api.get(path).await.expect(200);
        let t = std::time::Instant::now();
        for _ in 0..20 {
            api.get(path).await.expect(200);
        }
        println!(
            "BENCH {what}: {:.2} ms per request",
            t.elapsed().as_secs_f64() * 1000.0 / 20.0
        );
    }
}

/// With `auth.token` the UI is off (a page saying so), whatever the browser sends, and the
/// API still challenges with `Bearer`.
#[tokio::test(flavor = "multi_thread")]
async fn with_token_auth_the_ui_says_it_is_off() {
    let server = support::token::TokenServer::start();
    let env = server.registry_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reg = TestRegistry::start_with_config("version: 0.1\n", &env);
    for api in [
        Api::new(&reg),
        Api::with_authorization(&reg, &basic("alice", "pw")),
        Api::with_authorization(&reg, "Bearer x.y.z"),
    ] {
        for path in ["/ui/", "/ui/r/team/app", "/ui/storage/gc", "/ui/login"] {
            let body = page(&api.get(path).await, 403);
            assert!(body.contains("token authentication"), "{path}: {body}");
        }
    }
    Api::new(&reg).get("/v2/").await.expect(401);
}
