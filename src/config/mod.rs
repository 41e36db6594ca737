//! Configuration, compatible with Distribution's `config.yml` and its `REGISTRY_*`
//! environment overrides (`REGISTRY_STORAGE_DELETE_ENABLED=true` sets
//! `storage.delete.enabled`). Ferry's own settings live under `database`, `connections` and
//! `uploads` (no Distribution key uses those names).
//!
//! Loading reads the file, writes the overrides into its tree ([`tree`]), reads the tree
//! into typed sections ([`file`]; a value of the wrong type stops the start with a message
//! naming the key), and judges every key those sections do not have ([`unsupported`]): a
//! key whose absence would weaken security or change what the registry is (`auth`,
//! `http.tls.letsencrypt`, `proxy`, ...) stops the start; any other one is ignored with a
//! warning.
//! Loading has no side effects: directories are created when the stores are opened.

mod file;
mod notifications;
mod tree;
mod unsupported;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use crate::auth::rules::RuleSpec;
use crate::auth::token::TokenSettings;
use crate::auth::{AuthSettings, Controller};
use crate::metadata::DatabaseSettings;
use crate::metadata::postgres::PostgresSettings;
use crate::mirror::{MirrorSettings, UpstreamSettings};
use crate::registry::Settings;
use crate::storage::s3::{Encryption, MAX_PART_SIZE, MIN_PART_SIZE, S3Settings};
use file::{Bytes, Count, File, Flag, GoDuration, Text, TextList};
use tree::Tree;
use unsupported::Verdict;
pub use unsupported::{Refusal, Refuse, UNSUPPORTED, Unsupported};

/// The data directory `registry:2` uses, and so Ferry's default.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";
/// Where data goes when [`DEFAULT_ROOT`] is not writable and nothing is configured.
pub const FALLBACK_ROOT: &str = "./ferry-data";

/// Keys Ferry implements, with a line of documentation each: the fields of the typed
/// sections in `file.rs`, which a unit test holds to this list. Keys Ferry knows but does
/// not implement are in [`UNSUPPORTED`].
pub const SUPPORTED_KEYS: &[(&str, &str)] = &[
    ("version", "configuration format version, 0.1"),
    ("log.level", "error, warn, info or debug (default info)"),
    ("log.formatter", "text, json or logstash (default text)"),
    (
        "log.accesslog.disabled",
        "true: no access-log line per request (default false)",
    ),
    (
        "storage.filesystem.rootdirectory",
        "data directory (default /var/lib/registry, else ./ferry-data)",
    ),
    (
        "storage.s3.bucket",
        "S3 bucket; selects the S3 driver instead of the filesystem",
    ),
    (
        "storage.s3.region",
        "S3 region (default us-east-1, or AWS_REGION)",
    ),
    (
        "storage.s3.regionendpoint",
        "S3-compatible endpoint, e.g. http://minio:9000 (default: AWS)",
    ),
    (
        "storage.s3.accesskey",
        "access key id (default: AWS_ACCESS_KEY_ID and the usual AWS sources)",
    ),
    (
        "storage.s3.secretkey",
        "secret access key (default: AWS_SECRET_ACCESS_KEY and the usual AWS sources)",
    ),
    (
        "storage.s3.forcepathstyle",
        "address the bucket as endpoint/bucket instead of bucket.endpoint (default false)",
    ),
    (
        "storage.s3.secure",
        "HTTPS when regionendpoint names no scheme (default true)",
    ),
    (
        "storage.s3.rootdirectory",
        "key prefix inside the bucket (default none)",
    ),
    (
        "storage.s3.chunksize",
        "bytes per multipart upload part, at least 5242880 (default 5242880)",
    ),
    (
        "storage.s3.multipartcopychunksize",
        "bytes per part when copying a blob to its final key (default 33554432)",
    ),
    (
        "storage.s3.multipartcopymaxconcurrency",
        "part copies at once (default 100)",
    ),
    (
        "storage.s3.multipartcopythresholdsize",
        "blobs larger than this are copied in parts (default 33554432)",
    ),
    (
        "storage.s3.encrypt",
        "server-side encryption of every object Ferry writes: SSE-S3 (AES256), or SSE-KMS with storage.s3.keyid (default false)",
    ),
    (
        "storage.s3.keyid",
        "the KMS key for storage.s3.encrypt (ignored without it, as in Distribution)",
    ),
    (
        "storage.redirect.disable",
        "S3: serve blobs through Ferry (default true); false answers GET with a 307 to a presigned URL",
    ),
    (
        "storage.delete.enabled",
        "allow DELETE of blobs, manifests and tags (default false)",
    ),
    (
        "storage.maintenance.uploadpurging.enabled",
        "purge abandoned uploads (default true)",
    ),
    (
        "storage.maintenance.uploadpurging.age",
        "purge uploads older than this (default 168h)",
    ),
    (
        "storage.maintenance.uploadpurging.interval",
        "how often to purge (default 24h)",
    ),
    (
        "storage.maintenance.uploadpurging.dryrun",
        "only log what would be purged (default false)",
    ),
    (
        "storage.maintenance.readonly.enabled",
        "refuse all writes (default false)",
    ),
    (
        "http.addr",
        "listen address (default :5000, all interfaces)",
    ),
    (
        "http.host",
        "external base URL for Location headers, e.g. https://registry.example.com",
    ),
    (
        "http.relativeurls",
        "answer Location headers with paths only (default false)",
    ),
    (
        "http.draintimeout",
        "how long in-flight requests may run after SIGTERM (default 10s)",
    ),
    (
        "http.tls.certificate",
        "PEM certificate chain, server certificate first: with http.tls.key Ferry serves HTTPS (re-read when the file changes)",
    ),
    (
        "http.tls.key",
        "PEM private key of http.tls.certificate (re-read when the file changes)",
    ),
    (
        "http.tls.clientcas",
        "PEM files of CAs: a client without a certificate signed by one of them is refused at the TLS handshake (mutual TLS)",
    ),
    ("http.tls.minimumtls", "tls1.2 (default) or tls1.3"),
    (
        "http.debug.addr",
        "address of the debug listener, plain HTTP, e.g. localhost:5001 (default: none started)",
    ),
    (
        "http.debug.prometheus.enabled",
        "serve Prometheus metrics on the debug listener (default false)",
    ),
    (
        "http.debug.prometheus.path",
        "path of the metrics on the debug listener (default /metrics)",
    ),
    (
        "auth.htpasswd.realm",
        "realm of the Basic challenge (WWW-Authenticate), e.g. the registry's name",
    ),
    (
        "auth.htpasswd.path",
        "htpasswd file of bcrypt entries (htpasswd -B); must exist; re-read when it changes",
    ),
    (
        "auth.token.realm",
        "URL of the token server, for the Bearer challenge",
    ),
    (
        "auth.token.service",
        "this registry's name: the audience tokens must carry, and the challenge's service",
    ),
    ("auth.token.issuer", "the issuer (iss) tokens must name"),
    (
        "auth.token.rootcertbundle",
        "PEM certificates of the token signers (roots of x5c chains; their keys are trusted for kid and jwk)",
    ),
    (
        "auth.token.jwks",
        "JSON Web Key Set file of more trusted keys",
    ),
    (
        "auth.token.autoredirect",
        "accepted and ignored: the realm is always auth.token.realm",
    ),
    (
        "auth.token.signingalgorithms",
        "allowed token algorithms (default: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)",
    ),
    (
        "auth.access",
        "Ferry's own: access rules (repositories, users, anonymous, actions); see \"Secure it\"",
    ),
    (
        "connections.headertimeout",
        "Ferry's own: most time for a client's TLS handshake, for a request's headers, and between requests on an open connection (default 30s; 0: no limit)",
    ),
    (
        "connections.bodytimeout",
        "Ferry's own: a request body that sends nothing for this long fails and its connection closes; the upload can be resumed (default 60s; 0: no limit)",
    ),
    (
        "ui.enabled",
        "Ferry's own: the web UI at / (pages under /ui/; default true; off with auth.token)",
    ),
    (
        "uploads.maxblobsize",
        "Ferry's own: the largest blob a push may upload, in bytes; a larger one is refused with 413 SIZE_INVALID (default 0: no limit)",
    ),
    (
        "proxy.remoteurl",
        "pull-through mirror: the upstream registry (e.g. https://registry-1.docker.io; docker.io means that too); unmatched names are fetched from it",
    ),
    (
        "proxy.username",
        "user for the upstream of proxy.remoteurl (token or basic auth; default anonymous)",
    ),
    (
        "proxy.password",
        "password for proxy.username (never logged)",
    ),
    (
        "proxy.ttl",
        "cached content not pulled for this long is removed by ferry-gc (default 168h; 0: kept until deleted)",
    ),
    (
        "proxy.tagrevalidate",
        "Ferry's own: a cached tag is served without asking the upstream for this long, then revalidated with one HEAD (default 5m; 0: every pull)",
    ),
    (
        "proxy.local",
        "Ferry's own: repository patterns (`*`, `**`) that are ordinary local repositories beside the mirror (pushes allowed)",
    ),
    (
        "proxy.upstreams",
        "Ferry's own: more upstreams by registry host, each {remoteurl, username, password, ttl}; chosen by ?ns=<host> or a leading <host>/ in the name",
    ),
    (
        "notifications.endpoints",
        "webhooks: a list of {name, disabled, url, headers, timeout (default 1s), threshold (default 10), backoff (default 1s), ignoredmediatypes, ignore: {mediatypes, actions}}; events are queued in the metadata database and POSTed in order",
    ),
    (
        "notifications.events.includereferences",
        "manifest events list the manifest's references (config, layers, index entries) in target.references (default false)",
    ),
    (
        "notifications.queuelimit",
        "Ferry's own: the most events queued per endpoint; the oldest beyond it are dropped with a warning (default 100000)",
    ),
    (
        "catalog.maxentries",
        "most repositories per _catalog page (default 1000)",
    ),
    (
        "tags.maxtags",
        "most tags per tags/list page (default 1000)",
    ),
    (
        "health.storagedriver.enabled",
        "accepted for Distribution's configs; GET /health/ready checks the store on every request instead",
    ),
    (
        "health.storagedriver.interval",
        "accepted; no background check runs (see health.storagedriver.enabled)",
    ),
    (
        "health.storagedriver.threshold",
        "accepted; no background check runs (see health.storagedriver.enabled)",
    ),
    (
        "database.path",
        "Ferry's SQLite metadata file (default <data directory>/ferry/metadata.db; with S3 the data directory is /var/lib/registry, else ./ferry-data)",
    ),
    (
        "database.url",
        "PostgreSQL metadata for several replicas: postgres://user:password@host:5432/db[?sslmode=require] (instead of database.path)",
    ),
    (
        "database.maxconnections",
        "PostgreSQL connections per pool (writers, readers, lock holders) per replica (default 10)",
    ),
    (
        "database.autoimport",
        "at startup, adopt a registry:2 data directory found in storage (default true)",
    ),
];

