//! Health (`/health/live`, `/health/ready`) and Docker's `/v1/_ping`, outside the /v2/ API.

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
