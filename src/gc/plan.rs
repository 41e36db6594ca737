//! Deciding what is garbage, from a metadata snapshot. Pure: no I/O, so every rule is
//! unit-tested here.
//!
//! Rules (Distribution's, plus a grace window):
//! - Kept manifests: all of them; with `delete_untagged`, those reachable from a tag, a
//!   manifest pushed within the grace window, an index child of a kept manifest, or a
//!   referrer (by `subject`) of a kept manifest, recursively.
//! - A repository link goes when no kept manifest of the repository references the blob
//!   and neither the link nor the blob was used within the grace window.
//! - A blob goes when nothing keeps it: no remaining link, no reference from a kept
//!   manifest in any repository, not itself a kept manifest, not used within the window.
//! - A repository goes when it has no manifest, link or upload left.

use std::collections::{HashMap, HashSet};

use crate::metadata::collector::Snapshot;

/// What a collection removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(repository id, digest, size)` of manifests to delete.
    pub manifests: Vec<(i64, String, u64)>,
    /// `(repository id, digest)` of links to remove.
    pub links: Vec<(i64, String)>,
    /// `(digest, size)` of blobs to delete.
    pub blobs: Vec<(String, u64)>,
    /// `(id, name)` of repositories left empty.
    pub repositories: Vec<(i64, String)>,
}

/// Plans a collection. `cutoff`: Unix seconds; anything used at or after it is young.
pub fn plan(snapshot: &Snapshot, delete_untagged: bool, cutoff: i64) -> Plan {
    let mut removed_manifests: HashSet<(i64, &str)> = HashSet::new();
    if delete_untagged {
        removed_manifests = unreachable_manifests(snapshot, cutoff);
    }
    let kept = |repository: i64, digest: &str| !removed_manifests.contains(&(repository, digest));

    // Blobs referenced by kept manifests, per repository and overall.
    let mut referenced_in: HashSet<(i64, &str)> = HashSet::new();
    let mut referenced: HashSet<&str> = HashSet::new();
    for r in &snapshot.references {
        if r.kind != "manifest" && kept(r.repository, &r.manifest) {
            referenced_in.insert((r.repository, &r.child));
            referenced.insert(&r.child);
        }
    }
    for m in &snapshot.manifests {
        if kept(m.repository, &m.digest) {
            referenced.insert(&m.digest);
        }
    }
    let last_used: HashMap<&str, i64> = snapshot
        .blobs
        .iter()
        .map(|b| (b.digest.as_str(), b.last_used))
        .collect();
    let young_blob = |digest: &str| last_used.get(digest).is_some_and(|t| *t >= cutoff);

    let mut links = Vec::new();
    for link in &snapshot.links {
        let keep = referenced_in.contains(&(link.repository, link.digest.as_str()))
            || link.created_at >= cutoff
            || young_blob(&link.digest);
        if keep {
            referenced.insert(&link.digest);
        } else {
            links.push((link.repository, link.digest.clone()));
        }
    }
    let blobs = snapshot
        .blobs
        .iter()
        .filter(|b| !referenced.contains(b.digest.as_str()) && b.last_used < cutoff)
        .map(|b| (b.digest.clone(), b.size))
        .collect();

    let mut occupied: HashSet<i64> = HashSet::new();
    for m in &snapshot.manifests {
        if kept(m.repository, &m.digest) {
            occupied.insert(m.repository);
        }
    }
    let removed_links: HashSet<(i64, &str)> = links.iter().map(|(r, d)| (*r, d.as_str())).collect();
    for link in &snapshot.links {
        if !removed_links.contains(&(link.repository, link.digest.as_str())) {
            occupied.insert(link.repository);
        }
    }
    let uploading: HashSet<&str> = snapshot.uploading.iter().map(String::as_str).collect();
    let repositories = snapshot
        .repositories
        .iter()
        .filter(|(id, name)| !occupied.contains(id) && !uploading.contains(name.as_str()))
        .cloned()
        .collect();

    let manifests = snapshot
        .manifests
        .iter()
        .filter(|m| !kept(m.repository, &m.digest))
        .map(|m| (m.repository, m.digest.clone(), m.size))
        .collect();
    Plan {
        manifests,
        links,
        blobs,
        repositories,
    }
}

