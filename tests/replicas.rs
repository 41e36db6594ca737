//! Stateless replicas: three Ferry processes sharing one S3 bucket and one PostgreSQL
//! metadata database serve one registry, behind a round-robin balancer or addressed directly.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

// ---------------------------------------------------------------------------------------------
// The collector in a loop while the replicas serve pushes
// ---------------------------------------------------------------------------------------------

/// What one pusher of the collector race did.
#[derive(Default)]
struct Pushed {
    /// Images pushed and not deleted: `(tag, image)`.
    kept: Vec<(String, Image)>,
    /// Manifest pushes refused with `MANIFEST_BLOB_UNKNOWN` (a blob collected between its
    /// upload and the manifest: the clean refusal `--grace 0s` allows).
    refused: Vec<String>,
    /// Answers a registry without a collector would not give.
    unexpected: Vec<String>,
    pushed: usize,
}

/// One line for an unexpected response: the request line, the status and the body.
fn short(r: &Resp) -> String {
    format!(
        "{} -> {} {}",
        r.request.lines().next().unwrap_or(""),
        r.status,
        r.text()
    )
}

/// How many images each pusher of the collector race pushes at least, and at most.
const RACE_IMAGES: std::ops::Range<usize> = 10..100;
/// How many collections the pushers keep pushing for (within [`RACE_IMAGES`]).
const RACE_COLLECTIONS: usize = 4;

