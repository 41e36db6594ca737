//! The referrers API (OCI Distribution v1.1): `subject`, `OCI-Subject`, listing and filtering.

mod support;

use serde_json::{Value, json};
use support::*;

/// Pushes artifacts referring to one subject (a descriptor) into one repository.
struct Referrer<'a> {
    api: &'a Api,
    repo: &'a str,
    subject: Value,
}

impl<'a> Referrer<'a> {
    fn new(api: &'a Api, repo: &'a str, subject: Value) -> Self {
        Referrer { api, repo, subject }
    }

    /// Pushes an artifact manifest (empty config, one small layer) of `artifact_type` with
    /// `annotations`, referring to the subject; asserts the `OCI-Subject` answer.
    async fn push(&self, artifact_type: &str, annotations: Value) -> Image {
        let Referrer { api, repo, subject } = self;
        let empty = Blob::new(OCI_EMPTY, b"{}".to_vec());
        let payload = Blob::new("application/octet-stream", random_bytes(300));
        api.push_blobs(repo, &[&empty, &payload]).await;
        let manifest = oci_manifest(
            &empty,
            std::slice::from_ref(&payload),
            json!({"artifactType": artifact_type, "subject": subject, "annotations": annotations}),
        );
        let digest = sha256(&manifest);
        let r = api
            .put_manifest(repo, &digest, OCI_MANIFEST, &manifest)
            .await;
        r.expect(201);
        assert_eq!(
            r.must_header("oci-subject"),
            subject["digest"].as_str().unwrap(),
            "a manifest with a subject answers OCI-Subject:\n{r:?}"
        );
        Image {
            media_type: OCI_MANIFEST.into(),
            manifest,
            digest,
            config: empty,
            layers: vec![payload],
        }
    }
}

/// `GET /v2/<repo>/referrers/<digest>[?query]`: asserts a well-formed index, returns it.
async fn referrers(api: &Api, repo: &str, digest: &str, query: &str) -> (Resp, Vec<Value>) {
    let r = api
        .get(&format!("/v2/{repo}/referrers/{digest}{query}"))
        .await;
    r.expect(200);
    assert_eq!(r.must_header("content-type"), OCI_INDEX, "{r:?}");
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2, "{r:?}");
    assert_eq!(v["mediaType"], OCI_INDEX, "{r:?}");
    let list = v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests must be an array (even when empty):\n{r:?}"))
        .clone();
    (r, list)
}

fn find<'a>(list: &'a [Value], digest: &str) -> &'a Value {
    list.iter()
        .find(|d| d["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} missing from referrers {list:#?}"))
}

#[tokio::test]
async fn referrers_are_listed_with_full_descriptors() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "ref/repo";
    let subject = api.push_image(repo, "v1", 1).await;
    let (_, empty) = referrers(&api, repo, &subject.digest, "").await;
    assert!(empty.is_empty());

    let referrer = Referrer::new(&api, repo, subject.descriptor());
    let sig = referrer
        .push(
            "application/vnd.example.signature",
            json!({"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "k": "v"}),
        )
        .await;
    let sbom = referrer
        .push("application/vnd.example.sbom", json!({"kind": "sbom"}))
        .await;

    let (_, list) = referrers(&api, repo, &subject.digest, "").await;
    assert_eq!(list.len(), 2, "{list:#?}");
    for (art, ty, ann) in [
        (
            &sig,
            "application/vnd.example.signature",
            json!({"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "k": "v"}),
        ),
        (
            &sbom,
            "application/vnd.example.sbom",
            json!({"kind": "sbom"}),
        ),
    ] {
        let d = find(&list, &art.digest);
        assert_eq!(d["mediaType"], OCI_MANIFEST, "{d}");
        assert_eq!(d["size"], art.manifest.len(), "{d}");
        assert_eq!(d["artifactType"], ty, "{d}");
        assert_eq!(d["annotations"], ann, "{d}");
    }
    // The subject itself is untouched; the referrers are pullable.
    let r = api.get_manifest(repo, "v1").await;
    r.expect(200);
    assert!(r.body[..] == subject.manifest[..]);
    let r = api.get_manifest(repo, &sig.digest).await;
    r.expect(200);
    assert!(r.body[..] == sig.manifest[..]);
}

#[tokio::test]
async fn artifact_type_filter() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "ref/filter";
    let subject = api.push_image(repo, "v1", 0).await;
    let referrer = Referrer::new(&api, repo, subject.descriptor());
    let a = referrer.push("application/vnd.a", json!({})).await;
    let b1 = referrer.push("application/vnd.b", json!({"n": "1"})).await;
    let b2 = referrer.push("application/vnd.b", json!({"n": "2"})).await;

    let (r, list) = referrers(
        &api,
        repo,
        &subject.digest,
        "?artifactType=application/vnd.b",
    )
    .await;
    assert_eq!(
        r.must_header("oci-filters-applied"),
        "artifactType",
        "{r:?}"
    );
    let mut got: Vec<&str> = list.iter().map(|d| d["digest"].as_str().unwrap()).collect();
    got.sort();
    let mut want = vec![b1.digest.as_str(), b2.digest.as_str()];
    want.sort();
    assert_eq!(got, want);

    let (r, list) = referrers(
        &api,
        repo,
        &subject.digest,
        "?artifactType=application/vnd.a",
    )
    .await;
    assert_eq!(r.must_header("oci-filters-applied"), "artifactType");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], a.digest);

    let (r, list) = referrers(
        &api,
        repo,
        &subject.digest,
        "?artifactType=application/vnd.none",
    )
    .await;
    assert_eq!(r.must_header("oci-filters-applied"), "artifactType");
    assert!(list.is_empty());

    // Without a filter, no OCI-Filters-Applied.
    let (r, list) = referrers(&api, repo, &subject.digest, "").await;
    assert!(r.header("oci-filters-applied").is_none(), "{r:?}");
    assert_eq!(list.len(), 3);
}

