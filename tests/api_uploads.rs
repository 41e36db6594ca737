//! Blob upload sessions: monolithic, streamed, chunked, status, cancel, cross-repository mounts.

mod support;

use reqwest::Method;
use support::*;

#[tokio::test]
async fn post_starts_a_session() {
    let reg = start();
    let api = Api::new(&reg);
    let r = api
        .send(api.req(Method::POST, "/v2/up/repo/blobs/uploads/"))
        .await;
    r.expect(202);
    let loc = r.must_header("location");
    assert!(
        loc.starts_with(&format!("http://{}/v2/up/repo/blobs/uploads/", reg.host)),
        "Location should be an absolute URL on the registry's host:\n{r:?}"
    );
    let uuid = r.must_header("docker-upload-uuid");
    assert!(!uuid.is_empty());
    assert!(loc.contains(uuid), "Location names the session:\n{r:?}");
    assert_eq!(r.must_header("range"), "0-0");
    assert!(r.header("content-length").is_none_or(|l| l == "0"));

    // Two sessions are distinct.
    let r2 = api
        .send(api.req(Method::POST, "/v2/up/repo/blobs/uploads/"))
        .await;
    r2.expect(202);
    assert_ne!(r2.must_header("docker-upload-uuid"), uuid);
}

#[tokio::test]
async fn location_is_built_from_the_host_header() {
    let reg = start();
    let api = Api::new(&reg);
    let r = api
        .send(
            api.req(Method::POST, "/v2/up/repo/blobs/uploads/")
                .header("Host", "registry.example.com:5443"),
        )
        .await;
    r.expect(202);
    let loc = r.must_header("location");
    assert!(
        loc.starts_with("http://registry.example.com:5443/v2/up/repo/blobs/uploads/"),
        "Location should use the request's Host:\n{r:?}"
    );
}

#[tokio::test]
async fn monolithic_post_with_digest() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(123_457);
    let digest = sha256(&data);
    let r = api
        .send(
            api.req(
                Method::POST,
                &format!("/v2/mono/repo/blobs/uploads/?digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data.clone()),
        )
        .await;
    r.expect(201);
    assert!(
        r.must_header("location")
            .ends_with(&format!("/v2/mono/repo/blobs/{digest}")),
        "{r:?}"
    );
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let g = api.get(&format!("/v2/mono/repo/blobs/{digest}")).await;
    g.expect(200);
    assert!(g.body[..] == data[..]);
    assert!(blob_data_path(&reg, &digest).exists());
}

#[tokio::test]
async fn monolithic_post_with_wrong_digest_stores_nothing() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(10_000);
    let wrong = sha256(b"not these bytes");
    let r = api
        .send(
            api.req(
                Method::POST,
                &format!("/v2/mono/repo/blobs/uploads/?digest={wrong}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data.clone()),
        )
        .await;
    r.expect_error(400, &["DIGEST_INVALID"]);
    for d in [wrong, sha256(&data)] {
        api.head(&format!("/v2/mono/repo/blobs/{d}"))
            .await
            .expect(404);
        assert!(!blob_data_path(&reg, &d).exists(), "{d} must not be stored");
    }
}

#[tokio::test]
async fn monolithic_put_after_post() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(77_777);
    let digest = sha256(&data);
    let loc = api.start_upload("mono/put").await;
    let r = api.put_upload(&loc, &digest, data.clone()).await;
    r.expect(201);
    assert!(
        r.must_header("location")
            .ends_with(&format!("/v2/mono/put/blobs/{digest}")),
        "{r:?}"
    );
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let g = api.get(&format!("/v2/mono/put/blobs/{digest}")).await;
    g.expect(200);
    assert!(g.body[..] == data[..]);
    // The session is finished.
    api.get(&loc)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
}

#[tokio::test]
async fn streamed_patches_then_put() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(3 * 1024 * 1024 + 5);
    let digest = sha256(&data);
    let mut loc = api.start_upload("stream/repo").await;
    let mut sent = 0usize;
    for chunk in data.chunks(1024 * 1024 + 1) {
        let r = api.patch(&loc, chunk.to_vec()).await;
        r.expect(202);
        sent += chunk.len();
        assert_eq!(r.must_header("range"), format!("0-{}", sent - 1), "{r:?}");
        assert!(!r.must_header("docker-upload-uuid").is_empty());
        loc = api.abs(r.must_header("location"));
    }
    let r = api.put_upload(&loc, &digest, vec![]).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let g = api.get(&format!("/v2/stream/repo/blobs/{digest}")).await;
    g.expect(200);
    assert_eq!(sha256(&g.body), digest);
}

