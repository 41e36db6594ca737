//! The pull-through mirror's counters (`mirror/stats.rs`), read at each scrape; nothing
//! when no mirror is configured.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::mirror::stats::Stats;

/// Renders the mirror's counters once [`super::Metrics::observe_mirror`] gave them.
#[derive(Debug)]
pub(super) struct MirrorCollector(pub Arc<OnceLock<Arc<Stats>>>);

impl Collector for MirrorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.get() else {
            return Ok(());
        };
        let now = stats.snapshot();
        for (name, help, value) in [
            (
                "ferry_mirror_hits",
                "Mirror requests answered from the cache",
                now.hits,
            ),
            (
                "ferry_mirror_misses",
                "Mirror requests that needed the upstream's content",
                now.misses,
            ),
            (
                "ferry_mirror_upstream_requests",
                "Requests sent to upstream registries (tokens and redirects included)",
                now.upstream_requests,
            ),
            (
                "ferry_mirror_upstream_errors",
                "Upstream requests that failed (no answer, 429, 5xx, refused)",
                now.upstream_errors,
            ),
            (
                "ferry_mirror_fetched_bytes",
                "Blob bytes received from upstream registries",
                now.bytes_fetched,
            ),
            (
                "ferry_mirror_stale_serves",
                "Cached content served because the upstream could not be asked",
                now.stale_serves,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
