//! The pull-through mirror (`proxy`): Ferry in front of upstream registries on loopback
//! (other Ferrys, one behind token auth), with a counting relay (`support::relay`) between
//! mirror and upstream to count what the mirror asks for. HTTP-level tests, plus skopeo.

mod support;

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::relay::{DIRECT, Mode, Relay, Seen};
use support::token::TokenServer;
use support::*;

/// A Ferry mirror with `proxy` holding `keys` (YAML lines indented by two spaces).
fn start_mirror(keys: &str) -> TestRegistry {
    TestRegistry::start_with_config(&format!("version: 0.1\nproxy:\n{keys}"), &[])
}

/// `GET` of a manifest through the mirror with a query (e.g. `ns=...`).
async fn get_manifest_query(api: &Api, repo: &str, reference: &str, query: &str) -> Resp {
    let rb = api
        .req(
            Method::GET,
            &format!("/v2/{repo}/manifests/{reference}?{query}"),
        )
        .header("Accept", ACCEPT_MANIFESTS);
    api.send(rb).await
}

#[tokio::test]
async fn first_pull_fetches_and_later_pulls_come_from_the_cache() {
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let up = Api::new(&upstream);
    let img = up.push_image("library/app", "v1", 2).await;
    let by_digest = up.push_image("library/app", "", 1).await;
    let loose = up
        .push_blob("library/app", b"a blob no manifest names")
        .await;
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 1h\n",
        relay.url
    ));
    let api = Api::new(&mirror);

    api.assert_image_intact("library/app", "v1", &img).await;
    let r = api.get_manifest("library/app", "v1").await;
    assert_eq!(r.must_header("content-type"), OCI_MANIFEST, "{r:?}");
    for blob in std::iter::once(&img.config).chain(&img.layers) {
        assert_eq!(
            relay.count("GET", &format!("/blobs/{}", blob.digest)),
            1,
            "{:?}",
            relay.seen()
        );
    }
    // A pull by digest, and a blob asked for by digest before any manifest names it.
    api.assert_image_intact("library/app", &by_digest.digest, &by_digest)
        .await;
    let (status, digest, _) = api.get_blob_digest("library/app", &loose).await;
    assert_eq!((status, digest), (200, loose.clone()));

    // Within the revalidation interval the upstream is not asked at all.
    relay.reset();
    api.assert_image_intact("library/app", "v1", &img).await;
    api.assert_image_intact("library/app", &by_digest.digest, &by_digest)
        .await;
    api.head_manifest("library/app", "v1").await.expect(200);
    assert_eq!(relay.seen(), Vec::<Seen>::new());

    // Cached content is ordinary content.
    assert_eq!(api.catalog().await, vec!["library/app".to_string()]);
    assert_eq!(api.tags("library/app").await, vec!["v1".to_string()]);

    // What the upstream does not have.
    api.get_manifest("library/app", "nope")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
    let missing = format!("sha256:{}", "0".repeat(64));
    api.get(&format!("/v2/library/app/blobs/{missing}"))
        .await
        .expect_error(404, &["BLOB_UNKNOWN"]);
}

#[tokio::test]
async fn a_moved_tag_is_seen_after_the_revalidation_interval_not_before() {
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let up = Api::new(&upstream);
    let first = up.push_image("team/x", "latest", 1).await;
    let eager = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 0s\n",
        relay.url
    ));
    let lazy = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 1h\n",
        relay.url
    ));
    let (eager_api, lazy_api) = (Api::new(&eager), Api::new(&lazy));
    eager_api
        .assert_image_intact("team/x", "latest", &first)
        .await;
    lazy_api
        .assert_image_intact("team/x", "latest", &first)
        .await;

    // An unchanged tag costs one HEAD, nothing else.
    relay.reset();
    let r = eager_api.get_manifest("team/x", "latest").await;
    r.expect(200);
    assert_eq!(r.must_header("docker-content-digest"), first.digest);
    assert_eq!(
        relay.seen(),
        vec![Seen {
            method: "HEAD".into(),
            path: "/v2/team/x/manifests/latest".into(),
            authorized: false,
        }]
    );

    let second = up.push_image("team/x", "latest", 1).await;
    eager_api
        .assert_image_intact("team/x", "latest", &second)
        .await;
    let r = lazy_api.get_manifest("team/x", "latest").await;
    r.expect(200);
    assert_eq!(r.must_header("docker-content-digest"), first.digest);
    // Moved back to a manifest the mirror holds: only the tag changes.
    up.push_manifest("team/x", "latest", OCI_MANIFEST, &first.manifest)
        .await;
    relay.reset();
    let r = eager_api.get_manifest("team/x", "latest").await;
    assert_eq!(r.must_header("docker-content-digest"), first.digest);
    assert_eq!(relay.count("GET", "/manifests/"), 0, "{:?}", relay.seen());
}