/// Manifests no tag, young manifest, index or subject keeps.
fn unreachable_manifests(snapshot: &Snapshot, cutoff: i64) -> HashSet<(i64, &str)> {
    let mut children: HashMap<(i64, &str), Vec<&str>> = HashMap::new();
    for r in &snapshot.references {
        if r.kind == "manifest" {
            children
                .entry((r.repository, &r.manifest))
                .or_default()
                .push(&r.child);
        }
    }
    let mut referrers: HashMap<(i64, &str), Vec<&str>> = HashMap::new();
    for m in &snapshot.manifests {
        if let Some(subject) = &m.subject {
            referrers
                .entry((m.repository, subject))
                .or_default()
                .push(&m.digest);
        }
    }
    let mut kept: HashSet<(i64, &str)> = HashSet::new();
    let mut work: Vec<(i64, &str)> = snapshot
        .tags
        .iter()
        .map(|(r, d)| (*r, d.as_str()))
        .collect();
    work.extend(
        snapshot
            .manifests
            .iter()
            .filter(|m| m.created_at >= cutoff)
            .map(|m| (m.repository, m.digest.as_str())),
    );
    while let Some(node) = work.pop() {
        if !kept.insert(node) {
            continue;
        }
        let (repository, _) = node;
        for next in children
            .get(&node)
            .into_iter()
            .chain(referrers.get(&node))
            .flatten()
        {
            work.push((repository, next));
        }
    }
    snapshot
        .manifests
        .iter()
        .map(|m| (m.repository, m.digest.as_str()))
        .filter(|node| !kept.contains(node))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::collector::{BlobRow, LinkRow, ManifestRow, ReferenceRow};

    const OLD: i64 = 100;
    const CUTOFF: i64 = 1000;

    struct Builder(Snapshot);

    impl Builder {
        fn new() -> Self {
            Builder(Snapshot {
                repositories: vec![(1, "app".into())],
                ..Default::default()
            })
        }
        fn blob(mut self, digest: &str, size: u64) -> Self {
            self.0.blobs.push(BlobRow {
                digest: digest.into(),
                size,
                last_used: OLD,
            });
            self.0.links.push(LinkRow {
                repository: 1,
                digest: digest.into(),
                created_at: OLD,
            });
            self
        }
        fn manifest(
            mut self,
            digest: &str,
            blobs: &[&str],
            children: &[&str],
            subject: Option<&str>,
        ) -> Self {
            self.0.manifests.push(ManifestRow {
                repository: 1,
                digest: digest.into(),
                size: 1,
                created_at: OLD,
                subject: subject.map(Into::into),
            });
            self.0.blobs.push(BlobRow {
                digest: digest.into(),
                size: 1,
                last_used: OLD,
            });
            for b in blobs {
                self.0.references.push(ReferenceRow {
                    repository: 1,
                    manifest: digest.into(),
                    child: (*b).into(),
                    kind: "layer".into(),
                });
            }
            for c in children {
                self.0.references.push(ReferenceRow {
                    repository: 1,
                    manifest: digest.into(),
                    child: (*c).into(),
                    kind: "manifest".into(),
                });
            }
            self
        }
        fn tag(mut self, digest: &str) -> Self {
            self.0.tags.push((1, digest.into()));
            self
        }
    }

    fn removed_manifests(p: &Plan) -> Vec<&str> {
        let mut v: Vec<&str> = p.manifests.iter().map(|(_, d, _)| d.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn unreferenced_blobs_go_shared_ones_stay() {
        let s = Builder::new()
            .blob("base", 10)
            .blob("a", 5)
            .blob("b", 7)
            .manifest("mb", &["base", "b"], &[], None)
            .tag("mb");
        // "a" was only in a manifest that is gone.
        let p = plan(&s.0, false, CUTOFF);
        assert_eq!(p.blobs, vec![("a".to_string(), 5)]);
        assert_eq!(p.links, vec![(1, "a".to_string())]);
        assert!(p.manifests.is_empty());
        assert!(p.repositories.is_empty());
    }

    #[test]
    fn tagged_index_keeps_untagged_children() {
        let s = Builder::new()
            .manifest("amd64", &[], &[], None)
            .manifest("arm64", &[], &[], None)
            .manifest("index", &[], &["amd64", "arm64"], None)
            .tag("index");
        assert!(plan(&s.0, true, CUTOFF).manifests.is_empty());
    }

    #[test]
    fn untagged_index_goes_with_children() {
        let s = Builder::new()
            .manifest("amd64", &[], &[], None)
            .manifest("arm64", &[], &[], None)
            .manifest("index", &[], &["amd64", "arm64"], None);
        let p = plan(&s.0, true, CUTOFF);
        assert_eq!(removed_manifests(&p), ["amd64", "arm64", "index"]);
        assert_eq!(p.repositories, vec![(1, "app".to_string())]);
        // Without --delete-untagged nothing of it goes.
        assert!(plan(&s.0, false, CUTOFF).manifests.is_empty());
    }

    #[test]
    fn referrers_follow_their_subject() {
        let s = Builder::new()
            .manifest("img", &[], &[], None)
            .manifest("sig", &[], &[], Some("img"))
            .tag("img");
        assert!(plan(&s.0, true, CUTOFF).manifests.is_empty());
        let s =
            Builder::new()
                .manifest("img", &[], &[], None)
                .manifest("sig", &[], &[], Some("img"));
        assert_eq!(removed_manifests(&plan(&s.0, true, CUTOFF)), ["img", "sig"]);
    }

    #[test]
    fn young_things_are_left_alone() {
        let mut s = Builder::new()
            .blob("fresh", 3)
            .manifest("new", &[], &[], None);
        s.0.blobs[0].last_used = CUTOFF + 1;
        s.0.manifests[0].created_at = CUTOFF + 1;
        let p = plan(&s.0, true, CUTOFF);
        assert!(
            p.blobs.is_empty() && p.manifests.is_empty() && p.links.is_empty(),
            "{p:?}"
        );
    }
}
