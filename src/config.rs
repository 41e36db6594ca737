//! Configuration, compatible with Distribution's `config.yml` and its `REGISTRY_*`
//! environment overrides (`REGISTRY_STORAGE_DELETE_ENABLED=true` sets
//! `storage.delete.enabled`). Keys Ferry does not know only warn; a value of the wrong
//! type stops the start with a message naming the key. Ferry's own settings live under
//! `database` (no Distribution key uses that name).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use crate::registry::Settings;
use crate::storage::s3::{MAX_PART_SIZE, MIN_PART_SIZE, S3Settings};

/// The data directory `registry:2` uses, and so Ferry's default.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";
/// Where data goes when [`DEFAULT_ROOT`] is not writable and nothing is configured.
pub const FALLBACK_ROOT: &str = "./ferry-data";

/// Keys Ferry implements, with a line of documentation each.
pub const SUPPORTED_KEYS: &[(&str, &str)] = &[
    ("version", "configuration format version, 0.1"),
    ("log.level", "error, warn, info or debug (default info)"),
    ("log.formatter", "text, json or logstash (default text)"),
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
        "catalog.maxentries",
        "most repositories per _catalog page (default 1000)",
    ),
    (
        "tags.maxtags",
        "most tags per tags/list page (default 1000)",
    ),
    (
        "database.path",
        "Ferry's SQLite metadata file (default <data directory>/ferry/metadata.db; with S3 the data directory is /var/lib/registry, else ./ferry-data)",
    ),
    (
        "database.autoimport",
        "at startup, adopt a registry:2 data directory found in storage (default true)",
    ),
];

/// Distribution sections Ferry reads but does not act on (yet): they warn, naming the key.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "auth",
    "notifications",
    "redis",
    "health",
    "proxy",
    "middleware",
    "validation",
    "reporting",
    "loglevel",
    "log.fields",
    "log.hooks",
    "log.accesslog",
    "http.secret",
    "http.tls",
    "http.debug",
    "http.headers",
    "http.http2",
    "http.h2c",
    "http.net",
    "http.prefix",
    "storage.cache",
    "storage.tag",
    "storage.s3.accelerate",
    "storage.s3.encrypt",
    "storage.s3.keyid",
    "storage.s3.v4auth",
    "storage.s3.usedualstack",
    "storage.s3.usefipsendpoint",
    "storage.s3.loglevel",
    "storage.s3.storageclass",
    "storage.s3.objectacl",
    "storage.filesystem.maxthreads",
];

/// Distribution's storage driver sections.
const STORAGE_DRIVERS: &[&str] = &["filesystem", "s3", "gcs", "azure", "inmemory"];

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
    /// `storage.s3`.
    S3(S3Settings),
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
    /// SQLite metadata file.
    pub database_path: PathBuf,
    /// Import a Distribution tree found in storage at startup.
    pub auto_import: bool,
    /// HTTP server.
    pub http: HttpSettings,
    /// Registry behaviour.
    pub registry: Settings,
    /// Upload purging.
    pub upload_purging: UploadPurging,
    /// Warnings to log once logging is set up (unknown keys and the like).
    pub warnings: Vec<String>,
}

/// The raw configuration tree, with typed getters that name the key on error.
struct Tree(Value);

impl Tree {
    fn get(&self, key: &str) -> Option<&Value> {
        let mut node = &self.0;
        for part in key.split('.') {
            node = node.as_mapping()?.get(part)?;
        }
        (!node.is_null()).then_some(node)
    }

    fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Self::invalid(key, "expected a string")),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(Self::invalid(
                    key,
                    format!("expected true or false, got {s:?}"),
                )),
            },
            Some(other) => Err(Self::invalid(
                key,
                format!("expected true or false, got {}", describe(other)),
            )),
        }
    }

    fn u32(&self, key: &str, default: u32) -> Result<u32, ConfigError> {
        let parsed = match self.get(key) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        parsed
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| Self::invalid(key, "expected a positive whole number"))
    }

    fn bytes(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        let parsed = match self.get(key) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        parsed.ok_or_else(|| Self::invalid(key, "expected a number of bytes"))
    }

    fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => parse_duration(&s).ok_or_else(|| {
                Self::invalid(
                    key,
                    format!("expected a duration such as 30s or 168h, got {s:?}"),
                )
            }),
        }
    }

    /// Keeps only `driver`'s section among the storage drivers (creating it if absent).
    fn select_driver(&mut self, driver: &str) {
        let driver = driver.to_ascii_lowercase();
        if let Some(Value::Mapping(storage)) =
            self.0.as_mapping_mut().and_then(|m| m.get_mut("storage"))
        {
            for other in STORAGE_DRIVERS.iter().filter(|d| **d != driver) {
                storage.remove(*other);
            }
        }
        if self.get(&format!("storage.{driver}")).is_none() {
            self.set(
                &["storage".to_string(), driver],
                Value::Mapping(Mapping::new()),
            );
        }
    }

    /// Sets `key` (dotted) to `value`, creating mappings on the way.
    fn set(&mut self, key: &[String], value: Value) {
        let mut node = &mut self.0;
        for part in key {
            if !node.is_mapping() {
                *node = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = node else { return };
            node = map
                .entry(Value::String(part.clone()))
                .or_insert(Value::Null);
        }
        *node = value;
    }

    /// Dotted paths of every leaf.
    fn leaves(&self) -> Vec<String> {
        fn walk(node: &Value, prefix: &str, out: &mut Vec<String>) {
            match node {
                Value::Mapping(map) if !map.is_empty() => {
                    for (k, v) in map {
                        let k = match k {
                            Value::String(s) => s.clone(),
                            other => describe(other),
                        };
                        let path = if prefix.is_empty() {
                            k
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(v, &path, out);
                    }
                }
                _ => out.push(prefix.to_string()),
            }
        }
        let mut out = Vec::new();
        if self.0.is_mapping() {
            walk(&self.0, "", &mut out);
        }
        out
    }
}

fn describe(value: &Value) -> String {
    serde_norway::to_string(value)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Parses Go-style durations as Distribution writes them (`168h`, `1h30m`, `30s`, `500ms`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(s).ok()
}

fn is_prefix_of(prefix: &str, key: &str) -> bool {
    key == prefix || key.starts_with(&format!("{prefix}."))
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
                    Ok(_) => {
                        return Err(Tree::invalid("(top level)", "expected a mapping of keys"));
                    }
                    Err(source) => {
                        return Err(ConfigError::Yaml {
                            path: path.to_path_buf(),
                            source,
                        });
                    }
                }
            }
        };
        let mut tree = Tree(value);
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("REGISTRY_"))
            .collect();
        env.sort();
        for (name, value) in env {
            let parts: Vec<String> = name["REGISTRY_".len()..]
                .to_ascii_lowercase()
                .split('_')
                .map(str::to_string)
                .collect();
            if parts.iter().any(String::is_empty) {
                continue;
            }
            if parts == ["storage"] {
                // Distribution's way to switch drivers from the environment:
                // REGISTRY_STORAGE=s3 drops the file's other driver section.
                tree.select_driver(&value);
                continue;
            }
            tree.set(&parts, Value::String(value));
        }
        Self::from_tree(&tree, path)
    }

    fn from_tree(tree: &Tree, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        for leaf in tree.leaves() {
            if SUPPORTED_KEYS
                .iter()
                .any(|(k, _)| is_prefix_of(&leaf, k) || is_prefix_of(k, &leaf))
            {
                continue;
            }
            if leaf.starts_with("storage.gcs")
                || leaf.starts_with("storage.azure")
                || leaf.starts_with("storage.inmemory")
            {
                return Err(Tree::invalid(
                    &leaf,
                    "this storage driver is not supported yet; use storage.filesystem or storage.s3",
                ));
            }
            if KNOWN_UNSUPPORTED.iter().any(|k| is_prefix_of(k, &leaf)) {
                warnings.push(format!(
                    "configuration key {leaf} is not supported by Ferry and is ignored"
                ));
            } else {
                warnings.push(format!("unknown configuration key {leaf} is ignored"));
            }
        }

        if let Some(version) = tree.string("version")?
            && version != "0.1"
        {
            warnings.push(format!(
                "configuration version {version:?} is not 0.1; reading it as 0.1"
            ));
        }
        let level = tree
            .string("log.level")?
            .unwrap_or_else(|| "info".into())
            .to_ascii_lowercase();
        let level = match level.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => level,
            "panic" | "fatal" => "error".to_string(),
            "warning" => "warn".to_string(),
            other => {
                return Err(Tree::invalid(
                    "log.level",
                    format!("expected error, warn, info or debug, got {other:?}"),
                ));
            }
        };
        let json = match tree.string("log.formatter")?.as_deref() {
            None | Some("text") => false,
            Some("json" | "logstash") => true,
            Some(other) => {
                return Err(Tree::invalid(
                    "log.formatter",
                    format!("expected text, json or logstash, got {other:?}"),
                ));
            }
        };

        let storage = Self::storage(tree)?;
        if storage != StorageSettings::Filesystem
            && tree.get("storage.filesystem.rootdirectory").is_some()
        {
            return Err(Tree::invalid(
                "storage",
                "both storage.filesystem and storage.s3 are configured; choose one",
            ));
        }
        let database = tree.string("database.path")?.filter(|p| !p.is_empty());
        // With S3 the local directory only holds the database: where that is configured,
        // its directory is the data directory (no default directory is created).
        let database_dir = database
            .as_deref()
            .filter(|_| storage != StorageSettings::Filesystem)
            .map(|p| match Path::new(p).parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            });
        let rootdirectory = tree.string("storage.filesystem.rootdirectory")?;
        let (root, root_choice) = match (rootdirectory, database_dir) {
            (Some(dir), _) if !dir.is_empty() => (PathBuf::from(dir), RootChoice::Configured),
            (Some(_), _) => {
                return Err(Tree::invalid(
                    "storage.filesystem.rootdirectory",
                    "must not be empty",
                ));
            }
            (None, Some(dir)) => (dir, RootChoice::Configured),
            (None, None) if writable_dir(Path::new(DEFAULT_ROOT)) => {
                (PathBuf::from(DEFAULT_ROOT), RootChoice::Default)
            }
            (None, None) => (PathBuf::from(FALLBACK_ROOT), RootChoice::Fallback),
        };
        let database_path = match database {
            Some(p) => PathBuf::from(p),
            None => root.join("ferry").join("metadata.db"),
        };

        let addr = tree.string("http.addr")?.unwrap_or_else(|| ":5000".into());
        let addr = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr
        };
        if !addr.contains(':') {
            return Err(Tree::invalid(
                "http.addr",
                format!("expected host:port, got {addr:?}"),
            ));
        }
        let host = tree.string("http.host")?.filter(|h| !h.is_empty());
        if let Some(h) = &host
            && !(h.starts_with("http://") || h.starts_with("https://"))
        {
            return Err(Tree::invalid(
                "http.host",
                format!("expected an absolute URL such as https://registry.example.com, got {h:?}"),
            ));
        }
        let http = HttpSettings {
            addr,
            host,
            relative_urls: tree.bool("http.relativeurls", false)?,
            drain_timeout: tree.duration("http.draintimeout", Duration::from_secs(10))?,
        };
        let registry = Settings {
            delete_enabled: tree.bool("storage.delete.enabled", false)?,
            read_only: tree.bool("storage.maintenance.readonly.enabled", false)?,
            catalog_max_entries: tree.u32("catalog.maxentries", 1000)?,
            tags_max: tree.u32("tags.maxtags", 1000)?,
        };
        let upload_purging = UploadPurging {
            enabled: tree.bool("storage.maintenance.uploadpurging.enabled", true)?,
            age: tree.duration(
                "storage.maintenance.uploadpurging.age",
                Duration::from_secs(168 * 3600),
            )?,
            interval: tree.duration(
                "storage.maintenance.uploadpurging.interval",
                Duration::from_secs(24 * 3600),
            )?,
            dry_run: tree.bool("storage.maintenance.uploadpurging.dryrun", false)?,
        };
        if upload_purging.enabled && upload_purging.interval.is_zero() {
            return Err(Tree::invalid(
                "storage.maintenance.uploadpurging.interval",
                "must be more than 0",
            ));
        }
        Ok(Config {
            source: path.map(Path::to_path_buf),
            log: LogSettings { level, json },
            storage,
            root,
            root_choice,
            database_path,
            auto_import: tree.bool("database.autoimport", true)?,
            http,
            registry,
            upload_purging,
            warnings,
        })
    }
}

