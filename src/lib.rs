//! # Ferry: a container image registry
//!
//! A drop-in replacement for the Docker registry (`registry:2`): the OCI Distribution
//! API v1.1 over Distribution's own on-disk layout, with metadata in SQL.
//!
//! ## Layout
//! - [`config`]: Distribution-compatible `config.yml` and `REGISTRY_*` overrides.
//! - [`http`]: where a request enters: the typed endpoint and request context (parsed
//!   once), one handler file per resource, the spec's error JSON, the access log.
//! - [`registry`]: the rules, independent of HTTP: blobs, uploads, manifests, listings,
//!   and the request context every operation is asked under.
//! - [`oci`]: names, tags, digests and manifest parsing; pure functions.
//! - [`metadata`]: the metadata-store trait, its lock contract, the `open` factory and the
//!   SQLite implementation.
//! - [`storage`]: the blob-store trait and its filesystem and S3 implementations.
//! - [`import`]: adopting a `registry:2` data directory in place.
//! - [`backup`]: `ferry backup`, a consistent copy of a serving registry.
//! - [`notify`]: notifications (webhooks) as Distribution sends them, queued in the
//!   metadata database and delivered in the background.
//! - [`gc`]: the garbage collector behind `ferry gc` (also the `ferry-gc` binary,
//!   `src/bin/ferry-gc.rs`, and `registry garbage-collect`).
//! - [`ui`]: the web UI under `/ui/` (server-rendered pages over the registry services).
//! - [`server`], [`shutdown`], [`telemetry`], [`healthcheck`]: running the service.
//!
//! ## Invariants
//! 1. Bytes before metadata: a blob or manifest row is written only after its bytes are
//!    durable under their final name; a crash in between leaves an unreferenced file.
//! 2. A manifest is stored only if everything it references is in its repository, checked
//!    in the same transaction as the insert.
//! 3. Deletes remove metadata only; bytes go only through the garbage collector.
//! 4. No state only in memory: an upload session (offset, hash state) lives in the
//!    metadata store and its bytes in storage, so it survives a restart.
//! 5. Content under a digest never changes; a tag move is one row update.

pub mod auth;
pub mod backup;
pub mod config;
pub mod gc;
pub mod healthcheck;
pub mod http;
pub mod import;
pub mod metadata;
pub mod metrics;
pub mod mirror;
pub mod notify;
pub mod oci;
pub mod otlp;
pub mod registry;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod ui;
