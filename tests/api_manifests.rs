//! Manifest PUT, GET, HEAD and DELETE: every accepted kind, byte-exact storage, validation.

mod support;

use serde_json::{Value, json};
use support::*;

/// Pushes `body` under `reference`, then checks that GET and HEAD by tag and by digest
/// return exactly those bytes with the stored media type.
async fn push_and_check(
    api: &Api,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let r = api.put_manifest(repo, reference, media_type, body).await;
    r.expect(201);
    let digest = sha256(body);
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");
    assert!(
        r.must_header("location")
            .ends_with(&format!("/v2/{repo}/manifests/{digest}")),
        "Location should name the manifest by digest:\n{r:?}"
    );
    check_pull(api, repo, reference, media_type, body).await;
    check_pull(api, repo, &digest, media_type, body).await;
    digest
}

async fn check_pull(api: &Api, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let digest = sha256(body);
    let r = api.get_manifest(repo, reference).await;
    r.expect(200);
    assert!(
        r.body[..] == body[..],
        "GET must return the pushed bytes exactly:\n{r:?}\npushed:\n{}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(r.must_header("content-type"), media_type, "{r:?}");
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");
    assert_eq!(r.must_header("content-length"), body.len().to_string());

    let r = api.head_manifest(repo, reference).await;
    r.expect(200);
    assert!(r.body.is_empty(), "HEAD has no body:\n{r:?}");
    assert_eq!(r.must_header("content-type"), media_type, "{r:?}");
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");
    assert_eq!(r.must_header("content-length"), body.len().to_string());
}

/// A Docker schema 2 image whose blobs are in `repo`; returns the manifest bytes.
async fn docker_image(api: &Api, repo: &str) -> Vec<u8> {
    let config = Blob::new(
        DOCKER_CONFIG,
        serde_json::to_vec(&json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"nonce": hex::encode(random_bytes(8))})).unwrap(),
    );
    let layer = Blob::new(DOCKER_LAYER, random_bytes(3000));
    api.push_blobs(repo, &[&config, &layer]).await;
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }))
    .unwrap()
}

#[tokio::test]
async fn oci_image_manifest_round_trip() {
    let reg = start();
    let api = Api::new(&reg);
    let config = random_config();
    let layers = [
        Blob::new(OCI_LAYER, random_bytes(5000)),
        Blob::new(OCI_LAYER, random_bytes(7000)),
    ];
    api.push_blobs("oci/image", &[&config, &layers[0], &layers[1]])
        .await;
    let body = oci_manifest(&config, &layers, json!({}));
    push_and_check(&api, "oci/image", "v1", OCI_MANIFEST, &body).await;

    // Without an Accept header, too.
    let r = api.get("/v2/oci/image/manifests/v1").await;
    r.expect(200);
    assert!(r.body[..] == body[..]);
    assert_eq!(r.must_header("content-type"), OCI_MANIFEST);
    assert_eq!(api.tags("oci/image").await, vec!["v1"]);
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = start();
    let api = Api::new(&reg);
    let amd = docker_image(&api, "docker/img").await;
    let arm = docker_image(&api, "docker/img").await;
    // Docker pushes the children untagged (by digest), then the list.
    let amd_digest = push_and_check(&api, "docker/img", &sha256(&amd), DOCKER_MANIFEST, &amd).await;
    let arm_digest = push_and_check(&api, "docker/img", &sha256(&arm), DOCKER_MANIFEST, &arm).await;
    let list = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": amd_digest, "size": amd.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": arm_digest, "size": arm.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ]
    }))
    .unwrap();
    push_and_check(&api, "docker/img", "multi", DOCKER_LIST, &list).await;
    push_and_check(&api, "docker/img", "single", DOCKER_MANIFEST, &amd).await;
    assert_eq!(api.tags("docker/img").await, vec!["multi", "single"]);
}

