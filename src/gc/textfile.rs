//! `ferry-gc --metrics-textfile FILE`: the last collection's outcome as Prometheus metrics
//! in a file, for node_exporter's textfile collector. The collector is a short-lived
//! process nobody scrapes, so it leaves its numbers where the node's exporter finds them.
//! The file is replaced whole (written under a temporary name beside it, then renamed), so
//! the exporter never reads half of one; the values are gauges of the last run.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::report::Report;

/// The file's text for a run that ended at `now`: its report, or `None` when it failed.
pub fn render(outcome: Option<&Report>, now: SystemTime) -> String {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    gauge(
        "ferry_gc_last_run_timestamp_seconds",
        "When the last garbage collection ended, in seconds since the epoch",
        &[("", seconds)],
    );
    gauge(
        "ferry_gc_last_run_success",
        "1 if the last garbage collection finished, 0 if it failed",
        &[("", if outcome.is_some() { 1.0 } else { 0.0 })],
    );
    let Some(report) = outcome else {
        return text;
    };
    gauge(
        "ferry_gc_last_run_dry_run",
        "1 if the last garbage collection was a dry run (nothing was removed)",
        &[("", if report.dry_run { 1.0 } else { 0.0 })],
    );
    gauge(
        "ferry_gc_last_run_duration_seconds",
        "Wall time of the last garbage collection",
        &[("", report.seconds)],
    );
    gauge(
        "ferry_gc_last_run_reclaimed_bytes",
        "Bytes of blob storage the last garbage collection gave back (would give, in a dry run)",
        &[("", report.bytes_reclaimed as f64)],
    );
    gauge(
        "ferry_gc_last_run_grace_kept_bytes",
        "Bytes of garbage the last collection kept because they were used within the grace window",
        &[("", report.grace_kept_bytes as f64)],
    );
    gauge(
        "ferry_gc_last_run_removed",
        "What the last garbage collection removed, by kind",
        &[
            ("{kind=\"blobs\"}", report.blobs_removed as f64),
            (
                "{kind=\"orphan_files\"}",
                report.orphan_files_removed as f64,
            ),
            ("{kind=\"links\"}", report.links_removed as f64),
            ("{kind=\"manifests\"}", report.manifests_removed as f64),
            (
                "{kind=\"expired_manifests\"}",
                report.expired_removed as f64,
            ),
            ("{kind=\"uploads\"}", report.uploads_removed as f64),
            (
                "{kind=\"repositories\"}",
                report.repositories_removed as f64,
            ),
        ],
    );
    text
}

/// Replaces `path` with [`render`]'s text.
pub fn write(path: &Path, outcome: Option<&Report>, now: SystemTime) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    // Not ending in `.prom`: the textfile collector skips it while it is written.
    let mut temporary = name.to_os_string();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(temporary);
    std::fs::write(&temporary, render(outcome, now))?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_and_a_failure() {
        let report = Report {
            blobs_removed: 3,
            bytes_reclaimed: 4096,
            seconds: 1.5,
            ..Report::default()
        };
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let text = render(Some(&report), now);
        for line in [
            "ferry_gc_last_run_timestamp_seconds 1700000000",
            "ferry_gc_last_run_success 1",
            "ferry_gc_last_run_reclaimed_bytes 4096",
            "ferry_gc_last_run_duration_seconds 1.5",
            "ferry_gc_last_run_removed{kind=\"blobs\"} 3",
            "# TYPE ferry_gc_last_run_removed gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        let failed = render(None, now);
        assert!(failed.lines().any(|l| l == "ferry_gc_last_run_success 0"));
        assert!(!failed.contains("reclaimed"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry_gc.prom");
        write(&path, Some(&report), now).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