/// A configuration problem that stops the start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("configuration file {path} is not valid YAML: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_norway::Error,
    },
    /// A key holds a value of the wrong kind.
    #[error("invalid configuration value for {key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `storage.delete.enabled`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Keys ask for something Ferry does not do yet, and running without it would weaken
    /// security or change what the registry is.
    #[error("{0}")]
    Unsupported(Refusals),
}

/// The keys that stop the start (at least one).
#[derive(Debug)]
pub struct Refusals(pub Vec<Refusal>);

impl std::fmt::Display for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys refused for the same reason (`http.tls.letsencrypt.email` and
        // `http.tls.letsencrypt.hosts`) are named together.
        let mut groups: Vec<(Vec<String>, &str)> = Vec::new();
        for refusal in &self.0 {
            let mut key = refusal.key.clone();
            if let Some(var) = &refusal.from_env {
                key.push_str(&format!(" (set by {var})"));
            }
            match groups.iter_mut().find(|(_, why)| *why == refusal.why) {
                Some((keys, _)) => keys.push(key),
                None => groups.push((vec![key], refusal.why)),
            }
        }
        match groups.as_slice() {
            [(keys, why)] if keys.len() == 1 => write!(
                f,
                "configuration key {} is not supported yet: {why}; refusing to start rather than run without it",
                keys[0]
            ),
            [(keys, why)] => write!(
                f,
                "configuration keys {} are not supported yet: {why}; refusing to start rather than run without them",
                keys.join(", ")
            ),
            groups => {
                write!(
                    f,
                    "configuration keys not supported yet (refusing to start rather than run without them):"
                )?;
                groups
                    .iter()
                    .try_for_each(|(keys, why)| write!(f, "\n  {}: {why}", keys.join(", ")))
            }
        }
    }
}

/// Why the data directory is where it is (said in the startup log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootChoice {
    /// Set by `storage.filesystem.rootdirectory` or its environment override.
    Configured,
    /// The default, `/var/lib/registry`, which is writable.
    Default,
    /// `./ferry-data`, because `/var/lib/registry` is not writable.
    Fallback,
}

/// Log output settings.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// `error`, `warn`, `info` or `debug`.
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
    /// `log.accesslog.disabled: true`: no line per request.
    pub access_log: bool,
}

/// HTTP server settings.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Address to listen on, e.g. `0.0.0.0:5000`.
    pub addr: String,
    /// `http.host`.
    pub host: Option<String>,
    /// `http.relativeurls`.
    pub relative_urls: bool,
    /// `http.draintimeout`.
    pub drain_timeout: Duration,
    /// `http.tls`: HTTPS when set.
    pub tls: Option<TlsSettings>,
    /// `connections`: how long a client may keep a connection without sending.
    pub connections: ConnectionSettings,
    /// `http.debug`: the debug listener, when `http.debug.addr` is set.
    pub debug: Option<DebugSettings>,
}

/// `http.debug`: a second listener, plain HTTP, for operators only (Prometheus metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugSettings {
    /// `http.debug.addr`, `host:port` (`:5001` is every interface).
    pub addr: String,
    /// `http.debug.prometheus.path` when `http.debug.prometheus.enabled`; `None`: the
    /// listener serves nothing (404).
    pub metrics_path: Option<String>,
}

/// `http.tls`: the files are read when the server starts (and the certificate and key again
/// whenever they change), not when the configuration is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `http.tls.certificate`: PEM certificate chain.
    pub certificate: PathBuf,
    /// `http.tls.key`: PEM private key.
    pub key: PathBuf,
    /// `http.tls.clientcas`: PEM CA files; not empty: clients must present a certificate
    /// signed by one of them.
    pub client_cas: Vec<PathBuf>,
    /// `http.tls.minimumtls`.
    pub minimum_version: TlsVersion,
}

/// The oldest TLS version accepted (rustls implements 1.2 and 1.3 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// `tls1.2`: TLS 1.2 and 1.3.
    Tls12,
    /// `tls1.3`: TLS 1.3 only.
    Tls13,
}

/// `connections` (Ferry's own): how long a client may hold a connection without sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// TLS handshake, a request's headers, the wait for the next request (`None`: no limit).
    pub header_timeout: Option<Duration>,
    /// Silence in the middle of a request body (`None`: no limit).
    pub body_timeout: Option<Duration>,
}

/// `storage.maintenance.uploadpurging`.
#[derive(Clone, Debug)]
pub struct UploadPurging {
    /// Whether the server purges at all.
    pub enabled: bool,
    /// Sessions older than this go.
    pub age: Duration,
    /// How often to look.
    pub interval: Duration,
    /// Log only.
    pub dry_run: bool,
}

/// The storage driver and its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageSettings {
    /// `storage.filesystem`: blobs under [`Config::root`].
    Filesystem,
    /// `storage.s3` (boxed: the settings are large, and configs are built once).
    S3(Box<S3Settings>),
}

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// Logging.
    pub log: LogSettings,
    /// Where blobs live.
    pub storage: StorageSettings,
    /// Local data directory: the blobs with the filesystem driver, and the default home of
    /// the metadata database.
    pub root: PathBuf,
    /// Why that directory.
    pub root_choice: RootChoice,
    /// SQLite metadata file, also the home of local working files (the mirror's staging)
    /// with PostgreSQL.
    pub database_path: PathBuf,
    /// The metadata database: SQLite at `database_path`, or PostgreSQL.
    pub database: DatabaseSettings,
    /// Import a Distribution tree found in storage at startup.
    pub auto_import: bool,
    /// HTTP server.
    pub http: HttpSettings,
    /// Registry behaviour.
    pub registry: Settings,
    /// Upload purging.
    pub upload_purging: UploadPurging,
    /// Access control (`auth`).
    pub auth: AuthSettings,
    /// The pull-through mirror (`proxy`), when configured.
    pub proxy: Option<MirrorSettings>,
    /// Webhooks (`notifications`).
    pub notifications: crate::notify::NotificationSettings,
    /// `ui.enabled` (Ferry's own): serve the web UI.
    pub ui_enabled: bool,
    /// Warnings to log once logging is set up (unknown keys and the like).
    pub warnings: Vec<String>,
}

/// `proxy.ttl` when unset: Distribution's default.
const DEFAULT_PROXY_TTL: Duration = Duration::from_secs(168 * 3600);

/// Parses Go-style durations as Distribution writes them (`168h`, `1h30m`, `30s`, `500ms`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(s).ok()
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