/// Pusher `k` on `api`: images into `repo`, each of two layers of images deleted just before
/// (by any pusher, on any replica: `recycled`) plus a new layer and a new config, every blob
/// uploaded again (POST, PUT); the previous image is kept if its index is a multiple of
/// three, else deleted and its layers recycled. [`RACE_IMAGES`] images, stopping early
/// once `collections` reached [`RACE_COLLECTIONS`].
async fn push_recycling(
    k: usize,
    api: Api,
    repo: &'static str,
    recycled: Arc<Mutex<Vec<Blob>>>,
    collections: Arc<AtomicUsize>,
) -> Pushed {
    let mut out = Pushed::default();
    let mut previous: Option<(usize, String, Image)> = None;
    for i in 0..RACE_IMAGES.end {
        if i >= RACE_IMAGES.start && collections.load(Ordering::SeqCst) >= RACE_COLLECTIONS {
            break;
        }
        let mut layers: Vec<Blob> = {
            let pool = recycled.lock().unwrap();
            pool.iter().rev().take(2).cloned().collect()
        };
        layers.push(Blob::new(OCI_LAYER, random_bytes(16 * 1024 + 3 * i + k)));
        let config = random_config();
        let mut blobs_ok = true;
        for b in std::iter::once(&config).chain(&layers) {
            let r = api
                .send(api.req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
                .await;
            if r.status != 202 {
                out.unexpected
                    .push(format!("pusher {k}, image {i}: {}", short(&r)));
                blobs_ok = false;
                break;
            }
            let location = api.abs(r.must_header("location"));
            let r = api.put_upload(&location, &b.digest, b.data.clone()).await;
            if r.status != 201 {
                out.unexpected
                    .push(format!("pusher {k}, image {i}: {}", short(&r)));
                blobs_ok = false;
                break;
            }
        }
        let manifest = oci_manifest(&config, &layers, json!({}));
        let image = Image {
            media_type: OCI_MANIFEST.to_string(),
            digest: sha256(&manifest),
            manifest,
            config,
            layers,
        };
        let tag = format!("p{k}-{i}");
        let mut this = None;
        if blobs_ok {
            let r = api
                .put_manifest(repo, &tag, OCI_MANIFEST, &image.manifest)
                .await;
            if r.status == 201 {
                out.pushed += 1;
                this = Some((i, tag, image));
            } else if r.status == 400
                && r.json()["errors"][0]["code"].as_str() == Some("MANIFEST_BLOB_UNKNOWN")
            {
                out.refused.push(format!("{tag}: {}", r.text()));
            } else {
                out.unexpected
                    .push(format!("pusher {k}, image {i}: {}", short(&r)));
            }
        }
        if let Some((j, tag, image)) = previous.take() {
            if j % 3 == 0 {
                out.kept.push((tag, image));
            } else {
                let r = api
                    .delete(&format!("/v2/{repo}/manifests/{}", image.digest))
                    .await;
                if r.status == 202 {
                    recycled.lock().unwrap().extend(image.layers);
                } else {
                    out.unexpected
                        .push(format!("pusher {k}, image {i}: {}", short(&r)));
                    out.kept.push((tag, image));
                }
            }
        }
        previous = this;
    }
    if let Some((_, tag, image)) = previous {
        out.kept.push((tag, image));
    }
    out
}

/// `blobs_removed` of a `ferry-gc --json` run that succeeded; the failure, described,
/// otherwise.
fn blobs_removed(args: &[&str], out: &std::process::Output) -> Result<u64, String> {
    let describe = || {
        format!(
            "ferry-gc {args:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if !out.status.success() {
        return Err(describe());
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| describe())?;
    report["blobs_removed"].as_u64().ok_or_else(describe)
}

/// `ferry-gc --grace 0s` runs back to back against the replicas' database and bucket (every
/// other run with `--delete-untagged`) while three pushers, one per replica, push images
/// that reuse the layers of images just deleted on any replica. Every collection succeeds,
/// every push gets the answer it would get without a collector (or the clean
/// `MANIFEST_BLOB_UNKNOWN` refusal a zero grace window allows), and every image pushed and
/// kept pulls with matching digests from every replica and through the balancer, also after
/// one more collection.
#[test]
fn gc_in_a_loop_while_three_replicas_serve_pushes_reusing_layers() {
    let Some(c) = Cluster::start() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    let repo = "race/app";
    let stop = AtomicBool::new(false);
    let done = Arc::new(AtomicUsize::new(0));
    let recycled = Arc::new(Mutex::new(Vec::new()));
    let gc_args = |run: usize| -> Vec<&'static str> {
        let mut args = vec!["--json", "--quiet", "--grace", "0s"];
        if run % 2 == 1 {
            args.push("--delete-untagged");
        }
        args
    };

    let (pushers, collections) = std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut runs = Vec::new();
            // Bounded: the pushers stop it (below) once they are done.
            for run in 0..1000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let args = gc_args(run);
                let out = ferry_gc(&c.replicas[0], &args);
                runs.push(blobs_removed(&args, &out));
                done.fetch_add(1, Ordering::SeqCst);
            }
            runs
        });
        // Stops the collector however the pushers end (a panic too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stopper = Stop(&stop);
        let pushers = rt.block_on(async {
            let tasks: Vec<_> = (0..3)
                .map(|k| {
                    tokio::spawn(push_recycling(
                        k,
                        c.api(k),
                        repo,
                        recycled.clone(),
                        done.clone(),
                    ))
                })
                .collect();
            let mut pushers = Vec::new();
            for (k, t) in tasks.into_iter().enumerate() {
                match t.await {
                    Ok(p) => pushers.push(p),
                    Err(e) => panic!("pusher {k} failed: {e}\n{}", c.logs()),
                }
            }
            pushers
        });
        drop(stopper);
        (pushers, collector.join().expect("collector thread"))
    });

    let pushed: usize = pushers.iter().map(|p| p.pushed).sum();
    let refused: Vec<&String> = pushers.iter().flat_map(|p| &p.refused).collect();
    let kept: Vec<&(String, Image)> = pushers.iter().flat_map(|p| &p.kept).collect();
    let mut unexpected: Vec<String> = pushers.iter().flat_map(|p| p.unexpected.clone()).collect();
    let mut removed = 0;
    for run in &collections {
        match run {
            Ok(n) => removed += n,
            Err(e) => unexpected.push(format!("a collection failed: {e}")),
        }
    }
    eprintln!(
        "{pushed} images pushed by 3 replicas ({} refused cleanly), {} kept; {} collections \
         removed {removed} blobs",
        refused.len(),
        kept.len(),
        collections.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} requests or collections failed that must not:\n{}\n{}",
        unexpected.len(),
        unexpected.join("\n"),
        c.logs()
    );
    assert!(pushed >= 10, "too few pushes succeeded: {refused:?}");

    let every_replica_pulls = || {
        rt.block_on(async {
            let apis = (0..3)
                .map(|i| (format!("replica {i}"), c.api(i)))
                .chain([("the balancer".to_string(), c.lb_api())]);
            for (who, api) in apis {
                for (tag, image) in &kept {
                    eprintln!("checking {repo}:{tag} through {who}");
                    api.assert_image_intact(repo, tag, image).await;
                }
            }
        })
    };
    every_replica_pulls();

    // One more collection once everything is older than its cutoff: it removes what the
    // deletes left (the deleted images' configs at least) and nothing a kept image needs.
    rt.block_on(next_second());
    let args = ["--json", "--grace", "0s"];
    let last =
        blobs_removed(&args, &ferry_gc(&c.replicas[0], &args)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        removed + last > 0,
        "the collections removed nothing: the race was not exercised"
    );
    every_replica_pulls();
}

// ---------------------------------------------------------------------------------------------
// Real clients through the balancer
// ---------------------------------------------------------------------------------------------