#[tokio::test]
async fn docker_hub_token_flow_with_credentials() {
    let token = TokenServer::start();
    let env = token.registry_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let upstream = TestRegistry::start_with(Flavor::Ferry, &env);
    let pusher = Api::with_authorization(
        &upstream,
        &format!(
            "Bearer {}",
            token.issue(
                "ci",
                json!([{"type": "repository", "name": "library/alpine", "actions": ["pull", "push"]}])
            )
        ),
    );
    let img = pusher.push_image("library/alpine", "3", 2).await;

    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  username: reader\n  password: reader-secret\n",
        upstream.url
    ));
    let api = Api::new(&mirror);
    api.assert_image_intact("library/alpine", "3", &img).await;
    let requests = token.requests();
    assert!(
        requests.iter().all(|r| r.user.as_deref() == Some("reader")
            && r.scopes == ["repository:library/alpine:pull"]
            && r.service.as_deref() == Some(token.service.as_str())),
        "{requests:?}"
    );
    // One token for the scope, reused until it expires.
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!mirror.log().contains("reader-secret"));

    // Without credentials the token grants nothing: a clear error, not a bare 404.
    let anonymous = start_mirror(&format!("  remoteurl: {}\n", upstream.url));
    let r = Api::new(&anonymous)
        .get_manifest("library/alpine", "3")
        .await;
    r.expect_error(503, &["UNAVAILABLE"]);
    assert!(r.text().contains("unreachable"), "{r:?}");
}

#[tokio::test]
async fn a_blob_with_the_wrong_digest_is_never_stored() {
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let img = Api::new(&upstream).push_image("library/bad", "v1", 1).await;
    let mirror = start_mirror(&format!("  remoteurl: {}\n", relay.url));
    let api = Api::new(&mirror);
    let layer = &img.layers[0];
    let path = format!("/v2/library/bad/blobs/{}", layer.digest);
    relay.set_mode(Mode::CorruptBlobs);
    match try_send(api.req(Method::GET, &path)).await {
        // The response is cut (the last byte is held back until the digest matched)...
        Err(_) => {}
        // ... or refused before it started.
        Ok(r) => assert_ne!(
            (r.status, sha256(&r.body)),
            (200, layer.digest.clone()),
            "{r:?}"
        ),
    }
    assert!(!blob_data_path(&mirror, &layer.digest).exists());
    api.head(&path).await.expect(200); // the upstream has it: HEAD asks there
    relay.set_mode(Mode::Forward);
    let (status, digest, _) = api.get_blob_digest("library/bad", &layer.digest).await;
    assert_eq!((status, digest), (200, layer.digest.clone()));
    // Committed just after the last byte went out.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !blob_data_path(&mirror, &layer.digest).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the blob was never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn blob_redirects_are_followed_without_credentials() {
    let token = TokenServer::start();
    let env = token.registry_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let upstream = TestRegistry::start_with(Flavor::Ferry, &env);
    let pusher = Api::with_authorization(
        &upstream,
        &format!(
            "Bearer {}",
            token.issue(
                "ci",
                json!([{"type": "repository", "name": "org/app", "actions": ["pull", "push"]}])
            )
        ),
    );
    let img = pusher.push_image("org/app", "v1", 2).await;
    let relay = Relay::start(&upstream.url);
    relay.set_mode(Mode::RedirectBlobs);
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  username: reader\n  password: reader-secret\n",
        relay.url
    ));
    Api::new(&mirror)
        .assert_image_intact("org/app", "v1", &img)
        .await;
    let seen = relay.seen();
    let direct: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with(DIRECT)).collect();
    assert_eq!(direct.len(), 3, "{seen:?}");
    assert!(direct.iter().all(|s| !s.authorized), "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.authorized && s.path.contains("/blobs/")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_multi_arch_index_pulls_through() {
    let upstream = TestRegistry::start();
    let up = Api::new(&upstream);
    let amd64 = up.push_image("multi/arch", "", 1).await;
    let arm64 = up.push_image("multi/arch", "", 1).await;
    let index = oci_index(&[amd64.descriptor(), arm64.descriptor()], json!({}));
    let index_digest = up
        .push_manifest("multi/arch", "v1", OCI_INDEX, &index)
        .await;
    let mirror = start_mirror(&format!("  remoteurl: {}\n", upstream.url));
    let api = Api::new(&mirror);
    let r = api.get_manifest("multi/arch", "v1").await;
    r.expect(200);
    assert_eq!(r.must_header("content-type"), OCI_INDEX);
    assert_eq!(r.must_header("docker-content-digest"), index_digest);
    assert_eq!(r.body[..], index[..]);
    for child in [&amd64, &arm64] {
        api.assert_image_intact("multi/arch", &child.digest, child)
            .await;
    }
}

