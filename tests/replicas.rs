//! Stateless replicas: three Ferry processes sharing one S3 bucket and one PostgreSQL
//! metadata database serve one registry, behind a round-robin balancer or addressed directly.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::balancer::Balancer;
use support::postgres::PostgresServer;
use support::*;

/// One registry served by three replicas, and a balancer over them.
struct Cluster {
    // Dropped in field order: the balancer and replicas before their storage and database.
    lb: Balancer,
    replicas: Vec<TestRegistry>,
    _pg: PostgresServer,
    _s3: S3Server,
}

impl Cluster {
    /// `None` (having printed SKIP) when PostgreSQL or nginx is missing.
    fn start() -> Option<Cluster> {
        let pg = PostgresServer::start()?;
        let url = pg.create_database("ferry_replicas");
        let s3 = S3Server::new();
        let replicas: Vec<TestRegistry> = (0..3)
            .map(|_| TestRegistry::start_on_s3(&s3, "ferry", &[("REGISTRY_DATABASE_URL", &url)]))
            .collect();
        for (i, r) in replicas.iter().enumerate() {
            // The metadata lives in PostgreSQL, not in a database file of the replica's own.
            assert!(
                !r.root.join("ferry/metadata.db").exists(),
                "replica {i} created a SQLite metadata file"
            );
        }
        let tables = pg.psql(
            "ferry_replicas",
            "select count(*) from information_schema.tables where table_schema = 'public'",
        );
        assert_ne!(tables.trim(), "0", "no Ferry schema in PostgreSQL");
        let hosts: Vec<String> = replicas.iter().map(|r| r.host.clone()).collect();
        let Some(lb) = Balancer::start(&hosts) else {
            eprintln!("SKIP: no balancer");
            return None;
        };
        Some(Cluster {
            lb,
            replicas,
            _pg: pg,
            _s3: s3,
        })
    }

    fn api(&self, i: usize) -> Api {
        Api::new(&self.replicas[i])
    }

    fn lb_api(&self) -> Api {
        Api {
            client: client(Duration::from_secs(120)),
            url: self.lb.url.clone(),
        }
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("--- replica {i} ({}):\n{}", r.host, r.log()))
            .collect()
    }
}

/// The `Location` of `r`, absolute on `api`'s host.
fn location(api: &Api, r: &Resp) -> String {
    api.abs(r.must_header("location"))
}