#[tokio::test]
async fn chunked_patches_with_content_range_and_final_chunk_in_put() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(200_000);
    let digest = sha256(&data);
    let mut loc = api.start_upload("chunk/repo").await;
    let mut offset = 0u64;
    for chunk in data[..150_000].chunks(50_000) {
        let r = api.patch_range(&loc, offset, chunk.to_vec()).await;
        r.expect(202);
        offset += chunk.len() as u64;
        assert_eq!(r.range_len(), offset, "{r:?}");
        loc = api.abs(r.must_header("location"));
    }
    // The final chunk travels with the PUT.
    let r = api
        .put_upload(&loc, &digest, data[150_000..].to_vec())
        .await;
    r.expect(201);
    assert!(
        r.must_header("location")
            .ends_with(&format!("/v2/chunk/repo/blobs/{digest}")),
        "{r:?}"
    );
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let g = api.get(&format!("/v2/chunk/repo/blobs/{digest}")).await;
    g.expect(200);
    assert!(g.body[..] == data[..]);
}

#[tokio::test]
async fn out_of_order_chunk_is_refused_and_the_session_survives() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(30_000);
    let digest = sha256(&data);
    let loc = api.start_upload("ooo/repo").await;
    let r = api.patch_range(&loc, 0, data[..10_000].to_vec()).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));

    // A gap, an overlap, and a restart from zero are all refused.
    for start in [15_000u64, 5_000, 0] {
        let r = api
            .patch_range(&loc, start, data[10_000..20_000].to_vec())
            .await;
        r.expect_error(416, &["BLOB_UPLOAD_INVALID"]);
    }
    // Nothing of the refused chunks was kept.
    let r = api.get(&loc).await;
    r.expect(204);
    assert_eq!(r.must_header("range"), "0-9999");

    let r = api
        .patch_range(&loc, 10_000, data[10_000..20_000].to_vec())
        .await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-19999");
    let loc = api.abs(r.must_header("location"));
    let r = api.put_upload(&loc, &digest, data[20_000..].to_vec()).await;
    r.expect(201);
    let g = api.get(&format!("/v2/ooo/repo/blobs/{digest}")).await;
    g.expect(200);
    assert!(g.body[..] == data[..]);
}

#[tokio::test]
async fn zero_length_patch_leaves_the_range_unchanged() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(10);
    let digest = sha256(&data);
    let loc = api.start_upload("zero/repo").await;
    let r = api.patch(&loc, data.clone()).await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-9");
    let loc = api.abs(r.must_header("location"));
    let r = api.patch(&loc, vec![]).await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-9", "{r:?}");
    let loc = api.abs(r.must_header("location"));
    api.put_upload(&loc, &digest, vec![]).await.expect(201);
    let g = api.get(&format!("/v2/zero/repo/blobs/{digest}")).await;
    g.expect(200);
    assert_eq!(&g.body[..], &data[..]);
}

#[tokio::test]
async fn wrong_digest_at_put_stores_nothing() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(50_000);
    let wrong = sha256(b"other");
    let loc = api.start_upload("wrong/repo").await;
    let r = api.patch(&loc, data[..25_000].to_vec()).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));
    api.put_upload(&loc, &wrong, data[25_000..].to_vec())
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    for d in [wrong, sha256(&data)] {
        api.head(&format!("/v2/wrong/repo/blobs/{d}"))
            .await
            .expect(404);
        api.get(&format!("/v2/wrong/repo/blobs/{d}"))
            .await
            .expect_error(404, &["BLOB_UNKNOWN"]);
        assert!(!blob_data_path(&reg, &d).exists(), "{d} must not be stored");
    }
    // The same content can still be pushed correctly afterwards.
    api.push_blob("wrong/repo", &data).await;
}

#[tokio::test]
async fn upload_status() {
    let reg = start();
    let api = Api::new(&reg);
    let loc = api.start_upload("status/repo").await;
    let r = api.get(&loc).await;
    r.expect(204);
    assert_eq!(r.must_header("range"), "0-0");
    assert!(r.header("location").is_some(), "{r:?}");
    assert!(r.body.is_empty());

    let r = api.patch(&loc, random_bytes(4096)).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));
    let r = api.get(&loc).await;
    r.expect(204);
    assert_eq!(r.must_header("range"), "0-4095");
    assert!(!r.must_header("docker-upload-uuid").is_empty());
    // The Location it gives continues the same session.
    let loc2 = api.abs(r.must_header("location"));
    let r = api.patch_range(&loc2, 4096, random_bytes(4)).await;
    r.expect(202);
    assert_eq!(r.must_header("range"), "0-4099");
}