#[tokio::test]
async fn distribution_as_the_upstream() {
    let upstream = TestRegistry::start_with(Flavor::Distribution, &[]);
    let relay = Relay::start(&upstream.url);
    let img = Api::new(&upstream)
        .push_image("library/dist", "v1", 2)
        .await;
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 0s\n",
        relay.url
    ));
    let api = Api::new(&mirror);
    api.assert_image_intact("library/dist", "v1", &img).await;
    relay.reset();
    api.assert_image_intact("library/dist", "v1", &img).await;
    assert_eq!(
        relay.seen(),
        vec![Seen {
            method: "HEAD".into(),
            path: "/v2/library/dist/manifests/v1".into(),
            authorized: false,
        }]
    );
}

#[tokio::test]
async fn ferry_gc_removes_cached_content_not_pulled_within_its_ttl() {
    let upstream = TestRegistry::start();
    let up = Api::new(&upstream);
    let old = up.push_image("library/old", "v1", 1).await;
    let fresh = up.push_image("library/fresh", "v1", 1).await;
    let mine = start_mirror(&format!(
        "  remoteurl: {}\n  ttl: 3s\n  tagrevalidate: 1h\n  local: [team/**]\n",
        upstream.url
    ));
    let api = Api::new(&mine);
    api.assert_image_intact("library/old", "v1", &old).await;
    api.assert_image_intact("library/fresh", "v1", &fresh).await;
    let pushed = api.push_image("team/pushed", "v1", 1).await;
    let pulled = unix_now().as_secs();
    until_second(pulled + 4).await;
    api.assert_image_intact("library/fresh", "v1", &fresh).await;

    let out = ferry_gc(&mine, &["--grace", "0s"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("expired"), "{text}");
    let mut catalog = api.catalog().await;
    catalog.sort();
    assert_eq!(catalog, ["library/fresh", "team/pushed"], "{text}");
    for blob in std::iter::once(&old.config).chain(&old.layers) {
        assert!(!blob_data_path(&mine, &blob.digest).exists(), "{text}");
    }
    api.assert_image_intact("team/pushed", "v1", &pushed).await;
    for blob in std::iter::once(&fresh.config).chain(&fresh.layers) {
        assert!(blob_data_path(&mine, &blob.digest).exists(), "{text}");
    }
    // Pulled again, it is fetched again.
    api.assert_image_intact("library/old", "v1", &old).await;
}

#[tokio::test]
async fn basic_auth_upstream() {
    let dir = support::cli::tempdir();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("ci", "ci-pw")).unwrap();
    let upstream = TestRegistry::start_with_config(
        &format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: up\n    path: {}\n",
            htpasswd.display()
        ),
        &[],
    );
    let img = Api::with_authorization(&upstream, &basic("ci", "ci-pw"))
        .push_image("org/app", "v1", 1)
        .await;
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  username: ci\n  password: ci-pw\n",
        upstream.url
    ));
    Api::new(&mirror)
        .assert_image_intact("org/app", "v1", &img)
        .await;
    assert!(!mirror.log().contains("ci-pw"));
}

#[tokio::test]
async fn cached_images_still_pull_when_the_upstream_rate_limits_or_is_down() {
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let up = Api::new(&upstream);
    let img = up.push_image("library/cached", "v1", 2).await;
    let other = up.push_image("library/never", "v1", 1).await;
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 0s\n",
        relay.url
    ));
    let api = Api::new(&mirror);
    api.assert_image_intact("library/cached", "v1", &img).await;

    let layer = format!("/v2/library/never/blobs/{}", other.layers[0].digest);
    relay.rate_limit(true);
    api.assert_image_intact("library/cached", "v1", &img).await;
    uncached_fails(&api, &layer).await;

    drop(relay); // nothing listens there any more
    api.assert_image_intact("library/cached", "v1", &img).await;
    uncached_fails(&api, &layer).await;
    assert!(mirror.log().contains("serving the cached tag"));
}