#[tokio::test]
async fn oci_index_empty_index_and_index_of_indexes() {
    let reg = start();
    let api = Api::new(&reg);
    let a = api.push_image("oci/index", "", 1).await;
    let b = api.push_image("oci/index", "", 2).await;
    let mut da = a.descriptor();
    da["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let index = oci_index(&[da, b.descriptor()], json!({}));
    let index_digest = push_and_check(&api, "oci/index", "idx", OCI_INDEX, &index).await;

    let empty = oci_index(&[], json!({}));
    push_and_check(&api, "oci/index", "empty", OCI_INDEX, &empty).await;

    let nested = oci_index(
        &[
            json!({"mediaType": OCI_INDEX, "digest": index_digest, "size": index.len()}),
            json!({"mediaType": OCI_INDEX, "digest": sha256(&empty), "size": empty.len()}),
            a.descriptor(),
        ],
        json!({"annotations": {"org.example": "nested"}}),
    );
    push_and_check(&api, "oci/index", "nested", OCI_INDEX, &nested).await;
}

#[tokio::test]
async fn artifacts_and_unusual_image_manifests() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "art/repo";

    // An artifact with the empty config and an artifactType.
    let empty = Blob::new(OCI_EMPTY, b"{}".to_vec());
    assert_eq!(empty.digest, EMPTY_JSON_DIGEST);
    let payload = Blob::new("application/vnd.example.sbom.v1+json", random_bytes(900));
    api.push_blobs(repo, &[&empty, &payload]).await;
    let art = oci_manifest(
        &empty,
        std::slice::from_ref(&payload),
        json!({"artifactType": "application/vnd.example.sbom.v1"}),
    );
    push_and_check(&api, repo, "sbom", OCI_MANIFEST, &art).await;

    // An arbitrary config media type (Helm chart style).
    let helm_config = Blob::new(
        "application/vnd.cncf.helm.config.v1+json",
        br#"{"name":"chart","version":"1.0.0"}"#.to_vec(),
    );
    let chart = Blob::new(
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        random_bytes(2000),
    );
    api.push_blobs(repo, &[&helm_config, &chart]).await;
    let helm = oci_manifest(&helm_config, std::slice::from_ref(&chart), json!({}));
    push_and_check(&api, repo, "chart", OCI_MANIFEST, &helm).await;

    // An image manifest with no layers at all.
    let config = random_config();
    api.push_blobs(repo, &[&config]).await;
    let no_layers = oci_manifest(&config, &[], json!({}));
    push_and_check(&api, repo, "nolayers", OCI_MANIFEST, &no_layers).await;

    // The empty descriptor used as a layer too, and data inlined in a descriptor.
    let mut inline = empty.descriptor();
    inline["data"] = json!("e30=");
    let with_inline = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing",
        "config": inline,
        "layers": [empty.descriptor()],
    }))
    .unwrap();
    push_and_check(&api, repo, "inline", OCI_MANIFEST, &with_inline).await;
}

#[tokio::test]
async fn foreign_layers_need_not_be_pushed() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "win/base";
    let config = random_config();
    let local = Blob::new(OCI_LAYER, random_bytes(1000));
    api.push_blobs(repo, &[&config, &local]).await;
    let foreign = |mt: &str, n: u8| {
        json!({
            "mediaType": mt,
            "digest": sha256(&[n; 32]),
            "size": 123456789,
            "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"]
        })
    };
    let oci = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [foreign(OCI_FOREIGN_LAYER, 1),
                   foreign("application/vnd.oci.image.layer.nondistributable.v1.tar", 2),
                   local.descriptor()],
    }))
    .unwrap();
    push_and_check(&api, repo, "oci", OCI_MANIFEST, &oci).await;

    let dconfig = Blob::new(DOCKER_CONFIG, br#"{"os":"windows"}"#.to_vec());
    api.push_blobs(repo, &[&dconfig]).await;
    let docker = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": dconfig.descriptor(),
        "layers": [foreign(DOCKER_FOREIGN_LAYER, 3)],
    }))
    .unwrap();
    push_and_check(&api, repo, "docker", DOCKER_MANIFEST, &docker).await;
}

