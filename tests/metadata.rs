//! The `MetadataStore` conformance suite: every method of the metadata interface (and of the
//! collector's), the pagination order and the lock contract the collector relies on, written
//! once against the traits. Each test runs on every backend [`backends`] opens, through
//! `metadata::open` as the server does: SQLite (a file in a temporary directory) and
//! PostgreSQL (a database on a throwaway server of the test's own; skipped, saying so,
//! where PostgreSQL is not installed).

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry::metadata::postgres::PostgresSettings;
use ferry::metadata::{
    self, DatabaseSettings, LockKey, MetadataBackend, MetadataError, MetadataStore, Names,
    NewManifest, UploadSession, now,
};
use ferry::oci::manifest::ContentReference;
use ferry::oci::{Algorithm, Digest, ReferenceKind, RepositoryName, Tag};
use uuid::Uuid;

/// A backend under test, with what keeps it alive.
struct Backend {
    name: &'static str,
    store: Arc<dyn MetadataBackend>,
    /// Opens a second handle on the same database (another process, as far as the contract
    /// is concerned: the collector next to the server).
    reopen: Box<dyn Fn() -> DatabaseSettings + Send + Sync>,
    _dir: tempfile::TempDir,
    _postgres: Option<support::postgres::PostgresServer>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ferry/metadata.db");
    let settings = DatabaseSettings::Sqlite { path: path.clone() };
    let store = metadata::open(&settings).await.expect("open SQLite");
    let mut backends = vec![Backend {
        name: "sqlite",
        store,
        reopen: Box::new(move || DatabaseSettings::Sqlite { path: path.clone() }),
        _dir: dir,
        _postgres: None,
    }];
    if let Some(server) = support::postgres::PostgresServer::start() {
        let settings = PostgresSettings {
            url: server.create_database("ferry"),
            max_connections: 4,
        };
        let store = metadata::open(&DatabaseSettings::Postgres(settings.clone()))
            .await
            .expect("open PostgreSQL");
        backends.push(Backend {
            name: "postgres",
            store,
            reopen: Box::new(move || DatabaseSettings::Postgres(settings.clone())),
            _dir: tempfile::tempdir().expect("temp dir"),
            _postgres: Some(server),
        });
    }
    backends
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).unwrap()
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

/// A committed blob: `(digest, size)`.
fn blob(seed: &str) -> (Digest, u64) {
    (digest_of(seed.as_bytes()), seed.len() as u64)
}

/// A manifest referencing `config` and `layers`, tagged with `tags`.
struct TestManifest {
    digest: Digest,
    payload: Vec<u8>,
    references: Vec<ContentReference>,
    subject: Option<Digest>,
}

impl TestManifest {
    fn image(seed: &str, config: &(Digest, u64), layers: &[(Digest, u64)]) -> Self {
        let payload = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
        let mut references = vec![ContentReference {
            digest: config.0.clone(),
            size: config.1,
            kind: ReferenceKind::Config,
        }];
        references.extend(layers.iter().map(|(d, s)| ContentReference {
            digest: d.clone(),
            size: *s,
            kind: ReferenceKind::Layer,
        }));
        TestManifest {
            digest: digest_of(&payload),
            payload,
            references,
            subject: None,
        }
    }

    fn index(seed: &str, children: &[&TestManifest]) -> Self {
        let payload = format!("{{\"index\":\"{seed}\"}}").into_bytes();
        TestManifest {
            digest: digest_of(&payload),
            references: children
                .iter()
                .map(|c| ContentReference {
                    digest: c.digest.clone(),
                    size: c.payload.len() as u64,
                    kind: ReferenceKind::Manifest,
                })
                .collect(),
            payload,
            subject: None,
        }
    }

    fn new_manifest<'a>(&'a self, tags: &'a [Tag]) -> NewManifest<'a> {
        NewManifest {
            digest: &self.digest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            artifact_type: None,
            subject: self.subject.as_ref(),
            annotations: None,
            payload: &self.payload,
            references: &self.references,
            tags,
            origin: ferry::metadata::Origin::Pushed,
        }
    }
}

/// Links the blobs of an image and stores its manifest.
async fn push_image(
    store: &dyn MetadataStore,
    repository: &RepositoryName,
    seed: &str,
    tags: &[Tag],
) -> TestManifest {
    let config = blob(&format!("{seed}-config"));
    let layer = blob(&format!("{seed}-layer"));
    store
        .link_blobs(repository, &[config.clone(), layer.clone()])
        .await
        .unwrap();
    let manifest = TestManifest::image(seed, &config, &[layer]);
    store
        .put_manifest(repository, &manifest.new_manifest(tags))
        .await
        .unwrap();
    manifest
}

fn session(repository: &RepositoryName) -> UploadSession {
    UploadSession {
        id: Uuid::new_v4(),
        repository: repository.clone(),
        size: 0,
        hash_state: Some(vec![1, 2, 3]),
        started_at: now(),
    }
}