/// What was never cached fails with the clear error while the upstream cannot be asked.
async fn uncached_fails(api: &Api, layer: &str) {
    let r = api.get_manifest("library/never", "v1").await;
    r.expect_error(503, &["UNAVAILABLE"]);
    assert!(
        r.text().contains("upstream registry is unreachable"),
        "{r:?}"
    );
    assert!(r.header("retry-after").is_some(), "{r:?}");
    api.get(layer).await.expect_error(503, &["UNAVAILABLE"]);
}

#[tokio::test]
async fn concurrent_pulls_of_one_missing_blob_fetch_it_once() {
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let content = Content::new(24 << 20);
    let digest = content.digest();
    Api::new(&upstream)
        .push_content("big/layer", &content, &digest)
        .await;
    let mirror = start_mirror(&format!("  remoteurl: {}\n", relay.url));
    let api = Api::new(&mirror);

    let pulls = (0..8).map(|_| {
        let api = api.clone();
        let digest = digest.clone();
        tokio::spawn(async move { api.get_blob_digest("big/layer", &digest).await })
    });
    for pull in futures_util::future::join_all(pulls).await {
        assert_eq!(pull.unwrap(), (200, digest.clone(), content.len));
    }
    assert_eq!(
        relay.count("GET", &format!("/blobs/{digest}")),
        1,
        "{:?}",
        relay.seen()
    );
    relay.reset();
    assert_eq!(
        api.get_blob_digest("big/layer", &digest).await,
        (200, digest.clone(), content.len)
    );
    assert_eq!(relay.seen(), Vec::<Seen>::new());
    // A range of the cached blob.
    let r = api
        .send(
            api.req(Method::GET, &format!("/v2/big/layer/blobs/{digest}"))
                .header("Range", "bytes=10-19"),
        )
        .await;
    r.expect(206);
    assert_eq!(r.body.len(), 10);
}

#[tokio::test]
async fn clients_stream_a_blob_while_it_downloads() {
    use futures_util::StreamExt;
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let content = Content::new(10 << 20);
    let digest = content.digest();
    Api::new(&upstream)
        .push_content("slow/layer", &content, &digest)
        .await;
    let mirror = start_mirror(&format!("  remoteurl: {}\n", relay.url));
    let api = Api::new(&mirror);
    relay.set_mode(Mode::SlowBlobs); // about a second for the 10 MiB

    let started = std::time::Instant::now();
    let url = api.abs(&format!("/v2/slow/layer/blobs/{digest}"));
    let response = api.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_byte = started.elapsed();
    // A second client, while the download runs, joins it.
    let late = {
        let api = api.clone();
        let digest = digest.clone();
        tokio::spawn(async move { api.get_blob_digest("slow/layer", &digest).await })
    };
    let mut len = first.len() as u64;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, &first);
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        len += piece.len() as u64;
        sha2::Digest::update(&mut hasher, &piece);
    }
    let whole = started.elapsed();
    let got = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    assert_eq!((got, len), (digest.clone(), content.len));
    assert_eq!(late.await.unwrap(), (200, digest.clone(), content.len));
    eprintln!("first byte after {first_byte:?}, whole blob after {whole:?}");
    assert!(
        first_byte * 4 < whole,
        "first byte after {first_byte:?}, whole blob after {whole:?}"
    );
    assert_eq!(
        relay.count("GET", &format!("/blobs/{digest}")),
        1,
        "{:?}",
        relay.seen()
    );
}

