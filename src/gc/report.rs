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
    /// Wall time of the collection.
    pub seconds: f64,
    /// Digests of the removed blobs (and orphan files).
    pub blobs: Vec<String>,
    /// `repository@digest` of the removed manifests.
    pub manifests: Vec<String>,
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
        write!(f, "  time: {:.2}s", self.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
