//! The base endpoint, headers every response carries, the error body format, and the
//! validation of repository names, tags and digests.

mod support;

use reqwest::Method;
use support::*;

#[tokio::test]
async fn base_endpoint_answers_empty_json_object() {
    let reg = start();
    let api = Api::new(&reg);
    let r = api.get("/v2/").await;
    r.expect(200);
    assert_eq!(r.json(), serde_json::json!({}), "{r:?}");
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{r:?}"
    );
}

#[tokio::test]
async fn every_response_carries_the_api_version_header() {
    let reg = start();
    let api = Api::new(&reg);
    let img = api.push_image("hdr/repo", "v1", 1).await;
    let upload = api.start_upload("hdr/repo").await;
    let responses = vec![
        api.get("/v2/").await,
        api.get("/v2/_catalog").await,
        api.get("/v2/hdr/repo/tags/list").await,
        api.get_manifest("hdr/repo", "v1").await,
        api.head_manifest("hdr/repo", &img.digest).await,
        api.get(&format!("/v2/hdr/repo/blobs/{}", img.config.digest))
            .await,
        api.head(&format!("/v2/hdr/repo/blobs/{}", img.layers[0].digest))
            .await,
        api.get(&upload).await,
        api.patch(&upload, b"abc".to_vec()).await,
        // errors
        api.get("/v2/hdr/repo/manifests/nope").await,
        api.get(&format!("/v2/hdr/repo/blobs/{}", sha256(b"absent")))
            .await,
        api.get("/v2/nosuch/tags/list").await,
        api.get("/v2/Bad/tags/list").await,
        api.get("/v2/hdr/repo/blobs/sha256:xyz").await,
        api.get("/v2/hdr/repo/blobs/uploads/not-a-session").await,
    ];
    for r in responses {
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "missing Docker-Distribution-API-Version:\n{r:?}"
        );
    }
}

#[tokio::test]
async fn error_bodies_follow_the_spec_format() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("errs/repo", "v1", 0).await;
    // expect_error checks Content-Type, the errors array, code and message of each entry.
    api.get("/v2/errs/repo/manifests/absent")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
    api.get(&format!("/v2/errs/repo/blobs/{}", sha256(b"none")))
        .await
        .expect_error(404, &["BLOB_UNKNOWN"]);
    api.get("/v2/errs/other/tags/list")
        .await
        .expect_error(404, &["NAME_UNKNOWN"]);
    api.get("/v2/errs/repo/blobs/uploads/0b7d8f0e-2c4a-4e26-b0d5-3c1d0c7b3a11")
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
}

fn invalid_names() -> Vec<String> {
    vec![
        "Upper".into(),
        "lower/Upper".into(),
        "a..b".into(),
        "a___b".into(),
        "-lead".into(),
        "trail-".into(),
        "trail.".into(),
        "a/-b".into(),
        "a/.b".into(),
        "sp%20ace".into(),
        "a:b".into(),
        "x".repeat(256),
        format!("{}/{}", "a".repeat(128), "b".repeat(127)),
    ]
}