#[tokio::test]
async fn unknown_fields_and_formatting_survive_byte_for_byte() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "bytes/exact";
    let config = random_config();
    let layer = Blob::new(OCI_LAYER, random_bytes(100));
    api.push_blobs(repo, &[&config, &layer]).await;
    // Odd key order, odd whitespace, unicode escapes, unknown fields, a trailing newline.
    let body = format!(
        "{{ \"x-unknown\" : {{\"nested\": [1, 2.50, true, null]}},\n\t\"layers\":[ {{\"size\":{},\"digest\":\"{}\",\"mediaType\":\"{}\", \"extra\":\"\\u00e9\\n\"}} ],\r\n  \"config\": {{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}}, \"schemaVersion\":2,\n\"mediaType\":\"{}\",\"annotations\":{{\"é\":\"ü\"}}   }}\n",
        layer.data.len(),
        layer.digest,
        layer.media_type,
        config.media_type,
        config.digest,
        config.data.len(),
        OCI_MANIFEST
    );
    push_and_check(&api, repo, "odd", OCI_MANIFEST, body.as_bytes()).await;
}

#[tokio::test]
async fn manifest_without_media_type_field_takes_the_content_type() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "nomt/repo";
    let config = random_config();
    api.push_blobs(repo, &[&config]).await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": config.descriptor(),
        "layers": [],
    }))
    .unwrap();
    push_and_check(&api, repo, "v1", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn push_by_digest_and_tag_query_parameters() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "bydigest/repo";
    let img = api.push_image(repo, "", 1).await; // pushed by digest: no tag
    // Pushing by digest creates no tag (an empty list, or no tag list at all).
    let r = api.get(&format!("/v2/{repo}/tags/list")).await;
    if r.status == 200 {
        assert!(string_list(&r.json()["tags"]).is_empty(), "{r:?}");
    } else {
        r.expect_error(404, &["NAME_UNKNOWN"]);
    }
    check_pull(&api, repo, &img.digest, OCI_MANIFEST, &img.manifest).await;

    let r = api
        .put_manifest(
            repo,
            &format!("{}?tag=alpha&tag=beta", img.digest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), img.digest);
    assert_eq!(api.tags(repo).await, vec!["alpha", "beta"]);
    for tag in ["alpha", "beta"] {
        check_pull(&api, repo, tag, OCI_MANIFEST, &img.manifest).await;
    }
}

#[tokio::test]
async fn pushing_a_tag_again_moves_it() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "move/repo";
    let old = api.push_image(repo, "latest", 1).await;
    let new = api.push_image(repo, "latest", 1).await;
    check_pull(&api, repo, "latest", OCI_MANIFEST, &new.manifest).await;
    check_pull(&api, repo, &old.digest, OCI_MANIFEST, &old.manifest).await;
    assert_eq!(api.tags(repo).await, vec!["latest"]);
    // Re-pushing identical bytes is idempotent.
    api.push_manifest(repo, "latest", OCI_MANIFEST, &new.manifest)
        .await;
    check_pull(&api, repo, "latest", OCI_MANIFEST, &new.manifest).await;
}

#[tokio::test]
async fn large_manifests() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "big/repo";
    let config = random_config();
    api.push_blobs(repo, &[&config]).await;
    // 3 MiB of annotations: accepted.
    let big = oci_manifest(
        &config,
        &[],
        json!({"annotations": {"filler": "x".repeat(3 << 20)}}),
    );
    push_and_check(&api, repo, "big", OCI_MANIFEST, &big).await;
    // Over 4 MiB: refused (the server may answer before reading the whole body).
    let huge = oci_manifest(
        &config,
        &[],
        json!({"annotations": {"filler": "x".repeat((4 << 20) + 1)}}),
    );
    let (status, body) = raw_request(
        &reg,
        "PUT",
        &format!("/v2/{repo}/manifests/huge"),
        &[("Content-Type", OCI_MANIFEST)],
        &huge,
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let err: Value = serde_json::from_slice(&body).expect("JSON error body");
    let code = err["errors"][0]["code"].as_str().unwrap_or_default();
    assert!(
        ["MANIFEST_INVALID", "SIZE_INVALID"].contains(&code),
        "{err}"
    );
    api.get_manifest(repo, "huge")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
}

