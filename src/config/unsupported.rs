//! Distribution keys Ferry does not implement, and what it does with each: a key whose
//! absence would weaken security or change what the registry is refuses the start; any
//! other one is ignored with a warning. The table is the documentation: README.md lists
//! the same keys.
//!
//! A key that asks for nothing (`auth:` with nothing under it, `storage.s3.encrypt:
//! false`, an empty string or list) is silently accepted: Ferry already behaves as asked.

use serde_norway::Value;

use super::file::parse_flag;
use super::tree::{STORAGE_PARAMETERS, Tree, leaves};

/// When an unsupported key stops the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// Naming the key asks for the feature, whatever is under it (an access controller
    /// under `auth`).
    Named,
    /// A value that is not empty: not null, `""`, `false`, `{}` or `[]`.
    Set,
    /// A value that is not false.
    True,
    /// A list with an entry that is not `disabled: true`.
    EnabledEntries,
    /// A value other than this one (which is what Ferry does anyway).
    Unless(&'static str),
}

/// A Distribution key (`*` stands for any one key) and what Ferry does with it.
#[derive(Clone, Copy, Debug)]
pub struct Unsupported {
    /// Dotted key; it covers the keys under it.
    pub key: &'static str,
    /// `None`: ignored with a warning.
    pub refuse: Option<Refuse>,
    /// What running without it means.
    pub why: &'static str,
}

const fn refuse(key: &'static str, when: Refuse, why: &'static str) -> Unsupported {
    Unsupported {
        key,
        refuse: Some(when),
        why,
    }
}

const fn warn(key: &'static str, why: &'static str) -> Unsupported {
    Unsupported {
        key,
        refuse: None,
        why,
    }
}

/// The reason given for an unknown key directly under `storage`, which Distribution reads
/// as the name of a storage driver.
pub const STORAGE_DRIVER: &str =
    "Ferry stores blobs on the filesystem or in S3 only (storage.filesystem, storage.s3)";

/// Every Distribution key Ferry knows but does not implement. The first entry that covers
/// a key decides.
pub const UNSUPPORTED: &[Unsupported] = &[
    // Refused: without them the registry would be open, unencrypted, or something else.
    refuse(
        "auth.silly",
        Refuse::Named,
        "Distribution's silly access controller is for its own tests (it lets in any caller that sends any Authorization header); use auth.htpasswd or auth.token",
    ),
    refuse(
        "auth.*",
        Refuse::Named,
        "Ferry's access controllers are auth.htpasswd and auth.token; without this one anyone could pull and push",
    ),
    refuse(
        "http.tls.letsencrypt",
        Refuse::Set,
        "Ferry does not obtain certificates from Let's Encrypt itself; have certbot or cert-manager write them and name the files in http.tls.certificate and http.tls.key (Ferry re-reads them when they are renewed)",
    ),
    refuse(
        "http.prefix",
        Refuse::Set,
        "Ferry serves the API under /v2/ only; clients using the prefix would not reach it",
    ),
    refuse(
        "http.net",
        Refuse::Unless("tcp"),
        "Ferry listens on TCP only",
    ),
    refuse(
        "storage.s3.usefipsendpoint",
        Refuse::True,
        "requests would go to the standard endpoint (name the FIPS endpoint in storage.s3.regionendpoint instead)",
    ),
    refuse(
        "middleware.*",
        Refuse::EnabledEntries,
        "its rules (such as CloudFront or redirects for storage) would not apply",
    ),
    refuse(
        "validation.manifests.urls",
        Refuse::Set,
        "manifests naming any foreign-layer URL would be accepted",
    ),
    // Ignored: Ferry behaves as Distribution does without them, or more strictly, or they
    // only tune performance or diagnostics.
    warn("loglevel", "use log.level"),
    warn("log.fields", "log lines carry Ferry's own fields"),
    warn("log.hooks", "no log hooks are run"),
    warn(
        "http.secret",
        "Ferry keeps upload state on the server: there is nothing to sign",
    ),
    warn(
        "http.tls.ciphersuites",
        "rustls chooses the cipher suites (modern AEAD suites only)",
    ),
    warn(
        "http.debug",
        "Ferry's debug listener serves Prometheus metrics only (http.debug.addr, http.debug.prometheus): no pprof, expvar or health checks there",
    ),
    warn("http.headers", "no extra response headers are sent"),
    warn(
        "http.http2",
        "Ferry always offers HTTP/2 besides HTTP/1.1 (by ALPN over TLS)",
    ),
    warn(
        "http.h2c",
        "Ferry always answers HTTP/2 with prior knowledge on plain HTTP",
    ),
    warn("storage.cache", "Ferry's metadata database needs no cache"),
    warn("storage.tag", "tuning only"),
    warn("storage.filesystem.maxthreads", "tuning only"),
    warn("storage.s3.accelerate", "the standard endpoint is used"),
    warn("storage.s3.usedualstack", "the standard endpoint is used"),
    warn(
        "storage.s3.v4auth",
        "requests are always signed with Signature V4",
    ),
    warn("storage.s3.skipverify", "certificates are always verified"),
    warn(
        "storage.s3.sessiontoken",
        "temporary credentials come from the AWS environment (AWS_SESSION_TOKEN)",
    ),
    warn(
        "storage.s3.storageclass",
        "objects get the bucket's default storage class",
    ),
    warn(
        "storage.s3.objectacl",
        "objects are written without an ACL (the bucket's default applies)",
    ),
    warn("storage.s3.loglevel", "diagnostics only"),
    warn("storage.s3.checksumdisabled", "tuning only"),
    warn("storage.s3.checksumalgorithm", "tuning only"),
    warn("redis", "Ferry's metadata database needs no cache"),
    warn(
        "health.file",
        "Ferry runs no file checks; GET /health/ready checks the metadata database and the store on each request",
    ),
    warn(
        "health.http",
        "Ferry runs no HTTP checks; GET /health/ready checks the metadata database and the store on each request",
    ),
    warn(
        "health.tcp",
        "Ferry runs no TCP checks; GET /health/ready checks the metadata database and the store on each request",
    ),
    warn("reporting", "no error reporting service is used"),
    warn("compatibility", "Ferry refuses schema1 manifests"),
    warn("validation.enabled", "Ferry always validates manifests"),
    warn("validation.disabled", "Ferry always validates manifests"),
    warn(
        "validation.manifests.indexes",
        "Ferry accepts an index only when every manifest it lists is in the repository (the strictest setting)",
    ),
];