#[tokio::test]
async fn invalid_repository_names_are_rejected() {
    let reg = start();
    let api = Api::new(&reg);
    let blob = sha256(b"x");
    for name in invalid_names() {
        api.get(&format!("/v2/{name}/tags/list"))
            .await
            .expect_error(400, &["NAME_INVALID"]);
        api.get(&format!("/v2/{name}/manifests/latest"))
            .await
            .expect_error(400, &["NAME_INVALID"]);
        api.get(&format!("/v2/{name}/blobs/{blob}"))
            .await
            .expect_error(400, &["NAME_INVALID"]);
        api.send(api.req(Method::POST, &format!("/v2/{name}/blobs/uploads/")))
            .await
            .expect_error(400, &["NAME_INVALID"]);
    }
    assert!(api.catalog().await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn names_at_the_limits_of_the_grammar_are_accepted() {
    let reg = start();
    let api = Api::new(&reg);
    let mut names = vec![
        "a".to_string(),
        "0".to_string(),
        "a.b_c__d-e---f".to_string(),
        "a/b/c/d/e/f/g/h".to_string(),
    ];
    if reg.storage() == support::Storage::S3 {
        // s3s-fs names a file after the base64 of the whole object key, so keys longer than
        // about 170 bytes fail there with "File name too long" (real S3 allows 1024).
        eprintln!("NOTE: the 255-character name is not tried on S3: s3s-fs cannot store its keys");
    } else {
        names.push(format!("{}/{}", "a".repeat(127), "b".repeat(127))); // 255 characters
    }
    for name in &names {
        let img = api.push_image(name, "t", 1).await;
        let r = api.get_manifest(name, "t").await;
        r.expect(200);
        assert_eq!(&r.body[..], &img.manifest[..], "{name}");
        assert_eq!(api.tags(name).await, vec!["t"], "{name}");
    }
    let mut expected: Vec<String> = names.to_vec();
    expected.sort();
    let mut listed = api.catalog().await;
    listed.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn name_components_may_be_route_keywords() {
    let reg = start();
    let api = Api::new(&reg);
    let names = [
        "a/blobs/b",
        "x/manifests/y",
        "tags/uploads",
        "blobs",
        "manifests/tags/list",
        "uploads/blobs/uploads",
        "referrers/x",
    ];
    for name in names {
        let img = api.push_image(name, "latest", 1).await;
        let r = api.get_manifest(name, "latest").await;
        r.expect(200);
        assert_eq!(&r.body[..], &img.manifest[..], "{name}");
        let r = api
            .get(&format!("/v2/{name}/blobs/{}", img.layers[0].digest))
            .await;
        r.expect(200);
        assert_eq!(&r.body[..], &img.layers[0].data[..], "{name}");
        assert_eq!(api.tags(name).await, vec!["latest"], "{name}");
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut listed = api.catalog().await;
    listed.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn malformed_digests_are_rejected() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("dig/repo", "v1", 0).await;
    let hex = hex::encode([0xabu8; 32]);
    let bad = [
        "sha256:abc".to_string(),
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256:{}0", hex),
        format!("sha256:{}", &hex[1..]),
        format!("sha256:{}g", &hex[1..]),
        "sha256:".to_string(),
        format!("sha512:{hex}"),
        format!("SHA256:{hex}"),
        format!("sha256:{hex}:{hex}"),
        hex.clone(),
    ];
    for d in &bad {
        api.get(&format!("/v2/dig/repo/blobs/{d}"))
            .await
            .expect_error(400, &["DIGEST_INVALID"]);
        api.delete(&format!("/v2/dig/repo/blobs/{d}"))
            .await
            .expect_error(400, &["DIGEST_INVALID"]);
    }
    // An algorithm the registry does not know.
    for d in [
        format!("md5:{}", &hex[..32]),
        format!("sha384:{}", "ab".repeat(48)),
    ] {
        api.get(&format!("/v2/dig/repo/blobs/{d}"))
            .await
            .expect_error(400, &["DIGEST_INVALID", "UNSUPPORTED"]);
    }
    // Completing an upload with a malformed digest.
    let loc = api.start_upload("dig/repo").await;
    api.put_upload(&loc, "sha256:abc", b"x".to_vec())
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    // Completing an upload without any digest.
    let loc = api.start_upload("dig/repo").await;
    let r = api
        .send(api.req(Method::PUT, &loc).body(b"x".to_vec()))
        .await;
    r.expect_error(400, &["DIGEST_INVALID"]);
}

#[tokio::test]
async fn invalid_manifest_references_are_rejected() {
    let reg = start();
    let api = Api::new(&reg);
    let img = api.push_image("refs/repo", "v1", 0).await;
    let codes = [
        "TAG_INVALID",
        "NAME_INVALID",
        "MANIFEST_INVALID",
        "DIGEST_INVALID",
    ];
    let bad = [
        "-dash".to_string(),
        ".dot".to_string(),
        "a".repeat(129),
        "with%20space".to_string(),
        "sha256:abc".to_string(),
        "a+b".to_string(),
    ];
    for reference in &bad {
        // Reads of a reference that is neither a tag nor a digest find nothing: the spec's
        // endpoint table allows only 404 there (and registry:2 answers 404).
        api.get_manifest("refs/repo", reference)
            .await
            .expect_error(404, &["MANIFEST_UNKNOWN"]);
        let r = api.head_manifest("refs/repo", reference).await;
        r.expect(404);
        api.put_manifest("refs/repo", reference, OCI_MANIFEST, &img.manifest)
            .await
            .expect_error(400, &codes);
    }
    assert_eq!(api.tags("refs/repo").await, vec!["v1"]);
    // The longest valid tag, and tags using every allowed character class.
    for tag in ["_".to_string(), "A".repeat(128), "v1.0_rc-2".to_string()] {
        api.push_manifest("refs/repo", &tag, OCI_MANIFEST, &img.manifest)
            .await;
        api.get_manifest("refs/repo", &tag).await.expect(200);
    }
}

#[tokio::test]
async fn sha512_digests_are_supported_and_verified() {
    if support::skip_on_s3(
        "s3s-fs cannot store sha512 blob keys: it names a file after the base64 of the whole \
         key, and keys longer than about 170 bytes fail with \"File name too long\"",
    ) {
        return;
    }
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(100_000);
    let digest = sha512(&data);

    // Chunked upload completed with a sha512 digest.
    let loc = api.start_upload("s512/repo").await;
    let r = api.patch(&loc, data[..60_000].to_vec()).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));
    let r = api.put_upload(&loc, &digest, data[60_000..].to_vec()).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");

    let r = api.get(&format!("/v2/s512/repo/blobs/{digest}")).await;
    r.expect(200);
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");
    assert!(r.body[..] == data[..], "sha512 blob content differs");
    let on_disk = std::fs::read(blob_data_path(&reg, &digest)).expect("blob under blobs/sha512");
    assert!(on_disk == data);

    // A single-request POST ?digest= with a sha512 digest.
    let mono = random_bytes(3333);
    let mono_digest = sha512(&mono);
    let r = api
        .send(
            api.req(
                Method::POST,
                &format!("/v2/s512/repo/blobs/uploads/?digest={mono_digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(mono.clone()),
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), mono_digest);
    let r = api.get(&format!("/v2/s512/repo/blobs/{mono_digest}")).await;
    r.expect(200);
    assert!(r.body[..] == mono[..]);

    // A manifest pushed by a sha512 reference is verified and served under it.
    let empty = Blob::new(OCI_EMPTY, b"{}".to_vec());
    api.push_blobs("s512/repo", &[&empty]).await;
    let manifest = oci_manifest(&empty, &[], serde_json::json!({}));
    let m512 = sha512(&manifest);
    let r = api
        .put_manifest("s512/repo", &m512, OCI_MANIFEST, &manifest)
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), m512);
    let r = api.get_manifest("s512/repo", &m512).await;
    r.expect(200);
    assert!(r.body[..] == manifest[..]);
    assert_eq!(r.must_header("docker-content-digest"), m512);
    let other = oci_manifest(&empty, &[], serde_json::json!({"annotations": {"x": "y"}}));
    api.put_manifest("s512/repo", &m512, OCI_MANIFEST, &other)
        .await
        .expect_error(400, &["DIGEST_INVALID"]);

    // A wrong sha512 digest is refused and nothing is stored.
    let other = random_bytes(1000);
    let wrong = sha512(b"something else");
    let loc = api.start_upload("s512/repo").await;
    api.put_upload(&loc, &wrong, other.clone())
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    api.head(&format!("/v2/s512/repo/blobs/{wrong}"))
        .await
        .expect(404);
    api.head(&format!("/v2/s512/repo/blobs/{}", sha512(&other)))
        .await
        .expect(404);
    assert!(!blob_data_path(&reg, &wrong).exists());
}

#[tokio::test]
async fn paths_are_split_before_they_are_decoded() {
    let reg = start();
    let api = Api::new(&reg);
    let img = api.push_image("enc/repo", "v1", 1).await;
    // Encoded characters that are not `/` decode into the component they belong to.
    let r = api.get("/v2/enc/rep%6F/tags/list").await;
    r.expect(200);
    assert_eq!(string_list(&r.json()["tags"]), vec!["v1"]);
    api.get(&format!(
        "/v2/enc/repo/manifests/{}",
        img.digest.replace(':', "%3A")
    ))
    .await
    .expect(200);
    // An encoded slash never joins two components into one name.
    for path in [
        "/v2/enc%2Frepo/tags/list".to_string(),
        "/v2/enc%2frepo/manifests/v1".to_string(),
        format!("/v2/enc%2Frepo/blobs/{}", img.layers[0].digest),
        "/v2/enc/..%2Frepo/tags/list".to_string(),
    ] {
        api.get(&path).await.expect_error(400, &["NAME_INVALID"]);
    }
    let r = api
        .send(api.req(Method::POST, "/v2/enc%2Frepo/blobs/uploads/"))
        .await;
    r.expect_error(400, &["NAME_INVALID"]);
    // Nothing was created under a decoded name.
    assert_eq!(api.catalog().await, vec!["enc/repo"]);
}

/// HTTP/2 with prior knowledge (h2c, as containerd and some proxies speak it to a plain-HTTP
/// registry) is answered on the same port: a push and a pull over it.
#[tokio::test]
async fn http2_with_prior_knowledge_is_answered() {
    let reg = start();
    let client = client_builder().http2_prior_knowledge().build().unwrap();
    let r = client.get(format!("{}/v2/", reg.url)).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let data = random_bytes(300_000);
    let digest = sha256(&data);
    let r = client
        .post(format!(
            "{}/v2/h2/repo/blobs/uploads/?digest={digest}",
            reg.url
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(format!("{}/v2/h2/repo/blobs/{digest}", reg.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap()[..] == data[..]);
}

/// One access-log line per request, with what was sent; `log.accesslog.disabled` turns
/// them off (and nothing else).
#[tokio::test]
async fn access_log_lines_and_log_accesslog_disabled() {
    let wait_for_line = |reg: &TestRegistry| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = reg.log();
            if let Some(line) = log.lines().find(|l| l.contains("ferry::access")) {
                return line.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no access line:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let reg = start();
    Api::new(&reg).get("/v2/").await.expect(200);
    let line = wait_for_line(&reg);
    assert!(
        line.contains("status=200") && line.contains("bytes_out=2") && line.contains("path=/v2/"),
        "{line}"
    );

    let quiet = start_env(&[("REGISTRY_LOG_ACCESSLOG_DISABLED", "true")]);
    let api = Api::new(&quiet);
    api.get("/v2/").await.expect(200);
    api.get("/v2/nothing/here/tags/list").await.expect(404);
    // No access line, and the server logs otherwise.
    let log = quiet.log();
    assert!(!log.contains("ferry::access"), "{log}");
    assert!(log.contains("Ferry listening"), "{log}");
}
