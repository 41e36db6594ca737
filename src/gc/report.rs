//! What a collection did (or, in a dry run, would do), for people and for machines.

use std::fmt;

use serde::Serialize;

/// The outcome of one collection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Manifests removed (only with `--delete-untagged`).
    pub manifests_removed: usize,
    /// Manifests the pull-through mirror cached, removed because their `proxy.ttl` passed.
    pub expired_removed: usize,
    /// Repository links removed.
    pub links_removed: usize,
    /// Blobs removed (rows and bytes).
    pub blobs_removed: usize,
    /// Blob files no metadata knew (left by a crash) removed.
    pub orphan_files_removed: usize,
    /// Abandoned upload sessions removed.
    pub uploads_removed: usize,
    /// Repositories left with nothing, removed (they are gone from `_catalog`).
    pub repositories_removed: usize,
    /// Bytes of blob storage given back.
    pub bytes_reclaimed: u64,
    /// Blobs that would have gone but were used within the grace window.
    pub grace_kept_blobs: usize,
    /// Their bytes.
    pub grace_kept_bytes: u64,
    /// The grace window, e.g. `1h`.
    pub grace: String,
    /// Wall time of the collection.
    pub seconds: f64,
    /// Digests of the removed blobs (and orphan files).
    pub blobs: Vec<String>,
    /// `repository@digest` of the removed manifests.
    pub manifests: Vec<String>,
    /// `repository@digest` of the expired cached manifests.
    pub expired: Vec<String>,
    /// Names of the removed repositories.
    pub repositories: Vec<String>,
}

/// Bytes in a human unit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        writeln!(f, "ferry-gc {verb}:")?;
        writeln!(f, "  manifests     {}", self.manifests_removed)?;
        if self.expired_removed > 0 {
            writeln!(
                f,
                "  expired       {} (cached, proxy.ttl)",
                self.expired_removed
            )?;
        }
        writeln!(
            f,
            "  blobs         {} (+{} orphan files)",
            self.blobs_removed, self.orphan_files_removed
        )?;
        writeln!(f, "  links         {}", self.links_removed)?;
        writeln!(f, "  uploads       {}", self.uploads_removed)?;
        writeln!(f, "  repositories  {}", self.repositories_removed)?;
        let space = if self.dry_run {
            "space to reclaim"
        } else {
            "space reclaimed"
        };
        writeln!(
            f,
            "  {space}: {} ({} bytes)",
            human_bytes(self.bytes_reclaimed),
            self.bytes_reclaimed
        )?;
        if self.grace_kept_blobs > 0 {
            writeln!(
                f,
                "  kept: {} blobs, {}, used within the grace window of {}; run again later or with --grace 0s",
                self.grace_kept_blobs,
                human_bytes(self.grace_kept_bytes),
                self.grace
            )?;
        }
        write!(f, "  time: {:.2}s", self.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_the_grace_window_kept() {
        let report = Report {
            grace_kept_blobs: 3,
            grace_kept_bytes: 9 * 1024 * 1024 + 100 * 1024,
            grace: "1h".into(),
            ..Report::default()
        };
        let text = report.to_string();
        assert!(text.contains("space reclaimed: 0 B"), "{text}");
        assert!(
            text.contains(
                "kept: 3 blobs, 9.1 MiB, used within the grace window of 1h; run again later or with --grace 0s"
            ),
            "{text}"
        );
        assert!(!Report::default().to_string().contains("kept:"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