#[tokio::test]
async fn blobs_link_mount_and_unlink() {
    for b in backends().await {
        let s = b.store.as_ref();
        let (a, other) = (repo("team/a"), repo("team/b"));
        let (d, size) = blob("layer");
        assert_eq!(s.blob_size(&d).await.unwrap(), None, "{}", b.name);
        assert_eq!(s.blob_in_repository(&a, &d).await.unwrap(), None);
        assert!(!s.repository_exists(&a).await.unwrap());

        s.link_blobs(&a, &[(d.clone(), size)]).await.unwrap();
        assert_eq!(s.blob_size(&d).await.unwrap(), Some(size));
        assert_eq!(s.blob_in_repository(&a, &d).await.unwrap(), Some(size));
        assert_eq!(s.blob_in_repository(&other, &d).await.unwrap(), None);
        assert!(s.repository_exists(&a).await.unwrap());
        // Linking twice is harmless.
        s.link_blobs(&a, &[(d.clone(), size)]).await.unwrap();

        // Mounts: from a repository that has it, from one that does not, from anywhere.
        assert_eq!(
            s.mount_blob(&other, &d, Some(&repo("nowhere")))
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.blob_in_repository(&other, &d).await.unwrap(), None);
        assert_eq!(
            s.mount_blob(&other, &d, Some(&a)).await.unwrap(),
            Some(size)
        );
        assert_eq!(s.blob_in_repository(&other, &d).await.unwrap(), Some(size));
        let third = repo("team/c");
        assert_eq!(s.mount_blob(&third, &d, None).await.unwrap(), Some(size));
        let (unknown, _) = blob("never pushed");
        assert_eq!(s.mount_blob(&third, &unknown, None).await.unwrap(), None);

        assert!(s.unlink_blob(&a, &d).await.unwrap());
        assert!(!s.unlink_blob(&a, &d).await.unwrap());
        assert_eq!(s.blob_in_repository(&a, &d).await.unwrap(), None);
        // The blob itself stays (the collector decides).
        assert_eq!(s.blob_size(&d).await.unwrap(), Some(size));
    }
}