#[tokio::test]
async fn malformed_manifests_are_rejected() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "bad/repo";
    let img = api.push_image(repo, "good", 1).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"this is not json".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, b"[1,2,3]".to_vec()),
        (OCI_MANIFEST, img.manifest[..img.manifest.len() - 3].to_vec()),
        // Content-Type differs from the body's mediaType.
        (DOCKER_MANIFEST, img.manifest.clone()),
        (OCI_INDEX, img.manifest.clone()),
        // A wrong schemaVersion.
        (
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": img.config.descriptor(), "layers": []})).unwrap(),
        ),
        // An image manifest without a config.
        (
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})).unwrap(),
        ),
        // A descriptor with a malformed digest.
        (
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 2}, "layers": []})).unwrap(),
        ),
    ];
    for (i, (ct, body)) in cases.iter().enumerate() {
        let tag = format!("bad{i}");
        api.put_manifest(repo, &tag, ct, body)
            .await
            .expect_error(400, &["MANIFEST_INVALID", "DIGEST_INVALID"]);
        api.get_manifest(repo, &tag)
            .await
            .expect_error(404, &["MANIFEST_UNKNOWN"]);
    }
    // A body that is not JSON at all is MANIFEST_INVALID specifically.
    api.put_manifest(repo, "junk", OCI_MANIFEST, b"{not json")
        .await
        .expect_error(400, &["MANIFEST_INVALID"]);
    api.put_manifest(repo, "mismatch", DOCKER_MANIFEST, &img.manifest)
        .await
        .expect_error(400, &["MANIFEST_INVALID"]);
    assert_eq!(api.tags(repo).await, vec!["good"]);
}

#[tokio::test]
async fn schema_version_is_required() {
    // OCI image-spec: `schemaVersion` is REQUIRED and MUST be 2 (Distribution 2.8 lets a
    // manifest without it through).
    let reg = start();
    let api = Api::new(&reg);
    let repo = "nosv/repo";
    let config = random_config();
    api.push_blobs(repo, &[&config]).await;
    for (mt, body) in [
        (
            OCI_MANIFEST,
            json!({"mediaType": OCI_MANIFEST, "config": config.descriptor(), "layers": []}),
        ),
        (OCI_INDEX, json!({"mediaType": OCI_INDEX, "manifests": []})),
    ] {
        let body = serde_json::to_vec(&body).unwrap();
        api.put_manifest(repo, "v1", mt, &body)
            .await
            .expect_error(400, &["MANIFEST_INVALID"]);
    }
    api.get_manifest(repo, "v1")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
}

#[tokio::test]
async fn schema1_manifests_are_refused_with_a_clear_message() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "old/repo";
    let layer = api.push_blob(repo, &random_bytes(100)).await;
    let v1 = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 1,
        "name": repo,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": layer}],
        "history": [{"v1Compatibility": "{\"id\":\"abc\"}"}],
    }))
    .unwrap();
    for ct in [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, "application/json"] {
        let r = api.put_manifest(repo, "old", ct, &v1).await;
        r.expect_error(400, &["MANIFEST_INVALID"]);
        let text = r.text().to_lowercase();
        assert!(
            text.contains("schema"),
            "the error should say schema 1 is not supported:\n{r:?}"
        );
    }
    api.get_manifest(repo, "old")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
}

#[tokio::test]
async fn manifests_must_reference_blobs_in_the_repository() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "refs/repo";
    let config = random_config();
    let layer = Blob::new(OCI_LAYER, random_bytes(2000));
    let elsewhere = Blob::new(OCI_LAYER, random_bytes(2000));
    api.push_blobs(repo, &[&config, &layer]).await;
    api.push_blobs("refs/other", &[&elsewhere]).await;
    let missing_config = random_config();
    let missing_layer = Blob::new(OCI_LAYER, random_bytes(10));

    let cases = [
        oci_manifest(&missing_config, std::slice::from_ref(&layer), json!({})),
        oci_manifest(&config, &[layer.clone(), missing_layer.clone()], json!({})),
        // In the registry, but not linked into this repository.
        oci_manifest(&config, std::slice::from_ref(&elsewhere), json!({})),
    ];
    for (i, body) in cases.iter().enumerate() {
        api.put_manifest(repo, &format!("t{i}"), OCI_MANIFEST, body)
            .await
            .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
        api.head_manifest(repo, &sha256(body)).await.expect(404);
    }

    // Index children must be manifests in the repository.
    let child = api.push_image("refs/other", "", 0).await;
    let present = api.push_image(repo, "", 0).await;
    let absent =
        json!({"mediaType": OCI_MANIFEST, "digest": sha256(b"no such manifest"), "size": 16});
    for children in [
        vec![present.descriptor(), absent],
        vec![child.descriptor()], // only in another repository
    ] {
        let index = oci_index(&children, json!({}));
        api.put_manifest(repo, "idx", OCI_INDEX, &index)
            .await
            .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    }
    api.get_manifest(repo, "idx")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
}