#[tokio::test]
async fn ns_and_name_prefix_route_to_upstreams_and_pushes_go_only_to_local_names() {
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let img_a = Api::new(&a).push_image("x/img", "1", 1).await;
    let img_b = Api::new(&b).push_image("x/img", "1", 1).await;
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  local: ['team/**']\n  upstreams:\n    b.example: {{remoteurl: {}}}\n",
        a.url, b.url
    ));
    let api = Api::new(&mirror);

    api.assert_image_intact("x/img", "1", &img_a).await;
    let r = get_manifest_query(&api, "x/img", "1", "ns=b.example").await;
    r.expect(200);
    assert_eq!(r.must_header("docker-content-digest"), img_b.digest);
    let layer = &img_b.layers[0].digest;
    let r = api
        .get(&format!("/v2/x/img/blobs/{layer}?ns=b.example"))
        .await;
    r.expect(200);
    assert_eq!(sha256(&r.body), *layer);
    api.assert_image_intact("b.example/x/img", "1", &img_b)
        .await;
    // The ns of the default upstream's own host.
    let r = get_manifest_query(&api, "x/img", "1", &format!("ns={}", a.host)).await;
    assert_eq!(r.must_header("docker-content-digest"), img_a.digest);

    let r = get_manifest_query(&api, "x/img", "1", "ns=evil.example").await;
    r.expect_error(404, &["NAME_UNKNOWN"]);
    assert!(r.text().contains("evil.example"), "{r:?}");
    api.get_manifest("quay.io/x/img", "1")
        .await
        .expect_error(404, &["NAME_UNKNOWN"]);

    // Pushes to mirrored names are refused; proxy.local names are ordinary repositories.
    let r = api
        .send(api.req(Method::POST, "/v2/x/img/blobs/uploads/"))
        .await;
    r.expect_error(405, &["UNSUPPORTED"]);
    assert!(r.text().contains("pull-through cache"), "{r:?}");
    api.put_manifest("b.example/x/img", "2", OCI_MANIFEST, &img_b.manifest)
        .await
        .expect_error(405, &["UNSUPPORTED"]);
    let mine = api.push_image("team/app", "v1", 1).await;
    api.assert_image_intact("team/app", "v1", &mine).await;
    let mut catalog = api.catalog().await;
    catalog.sort();
    assert_eq!(catalog, ["b.example/x/img", "team/app", "x/img"]);
}

#[test]
fn skopeo_copies_through_the_mirror() {
    support::cli::require(&["skopeo"]);
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let img = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Api::new(&upstream).push_image("library/tool", "v1", 2));
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 0s\n",
        relay.url
    ));
    for round in 0..2 {
        let dir = support::cli::tempdir();
        let out = support::cli::run_within(
            Command::new("skopeo").args([
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/library/tool:v1", mirror.host),
                &format!("dir:{}", dir.path().display()),
            ]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{out:?}");
        let manifest = std::fs::read(dir.path().join("manifest.json")).unwrap();
        assert_eq!(manifest, img.manifest);
        for blob in std::iter::once(&img.config).chain(&img.layers) {
            let hex = blob.digest.trim_start_matches("sha256:");
            assert_eq!(std::fs::read(dir.path().join(hex)).unwrap(), blob.data);
        }
        if round == 0 {
            relay.reset();
        } else {
            // The second pull: one HEAD for the tag (interval 0), nothing else.
            let seen = relay.seen();
            assert!(
                seen.iter()
                    .all(|s| s.method == "HEAD" && s.path.contains("/manifests/")),
                "{seen:?}"
            );
            assert!(seen.len() <= 1, "{seen:?}");
        }
    }
}

#[test]
fn docker_pulls_through_the_mirror() {
    use support::cli::{DockerImages, docker_available, sh_within, tempdir, write};
    if !docker_available() {
        eprintln!("SKIP: docker engine not available");
        return;
    }
    let upstream = TestRegistry::start();
    let relay = Relay::start(&upstream.url);
    let mirror = start_mirror(&format!(
        "  remoteurl: {}\n  tagrevalidate: 0s\n",
        relay.url
    ));
    let sh = |args: &[&str]| sh_within(Command::new("docker").args(args), Duration::from_secs(120));
    // A tiny image made with `docker import` (no network), pushed to the upstream.
    let tmp = tempdir();
    let nonce = support::cli::nonce();
    write(
        &tmp.path().join("rootfs/hello.txt"),
        &format!("mirrored {nonce}\n"),
    );
    let tarball = tmp.path().join("rootfs.tar");
    support::cli::sh_within(
        Command::new("tar")
            .arg("-C")
            .arg(tmp.path().join("rootfs"))
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        Duration::from_secs(30),
    );
    let pushed_name = format!("{}/library/mirrored:1", upstream.host);
    let pulled_name = format!("{}/library/mirrored:1", mirror.host);
    let _images = DockerImages(vec![pushed_name.clone(), pulled_name.clone()]);
    sh(&["import", tarball.to_str().unwrap(), &pushed_name]);
    sh(&["push", &pushed_name]);
    // Gone from the engine, so that the pull needs every blob.
    sh(&["rmi", &pushed_name]);
    let up_digest = http(
        "HEAD",
        &format!("{}/v2/library/mirrored/manifests/1", upstream.url),
        &[("accept", ACCEPT_MANIFESTS)],
        None,
    )
    .must_header("docker-content-digest")
    .to_string();

    for round in 0..2 {
        relay.reset();
        sh(&["pull", &pulled_name]);
        let digests = sh(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &pulled_name,
        ]);
        assert!(digests.contains(&up_digest), "{digests} lacks {up_digest}");
        sh(&["rmi", &pulled_name]);
        let seen = relay.seen();
        if round == 0 {
            assert!(relay.count("GET", "/blobs/") >= 2, "{seen:?}");
        } else {
            assert!(
                seen.iter()
                    .all(|s| s.method == "HEAD" && s.path.contains("/manifests/1")),
                "{seen:?}"
            );
            assert!(seen.len() <= 1, "{seen:?}");
        }
    }
}