#[tokio::test]
async fn artifact_type_defaults_to_the_config_media_type() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "ref/cfgtype";
    let subject = api.push_image(repo, "v1", 0).await;
    let config = Blob::new(
        "application/vnd.example.config.v1+json",
        br#"{"x":1}"#.to_vec(),
    );
    api.push_blobs(repo, &[&config]).await;
    let manifest = oci_manifest(&config, &[], json!({"subject": subject.descriptor()}));
    let digest = api
        .push_manifest(repo, &sha256(&manifest), OCI_MANIFEST, &manifest)
        .await;
    let (_, list) = referrers(&api, repo, &subject.digest, "").await;
    assert_eq!(list.len(), 1);
    let d = find(&list, &digest);
    assert_eq!(
        d["artifactType"], "application/vnd.example.config.v1+json",
        "{d}"
    );
    let (_, list) = referrers(
        &api,
        repo,
        &subject.digest,
        "?artifactType=application/vnd.example.config.v1%2Bjson",
    )
    .await;
    assert_eq!(list.len(), 1, "the filter matches the config media type");
}

#[tokio::test]
async fn referrer_may_be_pushed_before_its_subject() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "ref/early";
    // Build the subject without pushing its manifest yet.
    let config = random_config();
    api.push_blobs(repo, &[&config]).await;
    let subject_manifest = oci_manifest(&config, &[], json!({}));
    let subject_digest = sha256(&subject_manifest);
    let subject_desc = json!({"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_manifest.len()});

    let referrer = Referrer::new(&api, repo, subject_desc);
    let art = referrer.push("application/vnd.early", json!({})).await;
    // Listed while the subject does not exist...
    let (_, list) = referrers(&api, repo, &subject_digest, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], art.digest);
    // ...and after it arrives.
    api.push_manifest(repo, "v1", OCI_MANIFEST, &subject_manifest)
        .await;
    let (_, list) = referrers(&api, repo, &subject_digest, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], art.digest);
}

#[tokio::test]
async fn nothing_refers_even_to_an_unknown_subject() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("ref/none", "v1", 0).await;
    let unknown = sha256(b"no such manifest");
    let (_, list) = referrers(&api, "ref/none", &unknown, "").await;
    assert!(list.is_empty());
    let (_, list) = referrers(&api, "ref/unknown-repo", &unknown, "").await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn referrers_are_per_repository() {
    let reg = start();
    let api = Api::new(&reg);
    let subject = api.push_image("ref/one", "v1", 0).await;
    // The same subject bytes in another repository, with its own referrer.
    api.push_blobs("ref/two", &[&subject.config]).await;
    api.push_manifest("ref/two", "v1", OCI_MANIFEST, &subject.manifest)
        .await;
    let referrer = Referrer::new(&api, "ref/two", subject.descriptor());
    let art = referrer.push("application/vnd.x", json!({})).await;
    let (_, list) = referrers(&api, "ref/one", &subject.digest, "").await;
    assert!(list.is_empty(), "{list:#?}");
    let (_, list) = referrers(&api, "ref/two", &subject.digest, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], art.digest);
}

#[tokio::test]
async fn index_with_subject_is_a_referrer() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "ref/index";
    let subject = api.push_image(repo, "v1", 0).await;
    let child = api.push_image(repo, "", 0).await;
    let index = oci_index(
        &[child.descriptor()],
        json!({
            "artifactType": "application/vnd.example.bundle",
            "subject": subject.descriptor(),
            "annotations": {"a": "b"}
        }),
    );
    let r = api
        .put_manifest(repo, &sha256(&index), OCI_INDEX, &index)
        .await;
    r.expect(201);
    assert_eq!(r.must_header("oci-subject"), subject.digest);
    let (_, list) = referrers(&api, repo, &subject.digest, "").await;
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d["mediaType"], OCI_INDEX);
    assert_eq!(d["digest"], sha256(&index));
    assert_eq!(d["size"], index.len());
    assert_eq!(d["artifactType"], "application/vnd.example.bundle");
    assert_eq!(d["annotations"], json!({"a": "b"}));
}

#[tokio::test]
async fn deleted_referrers_leave_the_list() {
    let reg = start();
    let api = Api::new(&reg);
    let repo = "ref/del";
    let subject = api.push_image(repo, "v1", 0).await;
    let referrer = Referrer::new(&api, repo, subject.descriptor());
    let a = referrer.push("application/vnd.a", json!({})).await;
    let b = referrer.push("application/vnd.b", json!({})).await;
    api.delete(&format!("/v2/{repo}/manifests/{}", a.digest))
        .await
        .expect(202);
    let (_, list) = referrers(&api, repo, &subject.digest, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], b.digest);
}

#[tokio::test]
async fn manifest_without_subject_has_no_oci_subject_header() {
    let reg = start();
    let api = Api::new(&reg);
    let config = random_config();
    api.push_blobs("ref/plain", &[&config]).await;
    let m = oci_manifest(&config, &[], json!({}));
    let r = api.put_manifest("ref/plain", "v1", OCI_MANIFEST, &m).await;
    r.expect(201);
    assert!(r.header("oci-subject").is_none(), "{r:?}");
}

#[tokio::test]
async fn malformed_referrers_digest_is_400() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("ref/bad", "v1", 0).await;
    for d in ["sha256:abc", "latest", "sha256:", "md5:1234"] {
        api.get(&format!("/v2/ref/bad/referrers/{d}"))
            .await
            .expect_error(400, &["DIGEST_INVALID", "UNSUPPORTED", "MANIFEST_INVALID"]);
    }
}