#[tokio::test]
async fn digest_reference_must_match_the_body() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "digest/repo";
    let img = api.push_image(repo, "v1", 0).await;
    let other = oci_manifest(&img.config, &[], json!({"annotations": {"a": "b"}}));
    let r = api
        .put_manifest(repo, &img.digest, OCI_MANIFEST, &other)
        .await;
    r.expect_error(400, &["DIGEST_INVALID"]);
    api.get_manifest(repo, &sha256(&other))
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
    check_pull(&api, repo, &img.digest, OCI_MANIFEST, &img.manifest).await;
}

#[tokio::test]
async fn unknown_manifests_and_repositories() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("known/repo", "v1", 0).await;
    let absent = sha256(b"absent manifest");
    for reference in ["nope", absent.as_str()] {
        api.get_manifest("known/repo", reference)
            .await
            .expect_error(404, &["MANIFEST_UNKNOWN"]);
        let r = api.head_manifest("known/repo", reference).await;
        r.expect(404);
        assert!(r.body.is_empty());
        api.get_manifest("unknown/repo", reference)
            .await
            .expect_error(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
        api.head_manifest("unknown/repo", reference)
            .await
            .expect(404);
    }
    // A manifest in another repository is not visible here.
    let other = api.push_image("other/repo", "v1", 0).await;
    api.get_manifest("known/repo", &other.digest)
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
}

#[tokio::test]
async fn delete_by_tag_removes_only_the_tag() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "deltag/repo";
    let img = api.push_image(repo, "a", 1).await;
    api.push_manifest(repo, "b", OCI_MANIFEST, &img.manifest)
        .await;
    api.delete(&format!("/v2/{repo}/manifests/a"))
        .await
        .expect(202);
    api.get_manifest(repo, "a")
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
    check_pull(&api, repo, "b", OCI_MANIFEST, &img.manifest).await;
    check_pull(&api, repo, &img.digest, OCI_MANIFEST, &img.manifest).await;
    assert_eq!(api.tags(repo).await, vec!["b"]);
    api.delete(&format!("/v2/{repo}/manifests/a"))
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
}

#[tokio::test]
async fn delete_by_digest_removes_the_manifest_and_its_tags() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "deldig/repo";
    let img = api.push_image(repo, "a", 1).await;
    api.push_manifest(repo, "b", OCI_MANIFEST, &img.manifest)
        .await;
    let keep = api.push_image(repo, "keep", 1).await;
    api.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
        .await
        .expect(202);
    for reference in ["a", "b", img.digest.as_str()] {
        api.get_manifest(repo, reference)
            .await
            .expect_error(404, &["MANIFEST_UNKNOWN"]);
        api.head_manifest(repo, reference).await.expect(404);
    }
    assert_eq!(api.tags(repo).await, vec!["keep"]);
    check_pull(&api, repo, "keep", OCI_MANIFEST, &keep.manifest).await;
    api.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
        .await
        .expect_error(404, &["MANIFEST_UNKNOWN"]);
    // The blobs of the deleted image are still linked; the image can be pushed again.
    api.push_manifest(repo, "again", OCI_MANIFEST, &img.manifest)
        .await;
    check_pull(&api, repo, "again", OCI_MANIFEST, &img.manifest).await;
}

#[tokio::test]
async fn delete_manifest_is_refused_when_deletes_are_disabled() {
    let reg = start_env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "false")]);
    let api = Api::new(&reg);
    let repo = "nodel/repo";
    let img = api.push_image(repo, "v1", 0).await;
    for reference in ["v1", img.digest.as_str()] {
        api.delete(&format!("/v2/{repo}/manifests/{reference}"))
            .await
            .expect_error(405, &["UNSUPPORTED"]);
    }
    check_pull(&api, repo, "v1", OCI_MANIFEST, &img.manifest).await;
}