impl Config {
    /// `storage.s3` when a bucket is named, else the filesystem.
    fn storage(tree: &Tree) -> Result<StorageSettings, ConfigError> {
        let Some(bucket) = tree.string("storage.s3.bucket")? else {
            if let Some(leaf) = tree
                .leaves()
                .into_iter()
                .find(|l| l.starts_with("storage.s3."))
            {
                return Err(Tree::invalid(&leaf, "storage.s3 needs storage.s3.bucket"));
            }
            return Ok(StorageSettings::Filesystem);
        };
        if bucket.is_empty() {
            return Err(Tree::invalid("storage.s3.bucket", "must not be empty"));
        }
        let mut s3 = S3Settings::new(bucket);
        if let Some(region) = tree
            .string("storage.s3.region")?
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
        {
            s3.region = region;
        }
        s3.region_endpoint = tree
            .string("storage.s3.regionendpoint")?
            .filter(|e| !e.is_empty());
        s3.access_key = tree
            .string("storage.s3.accesskey")?
            .filter(|k| !k.is_empty());
        s3.secret_key = tree
            .string("storage.s3.secretkey")?
            .filter(|k| !k.is_empty());
        if s3.access_key.is_some() != s3.secret_key.is_some() {
            return Err(Tree::invalid(
                "storage.s3.secretkey",
                "storage.s3.accesskey and storage.s3.secretkey go together",
            ));
        }
        s3.force_path_style = tree.bool("storage.s3.forcepathstyle", false)?;
        s3.secure = tree.bool("storage.s3.secure", true)?;
        s3.root_directory = tree
            .string("storage.s3.rootdirectory")?
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        s3.chunk_size = tree.bytes("storage.s3.chunksize", s3.chunk_size)?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s3.chunk_size) {
            return Err(Tree::invalid(
                "storage.s3.chunksize",
                format!("must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"),
            ));
        }
        s3.copy_chunk_size = tree.bytes("storage.s3.multipartcopychunksize", s3.copy_chunk_size)?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s3.copy_chunk_size) {
            return Err(Tree::invalid(
                "storage.s3.multipartcopychunksize",
                format!("must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"),
            ));
        }
        s3.copy_max_concurrency = tree.u32(
            "storage.s3.multipartcopymaxconcurrency",
            s3.copy_max_concurrency as u32,
        )? as usize;
        s3.copy_threshold =
            tree.bytes("storage.s3.multipartcopythresholdsize", s3.copy_threshold)?;
        if s3.copy_threshold > MAX_PART_SIZE {
            return Err(Tree::invalid(
                "storage.s3.multipartcopythresholdsize",
                format!("must be at most {MAX_PART_SIZE} bytes (S3's largest single copy)"),
            ));
        }
        s3.redirect = !tree.bool("storage.redirect.disable", true)?;
        Ok(StorageSettings::S3(s3))
    }
}

/// Whether `dir` exists or can be created, and a file can be written in it.
fn writable_dir(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".ferry-write-test-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
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
        let err = load(BASE, &[("REGISTRY_TAGS_MAXTAGS", "lots")]).unwrap_err();
        assert!(err.to_string().contains("tags.maxtags"), "{err}");
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
            &format!("{BASE}frobnicate: 1\nauth:\n  htpasswd:\n    realm: x\n"),
            &[],
        )
        .unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("frobnicate")),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("auth.htpasswd.realm") && w.contains("not supported"))
        );
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
        let readme = include_str!("../README.md");
        for (key, _) in super::SUPPORTED_KEYS {
            assert!(
                readme.contains(&format!("`{key}`")),
                "README.md does not document {key}"
            );
        }
    }
}