/// docker, skopeo, podman, containerd's `ctr` and oras push to the balancer and pull back
/// what they pushed, each request reaching whichever replica nginx picks: the digests match,
/// and every replica serves the pushed manifest. (In the nextest "clients" group.)
mod clients {
    use std::process::Command;

    use super::Cluster;
    use super::support::cli::*;
    use super::support::*;

    /// The digest `url` answers for `repo:reference` (a modern client's `HEAD`).
    fn served_digest(url: &str, repo: &str, reference: &str) -> String {
        let url = format!("{url}/v2/{repo}/manifests/{reference}");
        let r = http("HEAD", &url, &[("Accept", ACCEPT_MANIFESTS)], None);
        assert_eq!(r.status, 200, "HEAD {url}: {r:?}");
        r.must_header("docker-content-digest").to_string()
    }

    impl Cluster {
        /// The balancer and every replica answer `repo:reference` with `digest`.
        fn assert_served(&self, client: &str, repo: &str, reference: &str, digest: &str) {
            let urls = std::iter::once(("the balancer".to_string(), self.lb.url.clone())).chain(
                self.replicas
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("replica {i}"), r.url.clone())),
            );
            for (who, url) in urls {
                assert_eq!(
                    served_digest(&url, repo, reference),
                    digest,
                    "{client}: {who} serves another manifest for {repo}:{reference}"
                );
            }
        }

        /// The client's requests reached all three replicas.
        fn assert_spread(&self, client: &str) {
            let by: std::collections::BTreeSet<String> = self.lb.served_by().into_iter().collect();
            for r in &self.replicas {
                assert!(
                    by.contains(&r.host),
                    "{client}: no request reached replica {}: {:?}",
                    r.host,
                    self.lb.served()
                );
            }
        }
    }

    /// A small image in a new OCI layout (umoci, one layer per file): layout, image, files.
    fn small_image(
        tmp: &std::path::Path,
    ) -> (std::path::PathBuf, LayoutImage, Vec<(String, String)>) {
        let layout = tmp.join("layout");
        let files = three_files(&nonce());
        let image = new_image(&layout, "v1", &files, tmp);
        (layout, image, files)
    }

    #[test]
    fn docker() {
        if !docker_available() {
            eprintln!("SKIP: docker engine not available");
            return;
        }
        let Some(c) = Cluster::start() else { return };
        let tmp = tempdir();
        let nonce = nonce();
        let rootfs = tmp.path().join("rootfs");
        write(&rootfs.join("hello.txt"), &format!("replicas {nonce}\n"));
        // A layer of a few MiB: its upload is several requests.
        write(&rootfs.join("big.txt"), &noise(4 << 20, &nonce));
        let tarball = tmp.path().join("rootfs.tar");
        sh(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."));
        let name = format!("{}/replicas/docker:1", c.lb.host);
        let _images = DockerImages(vec![name.clone()]);
        let image_id = sh(Command::new("docker")
            .arg("import")
            .arg(&tarball)
            .arg(&name))
        .trim()
        .to_string();
        let pushed = docker_push_digest(&sh(Command::new("docker").args(["push", &name])));
        c.assert_served("docker", "replicas/docker", "1", &pushed);

        sh(Command::new("docker").args(["rmi", &name]));
        let out = sh(Command::new("docker").args(["pull", &name]));
        assert!(
            out.contains(&format!("Digest: {pushed}")),
            "docker pull printed another digest than {pushed}:\n{out}"
        );
        assert_eq!(
            docker_inspect(&name, "{{.Id}}"),
            image_id,
            "docker: image ID after the pull"
        );
        c.assert_spread("docker");
    }

    #[test]
    fn skopeo() {
        require(&["skopeo", "umoci"]);
        let Some(c) = Cluster::start() else { return };
        let tmp = tempdir();
        let (layout, image, _) = small_image(tmp.path());
        skopeo_push(&layout, "v1", &format!("{}/replicas/skopeo:v1", c.lb.host));
        c.assert_served("skopeo", "replicas/skopeo", "v1", &image.digest);

        let back = tmp.path().join("back");
        sh(Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/replicas/skopeo:v1", c.lb.host))
            .arg(format!("oci:{}:v1", back.display())));
        let copy = read_layout(&back, "v1");
        assert!(
            copy.manifest == image.manifest,
            "skopeo: the manifest came back different"
        );
        assert_eq!(copy.config, image.config, "skopeo: config");
        assert_eq!(copy.layers, image.layers, "skopeo: layers");
        for blob in copy.layers.iter().chain([&copy.config]) {
            assert_eq!(
                &sha256(&read(&layout_blob(&back, blob))),
                blob,
                "skopeo: blob pulled back"
            );
        }
        c.assert_spread("skopeo");
    }

    #[test]
    fn podman() {
        require(&["podman", "skopeo", "umoci"]);
        let Some(c) = Cluster::start() else { return };
        let tmp = tempdir();
        let (layout, image, _) = small_image(tmp.path());
        let src = format!("{}/replicas/base:v1", c.lb.host);
        skopeo_push(&layout, "v1", &src);

        let podman = ToolStorage::new("podman", tmp.path().join("podman"));
        sh(podman.cmd().args(["pull", "--tls-verify=false", &src]));
        let dst = format!("{}/replicas/podman:v2", c.lb.host);
        sh(podman.cmd().args(["tag", &src, &dst]));
        let digestfile = tmp.path().join("podman.digest");
        sh(podman
            .cmd()
            .args(["push", "--tls-verify=false", "--digestfile"])
            .arg(&digestfile)
            .arg(&dst));
        let pushed = read_digestfile(&digestfile);
        c.assert_served("podman", "replicas/podman", "v2", &pushed);

        // A fresh podman pulls it back: the same image, the same manifest.
        let fresh = ToolStorage::new("podman", tmp.path().join("podman2"));
        let out = sh(fresh.cmd().args(["pull", "--tls-verify=false", &dst]));
        let id = out.lines().last().unwrap_or_default().trim();
        assert_eq!(
            format!("sha256:{id}"),
            image.config,
            "podman: image ID after the pull"
        );
        let digest = sh(fresh
            .cmd()
            .args(["image", "inspect", "--format", "{{.Digest}}", &dst]));
        assert_eq!(digest.trim(), pushed, "podman: digest after the pull");
        c.assert_spread("podman");
    }

    #[test]
    fn containerd() {
        require(&["containerd", "ctr", "skopeo", "umoci"]);
        let Some(c) = Cluster::start() else { return };
        let tmp = tempdir();
        let (layout, image, files) = small_image(tmp.path());
        let src = format!("{}/replicas/base:v1", c.lb.host);
        skopeo_push(&layout, "v1", &src);

        let daemon = Containerd::start(&tmp.path().join("containerd"));
        let listed_digest = |name: &str| -> String {
            let listed = sh(daemon.ctr().args(["images", "ls"]));
            listed
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.split_whitespace().find(|f| f.starts_with("sha256:")))
                .unwrap_or_else(|| panic!("ctr: {name} not in ctr images ls:\n{listed}"))
                .to_string()
        };
        let pull = |name: &str| {
            sh(daemon.ctr().args([
                "images",
                "pull",
                "--plain-http",
                "--snapshotter",
                "native",
                name,
            ]))
        };
        pull(&src);
        assert_eq!(listed_digest(&src), image.digest, "ctr: pulled digest");
        daemon.assert_unpacked(&files);

        let dst = format!("{}/replicas/ctr:p1", c.lb.host);
        sh(daemon.ctr().args(["images", "tag", &src, &dst]));
        sh(daemon.ctr().args(["images", "push", "--plain-http", &dst]));
        c.assert_served("ctr", "replicas/ctr", "p1", &image.digest);
        sh(daemon.ctr().args(["images", "rm", &src, &dst]));
        pull(&dst);
        assert_eq!(listed_digest(&dst), image.digest, "ctr: digest pulled back");
        c.assert_spread("ctr");
    }

    #[test]
    fn oras() {
        require_oras();
        let Some(c) = Cluster::start() else { return };
        let tmp = tempdir();
        let work = tmp.path().join("oras");
        let nonce = nonce();
        // Pushed in three PATCH chunks of 1 MiB, each to the next replica.
        let text = format!("artifact {nonce}\n{}", noise(5 << 19, &nonce));
        write(&work.join("artifact.txt"), &text);
        let out = sh(oras_client()
            .args([
                "push",
                &c.lb.host,
                "replicas/oras:a1",
                "artifact.txt",
                OCI_EMPTY,
            ])
            .args([SBOM_TYPE, "-", "-", "-", "1048576"])
            .current_dir(&work));
        let pushed = json(out.lines().last().unwrap_or_default());
        assert_eq!(pushed["status"], 201, "oras push: {pushed}");
        let digest = pushed["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("oras push: no digest: {pushed}"));
        c.assert_served("oras", "replicas/oras", "a1", digest);

        let back = tmp.path().join("pulled");
        let files = json(&sh(oras_client()
            .args(["pull", &c.lb.host, "replicas/oras:a1"])
            .arg(&back)));
        assert_eq!(
            string_list(&files),
            [back.join("artifact.txt").display().to_string()],
            "oras pull"
        );
        assert!(
            read(&back.join("artifact.txt")) == text.as_bytes(),
            "oras: the pulled file differs"
        );
        c.assert_spread("oras");
    }
}
