//! `ferry serve`: opens the stores, starts the background maintenance, serves HTTP (or
//! HTTPS) until a shutdown signal, then drains in-flight requests within
//! `http.draintimeout`. The connections themselves (TLS, HTTP/1.1 and HTTP/2, limits,
//! draining) are [`connections`]'s; the TLS settings and certificate reloading [`tls`]'s.

mod connections;
pub mod identity;
mod idle_body;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, RootChoice, StorageSettings};
use crate::http::{self, AppState, headers::UrlBuilder};
use crate::import;
use crate::metadata::{self, MetadataBackend, MetadataError};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shutdown;
use crate::storage::filesystem::FilesystemStore;
use crate::storage::s3::S3Store;
use crate::storage::{BlobStore, StorageError};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory cannot be created or written.
    #[error(
        "data directory {path} is not usable (it must exist or be creatable, and be writable by this user): {source}"
    )]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The storage driver cannot be set up.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The metadata database cannot be opened.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The database indexes another storage than the configured one.
    #[error(
        "the metadata database {database} indexes {indexed}, but the configured storage is {configured}; refusing to serve metadata for blobs that are not there (fix storage settings or database.path)"
    )]
    StorageMismatch {
        /// Database file.
        database: String,
        /// Storage recorded in it.
        indexed: String,
        /// Storage configured now.
        configured: String,
    },
    /// The database indexes a store with another id than the configured storage's.
    #[error(
        "the metadata database {database} indexes the store {indexed} (last opened as {last_seen}), but the configured storage {configured} {}; refusing to serve metadata for blobs that are not there (fix the storage settings or database.path; if this really is that store and only its id file was lost, write {indexed} into docker/registry/v2/ferry-store-id under its root)",
        match found { Some(id) => format!("is the store {id}"), None => "has no store id (docker/registry/v2/ferry-store-id)".to_string() }
    )]
    StoreMismatch {
        /// Database file.
        database: String,
        /// Store id recorded in it.
        indexed: String,
        /// Where that store was last opened.
        last_seen: String,
        /// Storage configured now.
        configured: String,
        /// The configured storage's id, if it has one.
        found: Option<String>,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// HTTPS cannot be set up (`http.tls`).
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Access control cannot be set up (`auth`).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    /// The pull-through mirror cannot be set up (`proxy`).
    #[error(transparent)]
    Mirror(#[from] crate::mirror::MirrorSetupError),
    /// Adopting a Distribution data directory failed.
    #[error("importing the registry:2 data failed: {0}")]
    Import(String),
    /// The system's random source failed (making the token secret).
    #[error("the system's random number source failed")]
    Random,
    /// The trace export settings (`OTEL_*`) cannot be used.
    #[error("trace export: {0}")]
    Trace(#[from] crate::otlp::TraceSetupError),
    /// The trace exporter's HTTP client cannot be built.
    #[error(transparent)]
    TraceClient(#[from] crate::otlp::ClientError),
    /// The server loop failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the stores named by `config` and checks they belong together. The metadata store
/// is returned too, for the collector and for closing on shutdown.
pub async fn open_registry(
    config: &Config,
) -> Result<(Registry, Arc<dyn MetadataBackend>), ServeError> {
    let root = usable_data_dir(&config.root)?;
    let storage: Arc<dyn BlobStore> = match &config.storage {
        StorageSettings::Filesystem => Arc::new(FilesystemStore::new(&root)),
        StorageSettings::S3(settings) => Arc::new(S3Store::new((**settings).clone())?),
    };
    let metadata = metadata::open(&config.database).await?;
    identity::check(
        &config.database.to_string(),
        metadata.as_ref(),
        storage.as_ref(),
    )
    .await?;
    let registry = Registry::new(metadata.clone(), storage, config.registry.clone());
    Ok((registry, metadata))
}

/// The grace window of the web UI's garbage-collection estimate: `ferry-gc`'s default.
const UI_GC_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Key in `registry_info` of the secret that signs Ferry's own tokens.
const ISSUER_SECRET: &str = "token_secret";

/// The secret Ferry's own tokens are signed with: made once and kept with the metadata, so
/// every replica of one database shares it and tokens survive a restart.
async fn issuer_secret(metadata: &dyn MetadataBackend) -> Result<String, ServeError> {
    if let Some(secret) = metadata.info(ISSUER_SECRET).await? {
        return Ok(secret);
    }
    let secret =
        crate::auth::token::issuer::Issuer::new_secret().map_err(|_| ServeError::Random)?;
    // Replicas starting at once each make one; the first stored is everybody's.
    Ok(metadata.init_info(ISSUER_SECRET, &secret).await?)
}

/// Creates the local data directory if needed and checks it is writable; returns its
/// canonical path.
fn usable_data_dir(dir: &Path) -> Result<PathBuf, ServeError> {
    let unusable = |source| ServeError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(unusable)?;
    let root = std::fs::canonicalize(dir).map_err(unusable)?;
    // Say plainly when the directory is there but not ours to write (a root-owned
    // registry:2 volume under a non-root user), instead of a database error later.
    let probe = root.join(format!(".ferry-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|source| ServeError::DataDir {
        path: root.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(root)
}

/// Runs the registry until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Before anything is opened: bad certificate files stop the start at once.
    let tls = config.http.tls.as_ref().map(tls::acceptor).transpose()?;
    let trace_export = crate::otlp::TraceSettings::from_env(|name| std::env::var(name).ok())?;
    let mut auth = crate::auth::Authenticator::new(&config.auth)?;
    let (registry, metadata) = open_registry(&config).await?;
    // With metrics on, the services' calls into the stores are timed.
    let metrics = config
        .http
        .debug
        .as_ref()
        .and_then(|debug| debug.metrics_path.as_ref())
        .map(|_| Arc::new(Metrics::new()));
    let registry = match &metrics {
        Some(metrics) => metrics.instrument(&registry, config.registry.clone()),
        None => registry,
    };
    let notifier = crate::notify::Notifier::start(
        registry.metadata().clone(),
        &config.notifications,
        &config.http.addr,
    )
    .await?;
    let registry = match &notifier {
        Some(notifier) => registry.with_notifier(notifier.clone()),
        None => registry,
    };
    if auth.needs_issuer_secret() {
        let secret = issuer_secret(metadata.as_ref()).await?;
        auth.set_issuer_secret(secret.as_bytes());
        tracing::info!(
            "anonymous callers have rights: challenges name Ferry's own token endpoint, so the Docker engine pulls without a login"
        );
    }
    if config.auto_import {
        adopt_distribution_data(&registry).await?;
    }
    let storage = registry.storage().describe();
    if let Err(e) = registry.storage().probe().await {
        tracing::warn!(
            storage = %storage,
            error = %e,
            "storage does not answer; serving anyway (requests that need it fail with 503 until it does)"
        );
    }
    // Background tasks stop when the server does: they are cancelled at a point where
    // nothing is half done, and waited for before the database closes.
    let background = TaskTracker::new();
    let cancel = CancellationToken::new();
    if config.upload_purging.enabled {
        background.spawn(purge_uploads(
            registry.clone(),
            config.upload_purging.clone(),
            cancel.clone(),
        ));
    }
    if let Some(notifier) = &notifier {
        notifier.spawn_delivery(&background, cancel.clone());
    }
    let tracer = match trace_export {
        None => None,
        Some(settings) => {
            tracing::info!(
                url = %settings.url,
                service = %settings.service,
                "exporting a span per request (OpenTelemetry, OTLP/HTTP)"
            );
            let (tracer, exporting) = crate::otlp::Tracer::start(settings, cancel.clone())?;
            background.spawn(exporting);
            Some(tracer)
        }
    };
    let readiness = crate::registry::health::Readiness::of(&registry);
    let ui_storage = registry.storage().clone();
    let registry: crate::registry::SharedRegistry = match &config.proxy {
        None => Arc::new(registry),
        Some(settings) => {
            let mirror = crate::mirror::Mirror::new(registry, settings, mirror_staging(&config))?;
            if let Some(metrics) = &metrics {
                metrics.observe_mirror(mirror.stats());
            }
            background.spawn(
                mirror
                    .stats()
                    .log_periodically(MIRROR_STATS_INTERVAL, cancel.clone()),
            );
            tracing::info!(
                upstream = settings.default.as_ref().map_or("(none)", |u| u.url.as_str()),
                upstreams = ?settings.upstreams.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
                local = ?settings.local,
                tag_revalidate = ?settings.tag_revalidate,
                "serving as a pull-through mirror"
            );
            Arc::new(mirror)
        }
    };
    background.close();
    let browser = crate::registry::browse::Browser::new(metadata.clone(), ui_storage, UI_GC_GRACE);
    let state = Arc::new(AppState {
        registry,
        readiness,
        urls: UrlBuilder {
            host: config.http.host.clone(),
            relative: config.http.relative_urls,
            https: config.http.tls.is_some(),
        },
        auth,
    });
    let listener = TcpListener::bind(&config.http.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.http.addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    if let Some(listener_settings) = &config.http.debug {
        let bound = TcpListener::bind(&listener_settings.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: format!("{} (http.debug.addr)", listener_settings.addr),
                source,
            })?;
        let debug_addr = bound.local_addr()?;
        let metrics_path = listener_settings
            .metrics_path
            .as_deref()
            .unwrap_or("(none: http.debug.prometheus.enabled is false)");
        tracing::info!(
            addr = %debug_addr,
            metrics = metrics_path,
            "debug listener (plain HTTP) on {debug_addr}, metrics at {metrics_path}"
        );
        let served = metrics
            .clone()
            .zip(listener_settings.metrics_path.as_deref());
        background.spawn(crate::metrics::listener::serve(
            bound,
            crate::metrics::listener::router(served),
            cancel.clone(),
        ));
    }
    let why = match config.root_choice {
        RootChoice::Configured => "configured",
        RootChoice::Default => "default",
        RootChoice::Fallback => "fallback: /var/lib/registry is not writable",
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        addr = %local,
        data = %config.root.display(),
        storage = %storage,
        database = %config.database,
        config = %config.source.as_ref().map_or("embedded defaults".to_string(), |p| p.display().to_string()),
        deletes = config.registry.delete_enabled,
        tls = tls.is_some(),
        "Ferry listening on {local} ({}), blobs in {storage}, data directory {} ({why})",
        if tls.is_some() { "HTTPS" } else { "HTTP" },
        config.root.display(),
    );

    let mut router = match config.ui_enabled {
        true => {
            let deletes = config.registry.delete_enabled && !config.registry.read_only;
            http::router_with(state.clone(), crate::ui::router(state, browser, deletes))
        }
        false => http::router(state),
    };
    if let Some(metrics) = metrics {
        // The access-log layer finds them in each request's extensions.
        router = router.layer(axum::Extension(metrics));
    }
    if let Some(tracer) = tracer {
        // Likewise the trace exporter.
        router = router.layer(axum::Extension(tracer));
    }
    if notifier.is_some() {
        // Requests record the facts events report (nothing to build otherwise).
        router = router.layer(axum::Extension(crate::notify::Notifying));
    }
    let serving = connections::Serving {
        router,
        tls,
        limits: config.http.connections,
        drain: config.http.drain_timeout,
    };
    connections::serve(listener, serving, shutdown::signal()).await?;
    cancel.cancel();
    background.wait().await;
    metadata.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How often the mirror's counters are logged (when they changed).
const MIRROR_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the mirror stages downloads: beside the metadata database, which is always local
/// (the blob store may be S3).
fn mirror_staging(config: &Config) -> PathBuf {
    config
        .database_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("mirror-staging")
}

/// Imports a `registry:2` tree found in the store (data directory or bucket), once (before
/// serving). A store that cannot be read now is left for a later start (the collector
/// refuses to run until it is imported).
async fn adopt_distribution_data(registry: &Registry) -> Result<(), ServeError> {
    let (metadata, storage) = (registry.metadata().as_ref(), registry.storage().as_ref());
    match import::pending(metadata, storage).await {
        Ok(true) => {}
        Ok(false) => return Ok(()), // the usual start: nothing to import, no lock taken
        Err(import::ImportError::Storage(e)) => {
            tracing::warn!(error = %e, "could not look for registry:2 data to import: storage does not answer; not importing now");
            return Ok(());
        }
        Err(e) => return Err(ServeError::Import(e.to_string())),
    }
    let mut progress = |line: &str| tracing::info!("import: {line}");
    let report = match import::adopt(metadata, storage, &mut progress).await {
        Ok(Some(report)) => report,
        Ok(None) => return Ok(()),
        Err(e) => return Err(ServeError::Import(e.to_string())),
    };
    for skipped in &report.skipped {
        tracing::warn!("import: skipped: {skipped}");
    }
    tracing::info!(
        repositories = report.repositories,
        manifests = report.manifests,
        tags = report.tags,
        blobs = report.blobs,
        skipped = report.skipped.len(),
        "import finished"
    );
    Ok(())
}

/// Background task: discards upload sessions older than the purge age, every interval,
/// until `cancel` (a purge in progress finishes first).
async fn purge_uploads(
    registry: Registry,
    settings: crate::config::UploadPurging,
    cancel: CancellationToken,
) {
    let age = i64::try_from(settings.age.as_secs()).unwrap_or(i64::MAX);
    while !cancel.is_cancelled() {
        if settings.dry_run {
            match registry
                .metadata()
                .stale_uploads(crate::metadata::now() - age)
                .await
            {
                Ok(stale) => tracing::info!(
                    count = stale.len(),
                    "upload purge (dry run): would remove abandoned uploads"
                ),
                Err(e) => tracing::error!(error = %e, "upload purge failed"),
            }
        } else {
            match registry.purge_uploads(age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed abandoned uploads"),
                Err(e) => tracing::error!(error = %e, "upload purge failed"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}