#[tokio::test]
async fn docker_list_children_in_index_must_exist_but_platform_fields_are_free() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "listcheck/repo";
    let child = docker_image(&api, repo).await;
    let child_digest = sha256(&child);
    let list = |digest: &str| {
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": digest, "size": child.len(),
                           "platform": {"architecture": "riscv64", "os": "plan9", "os.features": ["x"]}}]
        }))
        .unwrap()
    };
    // The child has not been pushed yet.
    api.put_manifest(repo, "l", DOCKER_LIST, &list(&child_digest))
        .await
        .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    api.push_manifest(repo, &child_digest, DOCKER_MANIFEST, &child)
        .await;
    let body = list(&child_digest);
    push_and_check(&api, repo, "l", DOCKER_LIST, &body).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], child_digest);
}

/// Many different manifests over the same blobs pushed at once (one image's layers under
/// many annotated variants, as a CI pushing builds does) all succeed. On a PostgreSQL that
/// syncs its commits (bench/replicas) the blobs' shared rows made some fail to serialize,
/// past the retries, as 500s; the test servers' unsynced commits are too quick to show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_manifests_over_the_same_blobs_all_succeed() {
    let reg = start();
    let api = Api::new(&reg);
    let image = api.push_image("shared/blobs", "base", 2).await;
    let tag_count = |tags: serde_json::Value| tags["tags"].as_array().map(Vec::len);
    // New tags of one repository pushed at once, with tag lists read among them (a list is
    // cached by the writes or by a complete read, and must never miss a tag pushed).
    let mut tasks = vec![];
    for n in 0..48 {
        let api = api.clone();
        let body = oci_manifest(
            &image.config,
            &image.layers,
            json!({"annotations": {"n": n.to_string()}}),
        );
        tasks.push(tokio::spawn(async move {
            let r = api
                .put_manifest("shared/blobs", &format!("v{n}"), OCI_MANIFEST, &body)
                .await;
            r.expect(201);
            let tags = api.get("/v2/shared/blobs/tags/list?n=100").await;
            assert!(tag_count(tags.expect(200).json()) >= Some(2));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..2 {
        let tags = api.get("/v2/shared/blobs/tags/list?n=100").await;
        assert_eq!(tag_count(tags.expect(200).json()), Some(49));
    }
    api.put_manifest("shared/blobs", "last", &image.media_type, &image.manifest)
        .await
        .expect(201);
    let tags = api.get("/v2/shared/blobs/tags/list?n=100").await;
    assert_eq!(tag_count(tags.expect(200).json()), Some(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_all_succeed() {
    let reg = start();
    let api = Api::new(&reg);
    // Blobs first, then many manifest PUTs at once: different repositories, different tags
    // of one repository, and races on the same tag.
    let mut prepared = vec![];
    for i in 0..24 {
        let repo = format!("race/r{}", i % 4);
        let config = random_config();
        api.push_blobs(&repo, &[&config]).await;
        prepared.push((repo, oci_manifest(&config, &[], json!({}))));
    }
    let mut tasks = vec![];
    for (i, (repo, body)) in prepared.iter().cloned().enumerate() {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let tag = if i % 3 == 0 {
                "same".to_string()
            } else {
                format!("t{i}")
            };
            let r = api.put_manifest(&repo, &tag, OCI_MANIFEST, &body).await;
            r.expect(201);
            (repo, tag, body)
        }));
    }
    let mut pushed = vec![];
    for t in tasks {
        pushed.push(t.await.unwrap());
    }
    for (repo, tag, body) in &pushed {
        let r = api.get_manifest(repo, &sha256(body)).await;
        r.expect(200);
        assert!(r.body[..] == body[..]);
        let r = api.get_manifest(repo, tag).await;
        r.expect(200);
        if tag != "same" {
            assert!(r.body[..] == body[..]);
        } else {
            // The winner is one of the manifests pushed to that repository's "same".
            assert!(
                pushed
                    .iter()
                    .any(|(r2, t2, b2)| r2 == repo && t2 == "same" && r.body[..] == b2[..]),
                "tag 'same' points at something never pushed there"
            );
        }
    }
    let mut catalog = api.catalog().await;
    catalog.sort();
    assert_eq!(catalog, vec!["race/r0", "race/r1", "race/r2", "race/r3"]);
}
