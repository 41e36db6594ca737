//! Blob GET, HEAD, ranged GET and DELETE.

mod support;

use reqwest::Method;
use support::*;

#[tokio::test]
async fn get_and_head_return_content_and_headers() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(300_001);
    let digest = api.push_blob("blobs/repo", &data).await;
    let path = format!("/v2/blobs/repo/blobs/{digest}");

    let r = api.get(&path).await;
    r.expect(200);
    assert!(r.body[..] == data[..], "blob content differs");
    assert_eq!(r.must_header("content-length"), data.len().to_string());
    assert_eq!(r.must_header("docker-content-digest"), digest);
    assert_eq!(r.must_header("accept-ranges"), "bytes");

    let r = api.head(&path).await;
    r.expect(200);
    assert!(r.body.is_empty(), "HEAD has no body:\n{r:?}");
    assert_eq!(r.must_header("content-length"), data.len().to_string());
    assert_eq!(r.must_header("docker-content-digest"), digest);
    assert_eq!(r.must_header("accept-ranges"), "bytes");

    // The bytes sit in Distribution's layout.
    let on_disk = std::fs::read(blob_data_path(&reg, &digest)).expect("blob data file");
    assert!(on_disk == data, "on-disk blob differs");
}

#[tokio::test]
async fn zero_length_blob() {
    let reg = start();
    let api = Api::new(&reg);
    let digest = api.push_blob("empty/repo", b"").await;
    assert_eq!(digest, EMPTY_BLOB_DIGEST);
    let path = format!("/v2/empty/repo/blobs/{digest}");
    let r = api.head(&path).await;
    r.expect(200);
    assert_eq!(r.must_header("content-length"), "0");
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let r = api.get(&path).await;
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.must_header("content-length"), "0");
    // No range of an empty blob is satisfiable.
    let r = api
        .send(api.req(Method::GET, &path).header("Range", "bytes=0-"))
        .await;
    r.expect(416);
    assert_eq!(r.must_header("content-range"), "bytes */0");
    // An upload session completed with no data at all also yields the empty blob.
    let loc = api.start_upload("empty/other").await;
    let r = api.put_upload(&loc, EMPTY_BLOB_DIGEST, vec![]).await;
    r.expect(201);
    api.head(&format!("/v2/empty/other/blobs/{EMPTY_BLOB_DIGEST}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn range_requests() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(10_000);
    let size = data.len();
    let digest = api.push_blob("range/repo", &data).await;
    let path = format!("/v2/range/repo/blobs/{digest}");

    let ranged = |range: String| {
        let api = api.clone();
        let path = path.clone();
        async move {
            api.send(api.req(Method::GET, &path).header("Range", range))
                .await
        }
    };

    // bytes=a-b
    let r = ranged("bytes=100-1099".into()).await;
    r.expect(206);
    assert!(r.body[..] == data[100..1100], "range content differs");
    assert_eq!(
        r.must_header("content-range"),
        format!("bytes 100-1099/{size}")
    );
    assert_eq!(r.must_header("content-length"), "1000");

    // A single byte.
    let r = ranged("bytes=0-0".into()).await;
    r.expect(206);
    assert_eq!(&r.body[..], &data[..1]);
    assert_eq!(r.must_header("content-range"), format!("bytes 0-0/{size}"));

    // bytes=a-
    let r = ranged("bytes=9000-".into()).await;
    r.expect(206);
    assert!(r.body[..] == data[9000..]);
    assert_eq!(
        r.must_header("content-range"),
        format!("bytes 9000-{}/{size}", size - 1)
    );

    // bytes=-n (suffix)
    let r = ranged("bytes=-10".into()).await;
    r.expect(206);
    assert!(r.body[..] == data[size - 10..]);
    assert_eq!(
        r.must_header("content-range"),
        format!("bytes {}-{}/{size}", size - 10, size - 1)
    );

    // An end past the last byte is clamped.
    let r = ranged(format!("bytes=9990-{}", size * 2)).await;
    r.expect(206);
    assert!(r.body[..] == data[9990..]);
    assert_eq!(
        r.must_header("content-range"),
        format!("bytes 9990-{}/{size}", size - 1)
    );

    // Unsatisfiable.
    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 10),
    ] {
        let r = ranged(range).await;
        r.expect(416);
        assert_eq!(r.must_header("content-range"), format!("bytes */{size}"));
    }
}

#[tokio::test]
async fn unknown_blobs_are_404() {
    let reg = start();
    let api = Api::new(&reg);
    api.push_image("known/repo", "v1", 1).await;
    let absent = sha256(b"never pushed");
    // Unknown repository and known repository alike.
    for repo in ["known/repo", "unknown/repo"] {
        let path = format!("/v2/{repo}/blobs/{absent}");
        api.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
        let r = api.head(&path).await;
        r.expect(404);
        assert!(r.body.is_empty());
    }
}

#[tokio::test]
async fn blobs_are_visible_only_in_repositories_they_are_linked_to() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(5000);
    let digest = api.push_blob("team/a", &data).await;
    api.push_image("team/b", "v1", 1).await; // team/b exists, without that blob
    for repo in ["team/b", "team/c"] {
        let path = format!("/v2/{repo}/blobs/{digest}");
        api.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
        api.head(&path).await.expect(404);
    }
    api.get(&format!("/v2/team/a/blobs/{digest}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn delete_blob_unlinks_it_from_that_repository_only() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(4096);
    let digest = api.push_blob("del/a", &data).await;
    api.push_blob("del/b", &data).await;

    let path = format!("/v2/del/a/blobs/{digest}");
    api.delete(&path).await.expect(202);
    api.head(&path).await.expect(404);
    api.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
    // Deleting again: it is gone.
    api.delete(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);

    // Still there in the other repository.
    let r = api.get(&format!("/v2/del/b/blobs/{digest}")).await;
    r.expect(200);
    assert!(r.body[..] == data[..]);

    // A blob that never existed.
    api.delete(&format!("/v2/del/a/blobs/{}", sha256(b"nothing")))
        .await
        .expect_error(404, &["BLOB_UNKNOWN"]);

    // It can be pushed again after the delete.
    api.push_blob("del/a", &data).await;
    api.get(&path).await.expect(200);
}

#[tokio::test]
async fn delete_blob_is_refused_when_deletes_are_disabled() {
    let reg = start_env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "false")]);
    let api = Api::new(&reg);
    let data = random_bytes(2048);
    let digest = api.push_blob("nodel/repo", &data).await;
    let path = format!("/v2/nodel/repo/blobs/{digest}");
    api.delete(&path).await.expect_error(405, &["UNSUPPORTED"]);
    let r = api.get(&path).await;
    r.expect(200);
    assert!(r.body[..] == data[..]);
}

#[tokio::test]
async fn many_blobs_and_concurrent_reads() {
    let reg = start();
    let api = Api::new(&reg);
    let blobs: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(1 << (10 + i))).collect();
    let mut digests = vec![];
    for b in &blobs {
        digests.push(api.push_blob("conc/repo", b).await);
    }
    let mut tasks = vec![];
    for (b, d) in blobs.into_iter().zip(digests) {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let r = api.get(&format!("/v2/conc/repo/blobs/{d}")).await;
            r.expect(200);
            assert!(r.body[..] == b[..]);
            assert_eq!(sha256(&r.body), d);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