/// A key that stops the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Dotted key, e.g. `auth.htpasswd`.
    pub key: String,
    /// The environment variable that set it, if one did.
    pub from_env: Option<String>,
    /// What running without it would mean.
    pub why: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(var) = &self.from_env {
            write!(f, " (set by {var})")?;
        }
        write!(f, ": {}", self.why)
    }
}

/// What the keys the typed configuration ignored amount to.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Keys that stop the start.
    pub refusals: Vec<Refusal>,
    /// Warnings for the log.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Judges the key at `path`, which the typed configuration ignored, and every key
    /// under it.
    pub fn judge(&mut self, tree: &Tree, path: &[String]) {
        let Some(value) = tree.lookup(path) else {
            return;
        };
        if let [storage, driver] = path
            && storage == "storage"
            && !STORAGE_PARAMETERS.contains(&driver.as_str())
        {
            self.refuse(tree, path.join("."), STORAGE_DRIVER);
            return;
        }
        for (leaf, value) in leaves(path, value) {
            self.judge_leaf(tree, path.len(), &leaf, value);
        }
    }

    fn judge_leaf(&mut self, tree: &Tree, ignored_depth: usize, leaf: &[String], value: &Value) {
        let dotted = leaf.join(".");
        for entry in UNSUPPORTED {
            let pattern: Vec<&str> = entry.key.split('.').collect();
            // An entry speaks for keys the typed configuration does not know: one that
            // names a known section (`storage.*` and `storage.filesystem`) does not apply
            // to the keys under it.
            if ignored_depth > pattern.len() {
                continue;
            }
            let covered = leaf.len() >= pattern.len() && matches(&pattern, leaf);
            // `auth:` or `http.tls: {}`: a section, empty, above a key Ferry refuses.
            let above = leaf.len() < pattern.len() && matches(&pattern[..leaf.len()], leaf);
            match (entry.refuse, covered, above) {
                (None, true, _) => {
                    self.warnings.push(format!(
                        "configuration key {dotted} is not supported by Ferry and is ignored ({})",
                        entry.why
                    ));
                    return;
                }
                (Some(when), true, _) => {
                    if asks(when, value) {
                        let key = if when == Refuse::Named {
                            leaf[..pattern.len()].join(".")
                        } else {
                            dotted
                        };
                        self.refuse(tree, key, entry.why);
                    }
                    return;
                }
                (Some(_), false, true) => {
                    if !is_empty(value) {
                        self.refuse(tree, dotted, entry.why);
                    }
                    return;
                }
                _ => {}
            }
        }
        self.warnings
            .push(format!("unknown configuration key {dotted} is ignored"));
    }

    fn refuse(&mut self, tree: &Tree, key: String, why: &'static str) {
        if self.refusals.iter().any(|r| r.key == key) {
            return;
        }
        let from_env = tree.set_under(&key).map(str::to_string);
        self.refusals.push(Refusal { key, from_env, why });
    }
}

fn matches(pattern: &[&str], key: &[String]) -> bool {
    pattern.iter().zip(key).all(|(p, k)| *p == "*" || p == k)
}

/// Whether `value` asks for nothing: null, `""`, `false`, `{}` or `[]`.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.trim().is_empty(),
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(map) => map.is_empty(),
        Value::Number(_) | Value::Tagged(_) => false,
    }
}

/// Whether `value` asks for what `when` guards.
fn asks(when: Refuse, value: &Value) -> bool {
    match when {
        Refuse::Named => true,
        Refuse::Set => !is_empty(value),
        Refuse::True => match value {
            Value::String(s) => !s.trim().is_empty() && parse_flag(s) != Some(false),
            other => !is_empty(other),
        },
        Refuse::EnabledEntries => match value {
            Value::Sequence(items) => items.iter().any(|item| !disabled(item)),
            other => !is_empty(other),
        },
        Refuse::Unless(same) => match value {
            Value::String(s) => !s.trim().is_empty() && !s.trim().eq_ignore_ascii_case(same),
            other => !is_empty(other),
        },
    }
}

/// A middleware or notification endpoint written with `disabled: true`.
fn disabled(entry: &Value) -> bool {
    entry.get("disabled").is_some_and(|d| match d {
        Value::Bool(b) => *b,
        Value::String(s) => parse_flag(s) == Some(true),
        _ => false,
    })
}
