//! Access control over HTTP: htpasswd logins (`auth.htpasswd`), the access rules
//! (`auth.access`), bearer tokens from the test token server (`auth.token`), malformed
//! `Authorization` headers, and the configurations that refuse to start.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::json;
use support::cli::{DockerImages, docker_available};
use support::token::{TokenServer, TokenServerConfig};
use support::*;

/// The users of every htpasswd test.
fn users() -> String {
    [("ci", "ci-pw"), ("admin", "admin-pw"), ("bob", "bob-pw")]
        .iter()
        .map(|(u, p)| htpasswd_line(u, p))
        .collect()
}

/// A registry with htpasswd logins and `rules` (YAML of `auth.access`, empty for none).
fn htpasswd_registry(rules: &str) -> (TestRegistry, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("htpasswd");
    std::fs::write(&path, users()).unwrap();
    let yaml = format!(
        "version: 0.1\nauth:\n  htpasswd:\n    realm: Test Realm\n    path: {}\n{rules}",
        path.display()
    );
    (TestRegistry::start_with_config(&yaml, &[]), path)
}

const RULES: &str = "  access:
    - repositories: [\"**\"]
      anonymous: true
      actions: [pull]
    - repositories: [\"**\"]
      users: [ci]
      actions: [push]
    - repositories: [\"**\"]
      users: [admin]
      actions: [pull, push, delete]
    - repositories: [\"team/*\"]
      users: [bob]
      actions: [push]
";

fn expect_basic_challenge(r: &Resp) {
    r.expect_error(401, &["UNAUTHORIZED"]);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Test Realm\""),
        "{r:?}"
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{r:?}"
    );
}

/// The challenge of an htpasswd registry whose rules let anonymous callers in: `Bearer`,
/// naming Ferry's own token endpoint (so the Docker engine pulls without a login).
fn expect_own_token_challenge(reg: &TestRegistry, r: &Resp, scope: Option<&str>) {
    r.expect_error(401, &["UNAUTHORIZED"]);
    let mut expected = format!(
        "Bearer realm=\"http://{}/auth/token\",service=\"Test Realm\"",
        reg.host
    );
    if let Some(scope) = scope {
        expected.push_str(&format!(",scope=\"{scope}\""));
    }
    assert_eq!(
        r.header("www-authenticate"),
        Some(expected.as_str()),
        "{r:?}"
    );
}

#[tokio::test]
async fn htpasswd_without_rules_is_distributions_behaviour() {
    let (reg, _) = htpasswd_registry("");
    let anonymous = Api::new(&reg);
    expect_basic_challenge(&anonymous.get("/v2/").await);
    expect_basic_challenge(&anonymous.get("/v2/_catalog").await);
    expect_basic_challenge(&anonymous.get("/v2/a/tags/list").await);

    let wrong = Api::with_authorization(&reg, &basic("ci", "nope"));
    expect_basic_challenge(&wrong.get("/v2/").await);
    let unknown = Api::with_authorization(&reg, &basic("mallory", "ci-pw"));
    expect_basic_challenge(&unknown.get("/v2/").await);
    let log = reg.log();
    assert!(
        log.contains("failed login") && log.contains("mallory"),
        "{log}"
    );
    assert!(!log.contains("ci-pw") && !log.contains("nope"), "{log}");

    let ci = Api::with_authorization(&reg, &basic("ci", "ci-pw"));
    ci.get("/v2/").await.expect(200);
    let image = ci.push_image("a/b", "v1", 2).await;
    ci.assert_image_intact("a/b", "v1", &image).await;
    assert_eq!(ci.catalog().await, ["a/b"]);
    // The access log names the user.
    assert!(reg.log().contains("user=\"ci\""), "{}", reg.log());
    // Anonymous callers may not even pull.
    expect_basic_challenge(&anonymous.get_manifest("a/b", "v1").await);
}

#[tokio::test]
async fn access_rules_anonymous_pull_ci_push_admin_delete() {
    let (reg, _) = htpasswd_registry(RULES);
    let anonymous = Api::new(&reg);
    let ci = Api::with_authorization(&reg, &basic("ci", "ci-pw"));
    let admin = Api::with_authorization(&reg, &basic("admin", "admin-pw"));
    let bob = Api::with_authorization(&reg, &basic("bob", "bob-pw"));

    // /v2/ asks anonymous callers to log in even when they may pull (docker login), with
    // a Bearer challenge naming Ferry's token endpoint; Basic credentials work directly.
    expect_own_token_challenge(&reg, &anonymous.get("/v2/").await, None);
    let image = ci.push_image("lib/app", "v1", 1).await;
    anonymous.assert_image_intact("lib/app", "v1", &image).await;
    bob.assert_image_intact("lib/app", "v1", &image).await;

    // Anonymous push: asked to log in; bob (logged in, no right): 403 DENIED.
    let r = anonymous
        .send(anonymous.req(Method::POST, "/v2/lib/app/blobs/uploads/"))
        .await;
    expect_own_token_challenge(&reg, &r, Some("repository:lib/app:pull,push"));
    bob.send(bob.req(Method::POST, "/v2/lib/app/blobs/uploads/"))
        .await
        .expect_error(403, &["DENIED"]);

    // `team/*` is one component: bob pushes team/x but not team/x/y.
    bob.push_image("team/x", "v1", 1).await;
    bob.send(bob.req(Method::POST, "/v2/team/x/y/blobs/uploads/"))
        .await
        .expect_error(403, &["DENIED"]);
    // `**` crosses components: ci pushes deep names.
    ci.push_image("team/x/y", "v1", 1).await;

    // Delete: admin only.
    let path = format!("/v2/lib/app/manifests/{}", image.digest);
    ci.delete(&path).await.expect_error(403, &["DENIED"]);
    expect_own_token_challenge(
        &reg,
        &anonymous.delete(&path).await,
        Some("repository:lib/app:delete"),
    );
    admin.delete(&path).await.expect(202);
}

/// A token from the registry's own endpoint (`GET /auth/token`) as `authorization` asks.
async fn own_token(reg: &TestRegistry, authorization: Option<&str>, scopes: &[&str]) -> String {
    let api = match authorization {
        Some(a) => Api::with_authorization(reg, a),
        None => Api::new(reg),
    };
    let query: String = scopes.iter().map(|s| format!("&scope={s}")).collect();
    let r = api
        .get(&format!("/auth/token?service=Test%20Realm{query}"))
        .await;
    r.expect(200);
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    let body = r.json();
    assert_eq!(body["expires_in"], 300, "{body}");
    assert!(
        body["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert_eq!(body["token"], body["access_token"], "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// Ferry's own tokens: anonymous tokens pull only, a user's token carries what the rules
/// give them, scopes are cut down rather than refused, tokens survive a restart.
#[tokio::test]
async fn own_token_endpoint_grants_what_the_rules_allow() {
    let (mut reg, _) = htpasswd_registry(RULES);
    let ci_basic = basic("ci", "ci-pw");
    let image = Api::with_authorization(&reg, &ci_basic)
        .push_image("lib/app", "v1", 1)
        .await;
    let bearer = |token: &str| format!("Bearer {token}");

    // Anonymous: pull yes, push no (401 naming the scope: a logged-in client asks again).
    let token = own_token(&reg, None, &["repository:lib/app:pull,push"]).await;
    let anonymous = Api::with_authorization(&reg, &bearer(&token));
    anonymous.get("/v2/").await.expect(200);
    anonymous.assert_image_intact("lib/app", "v1", &image).await;
    let r = anonymous
        .send(anonymous.req(Method::POST, "/v2/lib/app/blobs/uploads/"))
        .await;
    r.expect_error(401, &["UNAUTHORIZED"]);
    assert!(
        r.must_header("www-authenticate")
            .ends_with(",scope=\"repository:lib/app:pull,push\",error=\"insufficient_scope\""),
        "{r:?}"
    );

    // ci: push with a token. The same token does not reach another repository.
    let token = own_token(&reg, Some(&ci_basic), &["repository:lib/other:pull,push"]).await;
    let ci = Api::with_authorization(&reg, &bearer(&token));
    ci.push_image("lib/other", "v1", 1).await;
    let r = ci
        .send(ci.req(Method::POST, "/v2/lib/app/blobs/uploads/"))
        .await;
    assert!(
        r.must_header("www-authenticate")
            .contains("insufficient_scope"),
        "{r:?}"
    );

    // bob asks for push where the rules refuse it: the token leaves it out and the
    // registry says 403 (no token would do), not 401.
    let token = own_token(
        &reg,
        Some(&basic("bob", "bob-pw")),
        &["repository:lib/app:pull,push repository:team/x:pull,push"],
    )
    .await;
    let bob = Api::with_authorization(&reg, &bearer(&token));
    bob.send(bob.req(Method::POST, "/v2/lib/app/blobs/uploads/"))
        .await
        .expect_error(403, &["DENIED"]);
    bob.push_image("team/x", "v1", 1).await;

    // Catalog: anonymous callers may list here (they have rules), filtered by pull rights.
    let token = own_token(&reg, None, &["registry:catalog:*"]).await;
    let lister = Api::with_authorization(&reg, &bearer(&token));
    assert_eq!(lister.catalog().await, ["lib/app", "lib/other", "team/x"]);

    // Wrong password, unusable credentials, too many scopes.
    let r = Api::with_authorization(&reg, &basic("ci", "wrong"))
        .get("/auth/token?scope=repository:lib/app:pull")
        .await;
    r.expect_error(401, &["UNAUTHORIZED"]);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Test Realm\"")
    );
    Api::with_authorization(&reg, "Digest x")
        .get("/auth/token")
        .await
        .expect_error(401, &["UNAUTHORIZED"]);
    let many: String = (0..40)
        .map(|i| format!("&scope=repository:r{i}:pull"))
        .collect();
    Api::new(&reg)
        .get(&format!("/auth/token?service=x{many}"))
        .await
        .expect_error(400, &["UNSUPPORTED"]);
    let forged = format!("{}x", &token[..token.len() - 1]);
    let r = Api::with_authorization(&reg, &bearer(&forged))
        .get("/v2/")
        .await;
    assert!(
        r.must_header("www-authenticate").contains("invalid_token"),
        "{r:?}"
    );
    assert!(
        !reg.log().contains(&token[token.len() - 20..]),
        "a token is in the log"
    );

    // The secret is kept with the metadata: a token outlives a restart.
    let token = own_token(&reg, None, &["repository:lib/app:pull"]).await;
    reg.restart();
    Api::with_authorization(&reg, &bearer(&token))
        .assert_image_intact("lib/app", "v1", &image)
        .await;
}

/// Without anonymous rights there is no token endpoint: Basic, as in Distribution.
#[tokio::test]
async fn no_token_endpoint_without_anonymous_rights() {
    let (reg, _) = htpasswd_registry("");
    Api::new(&reg)
        .get("/auth/token?scope=repository:a:pull")
        .await
        .expect_error(404, &["UNSUPPORTED"]);
    expect_basic_challenge(&Api::new(&reg).get("/v2/").await);
}

#[tokio::test]
async fn catalog_lists_only_what_the_caller_may_pull_across_pages() {
    let rules = "  access:
    - repositories: [\"pub/*\"]
      anonymous: true
      actions: [pull]
    - repositories: [\"**\"]
      users: [admin]
      actions: [pull, push]
";
    let (reg, _) = htpasswd_registry(rules);
    let admin = Api::with_authorization(&reg, &basic("admin", "admin-pw"));
    let mut public = Vec::new();
    // Interleaved names, so that pages of the unfiltered catalog hold few public ones.
    for i in 0..12 {
        admin.push_image(&format!("priv/r{i:02}"), "v1", 0).await;
        if i % 3 == 0 {
            let name = format!("pub/r{i:02}");
            admin.push_image(&name, "v1", 0).await;
            public.push(name);
        }
    }
    assert_eq!(admin.catalog().await.len(), 16);
    let anonymous = Api::new(&reg);
    assert_eq!(anonymous.catalog().await, public);
    // Pages of 2: full pages, a Link while more remain, and nothing private.
    let mut seen = Vec::new();
    let mut url = "/v2/_catalog?n=2".to_string();
    for _ in 0..10 {
        let r = anonymous.get(&url).await;
        r.expect(200);
        let page = string_list(&r.json()["repositories"]);
        seen.extend(page.clone());
        match r.header("link") {
            Some(link) => {
                assert_eq!(page.len(), 2, "{r:?}");
                let start = link.find('<').unwrap() + 1;
                url = link[start..link.find('>').unwrap()].to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, public);
    // bob has no rule but the anonymous one: the same list.
    let bob = Api::with_authorization(&reg, &basic("bob", "bob-pw"));
    assert_eq!(bob.catalog().await, public);
}

#[tokio::test]
async fn mount_needs_pull_on_the_source() {
    let rules = "  access:
    - repositories: [\"secret/*\"]
      users: [admin]
      actions: [pull, push]
    - repositories: [\"bob/*\"]
      users: [bob]
      actions: [pull, push]
";
    let (reg, _) = htpasswd_registry(rules);
    let admin = Api::with_authorization(&reg, &basic("admin", "admin-pw"));
    let digest = admin.push_blob("secret/a", b"classified").await;
    let bob = Api::with_authorization(&reg, &basic("bob", "bob-pw"));
    let r = bob
        .send(bob.req(
            Method::POST,
            &format!("/v2/bob/x/blobs/uploads/?mount={digest}&from=secret/a"),
        ))
        .await;
    r.expect(202); // a session, not a mount
    bob.head(&format!("/v2/bob/x/blobs/{digest}"))
        .await
        .expect(404);
    // Without `from`, no mount from anywhere either.
    bob.send(bob.req(
        Method::POST,
        &format!("/v2/bob/x/blobs/uploads/?mount={digest}"),
    ))
    .await
    .expect(202);
    // The admin may pull the source: mounted.
    admin
        .send(admin.req(
            Method::POST,
            &format!("/v2/secret/b/blobs/uploads/?mount={digest}&from=secret/a"),
        ))
        .await
        .expect(201);
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_never_500() {
    let (reg, _) = htpasswd_registry(RULES);
    let client = http::client(Duration::from_secs(30));
    let huge = format!("Basic {}", "QUFB".repeat(20_000));
    let cases: Vec<Vec<u8>> = vec![
        b"Basic !!!not-base64!!!".to_vec(),
        format!("Basic {}", STANDARD.encode("no-colon")).into_bytes(),
        format!("Basic {}", STANDARD.encode(":empty-user")).into_bytes(),
        b"Basic".to_vec(),
        b"Bearer some.jwt.token".to_vec(),
        b"Digest username=x".to_vec(),
        huge.into_bytes(),
        b"Basic \xff\xfe\xfd".to_vec(),
        format!("Basic {}", STANDARD.encode(b"ci:\xff\xfe")).into_bytes(),
    ];
    for value in cases {
        let header = reqwest::header::HeaderValue::from_bytes(&value).unwrap();
        for path in ["/v2/", "/v2/lib/app/tags/list"] {
            let r = send(
                client
                    .get(format!("{}{path}", reg.url))
                    .header("authorization", header.clone()),
            )
            .await;
            // A header beyond the server's limits may be refused before auth (431).
            assert!(
                r.status == 401 || r.status == 431,
                "{:.60}: {r:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }
}

#[tokio::test]
async fn htpasswd_changes_apply_without_restart() {
    let (reg, path) = htpasswd_registry("");
    let carol = Api::with_authorization(&reg, &basic("carol", "carol-pw"));
    expect_basic_challenge(&carol.get("/v2/").await);
    let mut text = users();
    text.push_str(&htpasswd_line("carol", "carol-pw"));
    std::fs::write(&path, text).unwrap();
    // Re-read within about a second: poll until it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = carol.get("/v2/").await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "carol never got in: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And removed again.
    std::fs::write(&path, users()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = carol.get("/v2/").await;
        if r.status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "carol still gets in: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ferry serve <config>`: its exit status and what it said.
fn serve_fails(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    let yaml = yaml.replace("DIR", &dir.path().display().to_string());
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .arg(&config)
        .env("REGISTRY_HTTP_ADDR", free_port().to_string())
        .env(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            dir.path().join("data"),
        )
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn configurations_that_refuse_to_start() {
    let (code, err) = serve_fails("version: 0.1\nauth:\n  silly:\n    realm: r\n    service: s\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("auth.silly"), "{err}");
    let (code, err) = serve_fails(
        "version: 0.1\nauth:\n  htpasswd: {path: /x}\n  token: {realm: r, service: s, issuer: i, rootcertbundle: /b}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("choose one access controller"), "{err}");
    let (code, err) = serve_fails("version: 0.1\nauth:\n  htpasswd:\n    path: DIR/missing\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing") && err.contains("htpasswd"), "{err}");
}

#[test]
fn the_shipped_auth_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/auth-example.yml");
    let config = ferry::config::Config::load(Some(&path), []).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(matches!(
        config.auth.controller,
        Some(ferry::auth::Controller::Htpasswd { .. })
    ));
    assert_eq!(config.auth.rules.map(|r| r.len()), Some(3));
}

// ---- Token auth ----

fn token_registry(server: &TokenServer) -> TestRegistry {
    let env = server.registry_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestRegistry::start_with_config("version: 0.1\n", &env)
}

fn bearer_challenge(r: &Resp) -> String {
    r.expect_error(401, &["UNAUTHORIZED"]);
    r.must_header("www-authenticate").to_string()
}

/// A token from the server (a blocking request) inside an async test.
fn fetch(server: &TokenServer, user: (&str, &str), scopes: &[&str]) -> String {
    tokio::task::block_in_place(|| server.fetch(Some(user), scopes))
}

#[tokio::test(flavor = "multi_thread")]
async fn token_challenges_name_the_exact_scope() {
    let server = TokenServer::start();
    let reg = token_registry(&server);
    let anonymous = Api::new(&reg);
    let base = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        server.realm, server.service
    );
    assert_eq!(bearer_challenge(&anonymous.get("/v2/").await), base);
    assert_eq!(
        bearer_challenge(&anonymous.get("/v2/team/app/tags/list").await),
        format!("{base},scope=\"repository:team/app:pull\"")
    );
    let r = anonymous
        .send(anonymous.req(Method::POST, "/v2/team/app/blobs/uploads/"))
        .await;
    assert_eq!(
        bearer_challenge(&r),
        format!("{base},scope=\"repository:team/app:pull,push\"")
    );
    assert_eq!(
        bearer_challenge(&anonymous.get("/v2/_catalog").await),
        format!("{base},scope=\"registry:catalog:*\"")
    );

    // The ci user pushes with a token for exactly that scope.
    let token = fetch(
        &server,
        ("ci", "ci-secret"),
        &["repository:team/app:pull,push"],
    );
    let ci = Api::with_authorization(&reg, &format!("Bearer {token}"));
    ci.get("/v2/").await.expect(200);
    let image = ci.push_image("team/app", "v1", 1).await;
    // A token for another repository does not reach this one.
    let r = ci.get("/v2/other/tags/list").await;
    assert_eq!(
        bearer_challenge(&r),
        format!("{base},scope=\"repository:other:pull\",error=\"insufficient_scope\"")
    );

    // A pull-only token pulls but cannot push: 401 naming the push scope.
    let token = fetch(
        &server,
        ("reader", "reader-secret"),
        &["repository:team/app:pull,push"],
    );
    let reader = Api::with_authorization(&reg, &format!("Bearer {token}"));
    reader.assert_image_intact("team/app", "v1", &image).await;
    let r = reader
        .send(reader.req(Method::POST, "/v2/team/app/blobs/uploads/"))
        .await;
    assert_eq!(
        bearer_challenge(&r),
        format!("{base},scope=\"repository:team/app:pull,push\",error=\"insufficient_scope\"")
    );

    // Catalog: with registry:catalog:* only.
    let r = reader.get("/v2/_catalog").await;
    assert!(bearer_challenge(&r).contains("insufficient_scope"));
    let token = fetch(&server, ("ci", "ci-secret"), &["registry:catalog:*"]);
    let lister = Api::with_authorization(&reg, &format!("Bearer {token}"));
    assert_eq!(lister.catalog().await, ["team/app"]);
}

#[tokio::test]
async fn bad_tokens_are_invalid_token() {
    let server = TokenServer::start_with(TokenServerConfig::default());
    let reg = token_registry(&server);
    let access = json!([{"type": "repository", "name": "a", "actions": ["pull"]}]);
    let good = server.issue("ci", access.clone());
    Api::with_authorization(&reg, &format!("Bearer {good}"))
        .get("/v2/a/tags/list")
        .await
        .expect_error(404, &["NAME_UNKNOWN"]);

    let now = support::token::now_secs();
    let mut expired = server.mint().grant("ci", access.clone());
    expired.claims["exp"] = json!(now - 3600);
    let expired = server.sign(&expired);
    let mut wrong_aud = server.mint().grant("ci", access.clone());
    wrong_aud.claims["aud"] = json!("another-registry");
    let wrong_aud = server.sign(&wrong_aud);
    let payload = STANDARD
        .encode(json!({"sub": "ci", "access": access}).to_string())
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    let alg_none = format!("eyJhbGciOiJub25lIn0.{payload}.");
    for token in [expired, wrong_aud, alg_none, "garbage".to_string()] {
        let r = Api::with_authorization(&reg, &format!("Bearer {token}"))
            .get("/v2/a/tags/list")
            .await;
        let challenge = bearer_challenge(&r);
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    // Basic credentials where tokens are expected: 401 too.
    let r = Api::with_authorization(&reg, &basic("ci", "ci-secret"))
        .get("/v2/")
        .await;
    bearer_challenge(&r);
}

// ---- Real clients ----

const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// docker with its own client config directory (the host's ~/.docker is untouched).
fn docker(config: &Path) -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_CONFIG", config);
    cmd
}

/// A one-file image imported into docker as `<host>/<repository>:1`, with a client config
/// directory of its own; the image is removed when the fixture drops.
struct DockerFixture {
    config: std::path::PathBuf,
    name: String,
    _images: DockerImages,
    _tmp: tempfile::TempDir,
}

fn docker_fixture(host: &str, repository: &str, text: &str) -> DockerFixture {
    let tmp = cli::tempdir();
    let config = tmp.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let rootfs = tmp.path().join("rootfs");
    cli::write(&rootfs.join("hello.txt"), &format!("{text}\n"));
    let tarball = tmp.path().join("rootfs.tar");
    cli::sh_within(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        TOOL_TIMEOUT,
    );
    let name = format!("{host}/{repository}:1");
    let images = DockerImages(vec![name.clone()]);
    cli::sh_within(
        docker(&config).arg("import").arg(&tarball).arg(&name),
        TOOL_TIMEOUT,
    );
    DockerFixture {
        config,
        name,
        _images: images,
        _tmp: tmp,
    }
}

/// `docker login` then push and pull; `docker logout` then push is refused, pull works
/// (anonymous pulls are allowed by the rules).
#[test]
fn docker_login_push_pull_logout() {
    if !docker_available() {
        eprintln!("SKIP: docker engine not available");
        return;
    }
    let (reg, _) = htpasswd_registry(RULES);
    let nonce = cli::nonce();
    let image = docker_fixture(
        &reg.host,
        &format!("lib/auth-{nonce}"),
        &format!("hello {nonce}"),
    );
    let (config, name) = (image.config.as_path(), image.name.as_str());

    // Not logged in: push refused.
    let out = cli::run_within(docker(config).args(["push", name]), TOOL_TIMEOUT);
    assert!(!out.status.success(), "anonymous push succeeded");

    // A wrong password: login refused.
    let mut login = docker(config);
    login.args(["login", &reg.host, "-u", "ci", "-p", "wrong"]);
    assert!(!cli::run_within(&mut login, TOOL_TIMEOUT).status.success());

    let mut login = docker(config);
    login.args(["login", &reg.host, "-u", "ci", "-p", "ci-pw"]);
    let out = cli::sh_within(&mut login, TOOL_TIMEOUT);
    assert!(out.contains("Login Succeeded"), "{out}");
    cli::sh_within(docker(config).args(["push", name]), TOOL_TIMEOUT);
    cli::sh_within(docker(config).args(["rmi", name]), TOOL_TIMEOUT);
    cli::sh_within(docker(config).args(["pull", name]), TOOL_TIMEOUT);

    cli::sh_within(docker(config).args(["logout", &reg.host]), TOOL_TIMEOUT);
    let out = cli::run_within(docker(config).args(["push", name]), TOOL_TIMEOUT);
    assert!(!out.status.success(), "push after logout succeeded");
    // Logged out, the engine still pulls what anonymous callers may pull (an anonymous
    // token from Ferry's token endpoint).
    cli::sh_within(docker(config).args(["rmi", name]), TOOL_TIMEOUT);
    cli::sh_within(docker(config).args(["pull", name]), TOOL_TIMEOUT);
    let log = reg.log();
    assert!(!log.contains("ci-pw"), "the password is in the log");
}

/// skopeo with `--dest-creds` and `--creds` against htpasswd, and an anonymous inspect
/// where the rules allow anonymous pulls.
#[test]
fn skopeo_with_credentials() {
    cli::require(&["skopeo", "umoci"]);
    let (reg, _) = htpasswd_registry(RULES);
    let tmp = cli::tempdir();
    let layout = tmp.path().join("layout");
    let nonce = cli::nonce();
    let files = vec![("/app/a.txt".to_string(), format!("a {nonce}\n"))];
    let image = cli::umoci_image(&layout, "v1", None, &files, tmp.path(), TOOL_TIMEOUT);
    let dest = format!("docker://{}/ns/img:v1", reg.host);
    let source = format!("oci:{}:v1", layout.display());
    // Without credentials: refused.
    let out = cli::run_within(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(&source)
            .arg(&dest),
        TOOL_TIMEOUT,
    );
    assert!(!out.status.success());
    cli::sh_within(
        Command::new("skopeo")
            .args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                "ci:ci-pw",
            ])
            .arg(&source)
            .arg(&dest),
        TOOL_TIMEOUT,
    );
    let inspect = cli::sh_within(
        Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            "bob:bob-pw",
            &dest,
        ]),
        TOOL_TIMEOUT,
    );
    assert!(inspect.contains(&image.digest), "{inspect}");
    let inspect = cli::sh_within(
        Command::new("skopeo").args(["inspect", "--tls-verify=false", "--no-creds", &dest]),
        TOOL_TIMEOUT,
    );
    assert!(inspect.contains(&image.digest), "{inspect}");
    let out = cli::run_within(
        Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            "bob:wrong",
            &dest,
        ]),
        TOOL_TIMEOUT,
    );
    assert!(!out.status.success());
}

/// The Docker engine against the test token server: `docker login` fetches a token, push and
/// pull with it; a pull-only user cannot push.
#[test]
fn docker_with_the_token_server() {
    if !docker_available() {
        eprintln!("SKIP: docker engine not available");
        return;
    }
    let server = TokenServer::start();
    let reg = token_registry(&server);
    let nonce = cli::nonce();
    let image = docker_fixture(
        &reg.host,
        &format!("team/tok-{nonce}"),
        &format!("token {nonce}"),
    );
    let (config, name) = (image.config.as_path(), image.name.as_str());
    let login = |user: &str, password: &str| {
        let out = cli::sh_within(
            docker(config).args(["login", &reg.host, "-u", user, "-p", password]),
            TOOL_TIMEOUT,
        );
        assert!(out.contains("Login Succeeded"), "{out}");
    };
    login("ci", "ci-secret");
    cli::sh_within(docker(config).args(["push", name]), TOOL_TIMEOUT);
    cli::sh_within(docker(config).args(["rmi", name]), TOOL_TIMEOUT);
    cli::sh_within(docker(config).args(["pull", name]), TOOL_TIMEOUT);
    // The token server was asked for exactly the scopes the challenges named.
    let scopes: Vec<String> = server
        .requests()
        .into_iter()
        .flat_map(|r| r.scopes)
        .collect();
    let repo = name
        .trim_start_matches(&format!("{}/", reg.host))
        .trim_end_matches(":1");
    assert!(
        scopes.contains(&format!("repository:{repo}:pull,push"))
            || scopes.contains(&format!("repository:{repo}:push,pull")),
        "{scopes:?}"
    );

    login("reader", "reader-secret");
    cli::sh_within(docker(config).args(["pull", name]), TOOL_TIMEOUT);
    let out = cli::run_within(docker(config).args(["push", name]), TOOL_TIMEOUT);
    assert!(!out.status.success(), "a pull-only user pushed");
}