#[tokio::test]
async fn chunked_push_round_robins_over_three_replicas() {
    let Some(c) = Cluster::start() else { return };
    let lb = c.lb_api();
    let repo = "rr/app";
    let data = random_bytes(3 * 256 * 1024 + 123);
    let digest = sha256(&data);
    let chunks: Vec<&[u8]> = data.chunks(256 * 1024 + 41).collect();
    assert_eq!(chunks.len(), 3);

    c.lb.reset();
    let mut loc = lb.start_upload(repo).await;
    let mut offset = 0u64;
    for chunk in &chunks {
        let r = lb.patch_range(&loc, offset, chunk.to_vec()).await;
        r.expect(202);
        offset += chunk.len() as u64;
        assert_eq!(r.range_len(), offset, "{r:?}");
        loc = location(&lb, &r);
        assert!(
            loc.starts_with(&lb.url),
            "Location should point back at the balancer: {loc}"
        );
    }
    let r = lb.put_upload(&loc, &digest, vec![]).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest);

    let served = c.lb.wait_served(5);
    let backends: BTreeSet<String> = served
        .iter()
        .filter_map(|s| s.upstreams.last().cloned())
        .collect();
    assert!(
        backends.len() >= 3,
        "the 5 requests of the upload should reach all 3 replicas, reached {backends:?}: {:?}",
        c.lb.served_by()
    );
    assert!(served.iter().all(|s| s.status < 500), "{served:?}");

    for (i, reg) in c.replicas.iter().enumerate() {
        let r = Api::new(reg)
            .get(&format!("/v2/{repo}/blobs/{digest}"))
            .await;
        r.expect(200);
        assert!(
            r.body.as_ref() == data.as_slice(),
            "replica {i} served {} bytes, not the blob pushed",
            r.body.len()
        );
    }

    // A manifest over it (and a config), pushed through the balancer.
    let config = random_config();
    lb.push_blob(repo, &config.data).await;
    let layer = Blob::new(OCI_LAYER, data.clone());
    let manifest = oci_manifest(&config, &[layer], json!({}));
    let mdigest = lb.push_manifest(repo, "v1", OCI_MANIFEST, &manifest).await;
    for i in 0..3 {
        let r = c.api(i).get_manifest(repo, "v1").await;
        r.expect(200);
        assert_eq!(
            r.must_header("docker-content-digest"),
            mdigest,
            "replica {i}"
        );
        assert!(r.body.as_ref() == manifest.as_slice(), "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_one_image_to_different_replicas() {
    let Some(c) = Cluster::start() else { return };
    let repo = "same/image";
    let config = random_config();
    let layers: Vec<Blob> = (0..2)
        .map(|i| Blob::new(OCI_LAYER, random_bytes(64 * 1024 * (i + 1) + 5)))
        .collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = Vec::new();
    for i in [0usize, 1, 2, 0] {
        let api = c.api(i);
        let (config, layers, barrier) = (config.clone(), layers.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Asserts 201 for every blob and the manifest.
            api.push_image_of(repo, "v1", config, layers, json!({}))
                .await
                .digest
        }));
    }
    let mut digests = BTreeSet::new();
    for t in tasks {
        match t.await {
            Ok(d) => {
                digests.insert(d);
            }
            Err(e) => panic!("a concurrent push failed: {e}\n{}", c.logs()),
        }
    }
    assert_eq!(digests.len(), 1, "{digests:?}");
    let digest = digests.into_iter().next().unwrap();

    for i in 0..3 {
        let api = c.api(i);
        let r = api.get_manifest(repo, "v1").await;
        r.expect(200);
        assert_eq!(
            r.must_header("docker-content-digest"),
            digest,
            "replica {i}"
        );
        assert_eq!(api.tags(repo).await, vec!["v1".to_string()], "replica {i}");
        let catalog = api.catalog().await;
        assert_eq!(
            catalog.iter().filter(|r| *r == repo).count(),
            1,
            "replica {i}: {catalog:?}"
        );
        for b in std::iter::once(&config).chain(&layers) {
            let (status, d, len) = api.get_blob_digest(repo, &b.digest).await;
            assert_eq!(
                (status, d.as_str(), len),
                (200, b.digest.as_str(), b.data.len() as u64)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_moves_from_two_replicas_end_consistent() {
    let Some(c) = Cluster::start() else { return };
    let repo = "moving/tag";
    let mut images = Vec::new();
    for _ in 0..2 {
        let config = random_config();
        let layer = Blob::new(OCI_LAYER, random_bytes(4096));
        c.api(0).push_blobs(repo, &[&config, &layer]).await;
        images.push(oci_manifest(&config, &[layer], json!({})));
    }
    let (a, b) = (sha256(&images[0]), sha256(&images[1]));

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for (i, manifest) in images.iter().enumerate() {
        let api = c.api(i);
        let (manifest, barrier) = (manifest.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut statuses = Vec::new();
            for _ in 0..20 {
                let r = api
                    .put_manifest(repo, "latest", OCI_MANIFEST, &manifest)
                    .await;
                statuses.push(r.status);
                if r.status != 201 {
                    return Err(format!("{r:?}"));
                }
            }
            Ok(statuses)
        }));
    }
    for t in tasks {
        if let Err(e) = t.await.expect("task") {
            panic!("moving the tag failed: {e}\n{}", c.logs());
        }
    }

    let mut seen = BTreeSet::new();
    for i in 0..3 {
        let r = c.api(i).head_manifest(repo, "latest").await;
        r.expect(200);
        seen.insert(r.must_header("docker-content-digest").to_string());
        assert_eq!(c.api(i).tags(repo).await, vec!["latest".to_string()]);
    }
    assert_eq!(seen.len(), 1, "replicas disagree on latest: {seen:?}");
    let latest = seen.into_iter().next().unwrap();
    assert!(
        latest == a || latest == b,
        "latest is {latest}, neither {a} nor {b}"
    );
    // Both manifests remain reachable by digest everywhere.
    for i in 0..3 {
        for d in [&a, &b] {
            c.api(i).head_manifest(repo, d).await.expect(200);
        }
    }
}

#[tokio::test]
async fn a_killed_replica_does_not_lose_a_push() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let repo = "survive/kill";
    let data = random_bytes(512 * 1024 + 77);
    let digest = sha256(&data);
    let (first, second) = data.split_at(300 * 1024);

    let api0 = c.api(0);
    let loc = api0.start_upload(repo).await;
    let r = api0.patch_range(&loc, 0, first.to_vec()).await;
    r.expect(202);
    assert_eq!(r.range_len(), first.len() as u64);
    let loc = location(&api0, &r);

    c.replicas[0].kill9();

    // The same session, on replica 1.
    let api1 = c.api(1);
    let path = loc.strip_prefix(&api0.url).expect("Location on replica 0");
    let loc1 = api1.abs(path);
    let r = api1.get(&loc1).await;
    r.expect(204);
    assert_eq!(
        r.range_len(),
        first.len() as u64,
        "status on replica 1: {r:?}"
    );
    let r = api1
        .patch_range(&loc1, first.len() as u64, second.to_vec())
        .await;
    if r.status != 202 {
        panic!("PATCH on replica 1: {r:?}\n{}", c.logs());
    }
    assert_eq!(r.range_len(), data.len() as u64, "{r:?}");
    let r = api1.put_upload(&location(&api1, &r), &digest, vec![]).await;
    r.expect(201);
    assert_eq!(r.must_header("docker-content-digest"), digest);

    let r = c.api(2).get(&format!("/v2/{repo}/blobs/{digest}")).await;
    r.expect(200);
    assert!(r.body.as_ref() == data, "replica 2 serves the whole blob");

    c.replicas[0].restart();
    let r = c.api(0).get(&format!("/v2/{repo}/blobs/{digest}")).await;
    r.expect(200);
    assert!(
        r.body.as_ref() == data,
        "restarted replica 0 serves the whole blob"
    );
}