impl Config {
    /// Loads the first of `candidates` that exists (none given: embedded defaults), so a
    /// container can prefer a mounted Distribution config over its baked-in one.
    pub fn load_first(
        candidates: &[PathBuf],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        match candidates {
            [] => Self::load(None, env),
            [only] => Self::load(Some(only), env),
            _ => match candidates.iter().find(|p| p.exists()) {
                Some(path) => Self::load(Some(path), env),
                None => Err(ConfigError::Read {
                    path: candidates[0].clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "none of the configuration files exists",
                    ),
                }),
            },
        }
    }

    /// Loads the configuration from an optional file plus `REGISTRY_*` variables from `env`.
    /// Reads only: nothing is created or written.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let value = match path {
            None => Value::Mapping(Mapping::new()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                match serde_norway::from_str::<Value>(&text) {
                    Ok(Value::Null) => Value::Mapping(Mapping::new()),
                    Ok(v @ Value::Mapping(_)) => v,
                    Ok(_) => return Err(invalid("(top level)", "expected a mapping of keys")),
                    Err(source) => {
                        return Err(ConfigError::Yaml {
                            path: path.to_path_buf(),
                            source,
                        });
                    }
                }
            }
        };
        let mut tree = Tree::new(value);
        tree.apply_env(env);
        Self::from_tree(&tree, path).map_err(|e| match e {
            ConfigError::Invalid { key, message } => {
                let message = match tree.set_by(&key) {
                    Some(var) => format!("{message} (set by {var})"),
                    None => message,
                };
                ConfigError::Invalid { key, message }
            }
            other => other,
        })
    }

    fn from_tree(tree: &Tree, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut ignored = Vec::new();
        let file: File = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
            &tree.value,
            &mut |p: serde_ignored::Path<'_>| ignored.push(segments(&p)),
        ))
        .map_err(|e| {
            let key = e.path().to_string();
            invalid(
                if key == "." { "(top level)" } else { &key },
                e.into_inner().to_string(),
            )
        })?;
        let mut verdict = Verdict::default();
        for key in &ignored {
            verdict.judge(tree, key);
        }
        if !verdict.refusals.is_empty() {
            return Err(ConfigError::Unsupported(Refusals(verdict.refusals)));
        }
        Self::from_file(file, tree, path, verdict.warnings)
    }

    fn from_file(
        file: File,
        tree: &Tree,
        path: Option<&Path>,
        mut warnings: Vec<String>,
    ) -> Result<Config, ConfigError> {
        if let Some(Text(version)) = file.version
            && version != "0.1"
        {
            warnings.push(format!(
                "configuration version {version:?} is not 0.1; reading it as 0.1"
            ));
        }
        let level = file
            .log
            .level
            .map_or_else(|| "info".to_string(), |Text(l)| l.to_ascii_lowercase());
        let level = match level.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => level,
            "panic" | "fatal" => "error".to_string(),
            "warning" => "warn".to_string(),
            other => {
                return Err(invalid(
                    "log.level",
                    format!("expected error, warn, info or debug, got {other:?}"),
                ));
            }
        };
        let json = match file.log.formatter.as_ref().map(|Text(f)| f.as_str()) {
            None | Some("text") => false,
            Some("json" | "logstash") => true,
            Some(other) => {
                return Err(invalid(
                    "log.formatter",
                    format!("expected text, json or logstash, got {other:?}"),
                ));
            }
        };

        let storage = Self::storage(&file.storage, tree, &mut warnings)?;
        let rootdirectory = file.storage.filesystem.rootdirectory.map(|Text(d)| d);
        if storage != StorageSettings::Filesystem && rootdirectory.is_some() {
            return Err(invalid(
                "storage",
                "both storage.filesystem and storage.s3 are configured; choose one",
            ));
        }
        let postgres = Self::postgres(&file.database)?;
        let database = file
            .database
            .path
            .map(|Text(p)| p)
            .filter(|p| !p.is_empty());
        if postgres.is_some() && database.is_some() {
            return Err(invalid(
                "database",
                "both database.path (SQLite) and database.url (PostgreSQL) are set; choose one",
            ));
        }
        // With S3 the local directory only holds the database: where that is configured,
        // its directory is the data directory (no default directory is needed).
        let database_dir = database
            .as_deref()
            .filter(|_| storage != StorageSettings::Filesystem)
            .map(|p| match Path::new(p).parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            });
        let (root, root_choice) = match (rootdirectory, database_dir) {
            (Some(dir), _) if !dir.is_empty() => (PathBuf::from(dir), RootChoice::Configured),
            (Some(_), _) => {
                return Err(invalid(
                    "storage.filesystem.rootdirectory",
                    "must not be empty",
                ));
            }
            (None, Some(dir)) => (dir, RootChoice::Configured),
            (None, None) if could_write(Path::new(DEFAULT_ROOT)) => {
                (PathBuf::from(DEFAULT_ROOT), RootChoice::Default)
            }
            (None, None) => (PathBuf::from(FALLBACK_ROOT), RootChoice::Fallback),
        };
        let database_path = match database {
            Some(p) => PathBuf::from(p),
            None => root.join("ferry").join("metadata.db"),
        };
        let database = match postgres {
            Some(settings) => DatabaseSettings::Postgres(settings),
            None => DatabaseSettings::Sqlite {
                path: database_path.clone(),
            },
        };

        let addr = file
            .http
            .addr
            .map_or_else(|| ":5000".to_string(), |Text(a)| a);
        let addr = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr
        };
        if !addr.contains(':') {
            return Err(invalid(
                "http.addr",
                format!("expected host:port, got {addr:?}"),
            ));
        }
        let host = file.http.host.map(|Text(h)| h).filter(|h| !h.is_empty());
        if let Some(h) = &host
            && !(h.starts_with("http://") || h.starts_with("https://"))
        {
            return Err(invalid(
                "http.host",
                format!("expected an absolute URL such as https://registry.example.com, got {h:?}"),
            ));
        }
        let tls = Self::tls(&file.http.tls, &mut warnings)?;
        let debug = Self::debug(&file.http.debug, &mut warnings)?;
        let auth = Self::auth(&file.auth)?;
        let proxy = Self::proxy(&file.proxy)?;
        let notifications = notifications::settings(&file.notifications)?;
        // Go's convention: a zero duration is no limit.
        let limit = |value, default| Some(duration(value, default)).filter(|d| !d.is_zero());
        let http = HttpSettings {
            addr,
            host,
            relative_urls: flag(file.http.relativeurls, false),
            drain_timeout: duration(file.http.draintimeout, Duration::from_secs(10)),
            tls,
            connections: ConnectionSettings {
                header_timeout: limit(file.connections.headertimeout, Duration::from_secs(30)),
                body_timeout: limit(file.connections.bodytimeout, Duration::from_secs(60)),
            },
            debug,
        };
        let registry = Settings {
            delete_enabled: flag(file.storage.delete.enabled, false),
            read_only: flag(file.storage.maintenance.readonly.enabled, false),
            catalog_max_entries: file.catalog.maxentries.map_or(1000, |Count(n)| n),
            tags_max: file.tags.maxtags.map_or(1000, |Count(n)| n),
            max_blob_size: file
                .uploads
                .maxblobsize
                .and_then(|Bytes(n)| (n > 0).then_some(n)),
        };
        let purging = &file.storage.maintenance.uploadpurging;
        let upload_purging = UploadPurging {
            enabled: flag(purging.enabled, true),
            age: duration(purging.age, Duration::from_secs(168 * 3600)),
            interval: duration(purging.interval, Duration::from_secs(24 * 3600)),
            dry_run: flag(purging.dryrun, false),
        };
        if upload_purging.enabled && upload_purging.interval.is_zero() {
            return Err(invalid(
                "storage.maintenance.uploadpurging.interval",
                "must be more than 0",
            ));
        }
        Ok(Config {
            source: path.map(Path::to_path_buf),
            log: LogSettings {
                level,
                json,
                access_log: !flag(file.log.accesslog.disabled, false),
            },
            storage,
            root,
            root_choice,
            database_path,
            database,
            auto_import: flag(file.database.autoimport, true),
            http,
            registry,
            upload_purging,
            auth,
            proxy,
            notifications,
            ui_enabled: flag(file.ui.enabled, true),
            warnings,
        })
    }

    /// `http.debug`: the debug listener's address and what it serves.
    fn debug(
        section: &file::DebugListener,
        warnings: &mut Vec<String>,
    ) -> Result<Option<DebugSettings>, ConfigError> {
        let enabled = flag(section.prometheus.enabled, false);
        let path = match &section.prometheus.path {
            None => "/metrics".to_string(),
            // A plain path: no captures or wildcards for the router to read into it.
            Some(Text(p))
                if p.starts_with('/')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c)) =>
            {
                p.clone()
            }
            Some(Text(p)) => {
                return Err(invalid(
                    "http.debug.prometheus.path",
                    format!("expected a path such as /metrics, got {p:?}"),
                ));
            }
        };
        let addr = section
            .addr
            .as_ref()
            .map(|Text(a)| a.trim())
            .filter(|a| !a.is_empty());
        let Some(addr) = addr else {
            if enabled {
                warnings.push(
                    "http.debug.prometheus.enabled is set but http.debug.addr is not: no metrics are served"
                        .to_string(),
                );
            }
            return Ok(None);
        };
        let addr = listen_address(addr).ok_or_else(|| {
            invalid(
                "http.debug.addr",
                format!("expected host:port such as localhost:5001, got {addr:?}"),
            )
        })?;
        if !enabled {
            warnings.push(format!(
                "http.debug.addr is set but http.debug.prometheus.enabled is not: the debug listener on {addr} answers 404 to everything (Ferry serves only metrics there)"
            ));
        }
        Ok(Some(DebugSettings {
            addr,
            metrics_path: enabled.then_some(path),
        }))
    }

    /// `proxy`: the mirror's upstreams (none: an ordinary registry).
    fn proxy(section: &file::Proxy) -> Result<Option<MirrorSettings>, ConfigError> {
        let text = |t: &Option<Text>| {
            t.as_ref()
                .map(|Text(s)| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let secret = |t: &Option<file::Secret>| {
            t.as_ref()
                .map(|file::Secret(s)| s.to_string())
                .filter(|s| !s.is_empty())
        };
        // Distribution's default: a week after the last pull; 0 keeps forever.
        let ttl = |own: Option<GoDuration>| {
            Some(duration(own.or(section.ttl), DEFAULT_PROXY_TTL)).filter(|d| !d.is_zero())
        };
        let upstream = |key: &str,
                        url: Option<String>,
                        username: Option<String>,
                        password: Option<String>,
                        ttl: Option<Duration>|
         -> Result<UpstreamSettings, ConfigError> {
            let url = url.ok_or_else(|| invalid(key, "must be set"))?;
            let mut settings =
                UpstreamSettings::new(&url, username, password).map_err(|e| invalid(key, e))?;
            settings.ttl = ttl;
            Ok(settings)
        };
        let default = text(&section.remoteurl)
            .map(|url| {
                upstream(
                    "proxy.remoteurl",
                    Some(url),
                    text(&section.username),
                    secret(&section.password),
                    ttl(None),
                )
            })
            .transpose()?;
        if default.is_none()
            && (text(&section.username).is_some() || secret(&section.password).is_some())
        {
            return Err(invalid(
                "proxy.remoteurl",
                "must be set when proxy.username or proxy.password is",
            ));
        }
        let mut upstreams = Vec::new();
        for (host, entry) in section.upstreams.iter().flatten() {
            let host = host.trim().to_ascii_lowercase();
            let key = format!("proxy.upstreams.{host}");
            if host.is_empty() || host.contains('/') {
                return Err(invalid(
                    &key,
                    "expected a registry host name such as ghcr.io or registry.example.com:5000",
                ));
            }
            let url = text(&entry.remoteurl).or_else(|| Some(crate::mirror::default_url(&host)));
            upstreams.push((
                host,
                upstream(
                    &key,
                    url,
                    text(&entry.username),
                    secret(&entry.password),
                    ttl(entry.ttl),
                )?,
            ));
        }
        let local = section
            .local
            .as_ref()
            .map(|TextList(l)| l.clone())
            .unwrap_or_default();
        if default.is_none() && upstreams.is_empty() {
            if !local.is_empty() || section.tagrevalidate.is_some() {
                return Err(invalid(
                    "proxy",
                    "proxy.local and proxy.tagrevalidate need an upstream: proxy.remoteurl or proxy.upstreams",
                ));
            }
            return Ok(None);
        }
        MirrorSettings::new(
            default,
            upstreams,
            &local,
            duration(section.tagrevalidate, Duration::from_secs(300)),
        )
        .map(Some)
        .map_err(|e| invalid("proxy.local", e))
    }

    /// `auth`: one access controller (or none: an open registry) and the access rules.
    fn auth(section: &file::Auth) -> Result<AuthSettings, ConfigError> {
        let text = |t: &Option<Text>| {
            t.as_ref()
                .map(|Text(s)| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let required = |t: &Option<Text>, key: &str, what: &str| {
            text(t).ok_or_else(|| invalid(key, format!("must be set: {what}")))
        };
        let controller = match (&section.htpasswd, &section.token) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "auth",
                    "both auth.htpasswd and auth.token are configured; choose one access controller",
                ));
            }
            (Some(h), None) => Some(Controller::Htpasswd {
                realm: text(&h.realm).unwrap_or_else(|| "Registry Realm".to_string()),
                path: PathBuf::from(required(
                    &h.path,
                    "auth.htpasswd.path",
                    "the htpasswd file (make one with htpasswd -Bbc <file> <user> <password>)",
                )?),
            }),
            (None, Some(t)) => Some(Controller::Token(TokenSettings {
                realm: required(&t.realm, "auth.token.realm", "the token server's URL")?,
                service: required(&t.service, "auth.token.service", "this registry's name")?,
                issuer: required(&t.issuer, "auth.token.issuer", "the token issuer's name")?,
                rootcertbundle: text(&t.rootcertbundle).map(PathBuf::from),
                jwks: text(&t.jwks).map(PathBuf::from),
                autoredirect: flag(t.autoredirect, false),
                signing_algorithms: t
                    .signingalgorithms
                    .clone()
                    .map(|TextList(l)| l)
                    .unwrap_or_default(),
            })),
            (None, None) => None,
        };
        if let Some(Controller::Token(t)) = &controller
            && t.rootcertbundle.is_none()
            && t.jwks.is_none()
        {
            return Err(invalid(
                "auth.token.rootcertbundle",
                "must be set (or auth.token.jwks): the keys tokens are signed with",
            ));
        }
        let list = |l: &Option<TextList>| l.clone().map(|TextList(l)| l).unwrap_or_default();
        let rules = section.access.as_ref().map(|rules| {
            rules
                .iter()
                .map(|r| RuleSpec {
                    repositories: list(&r.repositories),
                    users: list(&r.users),
                    anonymous: flag(r.anonymous, false),
                    actions: list(&r.actions),
                })
                .collect::<Vec<_>>()
        });
        if let Some(specs) = &rules {
            crate::auth::rules::Rules::new(specs)
                .map_err(|e| invalid("auth.access", e.to_string()))?;
        }
        Ok(AuthSettings { controller, rules })
    }

    /// `http.tls`: HTTPS when a certificate and its key are named. Whether the files hold
    /// what they should is checked when the server starts.
    fn tls(
        section: &file::Tls,
        warnings: &mut Vec<String>,
    ) -> Result<Option<TlsSettings>, ConfigError> {
        let path = |t: &Option<Text>| {
            t.as_ref()
                .map(|Text(s)| s.trim())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        let client_cas: Vec<PathBuf> = section
            .clientcas
            .as_ref()
            .map(|TextList(list)| list.iter().map(PathBuf::from).collect())
            .unwrap_or_default();
        let minimum = section
            .minimumtls
            .as_ref()
            .map(|Text(v)| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let (certificate, key) = match (path(&section.certificate), path(&section.key)) {
            (Some(certificate), Some(key)) => (certificate, key),
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls.key",
                    "http.tls.certificate is set but not its private key: name the PEM key file in http.tls.key",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls.certificate",
                    "http.tls.key is set but not its certificate: name the PEM certificate file in http.tls.certificate",
                ));
            }
            (None, None) => {
                if !client_cas.is_empty() {
                    // Distribution would serve plain HTTP without checking any client.
                    return Err(invalid(
                        "http.tls.clientcas",
                        "client certificates are checked only over TLS: set http.tls.certificate and http.tls.key too",
                    ));
                }
                if minimum.is_some() {
                    warnings.push(
                        "configuration key http.tls.minimumtls is ignored: without http.tls.certificate and http.tls.key Ferry serves plain HTTP".to_string(),
                    );
                }
                return Ok(None);
            }
        };
        let minimum_version = match minimum.as_deref() {
            None | Some("tls1.2") => TlsVersion::Tls12,
            Some("tls1.3") => TlsVersion::Tls13,
            Some(old @ ("tls1.0" | "tls1.1")) => {
                return Err(invalid(
                    "http.tls.minimumtls",
                    format!(
                        "{old} is not supported: Ferry's TLS (rustls) speaks TLS 1.2 and 1.3 only; use tls1.2 or tls1.3"
                    ),
                ));
            }
            Some(other) => {
                return Err(invalid(
                    "http.tls.minimumtls",
                    format!("expected tls1.2 or tls1.3, got {other:?}"),
                ));
            }
        };
        Ok(Some(TlsSettings {
            certificate,
            key,
            client_cas,
            minimum_version,
        }))
    }

    /// `database.url` (PostgreSQL), when set.
    fn postgres(database: &file::Database) -> Result<Option<PostgresSettings>, ConfigError> {
        let Some(Text(url)) = database.url.as_ref().filter(|Text(u)| !u.is_empty()) else {
            if database.maxconnections.is_some() {
                return Err(invalid(
                    "database.maxconnections",
                    "applies to PostgreSQL only: set database.url",
                ));
            }
            return Ok(None);
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "database.url",
                "must be a PostgreSQL URL (postgres://user:password@host:5432/database); \
                 SQLite is configured with database.path",
            ));
        }
        let max_connections = match database.maxconnections {
            None => 10,
            Some(Count(n)) if (1..=1000).contains(&n) => n,
            Some(_) => {
                return Err(invalid("database.maxconnections", "must be from 1 to 1000"));
            }
        };
        Ok(Some(PostgresSettings {
            url: url.clone(),
            max_connections,
        }))
    }

    /// `storage.s3` when a bucket is named, else the filesystem.
    fn storage(
        section: &file::Storage,
        tree: &Tree,
        warnings: &mut Vec<String>,
    ) -> Result<StorageSettings, ConfigError> {
        let s3 = &section.s3;
        let text = |t: &Option<Text>| t.as_ref().map(|Text(s)| s.clone());
        let Some(bucket) = text(&s3.bucket) else {
            let under_s3 = tree
                .get(&["storage", "s3"])
                .map(|v| tree::leaves(&["storage".into(), "s3".into()], v))
                .unwrap_or_default();
            if let Some((leaf, _)) = under_s3.iter().find(|(leaf, _)| leaf.len() > 2) {
                return Err(invalid(
                    &leaf.join("."),
                    "storage.s3 needs storage.s3.bucket",
                ));
            }
            if let Some(var) = tree.selected_driver("s3") {
                return Err(invalid(
                    "storage.s3.bucket",
                    format!("{var} selects S3, which needs storage.s3.bucket"),
                ));
            }
            return Ok(StorageSettings::Filesystem);
        };
        if bucket.is_empty() {
            return Err(invalid("storage.s3.bucket", "must not be empty"));
        }
        let mut settings = S3Settings::new(bucket);
        if let Some(region) = text(&s3.region)
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
        {
            settings.region = region;
        }
        settings.region_endpoint = text(&s3.regionendpoint).filter(|e| !e.is_empty());
        settings.access_key = text(&s3.accesskey).filter(|k| !k.is_empty());
        settings.secret_key = text(&s3.secretkey).filter(|k| !k.is_empty());
        if settings.access_key.is_some() != settings.secret_key.is_some() {
            return Err(invalid(
                "storage.s3.secretkey",
                "storage.s3.accesskey and storage.s3.secretkey go together",
            ));
        }
        settings.force_path_style = flag(s3.forcepathstyle, false);
        settings.secure = flag(s3.secure, true);
        settings.root_directory = text(&s3.rootdirectory)
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        settings.chunk_size = s3.chunksize.map_or(settings.chunk_size, |Bytes(n)| n);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.chunk_size) {
            return Err(invalid(
                "storage.s3.chunksize",
                format!("must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"),
            ));
        }
        settings.copy_chunk_size = s3
            .multipartcopychunksize
            .map_or(settings.copy_chunk_size, |Bytes(n)| n);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.copy_chunk_size) {
            return Err(invalid(
                "storage.s3.multipartcopychunksize",
                format!("must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"),
            ));
        }
        if let Some(Count(n)) = s3.multipartcopymaxconcurrency {
            settings.copy_max_concurrency = n as usize;
        }
        settings.copy_threshold = s3
            .multipartcopythresholdsize
            .map_or(settings.copy_threshold, |Bytes(n)| n);
        if settings.copy_threshold > MAX_PART_SIZE {
            return Err(invalid(
                "storage.s3.multipartcopythresholdsize",
                format!("must be at most {MAX_PART_SIZE} bytes (S3's largest single copy)"),
            ));
        }
        settings.redirect = !flag(section.redirect.disable, true);
        let key_id = text(&s3.keyid).filter(|k| !k.is_empty());
        settings.encryption = match (flag(s3.encrypt, false), key_id) {
            (false, None) => Encryption::None,
            (false, Some(_)) => {
                warnings.push(
                    "storage.s3.keyid is ignored without storage.s3.encrypt: true (as in Distribution)"
                        .to_string(),
                );
                Encryption::None
            }
            (true, None) => Encryption::S3Managed,
            (true, Some(key)) => Encryption::Kms(key),
        };
        Ok(StorageSettings::S3(Box::new(settings)))
    }
}