#[tokio::test]
async fn upload_sessions_advance_by_compare_and_set() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("up/load");
        let new = session(&r);
        s.create_upload(&new).await.unwrap();
        let got = s.upload(&new.id).await.unwrap().expect("session");
        assert_eq!(
            (got.repository.as_str(), got.size, got.hash_state.as_deref()),
            ("up/load", 0, Some(&[1u8, 2, 3][..])),
            "{}",
            b.name
        );
        assert!(s.advance_upload(&new.id, 0, 10, Some(&[9])).await.unwrap());
        // A second request that read the old size loses.
        assert!(!s.advance_upload(&new.id, 0, 20, None).await.unwrap());
        let got = s.upload(&new.id).await.unwrap().unwrap();
        assert_eq!((got.size, got.hash_state), (10, Some(vec![9])));
        assert!(s.advance_upload(&new.id, 10, 15, None).await.unwrap());
        assert_eq!(s.upload(&new.id).await.unwrap().unwrap().hash_state, None);

        // Completion records and links the blob and drops the session.
        let mut done = s.upload(&new.id).await.unwrap().unwrap();
        done.size = 15;
        let d = digest_of(b"fifteen bytes!!");
        s.complete_upload(&done, &d).await.unwrap();
        assert!(s.upload(&new.id).await.unwrap().is_none());
        assert_eq!(s.blob_in_repository(&r, &d).await.unwrap(), Some(15));
        assert!(!s.advance_upload(&new.id, 15, 16, None).await.unwrap());

        // Deletion and staleness.
        let old = UploadSession {
            started_at: now() - 3600,
            ..session(&r)
        };
        let young = session(&r);
        s.create_upload(&old).await.unwrap();
        s.create_upload(&young).await.unwrap();
        let stale: Vec<Uuid> = s
            .stale_uploads(now() - 60)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(stale, vec![old.id]);
        assert!(s.delete_upload(&old.id).await.unwrap());
        assert!(!s.delete_upload(&old.id).await.unwrap());
        assert!(s.upload(&young.id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn manifests_need_their_references_in_the_repository() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("m/app");
        let config = blob("config");
        let layer = blob("layer");
        let manifest = TestManifest::image("one", &config, std::slice::from_ref(&layer));

        // Nothing linked yet: refused, naming what is missing, and nothing stored.
        let err = s
            .put_manifest(&r, &manifest.new_manifest(&[tag("v1")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, MetadataError::MissingReference { .. }),
            "{}: {err:?}",
            b.name
        );
        assert!(s.manifest(&r, &manifest.digest).await.unwrap().is_none());

        // In another repository only: still refused.
        s.link_blobs(&repo("m/other"), &[config.clone(), layer.clone()])
            .await
            .unwrap();
        assert!(
            s.put_manifest(&r, &manifest.new_manifest(&[]))
                .await
                .is_err()
        );

        // A declared size that differs from the stored one.
        s.link_blobs(&r, &[config.clone(), layer.clone()])
            .await
            .unwrap();
        let mut wrong = TestManifest::image("wrong", &config, std::slice::from_ref(&layer));
        wrong.references[1].size += 1;
        let err = s
            .put_manifest(&r, &wrong.new_manifest(&[]))
            .await
            .unwrap_err();
        assert!(matches!(err, MetadataError::SizeMismatch { .. }), "{err:?}");

        s.put_manifest(&r, &manifest.new_manifest(&[tag("v1"), tag("latest")]))
            .await
            .unwrap();
        let stored = s.manifest(&r, &manifest.digest).await.unwrap().unwrap();
        assert_eq!(&stored.payload[..], &manifest.payload[..]);
        assert_eq!(
            stored.media_type,
            "application/vnd.oci.image.manifest.v1+json"
        );
        let tagged = s.tagged_manifest(&r, &tag("v1")).await.unwrap().unwrap();
        assert_eq!(tagged.digest, manifest.digest);
        // The manifest's own bytes are a blob of the registry.
        assert_eq!(
            s.blob_size(&manifest.digest).await.unwrap(),
            Some(manifest.payload.len() as u64)
        );
        assert!(
            s.tagged_manifest(&repo("m/other"), &tag("v1"))
                .await
                .unwrap()
                .is_none()
        );

        // An index needs its children in the repository.
        let index = TestManifest::index("idx", &[&manifest]);
        s.put_manifest(&r, &index.new_manifest(&[tag("multi")]))
            .await
            .unwrap();
        let orphan_index = TestManifest::index("orphan", &[&wrong]);
        assert!(matches!(
            s.put_manifest(&r, &orphan_index.new_manifest(&[])).await,
            Err(MetadataError::MissingReference { .. })
        ));

        // Moving a tag, tagging an existing manifest, deletes.
        assert!(s.tag_manifest(&r, &tag("v1"), &index.digest).await.unwrap());
        assert_eq!(
            s.tagged_manifest(&r, &tag("v1"))
                .await
                .unwrap()
                .unwrap()
                .digest,
            index.digest
        );
        assert!(
            !s.tag_manifest(&r, &tag("v2"), &wrong.digest).await.unwrap(),
            "a tag on a manifest that is not in the repository"
        );
        assert!(s.delete_tag(&r, &tag("latest")).await.unwrap());
        assert!(!s.delete_tag(&r, &tag("latest")).await.unwrap());
        assert!(s.delete_manifest(&r, &index.digest).await.unwrap());
        assert!(!s.delete_manifest(&r, &index.digest).await.unwrap());
        // Its tags went with it.
        assert!(s.tagged_manifest(&r, &tag("v1")).await.unwrap().is_none());
        assert!(
            s.tagged_manifest(&r, &tag("multi"))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn lists_are_byte_wise_ordered_and_paginated() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("list/app");
        let names = [
            "latest",
            "v1.0.0",
            "Z9",
            "a_b",
            "B",
            "v1.0.0-rc1",
            "a-b",
            "_x",
            "0",
        ];
        let tags: Vec<Tag> = names.iter().map(|n| tag(n)).collect();
        push_image(s, &r, "listed", &tags).await;
        let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        expected.sort(); // byte-wise, as Rust's String order
        assert_eq!(
            s.list_tags(&r, None, 100)
                .await
                .unwrap()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            expected,
            "{}",
            b.name
        );
        // Pages: `last` is exclusive.
        let mut walked = Vec::new();
        let mut last: Option<String> = None;
        for _ in 0..20 {
            let page: Vec<String> = s
                .list_tags(&r, last.as_deref(), 2)
                .await
                .unwrap()
                .unwrap()
                .iter()
                .map(str::to_string)
                .collect();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            last = page.last().cloned();
            walked.extend(page);
        }
        assert_eq!(walked, expected);
        assert_eq!(
            s.list_tags(&r, None, 0).await.unwrap(),
            Some(Names::default())
        );
        assert_eq!(
            s.list_tags(&repo("no/such"), None, 10).await.unwrap(),
            None,
            "an unknown repository is told apart from one without tags"
        );

        // Repositories: those holding a manifest or a linked blob, byte-wise.
        for name in ["a/b", "a-b", "a.b", "a", "0"] {
            s.link_blobs(&repo(name), &[blob(name)]).await.unwrap();
        }
        let empty = session(&repo("only/uploading"));
        s.create_upload(&empty).await.unwrap();
        let mut all: Vec<String> = ["a/b", "a-b", "a.b", "a", "0", "list/app"]
            .iter()
            .map(|n| n.to_string())
            .collect();
        all.sort();
        let names = |page: Names| page.iter().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(names(s.list_repositories(None, 100).await.unwrap()), all);
        assert_eq!(
            names(s.list_repositories(Some("a-b"), 2).await.unwrap()),
            all.iter()
                .filter(|n| n.as_str() > "a-b")
                .take(2)
                .cloned()
                .collect::<Vec<_>>()
        );
    }
}

/// Every tag of `r` by one listing, and again page by page (one tag per page): both must
/// be `want`, whether the store answers from its cached list or from the tags themselves.
async fn assert_tags(s: &dyn MetadataStore, r: &RepositoryName, want: &[&str], backend: &str) {
    let all = s.list_tags(r, None, 100).await.unwrap().unwrap();
    assert_eq!(all.iter().collect::<Vec<_>>(), want, "{backend}");
    let mut walked = Vec::new();
    let mut last: Option<String> = None;
    for _ in 0..=want.len() {
        let page = s.list_tags(r, last.as_deref(), 1).await.unwrap().unwrap();
        let Some(name) = page.iter().next() else {
            break;
        };
        last = Some(name.to_string());
        walked.push(name.to_string());
    }
    assert_eq!(walked, want, "{backend}: paged");
}

#[tokio::test]
async fn tag_lists_follow_every_change_of_the_tags() {
    for b in backends().await {
        let (s, name) = (b.store.as_ref(), b.name);
        let r = repo("tagged/app");
        let first = push_image(s, &r, "first", &[tag("b"), tag("a")]).await;
        assert_tags(s, &r, &["a", "b"], name).await;
        // A push that adds one tag and moves another.
        let second = push_image(s, &r, "second", &[tag("c"), tag("a")]).await;
        assert_tags(s, &r, &["a", "b", "c"], name).await;
        // Tagging by digest: a tag that moves, then a new one.
        assert!(s.tag_manifest(&r, &tag("b"), &second.digest).await.unwrap());
        assert!(s.tag_manifest(&r, &tag("d"), &first.digest).await.unwrap());
        assert_tags(s, &r, &["a", "b", "c", "d"], name).await;
        assert!(s.delete_tag(&r, &tag("b")).await.unwrap());
        assert!(!s.delete_tag(&r, &tag("b")).await.unwrap());
        assert!(!s.delete_tag(&repo("no/such"), &tag("b")).await.unwrap());
        assert_tags(s, &r, &["a", "c", "d"], name).await;
        // Deleting a manifest takes its tags (a cascade inside the database).
        assert!(s.delete_manifest(&r, &second.digest).await.unwrap());
        assert_tags(s, &r, &["d"], name).await;
        // Another handle (the collector's process) expiring a cached, tagged manifest: the
        // tags go by cascade again, with no tag write through the store after it.
        let cached = TestManifest::image("cached", &blob("c-config"), &[blob("c-layer")]);
        let tags = [tag("cached"), tag("e")];
        let new = NewManifest {
            origin: ferry::metadata::Origin::Cached { ttl_secs: Some(1) },
            ..cached.new_manifest(&tags)
        };
        s.put_manifest(&r, &new).await.unwrap();
        assert_tags(s, &r, &["cached", "d", "e"], name).await;
        let other = metadata::open(&(b.reopen)()).await.unwrap();
        assert_eq!(
            other
                .expire_cached_manifests(now() + 3600, false)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_tags(s, &r, &["d"], name).await;
        // And the next tag write lists from the cache again.
        push_image(s, &r, "third", &[tag("f")]).await;
        assert_tags(s, &r, &["d", "f"], name).await;
        assert!(s.delete_tag(&r, &tag("d")).await.unwrap());
        assert!(s.delete_tag(&r, &tag("f")).await.unwrap());
        assert_tags(s, &r, &[], name).await;
        other.close().await;
    }
}

#[tokio::test]
async fn referrers_are_listed_by_subject_and_artifact_type() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("ref/app");
        let subject = push_image(s, &r, "subject", &[tag("v1")]).await;
        let config = blob("sig-config");
        s.link_blobs(&r, std::slice::from_ref(&config))
            .await
            .unwrap();
        let mut signature = TestManifest::image("sig", &config, &[]);
        signature.subject = Some(subject.digest.clone());
        let new = NewManifest {
            artifact_type: Some("application/example.sig"),
            annotations: Some("{\"k\":\"v\"}"),
            ..signature.new_manifest(&[])
        };
        s.put_manifest(&r, &new).await.unwrap();
        let all = s.referrers(&r, &subject.digest, None).await.unwrap();
        assert_eq!(all.len(), 1, "{}", b.name);
        assert_eq!(all[0].digest, signature.digest.to_string());
        assert_eq!(all[0].size, signature.payload.len() as u64);
        assert_eq!(
            all[0].artifact_type.as_deref(),
            Some("application/example.sig")
        );
        assert_eq!(all[0].annotations.as_deref(), Some("{\"k\":\"v\"}"));
        assert_eq!(
            s.referrers(&r, &subject.digest, Some("application/example.sig"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            s.referrers(&r, &subject.digest, Some("other/type"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.referrers(&repo("ref/other"), &subject.digest, None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn registry_info_is_kept() {
    for b in backends().await {
        let s = b.store.as_ref();
        assert_eq!(s.info("storage").await.unwrap(), None, "{}", b.name);
        s.set_info("storage", "one").await.unwrap();
        s.set_info("storage", "two").await.unwrap();
        assert_eq!(s.info("storage").await.unwrap().as_deref(), Some("two"));
        // Another handle on the same database sees it.
        let again = metadata::open(&(b.reopen)()).await.unwrap();
        assert_eq!(again.info("storage").await.unwrap().as_deref(), Some("two"));
        again.close().await;
    }
}

#[tokio::test]
async fn the_collector_sees_a_snapshot_and_rechecks_every_deletion() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("gc/app");
        let kept = push_image(s, &r, "kept", &[tag("v1")]).await;
        let gone = push_image(s, &r, "gone", &[]).await;
        let future = now() + 3600;
        let snapshot = s.snapshot().await.unwrap();
        assert!(
            snapshot
                .manifests
                .iter()
                .any(|m| m.digest == gone.digest.to_string()),
            "{}",
            b.name
        );
        assert_eq!(snapshot.tags.len(), 1);
        assert_eq!(snapshot.references.len(), 4);
        assert_eq!(snapshot.links.len(), 4);
        assert_eq!(snapshot.blobs.len(), 6, "4 linked blobs and 2 manifests");
        let id = snapshot.repositories[0].0;

        // A tagged manifest is never unreachable; a young one is not either.
        let kept_digest = kept.digest.to_string();
        let gone_digest = gone.digest.to_string();
        assert!(
            !s.delete_manifest_if_unreachable(id, &kept_digest, future)
                .await
                .unwrap()
        );
        assert!(
            !s.delete_manifest_if_unreachable(id, &gone_digest, now() - 3600)
                .await
                .unwrap()
        );
        // A child of an index is kept while the index lists it.
        let index = TestManifest::index("idx", &[&gone]);
        s.put_manifest(&r, &index.new_manifest(&[tag("idx")]))
            .await
            .unwrap();
        assert!(
            !s.delete_manifest_if_unreachable(id, &gone_digest, future)
                .await
                .unwrap()
        );
        assert!(s.delete_tag(&r, &tag("idx")).await.unwrap());
        let index_digest = index.digest.to_string();
        assert!(
            s.delete_manifest_if_unreachable(id, &index_digest, future)
                .await
                .unwrap()
        );
        assert!(
            s.delete_manifest_if_unreachable(id, &gone_digest, future)
                .await
                .unwrap()
        );

        // Links: a link a kept manifest references stays; the others go once old.
        let kept_layer = kept.references[1].digest.to_string();
        let gone_layer = gone.references[1].digest.clone();
        assert!(
            !s.delete_link_if_unreferenced(id, &kept_layer, future)
                .await
                .unwrap()
        );
        assert!(
            !s.delete_link_if_unreferenced(id, &gone_layer.to_string(), now() - 3600)
                .await
                .unwrap(),
            "a young link went"
        );
        assert!(
            s.delete_link_if_unreferenced(id, &gone_layer.to_string(), future)
                .await
                .unwrap()
        );

        // Blobs: not while linked or referenced, not while young; the row goes when garbage.
        let kept_layer: Digest = kept_layer.parse().unwrap();
        assert_eq!(
            s.delete_blob_if_garbage(&kept_layer, future).await.unwrap(),
            None
        );
        assert_eq!(
            s.delete_blob_if_garbage(&gone_layer, now() - 3600)
                .await
                .unwrap(),
            None
        );
        let size = gone.references[1].size;
        assert_eq!(
            s.delete_blob_if_garbage(&gone_layer, future).await.unwrap(),
            Some(size)
        );
        assert_eq!(s.blob_size(&gone_layer).await.unwrap(), None);

        // A repository goes only when nothing is left in it.
        assert!(!s.delete_repository_if_empty(id).await.unwrap());
        let empty = repo("gc/empty");
        s.link_blobs(&empty, &[blob("lonely")]).await.unwrap();
        let empty_id = s
            .snapshot()
            .await
            .unwrap()
            .repositories
            .iter()
            .find(|(_, n)| n == "gc/empty")
            .unwrap()
            .0;
        assert!(!s.delete_repository_if_empty(empty_id).await.unwrap());
        assert!(s.unlink_blob(&empty, &blob("lonely").0).await.unwrap());
        let upload = session(&empty);
        s.create_upload(&upload).await.unwrap();
        assert!(
            !s.delete_repository_if_empty(empty_id).await.unwrap(),
            "a repository with an upload in progress went"
        );
        s.delete_upload(&upload.id).await.unwrap();
        assert!(s.delete_repository_if_empty(empty_id).await.unwrap());
        assert!(!s.repository_exists(&empty).await.unwrap());
    }
}

#[tokio::test]
async fn a_link_made_after_the_snapshot_keeps_the_blob() {
    // The race the collector relies on: between its snapshot and its deletion, a push links
    // (or references) the blob; the deletion's re-check sees it and keeps the blob.
    for b in backends().await {
        let s = b.store.as_ref();
        let (d, size) = blob("raced");
        s.link_blobs(&repo("race/a"), &[(d.clone(), size)])
            .await
            .unwrap();
        let id = s.snapshot().await.unwrap().repositories[0].0;
        let future = now() + 3600;
        assert!(
            s.delete_link_if_unreferenced(id, &d.to_string(), future)
                .await
                .unwrap()
        );
        // The snapshot said garbage; a mount lands before the deletion.
        assert_eq!(
            s.mount_blob(&repo("race/b"), &d, None).await.unwrap(),
            Some(size)
        );
        assert_eq!(
            s.delete_blob_if_garbage(&d, future).await.unwrap(),
            None,
            "{}",
            b.name
        );
        // And a manifest referencing a blob the collector already removed is refused.
        assert!(s.unlink_blob(&repo("race/b"), &d).await.unwrap());
        assert_eq!(
            s.delete_blob_if_garbage(&d, future).await.unwrap(),
            Some(size)
        );
        assert_eq!(s.mount_blob(&repo("race/c"), &d, None).await.unwrap(), None);
    }
}

/// Whether `key` can be taken within a few seconds: a released lock is free at once on
/// SQLite, and once the unlock reached the server on PostgreSQL (a task sends it).
async fn free_soon(store: &dyn MetadataBackend, key: &LockKey) -> bool {
    for _ in 0..300 {
        if store.try_lock(key.clone()).await.unwrap().is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn locks_exclude_across_handles_and_tasks() {
    for b in backends().await {
        let first = b.store.clone();
        let second: Arc<dyn MetadataBackend> = metadata::open(&(b.reopen)()).await.unwrap();
        let (d, _) = blob("locked");
        for key in [
            LockKey::Blob(d.clone()),
            LockKey::Repository(repo("locked/repo")),
            LockKey::Collector,
        ] {
            let held = first.lock(key.clone()).await.unwrap();
            // Another handle (another process, for the contract) cannot take it.
            assert!(
                second.try_lock(key.clone()).await.unwrap().is_none(),
                "{}: {key:?} taken twice across handles",
                b.name
            );
            // Nor another task of the same process.
            assert!(first.try_lock(key.clone()).await.unwrap().is_none());
            // A waiter gets it once the holder lets go.
            let waiter = {
                let second = second.clone();
                let key = key.clone();
                tokio::spawn(async move { second.lock(key).await.map(|_| ()) })
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!waiter.is_finished(), "{key:?}: the waiter did not wait");
            drop(held);
            tokio::time::timeout(Duration::from_secs(30), waiter)
                .await
                .expect("the waiter got the lock")
                .unwrap()
                .unwrap();
            assert!(
                free_soon(first.as_ref(), &key).await,
                "{}: {key:?} stayed locked after its release",
                b.name
            );
        }
        // Upload sessions: exclusive between tasks; different keys do not block each other.
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let held = first.lock(LockKey::Upload(one)).await.unwrap();
        assert!(
            first
                .try_lock(LockKey::Upload(one))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            first
                .try_lock(LockKey::Upload(two))
                .await
                .unwrap()
                .is_some()
        );
        if b.name == "postgres" {
            // Any replica may receive a session's next request: across processes too.
            assert!(
                second
                    .try_lock(LockKey::Upload(one))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        drop(held);
        assert!(free_soon(first.as_ref(), &LockKey::Upload(one)).await);
        second.close().await;
    }
}

#[tokio::test]
async fn a_snapshot_holds_everything_but_upload_sessions_and_opens_as_a_store() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("snap/app");
        let image = push_image(s, &r, "snap", &[tag("v1")]).await;
        s.create_upload(&session(&r)).await.unwrap();
        s.set_info("store_id", "the-id").await.unwrap();
        let mut sample = s.sample_blobs(10).await.unwrap();
        sample.sort_by_key(|(d, _)| d.to_string());
        let mut all = vec![
            blob("snap-config"),
            blob("snap-layer"),
            (image.digest.clone(), image.payload.len() as u64),
        ];
        // A snapshot lists its blobs in digest order.
        all.sort_by_key(|(d, _)| d.to_string());
        assert_eq!(sample, all, "{}", b.name);
        assert_eq!(s.sample_blobs(1).await.unwrap().len(), 1);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.db");
        std::fs::write(&path, b"an older file is replaced").unwrap();
        if b.name == "postgres" {
            // PostgreSQL is backed up with its own tools; Ferry says so.
            let err = s.snapshot_into(&path).await.unwrap_err().to_string();
            assert!(err.contains("pg_dump"), "{err}");
            continue;
        }
        let contents = s.snapshot_into(&path).await.unwrap();
        assert_eq!(contents.blobs, all, "{}", b.name);
        assert_eq!(
            (contents.repositories, contents.manifests, contents.tags),
            (1, 1, 1)
        );
        // Later changes are not in it.
        push_image(s, &r, "later", &[tag("v2")]).await;

        let copy = metadata::open(&DatabaseSettings::Sqlite { path })
            .await
            .unwrap();
        let got = copy.tagged_manifest(&r, &tag("v1")).await.unwrap().unwrap();
        assert_eq!(got.payload, image.payload);
        assert!(
            copy.tagged_manifest(&r, &tag("v2"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(copy.stale_uploads(now() + 10).await.unwrap().is_empty());
        assert_eq!(
            copy.info("store_id").await.unwrap().as_deref(),
            Some("the-id")
        );
        copy.close().await;
    }
}

#[tokio::test]
async fn cached_manifests_expire_by_their_ttl_from_the_last_pull() {
    for b in backends().await {
        let s = b.store.as_ref();
        let r = repo("mirror/app");
        let pushed = push_image(s, &r, "pushed", &[tag("pushed")]).await;
        // Cached (fetched by the mirror): its references need not be there.
        let cached = TestManifest::image("cached", &blob("c-config"), &[blob("c-layer")]);
        let forever = TestManifest::image("forever", &blob("f-config"), &[blob("f-layer")]);
        let tags = [tag("cached")];
        for (m, ttl_secs, tags) in [(&cached, Some(60), &tags[..]), (&forever, None, &[][..])] {
            let new = NewManifest {
                origin: ferry::metadata::Origin::Cached { ttl_secs },
                ..m.new_manifest(tags)
            };
            s.put_manifest(&r, &new).await.unwrap();
        }
        let t = now();
        assert!(
            s.expire_cached_manifests(t + 59, false)
                .await
                .unwrap()
                .is_empty()
        );
        // Dry run: listed, not deleted.
        let due = vec![(r.to_string(), cached.digest.to_string())];
        assert_eq!(
            s.expire_cached_manifests(t + 3600, true).await.unwrap(),
            due,
            "{}",
            b.name
        );
        // Pulls are recorded for cached manifests only; pushed ones never expire.
        s.touch_pulled(&r, &cached.digest).await.unwrap();
        s.touch_pulled(&r, &pushed.digest).await.unwrap();
        assert_eq!(
            s.expire_cached_manifests(t + 3600, false).await.unwrap(),
            due
        );
        assert!(s.manifest(&r, &cached.digest).await.unwrap().is_none());
        assert!(
            s.tagged_manifest(&r, &tag("cached"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.manifest(&r, &forever.digest).await.unwrap().is_some());
        assert!(s.manifest(&r, &pushed.digest).await.unwrap().is_some());
    }
}

/// Queues `(endpoint, repository, payload)` rows.
async fn enqueue(s: &dyn MetadataBackend, rows: &[(&str, &str, &str)]) {
    let events: Vec<metadata::NewEvent<'_>> = rows
        .iter()
        .map(|(endpoint, repository, payload)| metadata::NewEvent {
            endpoint,
            repository,
            payload,
        })
        .collect();
    s.enqueue_events(&events).await.unwrap();
}

fn lease<'a>(endpoint: &'a str, owner: &'a str, now_ms: i64) -> metadata::Lease<'a> {
    metadata::Lease {
        endpoint,
        owner,
        now_ms,
        until_ms: now_ms + 10_000,
    }
}

fn payloads(events: &[metadata::QueuedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.payload.as_str()).collect()
}

#[tokio::test]
async fn notification_events_are_claimed_in_order_acked_once_and_bounded() {
    for b in backends().await {
        let s = b.store.as_ref();
        let name = b.name;
        s.enqueue_events(&[]).await.unwrap();
        enqueue(
            s,
            &[
                ("hook", "a", "a1"),
                ("hook", "b", "b1"),
                ("hook", "a", "a2"),
                ("other", "a", "o1"),
            ],
        )
        .await;
        assert_eq!(s.queued_events("hook").await.unwrap(), 3, "{name}");
        // One owner takes the oldest, in queue order, within the limit.
        let first = s
            .claim_events(lease("hook", "one", 1_000), 2)
            .await
            .unwrap();
        assert_eq!(payloads(&first), ["a1", "b1"], "{name}");
        // Another owner gets nothing of repository `a` while `one` holds an older event of
        // it, and nothing `one` holds.
        let second = s
            .claim_events(lease("hook", "two", 1_000), 10)
            .await
            .unwrap();
        assert!(second.is_empty(), "{name}: {second:?}");
        // The holder renews its claim and takes the rest.
        let again = s
            .claim_events(lease("hook", "one", 2_000), 10)
            .await
            .unwrap();
        assert_eq!(payloads(&again), ["a1", "b1", "a2"], "{name}");
        // Acked by another owner: nothing; by the holder: gone, once.
        let ids: Vec<i64> = again.iter().map(|e| e.id).collect();
        assert_eq!(
            s.ack_events("hook", "two", &ids).await.unwrap(),
            0,
            "{name}"
        );
        assert_eq!(s.ack_events("hook", "one", &ids[..2]).await.unwrap(), 2);
        assert_eq!(s.ack_events("hook", "one", &ids[..2]).await.unwrap(), 0);
        assert_eq!(s.queued_events("hook").await.unwrap(), 1);
        // A lease that ended is free for another owner.
        let taken = s
            .claim_events(lease("hook", "two", 20_000), 10)
            .await
            .unwrap();
        assert_eq!(payloads(&taken), ["a2"], "{name}");
        // Released (shutdown): free at once.
        assert_eq!(s.release_events("two").await.unwrap(), 1);
        let free = s
            .claim_events(lease("hook", "three", 20_000), 10)
            .await
            .unwrap();
        assert_eq!(payloads(&free), ["a2"], "{name}");
        s.release_events("three").await.unwrap();
        // The other endpoint's queue is its own.
        let other = s
            .claim_events(lease("other", "one", 1_000), 10)
            .await
            .unwrap();
        assert_eq!(payloads(&other), ["o1"], "{name}");
        s.release_events("one").await.unwrap();

        // Bounded: the oldest beyond the limit go.
        enqueue(
            s,
            &[
                ("hook", "c", "c1"),
                ("hook", "c", "c2"),
                ("hook", "c", "c3"),
            ],
        )
        .await;
        assert_eq!(s.trim_events("hook", 2).await.unwrap(), 2, "{name}");
        assert_eq!(s.trim_events("hook", 2).await.unwrap(), 0, "{name}");
        let kept = s
            .claim_events(lease("hook", "one", 1_000), 10)
            .await
            .unwrap();
        assert_eq!(payloads(&kept), ["c2", "c3"], "{name}");
        s.release_events("one").await.unwrap();

        // Endpoints no longer configured lose their events.
        assert_eq!(s.drop_events_except(&["hook"]).await.unwrap(), 1, "{name}");
        assert_eq!(s.queued_events("other").await.unwrap(), 0);
        assert_eq!(s.queued_events("hook").await.unwrap(), 2);
        assert_eq!(s.drop_events_except(&[]).await.unwrap(), 2);
    }
}

#[tokio::test]
async fn concurrent_claims_never_share_an_event() {
    for b in backends().await {
        let s = b.store.clone();
        let rows: Vec<(String, String)> = (0..60)
            .map(|i| (format!("r{}", i % 6), format!("e{i}")))
            .collect();
        let borrowed: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|(r, p)| ("hook", r.as_str(), p.as_str()))
            .collect();
        enqueue(s.as_ref(), &borrowed).await;
        // Two handles (two replicas), four claimants, each acking what it got.
        let other = metadata::open(&(b.reopen)()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..4 {
            let store: Arc<dyn MetadataBackend> =
                if i % 2 == 0 { s.clone() } else { other.clone() };
            tasks.push(tokio::spawn(async move {
                let owner = format!("owner{i}");
                let mut got = Vec::new();
                for _ in 0..200 {
                    let claimed = store
                        .claim_events(lease("hook", &owner, 1_000), 4)
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        if store.queued_events("hook").await.unwrap() == 0 {
                            break;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
                    let acked = store.ack_events("hook", &owner, &ids).await.unwrap();
                    assert_eq!(acked as usize, ids.len());
                    got.extend(claimed.into_iter().map(|e| e.payload));
                }
                got
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort();
        let mut expected: Vec<String> = rows.iter().map(|(_, p)| p.clone()).collect();
        expected.sort();
        assert_eq!(all, expected, "{}: every event exactly once", b.name);
        other.close().await;
    }
}

/// The web UI's reads (`BrowseMetadata`): repositories with their tag counts and last push,
/// filtered by substring and paged byte-wise; tags with their manifests and the bytes they
/// reference (an index: its children's); a manifest's push time and tags; totals.
#[tokio::test]
async fn browse_pages_repositories_tags_manifests_and_totals() {
    for b in backends().await {
        let s = b.store.as_ref();
        let app = repo("team/app");
        let image = push_image(s, &app, "browse", &[tag("v1"), tag("latest")]).await;
        let other = push_image(s, &app, "browse-2", &[tag("v2")]).await;
        let index = TestManifest::index("browse-index", &[&image, &other]);
        s.put_manifest(&app, &index.new_manifest(&[tag("multi")]))
            .await
            .unwrap();
        for name in ["team/web", "tools/app-x", "zeta"] {
            s.link_blobs(&repo(name), &[blob(name)]).await.unwrap();
        }
        // Only an upload: not listed.
        s.create_upload(&session(&repo("team/uploading")))
            .await
            .unwrap();

        let all = s.browse_repositories("", None, 100).await.unwrap();
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["team/app", "team/web", "tools/app-x", "zeta"],
            "{}",
            b.name
        );
        assert_eq!(all[0].tags, 4, "{}", b.name);
        assert!(all[0].last_push.is_some_and(|t| t > 0));
        assert_eq!((all[1].tags, all[1].last_push), (0, None));
        // Substring, lower-cased query, byte-wise pages with an exclusive `last`.
        let found = s.browse_repositories("APP", None, 100).await.unwrap();
        let found: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(found, ["team/app", "tools/app-x"], "{}", b.name);
        let page = s
            .browse_repositories("", Some("team/app"), 2)
            .await
            .unwrap();
        let page: Vec<&str> = page.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(page, ["team/web", "tools/app-x"], "{}", b.name);
        assert!(
            s.browse_repositories("_", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.browse_repositories("%", None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let tags = s.browse_tags(&app, None, 100).await.unwrap();
        let tag_names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tag_names, ["latest", "multi", "v1", "v2"], "{}", b.name);
        let image_size = ("browse-config".len() + "browse-layer".len()) as u64;
        let other_size = ("browse-2-config".len() + "browse-2-layer".len()) as u64;
        assert_eq!(tags[0].digest, image.digest);
        assert_eq!(tags[0].content_size, image_size, "{}", b.name);
        assert_eq!(tags[0].payload, image.payload);
        assert_eq!(tags[1].digest, index.digest);
        assert_eq!(tags[1].content_size, image_size + other_size, "{}", b.name);
        assert!(tags[1].updated_at > 0);
        let page = s.browse_tags(&app, Some("multi"), 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].name, "v1");
        assert!(
            s.browse_tags(&repo("no/such"), None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let facts = s
            .manifest_facts(&app, &image.digest, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(facts.tags, ["latest", "v1"], "{}", b.name);
        assert!(facts.pushed_at > 0);
        let one = s
            .manifest_facts(&app, &image.digest, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one.tags, ["latest"]);
        assert!(
            s.manifest_facts(&repo("team/web"), &image.digest, 10)
                .await
                .unwrap()
                .is_none()
        );

        let totals = s.totals().await.unwrap();
        assert_eq!(totals.repositories, 4, "{}", b.name);
        assert_eq!(totals.manifests, 3);
        assert_eq!(totals.tags, 4);
        // Four image blobs, three linked ones, three manifests' bytes.
        assert_eq!(totals.blobs, 10, "{}", b.name);
        let expected_bytes = image_size
            + other_size
            + ["team/web", "tools/app-x", "zeta"]
                .iter()
                .map(|n| n.len() as u64)
                .sum::<u64>()
            + (image.payload.len() + other.payload.len() + index.payload.len()) as u64;
        assert_eq!(totals.blob_bytes, expected_bytes, "{}", b.name);
    }
}
