//! A benchmark, not a test (ignored; `bench/replicas` runs it on the release build): what
//! PostgreSQL metadata and a set of replicas behind a balancer cost or gain against one
//! Ferry on SQLite, all storing blobs in S3 (s3s-fs on loopback). Prints a Markdown table
//! (medians of [`ROUNDS`] rounds, the setups alternating within each round); asserts only
//! that every request succeeded.
//!
//! Setups: one replica on SQLite; one on PostgreSQL, addressed directly and through nginx;
//! three on PostgreSQL through nginx (round robin). Workloads: blob push and pull
//! ([`CONCURRENCY`] clients, [`BLOBS`] blobs of [`BLOB_SIZE`]), manifest pushes (distinct
//! small manifests, each tagged: metadata writes), and manifest GETs by tag with `wrk`
//! (keep-alive).
//! PostgreSQL runs with `fsync` on here (the test servers turn it off), as SQLite syncs.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use support::balancer::Balancer;
use support::postgres::PostgresServer;
use support::*;

const ROUNDS: usize = 3;
const BLOB_SIZE: usize = 32 << 20;
const BLOBS: usize = 8;
const CONCURRENCY: usize = 4;
const TAG_PUSHES: usize = 400;
const TAG_CONCURRENCY: usize = 8;
const WRK_SECONDS: u32 = 5;

/// One way of serving the registry, and what keeps it running.
struct Setup {
    label: &'static str,
    api: Api,
    _balancer: Option<Balancer>,
    _replicas: Vec<TestRegistry>,
}

impl Setup {
    fn new(label: &'static str, replicas: Vec<TestRegistry>, balanced: bool) -> Setup {
        let (url, balancer) = if balanced {
            let hosts: Vec<String> = replicas.iter().map(|r| r.host.clone()).collect();
            let lb = Balancer::start(&hosts).expect("nginx");
            (lb.url.clone(), Some(lb))
        } else {
            (replicas[0].url.clone(), None)
        };
        Setup {
            label,
            api: Api {
                client: client(Duration::from_secs(300)),
                url,
            },
            _balancer: balancer,
            _replicas: replicas,
        }
    }
}

/// One round's figures for one setup.
#[derive(Clone, Copy, Default)]
struct Sample {
    push_mb_s: f64,
    pull_mb_s: f64,
    tags_per_s: f64,
    manifest_get_per_s: Option<f64>,
}

#[test]
#[ignore = "a benchmark: bench/replicas runs it"]
fn replicas_throughput() {
    let Some(pg) = PostgresServer::start_durable() else {
        return;
    };
    assert_eq!(pg.psql("postgres", "SHOW fsync").trim(), "on");
    let s3 = S3Server::new();
    let on_pg = |db: &str, n: usize| -> Vec<TestRegistry> {
        let url = pg.create_database(db);
        (0..n)
            .map(|_| TestRegistry::start_on_s3(&s3, db, &[("REGISTRY_DATABASE_URL", &url)]))
            .collect()
    };
    let setups = [
        Setup::new(
            "1 replica, SQLite",
            vec![TestRegistry::start_on_s3(&s3, "sqlite", &[])],
            false,
        ),
        Setup::new("1 replica, PostgreSQL", on_pg("pg1", 1), false),
        Setup::new("1 replica, PostgreSQL, nginx", on_pg("pg1lb", 1), true),
        Setup::new("3 replicas, PostgreSQL, nginx", on_pg("pg3lb", 3), true),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); setups.len()];
    for round in 0..ROUNDS {
        for (i, setup) in setups.iter().enumerate() {
            let sample = runtime.block_on(measure(&setup.api, round));
            eprintln!(
                "round {round} {}: push {:.0} MB/s, pull {:.0} MB/s, manifest pushes {:.0}/s, manifest GET {:?}/s",
                setup.label,
                sample.push_mb_s,
                sample.pull_mb_s,
                sample.tags_per_s,
                sample.manifest_get_per_s.map(|r| r.round())
            );
            samples[i].push(sample);
        }
    }

    // A line of its own: libtest writes "test <name> ... " before the first output line.
    println!();
    println!(
        "| setup | blob push MB/s | blob pull MB/s | manifest pushes/s | manifest GET req/s (wrk) |"
    );
    println!("|---|---|---|---|---|");
    for (setup, samples) in setups.iter().zip(&samples) {
        let median_of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let gets: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.manifest_get_per_s)
            .collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} |",
            setup.label,
            median_of(|s| s.push_mb_s),
            median_of(|s| s.pull_mb_s),
            median_of(|s| s.tags_per_s),
            if gets.is_empty() {
                "n/a (no wrk)".to_string()
            } else {
                format!("{:.0}", median(gets))
            }
        );
    }
}

/// One round of every workload against `api`.
async fn measure(api: &Api, round: usize) -> Sample {
    let repo = format!("bench/r{round}");
    let blobs: Vec<Vec<u8>> = (0..BLOBS).map(|_| random_bytes(BLOB_SIZE)).collect();
    let total_mb = (BLOBS * BLOB_SIZE) as f64 / 1e6;

    let started = Instant::now();
    let digests: Vec<String> = stream::iter(&blobs)
        .map(|data| api.push_blob(&repo, data))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let push_mb_s = total_mb / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let repo_ref = &repo;
    let pulled: Vec<usize> = stream::iter(&digests)
        .map(|digest| async move {
            let repo = repo_ref;
            let got = api.get(&format!("/v2/{repo}/blobs/{digest}")).await;
            got.expect(200);
            got.body.len()
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let pull_mb_s = total_mb / started.elapsed().as_secs_f64();
    assert_eq!(pulled, vec![BLOB_SIZE; BLOBS]);

    // Manifest pushes: distinct manifests (an annotation apart) over the same pushed blobs,
    // each under a tag of its own: metadata writes, and one small object each in S3.
    let image = api.push_image(&repo, "v1", 1).await;
    let manifests: Vec<Vec<u8>> = (0..TAG_PUSHES)
        .map(|n| {
            let extra = serde_json::json!({"annotations": {"n": n.to_string()}});
            oci_manifest(&image.config, &image.layers, extra)
        })
        .collect();
    let started = Instant::now();
    stream::iter(manifests.iter().enumerate())
        .map(|(n, manifest)| {
            let repo = &repo;
            async move {
                api.put_manifest(repo, &format!("t{n}"), OCI_MANIFEST, manifest)
                    .await
                    .expect(201);
            }
        })
        .buffer_unordered(TAG_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let tags_per_s = TAG_PUSHES as f64 / started.elapsed().as_secs_f64();

    let manifest_get_per_s = wrk(&format!("{}/v2/{repo}/manifests/v1", api.url));
    Sample {
        push_mb_s,
        pull_mb_s,
        tags_per_s,
        manifest_get_per_s,
    }
}

/// `wrk -t2 -c16` for [`WRK_SECONDS`] on `url` with a manifest `Accept` header: requests per
/// second, `None` when wrk is not installed. Panics if any request failed.
fn wrk(url: &str) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{WRK_SECONDS}s")])
        .args(["-H", &format!("Accept: {OCI_MANIFEST}")])
        .arg(url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.contains("Non-2xx"),
        "wrk {url}: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