#[tokio::test]
async fn cancelled_session_is_gone() {
    let reg = start();
    let api = Api::new(&reg);
    let loc = api.start_upload("cancel/repo").await;
    let r = api.patch(&loc, random_bytes(1000)).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));
    api.delete(&loc).await.expect(204);
    api.get(&loc)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    api.patch(&loc, random_bytes(10))
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    api.put_upload(&loc, &sha256(b"x"), b"x".to_vec())
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    api.delete(&loc)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
}

#[tokio::test]
async fn unknown_upload_ids_are_404() {
    let reg = start();
    let api = Api::new(&reg);
    api.start_upload("ghost/repo").await; // the repository has a real session
    for id in ["8a9f7d4c-6b1e-4f55-9d8e-1c2b3a4d5e6f", "not-a-uuid", "AAAA"] {
        let loc = format!("/v2/ghost/repo/blobs/uploads/{id}");
        api.get(&loc)
            .await
            .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
        api.patch(&loc, b"abc".to_vec())
            .await
            .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
        api.put_upload(&loc, &sha256(b"abc"), b"abc".to_vec())
            .await
            .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
        api.delete(&loc)
            .await
            .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    }
    api.head(&format!("/v2/ghost/repo/blobs/{}", sha256(b"abc")))
        .await
        .expect(404);
}

/// The error code of a JSON error body sent back to [`raw_request`].
fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn invalid_upload_ids_are_unknown_uploads_not_unknown_paths() {
    let reg = start();
    let api = Api::new(&reg);
    api.start_upload("dots/repo").await;
    // Sent byte for byte (an HTTP client library would resolve the dot segments).
    for id in [
        "..",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2E%2E%2Fother",
        "../x",
        "a/b",
        "%00",
        "%FF%FE",
    ] {
        let path = format!("/v2/dots/repo/blobs/uploads/{id}");
        for method in ["GET", "PATCH", "PUT", "DELETE"] {
            let target = if method == "PUT" {
                format!("{path}?digest={}", sha256(b"x"))
            } else {
                path.clone()
            };
            let (status, body) = raw_request(&reg, method, &target, &[], b"x");
            assert_eq!(
                (status, error_code(&body).as_str()),
                (404, "BLOB_UPLOAD_UNKNOWN"),
                "{method} {target}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    assert_eq!(api.catalog().await, Vec::<String>::new());
}

#[tokio::test]
async fn malformed_content_range_is_416() {
    let reg = start();
    let api = Api::new(&reg);
    let loc = api.start_upload("cr/repo").await;
    let r = api.patch_range(&loc, 0, b"0123456789".to_vec()).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));
    for range in [
        "10-",
        "-19",
        "ten-19",
        "19-10",
        "10",
        "",
        "10-18446744073709551615",
        "0-18446744073709551615",
        "10-99999999999999999999999",
    ] {
        let r = api
            .send(
                api.req(Method::PATCH, &loc)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", range)
                    .body(b"0123456789".to_vec()),
            )
            .await;
        r.expect_error(416, &["BLOB_UPLOAD_INVALID"]);
    }
    // The session is untouched and continues.
    let r = api.get(&loc).await;
    r.expect(204);
    assert_eq!(r.must_header("range"), "0-9");
    let data = b"0123456789abcdefghij";
    let r = api.patch_range(&loc, 10, data[10..].to_vec()).await;
    r.expect(202);
    let loc = api.abs(r.must_header("location"));
    api.put_upload(&loc, &sha256(data), vec![])
        .await
        .expect(201);
}

#[tokio::test]
async fn a_session_belongs_to_its_repository() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(1000);
    let digest = sha256(&data);
    let loc = api.start_upload("owner/repo").await;
    let stolen = loc.replace("/v2/owner/repo/", "/v2/thief/repo/");
    assert_ne!(stolen, loc);
    api.get(&stolen)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    api.patch(&stolen, data.clone())
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    api.put_upload(&stolen, &digest, data.clone())
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    api.head(&format!("/v2/thief/repo/blobs/{digest}"))
        .await
        .expect(404);
    // The rightful owner can still use it.
    api.put_upload(&loc, &digest, data).await.expect(201);
    api.head(&format!("/v2/owner/repo/blobs/{digest}"))
        .await
        .expect(200);
    api.head(&format!("/v2/thief/repo/blobs/{digest}"))
        .await
        .expect(404);
}