/// A listen address as Distribution writes it: `host:port`, `[v6]:port` or `:port` (every
/// interface); `None` when it is not one (the port must be a number).
fn listen_address(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if (host.contains(':') && !bracketed)
        || host.contains(char::is_whitespace)
        || host.contains('/')
    {
        return None;
    }
    Some(if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else {
        addr.to_string()
    })
}

fn flag(value: Option<Flag>, default: bool) -> bool {
    value.map_or(default, |Flag(b)| b)
}

fn duration(value: Option<GoDuration>, default: Duration) -> Duration {
    value.map_or(default, |GoDuration(d)| d)
}

/// The keys of a path `serde_ignored` reports.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Map { key, .. } => out.push(key.clone()),
        Path::Seq { index, .. } => out.push(index.to_string()),
        _ => {}
    }
    out
}

/// Whether this process could write in `dir`, or create it: it exists as a directory we
/// may write in, or the nearest existing directory above it is one. Only asks the kernel
/// (`access(2)`, which also knows read-only mounts); nothing is created or written, which
/// `ferry serve` does when it opens the stores. (Plain `access` checks the real user,
/// which is the effective one: Ferry is not setuid. `AT_EACCESS` would need `faccessat2`,
/// which older container runtimes' seccomp profiles refuse with EPERM.)
fn could_write(dir: &Path) -> bool {
    let mut existing = dir;
    loop {
        match std::fs::metadata(existing) {
            Ok(meta) => {
                return meta.is_dir()
                    && rustix::fs::accessat(
                        rustix::fs::CWD,
                        existing,
                        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                        rustix::fs::AtFlags::empty(),
                    )
                    .is_ok();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match existing.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                _ => return false,
            },
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const BASE: &str = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/r\n";

    #[test]
    fn proxy_sections() {
        let c = load(
            &format!("{BASE}proxy:\n  remoteurl: https://docker.io\n  username: u\n  password: hunter2\n  tagrevalidate: 1m\n  local: ['team/**']\n  upstreams:\n    GHCR.io: {{}}\n    reg.example:5000: {{remoteurl: 'http://10.0.0.1:5000', username: a, password: b}}\n"),
            &[],
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let p = c.proxy.expect("a mirror");
        let default = p.default.as_ref().expect("remoteurl");
        assert_eq!(default.url, "https://registry-1.docker.io");
        assert_eq!(p.tag_revalidate, Duration::from_secs(60));
        assert_eq!(default.ttl, Some(Duration::from_secs(168 * 3600)));
        assert_eq!(p.local, ["team/**"]);
        let hosts: Vec<(&str, &str)> = p
            .upstreams
            .iter()
            .map(|(h, u)| (h.as_str(), u.url.as_str()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("ghcr.io", "https://ghcr.io"),
                ("reg.example:5000", "http://10.0.0.1:5000")
            ]
        );
        assert!(!format!("{p:?}").contains("hunter2"));
        // From the environment, as Distribution spells it.
        let c = load(
            BASE,
            &[
                ("REGISTRY_PROXY_REMOTEURL", "http://127.0.0.1:5001"),
                ("REGISTRY_PROXY_TTL", "0"),
            ],
        )
        .unwrap();
        let p = c.proxy.unwrap();
        assert_eq!(p.tag_revalidate, Duration::from_secs(300));
        assert_eq!(p.default.unwrap().ttl, None);
        assert!(load(BASE, &[]).unwrap().proxy.is_none());
        let bad = |yaml: &str| match load(&format!("{BASE}proxy:\n{yaml}"), &[]) {
            Ok(_) => panic!("{yaml} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(bad("  remoteurl: ftp://x\n").contains("proxy.remoteurl"));
        assert!(bad("  username: u\n  password: p\n").contains("proxy.remoteurl"));
        assert!(bad("  remoteurl: https://x\n  username: u\n").contains("proxy.remoteurl"));
        assert!(bad("  remoteurl: https://x\n  local: ['a/**b']\n").contains("proxy.local"));
        assert!(bad("  upstreams:\n    ghcr.io: {tll: 1h}\n").contains("tll"));
        assert!(bad("  remoteurl: https://x\n  ttl: soon\n").contains("proxy.ttl"));
    }

    #[test]
    fn notification_endpoints() {
        let c = load(
            &format!(
                "{BASE}notifications:\n  events:\n    includereferences: true\n  queuelimit: 50\n  endpoints:\n    - name: audit\n      url: https://audit.example/events\n      headers:\n        Authorization: [Bearer x]\n        X-Two: [a, b]\n      timeout: 3s\n      threshold: 4\n      backoff: 2s\n      ignoredmediatypes: [application/octet-stream]\n      ignore:\n        mediatypes: [text/plain]\n        actions: [pull]\n    - name: off\n      disabled: true\n      url: nonsense\n"
            ),
            &[],
        )
        .unwrap();
        let n = &c.notifications;
        assert!(n.include_references);
        assert_eq!(n.queue_limit, 50);
        assert_eq!(n.endpoints.len(), 1);
        let e = &n.endpoints[0];
        assert_eq!(e.name, "audit");
        assert_eq!(e.headers.len(), 3);
        assert_eq!(e.timeout, Duration::from_secs(3));
        assert_eq!(e.threshold, 4);
        assert_eq!(e.backoff, Duration::from_secs(2));
        assert_eq!(
            e.ignored_media_types,
            ["application/octet-stream", "text/plain"]
        );
        assert_eq!(e.ignored_actions, ["pull"]);
        // From the environment, by index, with Distribution's defaults.
        let c = load(
            BASE,
            &[
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "hook"),
                (
                    "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL",
                    "http://127.0.0.1:9/x",
                ),
            ],
        )
        .unwrap();
        let e = &c.notifications.endpoints[0];
        assert_eq!(
            (e.timeout, e.threshold, e.backoff),
            (Duration::from_secs(1), 10, Duration::from_secs(1))
        );
        assert!(load(BASE, &[]).unwrap().notifications.endpoints.is_empty());
        let bad =
            |yaml: &str| match load(&format!("{BASE}notifications:\n  endpoints:\n{yaml}"), &[]) {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("{yaml}: {other:?}"),
            };
        assert_eq!(
            bad("    - url: http://x/\n"),
            "notifications.endpoints.0.name"
        );
        assert_eq!(bad("    - name: a\n"), "notifications.endpoints.0.url");
        assert_eq!(
            bad("    - {name: a, url: 'ftp://x/'}\n"),
            "notifications.endpoints.0.url"
        );
        assert_eq!(
            bad("    - {name: a, url: 'http://x/'}\n    - {name: a, url: 'http://y/'}\n"),
            "notifications.endpoints.1.name"
        );
        assert_eq!(
            bad("    - {name: a, url: 'http://x/', ignore: {actions: [fetch]}}\n"),
            "notifications.endpoints.0.ignore.actions"
        );
        assert_eq!(
            bad("    - {name: a, url: 'http://x/', headers: {'bad header': [x]}}\n"),
            "notifications.endpoints.0.headers"
        );
        assert!(
            bad("    - {name: a, url: 'http://x/', treshold: 3}\n")
                .starts_with("notifications.endpoints")
        );
    }

    #[test]
    fn reads_distribution_s3_keys_and_overrides() {
        let yaml = "version: 0.1\nstorage:\n  s3:\n    bucket: images\n    region: eu-west-1\n    regionendpoint: http://127.0.0.1:9000\n    forcepathstyle: true\n    rootdirectory: /prod/\n    chunksize: 10485760\n";
        let c = load(
            yaml,
            &[
                ("REGISTRY_STORAGE_S3_ACCESSKEY", "ak"),
                ("REGISTRY_STORAGE_S3_SECRETKEY", "sk"),
                ("REGISTRY_STORAGE_REDIRECT_DISABLE", "false"),
            ],
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let StorageSettings::S3(s3) = c.storage else {
            panic!("expected S3, got {:?}", c.storage);
        };
        assert_eq!(s3.bucket, "images");
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.root_directory, "prod");
        assert_eq!(s3.chunk_size, 10 * 1024 * 1024);
        assert_eq!(s3.access_key.as_deref(), Some("ak"));
        assert!(s3.force_path_style && s3.redirect);
        assert_eq!(s3.identity(), "s3://images/prod");
        // The database's directory is the data directory: no default one is created.
        let with_db = load(yaml, &[("REGISTRY_DATABASE_PATH", "/srv/ferry/meta.db")]).unwrap();
        assert_eq!(with_db.root, PathBuf::from("/srv/ferry"));
        assert_eq!(with_db.root_choice, RootChoice::Configured);
    }

    #[test]
    fn s3_settings_are_checked() {
        let s3 = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n";
        let both = load(s3, &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/r")]).unwrap_err();
        assert!(both.to_string().contains("choose one"), "{both}");
        let small = load(s3, &[("REGISTRY_STORAGE_S3_CHUNKSIZE", "1000")]).unwrap_err();
        assert!(
            small.to_string().contains("storage.s3.chunksize"),
            "{small}"
        );
        let half = load(s3, &[("REGISTRY_STORAGE_S3_ACCESSKEY", "ak")]).unwrap_err();
        assert!(half.to_string().contains("secretkey"), "{half}");
        let no_bucket = load("version: 0.1\nstorage:\n  s3:\n    region: x\n", &[]).unwrap_err();
        assert!(no_bucket.to_string().contains("bucket"), "{no_bucket}");
        let switched = load(
            BASE,
            &[
                ("REGISTRY_STORAGE", "s3"),
                ("REGISTRY_STORAGE_S3_BUCKET", "b"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ],
        )
        .unwrap();
        assert!(matches!(switched.storage, StorageSettings::S3(_)));
        assert!(switched.registry.delete_enabled);
        let gcs = load("version: 0.1\nstorage:\n  gcs:\n    bucket: b\n", &[]).unwrap_err();
        assert!(gcs.to_string().contains("not supported yet"), "{gcs}");
        let fs = load(BASE, &[]).unwrap();
        assert_eq!(fs.storage, StorageSettings::Filesystem);
    }

    #[test]
    fn s3_server_side_encryption_follows_distribution() {
        let s3 = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n";
        let encryption = |env: &[(&str, &str)]| {
            let c = load(s3, env).unwrap();
            let StorageSettings::S3(settings) = c.storage else {
                panic!("not S3")
            };
            (settings.encryption, c.warnings)
        };
        assert_eq!(encryption(&[]), (Encryption::None, vec![]));
        assert_eq!(
            encryption(&[("REGISTRY_STORAGE_S3_ENCRYPT", "true")]),
            (Encryption::S3Managed, vec![])
        );
        assert_eq!(
            encryption(&[
                ("REGISTRY_STORAGE_S3_ENCRYPT", "true"),
                ("REGISTRY_STORAGE_S3_KEYID", "arn:aws:kms:k")
            ]),
            (Encryption::Kms("arn:aws:kms:k".into()), vec![])
        );
        let (none, warnings) = encryption(&[("REGISTRY_STORAGE_S3_KEYID", "arn:aws:kms:k")]);
        assert_eq!(none, Encryption::None);
        assert!(
            warnings[0].contains("storage.s3.keyid is ignored"),
            "{warnings:?}"
        );
    }

    #[test]
    fn reads_distribution_keys() {
        let yaml = format!(
            "{BASE}  delete:\n    enabled: true\nhttp:\n  addr: :5001\n  relativeurls: true\ncatalog:\n  maxentries: 50\nlog:\n  formatter: json\n"
        );
        let c = load(&yaml, &[]).unwrap();
        assert_eq!(c.root, PathBuf::from("/tmp/r"));
        assert_eq!(c.root_choice, RootChoice::Configured);
        assert_eq!(c.database_path, PathBuf::from("/tmp/r/ferry/metadata.db"));
        assert!(c.registry.delete_enabled);
        assert_eq!(c.http.addr, "0.0.0.0:5001");
        assert!(c.http.relative_urls);
        assert_eq!(c.registry.catalog_max_entries, 50);
        assert!(c.log.json);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn environment_overrides_win() {
        let c = load(
            BASE,
            &[
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/tmp/other"),
                ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2h"),
                ("REGISTRY_DATABASE_PATH", "/tmp/db.sqlite"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert!(c.registry.delete_enabled);
        assert_eq!(c.http.addr, "127.0.0.1:6000");
        assert_eq!(c.root, PathBuf::from("/tmp/other"));
        assert_eq!(c.upload_purging.age, Duration::from_secs(7200));
        assert_eq!(c.database_path, PathBuf::from("/tmp/db.sqlite"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = load(&format!("{BASE}  delete:\n    enabled: maybe\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("storage.delete.enabled"), "{err}");
        let err = load(
            &format!("{BASE}  maintenance:\n    uploadpurging:\n      age: soon\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("storage.maintenance.uploadpurging.age"),
            "{err}"
        );
        assert!(matches!(load("a: [", &[]), Err(ConfigError::Yaml { .. })));
    }

    #[test]
    fn unknown_keys_warn() {
        let c = load(
            &format!(
                "{BASE}    maxthreads: 100\n  cache:\n    blobdescriptor: inmemory\nfrobnicate: 1\nhttp:\n  secret: s3cr3t\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
            ),
            &[("REGISTRY_LOG_FIELDS_SERVICE", "registry")],
        )
        .unwrap();
        for key in [
            "frobnicate",
            "storage.filesystem.maxthreads",
            "storage.cache.blobdescriptor",
            "http.secret",
            "http.headers.X-Content-Type-Options",
            "log.fields.service",
        ] {
            assert!(
                c.warnings
                    .iter()
                    .any(|w| w.contains(&format!("key {key} "))),
                "no warning for {key}: {:?}",
                c.warnings
            );
        }
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("unknown configuration key frobnicate is ignored"))
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("http.secret is not supported by Ferry and is ignored"))
        );
        assert_eq!(c.warnings.len(), 6, "{:?}", c.warnings);
        // A key Ferry does not know inside a known section is not taken for a driver.
        assert_eq!(c.storage, StorageSettings::Filesystem);
    }

    /// The configuration `registry:2` ships (and most copies of it) starts, with warnings.
    #[test]
    fn distribution_default_config_starts() {
        let yaml = "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n";
        let c = load(yaml, &[]).unwrap();
        // `health.storagedriver` is accepted: no warning names it (its three keys did).
        assert!(
            !c.warnings.iter().any(|w| w.contains("health")),
            "{:?}",
            c.warnings
        );
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }

    /// `health.storagedriver` is accepted (values of the wrong type are not), from the file
    /// and from `REGISTRY_*`; Distribution's other checks warn.
    #[test]
    fn health_storagedriver_is_accepted() {
        let yaml = "version: 0.1\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n";
        assert_eq!(load(yaml, &[]).unwrap().warnings, Vec::<String>::new());
        let env = [
            ("REGISTRY_HEALTH_STORAGEDRIVER_ENABLED", "false"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "30s"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD", "5"),
        ];
        assert_eq!(
            load("version: 0.1\n", &env).unwrap().warnings,
            Vec::<String>::new()
        );
        for bad in ["threshold: many", "interval: soon", "enabled: perhaps"] {
            let yaml = format!("version: 0.1\nhealth:\n  storagedriver:\n    {bad}\n");
            assert!(load(&yaml, &[]).is_err(), "{bad}");
        }
        let yaml = "version: 0.1\nhealth:\n  storagedriver:\n    enabled: true\n  tcp:\n    - addr: db:5432\n";
        let warnings = load(yaml, &[]).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("health.tcp"), "{warnings:?}");
    }

    fn refused(yaml: &str, env: &[(&str, &str)]) -> Vec<Refusal> {
        match load(yaml, env) {
            Err(ConfigError::Unsupported(Refusals(refusals))) => refusals,
            other => panic!("expected a refusal for {yaml:?} {env:?}, got {other:?}"),
        }
    }

    fn refused_key(yaml: &str, env: &[(&str, &str)]) -> String {
        let refusals = refused(yaml, env);
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        refusals[0].key.clone()
    }

    #[test]
    fn keys_that_would_weaken_security_refuse_the_start() {
        let s3 = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n";
        let cases: &[(&str, &str)] = &[
            (
                "auth:\n  silly:\n    realm: x\n    service: y\n",
                "auth.silly",
            ),
            ("auth:\n  keystone:\n    realm: x\n", "auth.keystone"),
            (
                "http:\n  tls:\n    letsencrypt:\n      cachefile: /c\n",
                "http.tls.letsencrypt.cachefile",
            ),
            ("http:\n  prefix: /registry/\n", "http.prefix"),
            ("http:\n  net: unix\n", "http.net"),
            (
                "middleware:\n  storage:\n    - name: cloudfront\n      options:\n        baseurl: https://x\n",
                "middleware.storage",
            ),
            (
                "validation:\n  manifests:\n    urls:\n      allow: ['^https://']\n",
                "validation.manifests.urls.allow",
            ),
        ];
        for (extra, key) in cases {
            assert_eq!(refused_key(&format!("{BASE}{extra}"), &[]), *key, "{extra}");
        }
        assert_eq!(
            refused_key(&format!("{s3}    usefipsendpoint: true\n"), &[]),
            "storage.s3.usefipsendpoint"
        );
        for driver in ["gcs", "azure", "inmemory", "swift", "oss"] {
            let yaml = format!("version: 0.1\nstorage:\n  {driver}:\n    bucket: b\n");
            assert_eq!(refused_key(&yaml, &[]), format!("storage.{driver}"));
        }
        // Several at once are all named.
        let all = refused(
            &format!(
                "{BASE}auth:\n  silly: {{realm: x, service: y}}\nhttp:\n  tls:\n    certificate: /c\n    key: /k\n    letsencrypt:\n      email: a@example.com\n      hosts: [r.example.com]\n"
            ),
            &[],
        );
        let keys: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth.silly",
                "http.tls.letsencrypt.email",
                "http.tls.letsencrypt.hosts"
            ]
        );
        let message = ConfigError::Unsupported(Refusals(all)).to_string();
        assert!(
            message.contains(
                "http.tls.letsencrypt.email, http.tls.letsencrypt.hosts: Ferry does not obtain certificates from Let's Encrypt itself; have certbot or cert-manager write them and name the files in http.tls.certificate and http.tls.key"
            ),
            "{message}"
        );
    }

    #[test]
    fn tls_settings() {
        let tls = "http:\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n";
        let c = load(&format!("{BASE}{tls}"), &[]).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.http.tls,
            Some(TlsSettings {
                certificate: PathBuf::from("/c.pem"),
                key: PathBuf::from("/k.pem"),
                client_cas: vec![],
                minimum_version: TlsVersion::Tls12,
            })
        );
        let c = load(
            &format!("{BASE}{tls}    clientcas: [/a.pem, /b.pem]\n    minimumtls: tls1.3\n    ciphersuites: [TLS_AES_128_GCM_SHA256]\n"),
            &[],
        )
        .unwrap();
        let settings = c.http.tls.unwrap();
        assert_eq!(
            settings.client_cas,
            [PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]
        );
        assert_eq!(settings.minimum_version, TlsVersion::Tls13);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("http.tls.ciphersuites") && c.warnings[0].contains("rustls"),
            "{:?}",
            c.warnings
        );
        // From the environment, as Distribution spells it (a list: one path, a YAML list, or
        // entries by index).
        for (vars, cas) in [
            (
                vec![("REGISTRY_HTTP_TLS_CLIENTCAS", "/a.pem")],
                vec!["/a.pem"],
            ),
            (
                vec![("REGISTRY_HTTP_TLS_CLIENTCAS", "[/a.pem, /b.pem]")],
                vec!["/a.pem", "/b.pem"],
            ),
            (
                vec![
                    ("REGISTRY_HTTP_TLS_CLIENTCAS_1", "/b.pem"),
                    ("REGISTRY_HTTP_TLS_CLIENTCAS_0", "/a.pem"),
                ],
                vec!["/a.pem", "/b.pem"],
            ),
        ] {
            let mut env = vec![
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem"),
                ("REGISTRY_HTTP_TLS_KEY", "/k.pem"),
            ];
            env.extend(vars.iter().copied());
            let settings = load(BASE, &env).unwrap().http.tls.unwrap();
            let cas: Vec<PathBuf> = cas.into_iter().map(PathBuf::from).collect();
            assert_eq!(settings.client_cas, cas, "{vars:?}");
        }
        assert_eq!(load(BASE, &[]).unwrap().http.tls, None);
    }

    #[test]
    fn incomplete_tls_settings_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("    certificate: /c.pem\n", "http.tls.key", "private key"),
            ("    key: /k.pem\n", "http.tls.certificate", "certificate"),
            (
                "    clientcas: [/ca.pem]\n",
                "http.tls.clientcas",
                "only over TLS",
            ),
            (
                "    certificate: /c.pem\n    key: /k.pem\n    minimumtls: tls1.0\n",
                "http.tls.minimumtls",
                "tls1.0 is not supported",
            ),
            (
                "    certificate: /c.pem\n    key: /k.pem\n    minimumtls: tls1.1\n",
                "http.tls.minimumtls",
                "rustls",
            ),
            (
                "    certificate: /c.pem\n    key: /k.pem\n    minimumtls: ssl3\n",
                "http.tls.minimumtls",
                "expected tls1.2 or tls1.3",
            ),
        ];
        for (tls, key, why) in cases {
            let err = load(&format!("{BASE}http:\n  tls:\n{tls}"), &[]).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ConfigError::Invalid { key: ref k, .. } if k == key)
                    && message.contains(why),
                "{tls}: {message}"
            );
        }
        let err = load(BASE, &[("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem")]).unwrap_err();
        assert!(err.to_string().contains("http.tls.key"), "{err}");
        // minimumtls alone asks for nothing Ferry could leave out: a warning.
        let c = load(
            &format!("{BASE}http:\n  tls:\n    minimumtls: tls1.2\n"),
            &[],
        )
        .unwrap();
        assert!(c.http.tls.is_none());
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn connection_limits() {
        let c = load(BASE, &[]).unwrap();
        assert_eq!(
            c.http.connections,
            ConnectionSettings {
                header_timeout: Some(Duration::from_secs(30)),
                body_timeout: Some(Duration::from_secs(60)),
            }
        );
        let c = load(
            &format!("{BASE}connections:\n  headertimeout: 5s\n  bodytimeout: 0\n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.http.connections.header_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(c.http.connections.body_timeout, None);
        let c = load(BASE, &[("REGISTRY_CONNECTIONS_BODYTIMEOUT", "2m")]).unwrap();
        assert_eq!(
            c.http.connections.body_timeout,
            Some(Duration::from_secs(120))
        );
        let err = load(BASE, &[("REGISTRY_CONNECTIONS_HEADERTIMEOUT", "soon")]).unwrap_err();
        assert!(
            err.to_string().contains("connections.headertimeout"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_can_name_refused_keys() {
        let cases: &[(&str, &str, &str)] = &[
            ("REGISTRY_AUTH_SILLY_REALM", "x", "auth.silly"),
            (
                "REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE",
                "/c",
                "http.tls.letsencrypt.cachefile",
            ),
            ("REGISTRY_HTTP_PREFIX", "/r/", "http.prefix"),
            ("REGISTRY_STORAGE", "gcs", "storage.gcs"),
        ];
        for (var, value, key) in cases {
            let refusals = refused(BASE, &[(var, value)]);
            assert_eq!(refusals.len(), 1, "{refusals:?}");
            assert_eq!(refusals[0].key, *key);
            let message = ConfigError::Unsupported(Refusals(refusals)).to_string();
            assert!(
                message.contains(&format!("configuration key {key} (set by {var}"))
                    && message.contains("is not supported yet"),
                "{message}"
            );
        }
        let s3 = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n";
        assert_eq!(
            refused_key(s3, &[("REGISTRY_STORAGE_S3_USEFIPSENDPOINT", "true")]),
            "storage.s3.usefipsendpoint"
        );
        assert!(load(s3, &[("REGISTRY_STORAGE_S3_USEFIPSENDPOINT", "false")]).is_ok());
    }

    #[test]
    fn auth_sections() {
        let c = load(
            &format!("{BASE}auth:\n  htpasswd:\n    realm: r\n    path: /p\n  access:\n    - repositories: ['**']\n      anonymous: true\n      actions: [pull]\n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.auth.controller,
            Some(Controller::Htpasswd {
                realm: "r".into(),
                path: "/p".into()
            })
        );
        assert_eq!(c.auth.rules.as_ref().map(Vec::len), Some(1));
        // From the environment alone.
        let c = load(
            BASE,
            &[
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry"),
            ],
        )
        .unwrap();
        assert!(
            matches!(c.auth.controller, Some(Controller::Htpasswd { ref path, .. }) if path == Path::new("/auth/htpasswd"))
        );
        let c = load(
            &format!("{BASE}auth:\n  token:\n    realm: https://a/t\n    service: s\n    issuer: i\n    rootcertbundle: /b.pem\n    signingalgorithms: [ES256]\n"),
            &[],
        )
        .unwrap();
        assert!(
            matches!(c.auth.controller, Some(Controller::Token(ref t)) if t.service == "s" && t.signing_algorithms == ["ES256"])
        );
        assert!(load(BASE, &[]).unwrap().auth.controller.is_none());

        let error = |yaml: &str| load(&format!("{BASE}{yaml}"), &[]).unwrap_err().to_string();
        let e = error(
            "auth:\n  htpasswd: {path: /p}\n  token: {realm: r, service: s, issuer: i, rootcertbundle: /b}\n",
        );
        assert!(e.contains("choose one access controller"), "{e}");
        // Named without its options: an error, never an open registry.
        let e = error("auth:\n  htpasswd:\n");
        assert!(e.contains("auth.htpasswd.path"), "{e}");
        let e = error("auth:\n  token:\n    realm: r\n");
        assert!(e.contains("auth.token.service"), "{e}");
        let e = error(
            "auth:\n  htpasswd: {path: /p}\n  access:\n    - repositories: [a]\n      users: [x]\n      actions: [write]\n",
        );
        assert!(e.contains("auth.access") && e.contains("write"), "{e}");
        let e = error("auth:\n  htpasswd: {path: /p}\n  access:\n    - repository: [a]\n");
        assert!(e.contains("auth.access"), "{e}");
        let e = error("auth:\n  silly:\n    realm: x\n");
        assert!(
            e.contains("auth.silly") && e.contains("silly access controller"),
            "{e}"
        );
    }

    #[test]
    fn empty_or_false_refused_keys_ask_for_nothing() {
        let s3 = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    encrypt: false\n    keyid: ''\n    usefipsendpoint: 'no'\n";
        let c = load(s3, &[]).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for extra in [
            "auth:\n",
            "auth: {}\n",
            "auth: ~\n",
            "http:\n  tls: {}\n  prefix: ''\n  net: tcp\n",
            "http:\n  tls:\n    certificate: ''\n    letsencrypt: {}\n",
            "proxy:\n  remoteurl: ''\n  ttl: 0\n",
            "middleware:\n  storage: []\n  registry:\n    - name: x\n      disabled: true\n",
            "notifications:\n  endpoints:\n    - name: audit\n      disabled: true\n      url: https://x\n",
            "validation:\n  manifests:\n    urls:\n      allow: []\n",
        ] {
            let c = load(&format!("{BASE}{extra}"), &[]).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert!(c.warnings.is_empty(), "{extra}: {:?}", c.warnings);
        }
        assert!(load(BASE, &[("REGISTRY_HTTP_TLS_CERTIFICATE", "")]).is_ok());
    }

    #[test]
    fn selecting_s3_from_the_environment_needs_a_bucket() {
        let err = load(BASE, &[("REGISTRY_STORAGE", "s3")]).unwrap_err();
        assert!(
            err.to_string().contains("storage.s3.bucket")
                && err.to_string().contains("REGISTRY_STORAGE=s3"),
            "{err}"
        );
        let fs = load(BASE, &[("REGISTRY_STORAGE", "filesystem")]).unwrap();
        assert_eq!(fs.storage, StorageSettings::Filesystem);
    }

    #[test]
    fn invalid_environment_values_name_the_variable() {
        let err = load(BASE, &[("REGISTRY_TAGS_MAXTAGS", "lots")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration value for tags.maxtags: expected a positive whole number (set by REGISTRY_TAGS_MAXTAGS)"
        );
        let err = load("storage: 5\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid configuration value for storage:"),
            "{err}"
        );
        let err = load("- a\n", &[]).unwrap_err();
        assert!(err.to_string().contains("(top level)"), "{err}");
    }

    /// Loading decides where the data directory is without creating it.
    #[test]
    fn loading_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b/registry");
        assert!(could_write(&missing));
        assert!(!missing.exists() && !dir.path().join("a").exists());
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(!could_write(&file.join("below")));
        let yaml = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            missing.display()
        );
        let c = load(&yaml, &[]).unwrap();
        assert_eq!(c.root, missing);
        assert!(!dir.path().join("a").exists());
    }

    /// Every leaf of the typed sections is documented in `SUPPORTED_KEYS`, and nothing
    /// else is.
    #[test]
    fn supported_keys_are_the_typed_fields() {
        let mut typed = file::probe::typed_keys();
        typed.sort();
        let mut documented: Vec<String> =
            SUPPORTED_KEYS.iter().map(|(k, _)| k.to_string()).collect();
        documented.sort();
        assert_eq!(typed, documented);
        // And none of them is also listed as unsupported.
        for (key, _) in SUPPORTED_KEYS {
            assert!(
                !UNSUPPORTED.iter().any(|u| u.key == *key),
                "{key} is both supported and unsupported"
            );
        }
    }

    #[test]
    fn debug_listener_settings() {
        // None by default: no listener.
        assert_eq!(load(BASE, &[]).unwrap().http.debug, None);
        // From the file, Distribution's spelling.
        let c = load(
            &format!(
                "{BASE}http:\n  debug:\n    addr: localhost:5001\n    prometheus:\n      enabled: true\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.http.debug,
            Some(DebugSettings {
                addr: "localhost:5001".to_string(),
                metrics_path: Some("/metrics".to_string()),
            })
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // From the environment, with another path; `:port` is every interface.
        let c = load(
            BASE,
            &[
                ("REGISTRY_HTTP_DEBUG_ADDR", ":5001"),
                ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
                ("REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH", "/internal/metrics"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.http.debug,
            Some(DebugSettings {
                addr: "0.0.0.0:5001".to_string(),
                metrics_path: Some("/internal/metrics".to_string()),
            })
        );
        // An address without metrics: a listener that serves nothing, and a warning.
        let c = load(BASE, &[("REGISTRY_HTTP_DEBUG_ADDR", "[::1]:5001")]).unwrap();
        assert_eq!(
            c.http.debug,
            Some(DebugSettings {
                addr: "[::1]:5001".to_string(),
                metrics_path: None,
            })
        );
        assert!(
            c.warnings.iter().any(|w| w.contains("answers 404")),
            "{:?}",
            c.warnings
        );
        // Metrics without an address: nothing, and a warning.
        let c = load(BASE, &[("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true")]).unwrap();
        assert_eq!(c.http.debug, None);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("no metrics are served")),
            "{:?}",
            c.warnings
        );
        // Wrong values name the key (and the variable that set it).
        for (var, value, key) in [
            ("REGISTRY_HTTP_DEBUG_ADDR", "5001", "http.debug.addr"),
            (
                "REGISTRY_HTTP_DEBUG_ADDR",
                "localhost:http",
                "http.debug.addr",
            ),
            ("REGISTRY_HTTP_DEBUG_ADDR", "::1:5001", "http.debug.addr"),
            (
                "REGISTRY_HTTP_DEBUG_ADDR",
                "localhost:99999",
                "http.debug.addr",
            ),
            (
                "REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH",
                "metrics",
                "http.debug.prometheus.path",
            ),
            (
                "REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH",
                "/{capture}",
                "http.debug.prometheus.path",
            ),
            (
                "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED",
                "maybe",
                "http.debug.prometheus.enabled",
            ),
        ] {
            let mut env: Vec<(&str, &str)> = [
                ("REGISTRY_HTTP_DEBUG_ADDR", "localhost:5001"),
                ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
            ]
            .into_iter()
            .filter(|(k, _)| *k != var)
            .collect();
            env.push((var, value));
            let err = load(BASE, &env).unwrap_err().to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_duration("168h"),
            Some(Duration::from_secs(168 * 3600))
        );
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("soon"), None);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The shipped examples load without warnings and document every supported key.
    #[test]
    fn shipped_examples_are_complete_and_valid() {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ferry.yml");
        let config = Config::load(Some(&full), []).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let text = std::fs::read_to_string(&full).unwrap();
        for (key, _) in SUPPORTED_KEYS {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(&format!("{leaf}:")),
                "config/ferry.yml does not show {key}"
            );
        }
        let s3 = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/s3.yml");
        let config = Config::load(Some(&s3), []).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert!(matches!(config.storage, StorageSettings::S3(_)));
        let minimal = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/minimal.yml");
        assert!(
            Config::load(Some(&minimal), [])
                .unwrap()
                .warnings
                .is_empty()
        );
    }
}

#[cfg(test)]
mod readme_tests {
    /// The README's configuration reference lists every supported key.
    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        for (key, _) in super::SUPPORTED_KEYS {
            assert!(
                readme.contains(&format!("`{key}`")),
                "README.md does not document {key}"
            );
        }
        for unsupported in super::UNSUPPORTED {
            assert!(
                readme.contains(&format!("`{}`", unsupported.key)),
                "README.md does not say what Ferry does with {}",
                unsupported.key
            );
        }
    }
}