#[test]
fn podman_pulls_through_a_registries_conf_mirror() {
    use support::cli::{ToolStorage, require, sh_within, tempdir, umoci_image};
    require(&["podman", "skopeo", "umoci"]);
    let upstream = TestRegistry::start();
    let mirror = start_mirror(&format!("  remoteurl: {}\n", upstream.url));
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let files = [(
        "/hello.txt".to_string(),
        format!("through the mirror {}\n", support::cli::nonce()),
    )];
    let image = umoci_image(
        &layout,
        "v1",
        None,
        &files,
        tmp.path(),
        Duration::from_secs(60),
    );
    sh_within(
        Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/library/pm:v1", upstream.host),
        ]),
        Duration::from_secs(60),
    );
    // The registry's own location does not answer: only the mirror can serve the pull.
    let conf = tmp.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"upstream.example\"\nlocation = \"127.0.0.1:1\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            mirror.host
        ),
    )
    .unwrap();
    let podman = ToolStorage::new("podman", tmp.path().join("podman"));
    let mut pull = podman.cmd();
    pull.env("CONTAINERS_REGISTRIES_CONF", &conf)
        .args(["pull", "upstream.example/library/pm:v1"]);
    let out = sh_within(&mut pull, Duration::from_secs(120));
    assert!(
        out.contains(image.config.trim_start_matches("sha256:")),
        "podman pulled another image:\n{out}"
    );
    let listed = http("GET", &format!("{}/v2/_catalog", mirror.url), &[], None);
    assert!(listed.text().contains("library/pm"), "{listed:?}");
}

#[test]
fn containerd_pulls_through_a_hosts_toml_mirror_with_ns() {
    use support::cli::{Containerd, require, sh_within, tempdir, umoci_image, write};
    require(&["containerd", "ctr", "skopeo", "umoci"]);
    let upstream = TestRegistry::start();
    // Only the upstreams map: containerd's ?ns= picks it.
    let mirror = start_mirror(&format!(
        "  upstreams:\n    upstream.example: {{remoteurl: {}}}\n",
        upstream.url
    ));
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let files = [(
        "/hello.txt".to_string(),
        format!("ns through the mirror {}\n", support::cli::nonce()),
    )];
    let image = umoci_image(
        &layout,
        "v1",
        None,
        &files,
        tmp.path(),
        Duration::from_secs(60),
    );
    sh_within(
        Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/library/ctrimg:v1", upstream.host),
        ]),
        Duration::from_secs(60),
    );
    // The registry's own server does not answer: only the mirror can serve the pull.
    let hosts = tmp.path().join("certs.d");
    write(
        &hosts.join("upstream.example/hosts.toml"),
        &format!(
            "server = \"http://127.0.0.1:1\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.host
        ),
    );
    let daemon = Containerd::start(&tmp.path().join("containerd"));
    let name = "upstream.example/library/ctrimg:v1";
    sh_within(
        daemon
            .ctr()
            .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(&hosts)
            .arg(name),
        Duration::from_secs(120),
    );
    let listed = sh_within(daemon.ctr().args(["images", "ls"]), Duration::from_secs(30));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) && l.contains(&image.digest)),
        "ctr images ls:\n{listed}"
    );
    daemon.assert_unpacked(&files);
    // Cached under the host's name: the requests carried ns=upstream.example (without it,
    // this mirror has no upstream for library/ctrimg).
    let catalog = http("GET", &format!("{}/v2/_catalog", mirror.url), &[], None);
    assert!(
        catalog.text().contains("upstream.example/library/ctrimg"),
        "{catalog:?}"
    );
}