#[tokio::test]
async fn cross_repository_mount() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(20_000);
    let digest = api.push_blob("src/repo", &data).await;
    let r = api
        .send(api.req(
            Method::POST,
            &format!("/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo"),
        ))
        .await;
    r.expect(201);
    assert!(
        r.must_header("location")
            .ends_with(&format!("/v2/dst/repo/blobs/{digest}")),
        "{r:?}"
    );
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let g = api.get(&format!("/v2/dst/repo/blobs/{digest}")).await;
    g.expect(200);
    assert!(g.body[..] == data[..]);
    // Still in the source.
    api.head(&format!("/v2/src/repo/blobs/{digest}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn mount_without_from_finds_the_blob_anywhere() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(20_000);
    let digest = api.push_blob("somewhere/else", &data).await;
    let r = api
        .send(api.req(
            Method::POST,
            &format!("/v2/auto/mount/blobs/uploads/?mount={digest}"),
        ))
        .await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest);
    let g = api.get(&format!("/v2/auto/mount/blobs/{digest}")).await;
    g.expect(200);
    assert!(g.body[..] == data[..]);
}

#[tokio::test]
async fn failed_mounts_start_a_normal_session() {
    let reg = start();
    let api = Api::new(&reg);
    let present = random_bytes(3000);
    let present_digest = api.push_blob("has/it", &present).await;
    api.push_image("lacks/it", "v1", 1).await;
    let unknown = random_bytes(5000);
    let unknown_digest = sha256(&unknown);

    let cases = [
        // A blob the registry never had (clients with a blob-info cache try these).
        format!("mount={unknown_digest}&from=has/it"),
        format!("mount={unknown_digest}"),
        // A blob that exists, but not in `from`.
        format!("mount={present_digest}&from=lacks/it"),
        // A `from` that does not exist.
        format!("mount={present_digest}&from=no/such/repo"),
    ];
    for query in cases {
        let r = api
            .send(api.req(
                Method::POST,
                &format!("/v2/mnt/repo/blobs/uploads/?{query}"),
            ))
            .await;
        r.expect(202);
        assert_eq!(r.must_header("range"), "0-0");
        assert!(!r.must_header("docker-upload-uuid").is_empty());
        // The session works like any other.
        let loc = api.abs(r.must_header("location"));
        let fresh = random_bytes(777);
        let r = api.put_upload(&loc, &sha256(&fresh), fresh.clone()).await;
        r.expect(201);
        api.head(&format!("/v2/mnt/repo/blobs/{}", sha256(&fresh)))
            .await
            .expect(200);
    }
    api.head(&format!("/v2/mnt/repo/blobs/{unknown_digest}"))
        .await
        .expect(404);
    // The blob that exists elsewhere was not mounted through a `from` lacking it.
    api.head(&format!("/v2/mnt/repo/blobs/{present_digest}"))
        .await
        .expect(404);
}

