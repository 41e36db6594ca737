//! Prometheus metrics, served in the text exposition format (0.0.4) on the debug listener
//! (`http.debug.addr` with `http.debug.prometheus.enabled`; [`listener`]), never on the API
//! port.
//!
//! What is measured, and where:
//! - requests by route and status code, their duration and the bytes received and sent
//!   ([`http`]): recorded by the access-log layer (`http/logging.rs`) when a response body
//!   ends or is cut, the same moment its access line is written; the route is the typed
//!   endpoint `http::classify` found ([`Route`], a fixed set: never a repository name or a
//!   digest), and uploads whose body is being received;
//! - every call of the registry services into the blob store and the metadata store: its
//!   duration and failures per operation ([`stores`], thin wrappers put around the two
//!   stores by `server.rs`; the stores and the services know nothing of metrics);
//! - the pull-through mirror's counters (`mirror/stats.rs`) when a mirror is configured
//!   ([`mirror`]);
//! - the process: resident memory, CPU seconds, open files, start time ([`process`], read
//!   from `/proc` at each scrape).
//!
//! Label sets are fixed enums or `&'static str`, so the hot path allocates nothing; the
//! per-route series are created once, at start, and updated with atomics.

pub mod http;
pub mod listener;
mod mirror;
mod process;
pub mod stores;

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry as PromRegistry;

use self::http::HttpMetrics;
pub use self::http::Route;
use self::stores::{OperationMetrics, TimedBlobStore, TimedMetadataStore};
use crate::mirror::stats::Stats as MirrorStats;

/// Every metric of one server, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: PromRegistry,
    /// Requests (the access-log layer records them).
    pub http: HttpMetrics,
    storage: OperationMetrics,
    database: OperationMetrics,
    mirror: Arc<OnceLock<Arc<MirrorStats>>>,
}

/// `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

impl Metrics {
    /// Every metric, at zero.
    pub fn new() -> Self {
        let mut registry = PromRegistry::default();
        let http = HttpMetrics::register(&mut registry);
        let storage = OperationMetrics::register(
            &mut registry,
            "ferry_storage",
            "the blob store (filesystem or S3)",
        );
        let database = OperationMetrics::register(
            &mut registry,
            "ferry_database",
            "the metadata store (SQLite or PostgreSQL)",
        );
        let mirror = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(mirror::MirrorCollector(mirror.clone())));
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Metrics {
            registry,
            http,
            storage,
            database,
            mirror,
        }
    }

    /// `registry` with its stores wrapped in the timing wrappers of [`stores`] (the same
    /// stores and settings otherwise).
    pub fn instrument(
        &self,
        registry: &crate::registry::Registry,
        settings: crate::registry::Settings,
    ) -> crate::registry::Registry {
        crate::registry::Registry::new(
            Arc::new(TimedMetadataStore::new(
                registry.metadata().clone(),
                self.database.clone(),
            )),
            Arc::new(TimedBlobStore::new(
                registry.storage().clone(),
                self.storage.clone(),
            )),
            settings,
        )
    }

    /// Exposes the mirror's counters too (once; later calls are ignored).
    pub fn observe_mirror(&self, stats: Arc<MirrorStats>) {
        let _ = self.mirror.set(stats);
    }

    /// Every metric now, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