#[tokio::test]
async fn concurrent_uploads_of_the_same_blob() {
    let reg = start();
    let api = Api::new(&reg);
    let data = random_bytes(2 * 1024 * 1024);
    let digest = sha256(&data);
    let mut tasks = vec![];
    for i in 0..4 {
        let api = api.clone();
        let data = data.clone();
        let digest = digest.clone();
        tasks.push(tokio::spawn(async move {
            let repo = format!("same/repo{}", i % 2);
            let mut loc = api.start_upload(&repo).await;
            for chunk in data.chunks(512 * 1024) {
                let r = api.patch(&loc, chunk.to_vec()).await;
                r.expect(202);
                loc = api.abs(r.must_header("location"));
            }
            api.put_upload(&loc, &digest, vec![]).await.expect(201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for repo in ["same/repo0", "same/repo1"] {
        let g = api.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        g.expect(200);
        assert_eq!(sha256(&g.body), digest);
    }
}

/// A blob bigger than three S3 parts (5 MiB each on S3), pushed as PATCHes of uneven sizes
/// (below and above the part size, a single byte, alternately streamed and with
/// `Content-Range`), the rest with the PUT; it reads back whole and in ranges that cross
/// the part boundaries.
#[tokio::test]
async fn large_blob_in_uneven_chunks_reads_back_whole_and_in_ranges() {
    const MIB: usize = 1 << 20;
    let on_s3 = flavor() == support::Flavor::Ferry && support::storage() == support::Storage::S3;
    // On S3: 5 MiB parts, and the copy to the digest key in ranged part copies of 5 MiB
    // (the path that lifts S3's 5 GiB single-copy limit), checked here at a small size.
    let env: &[(&str, &str)] = if on_s3 {
        &[
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", "5242880"),
            ("REGISTRY_STORAGE_S3_MULTIPARTCOPYTHRESHOLDSIZE", "5242880"),
            ("REGISTRY_STORAGE_S3_MULTIPARTCOPYCHUNKSIZE", "5242880"),
        ]
    } else {
        &[]
    };
    let reg = start_env(env);
    let api = Api::new(&reg);
    let repo = "big/uneven";
    let data = random_bytes(17 * MIB + 12_345);
    let digest = sha256(&data);

    let mut loc = api.start_upload(repo).await;
    let mut offset = 0usize;
    for (i, size) in [3 * MIB, 7 * MIB, 1, 5 * MIB, MIB - 1]
        .into_iter()
        .enumerate()
    {
        let chunk = data[offset..offset + size].to_vec();
        let r = if i % 2 == 0 {
            api.patch(&loc, chunk).await
        } else {
            api.patch_range(&loc, offset as u64, chunk).await
        };
        r.expect(202);
        offset += size;
        assert_eq!(r.range_len(), offset as u64, "after PATCH #{i}:\n{r:?}");
        loc = api.abs(r.must_header("location"));
    }
    let r = api.get(&loc).await;
    r.expect(204);
    assert_eq!(r.range_len(), offset as u64, "{r:?}");
    let loc = api.abs(r.must_header("location"));

    let r = api.put_upload(&loc, &digest, data[offset..].to_vec()).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest, "{r:?}");

    let path = format!("/v2/{repo}/blobs/{digest}");
    let r = api.head(&path).await;
    r.expect(200);
    assert_eq!(r.must_header("content-length"), data.len().to_string());
    assert_eq!(r.must_header("docker-content-digest"), digest);

    let g = api.get(&path).await;
    g.expect(200);
    assert_eq!(g.body.len(), data.len(), "length of the blob read back");
    assert!(g.body[..] == data[..], "blob read back differs");

    let size = data.len();
    let part = 5 * MIB;
    for (start, end) in [
        (part - 10, part + 9),         // across the first part boundary
        (3 * MIB - 1, 3 * MIB),        // across the first PATCH boundary
        (10 * MIB, 10 * MIB),          // the single-byte PATCH
        (2 * part - 1, 3 * part + 1),  // a whole part and a byte either side
        (size - 12_345 - 5, size - 1), // into the bytes sent with the PUT, to the end
    ] {
        let r = api
            .send(
                api.req(Method::GET, &path)
                    .header("Range", format!("bytes={start}-{end}")),
            )
            .await;
        r.expect(206);
        assert_eq!(
            r.must_header("content-range"),
            format!("bytes {start}-{end}/{size}"),
            "{r:?}"
        );
        assert!(
            r.body[..] == data[start..=end],
            "bytes {start}-{end} differ"
        );
    }
    // The session is finished.
    api.get(&loc)
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
}

/// `uploads.maxblobsize`: a blob may grow to the limit and no further. The chunk that would
/// cross it is refused with `413 SIZE_INVALID` and the session keeps what it had; a
/// monolithic upload past it stores nothing.
#[tokio::test]
async fn uploads_past_the_blob_size_limit_are_refused() {
    let reg = start_env(&[("REGISTRY_UPLOADS_MAXBLOBSIZE", "1000")]);
    let api = Api::new(&reg);
    let data = random_bytes(1000);
    let digest = sha256(&data);

    // Chunked: 600 + 500 crosses the limit; 600 + 400 reaches it exactly.
    let location = api.start_upload("limit/app").await;
    let r = api.patch_range(&location, 0, data[..600].to_vec()).await;
    r.expect(202);
    let location = api.abs(r.must_header("location"));
    let r = api.patch_range(&location, 600, random_bytes(500)).await;
    r.expect_error(413, &["SIZE_INVALID"]);
    assert!(r.text().contains("uploads.maxblobsize"), "{r:?}");
    let status = api.get(&location).await;
    status.expect(204);
    assert_eq!(status.must_header("range"), "0-599");
    let r = api.patch_range(&location, 600, data[600..].to_vec()).await;
    r.expect(202);
    let location = api.abs(r.must_header("location"));
    api.put_upload(&location, &digest, vec![]).await.expect(201);

    // Monolithic, one byte too many: refused, nothing stored.
    let big = random_bytes(1001);
    let big_digest = sha256(&big);
    let r = api
        .send(
            api.req(
                Method::POST,
                &format!("/v2/limit/app/blobs/uploads/?digest={big_digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(big),
        )
        .await;
    r.expect_error(413, &["SIZE_INVALID"]);
    api.head(&format!("/v2/limit/app/blobs/{big_digest}"))
        .await
        .expect(404);
    api.head(&format!("/v2/limit/app/blobs/{digest}"))
        .await
        .expect(200);
}
