//! The configuration file as typed sections, one struct per section, with Distribution's
//! spellings. A key Ferry implements is one field here (plus its line in
//! [`super::SUPPORTED_KEYS`]); every other key is reported by `serde_ignored` and judged by
//! [`super::unsupported`].
//!
//! Values are read leniently, as Distribution's environment overrides require: every
//! `REGISTRY_*` value arrives as a string, so `"true"`, `"5242880"` and `"168h"` are read
//! like their YAML counterparts. A `null` key is the same as an absent one.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_norway::Value;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct File {
    pub version: Option<Text>,
    #[serde(deserialize_with = "section")]
    pub log: Log,
    #[serde(deserialize_with = "section")]
    pub storage: Storage,
    #[serde(deserialize_with = "section")]
    pub http: Http,
    #[serde(deserialize_with = "section")]
    pub auth: Auth,
    #[serde(deserialize_with = "section")]
    pub catalog: Catalog,
    #[serde(deserialize_with = "section")]
    pub tags: Tags,
    /// Ferry's own section (no Distribution key uses the name).
    #[serde(deserialize_with = "section")]
    pub database: Database,
    /// Ferry's own section (no Distribution key uses the name).
    #[serde(deserialize_with = "section")]
    pub connections: Connections,
    /// Ferry's own section (no Distribution key uses the name).
    #[serde(deserialize_with = "section")]
    pub uploads: Uploads,
    /// The pull-through mirror: Distribution's keys plus Ferry's extensions.
    #[serde(deserialize_with = "section")]
    pub proxy: Proxy,
    /// Distribution's health checks: only `storagedriver` is read (and needs nothing).
    #[serde(deserialize_with = "section")]
    pub health: Health,
    /// Webhooks: Distribution's keys plus Ferry's `queuelimit`.
    #[serde(deserialize_with = "section")]
    pub notifications: Notifications,

    /// Ferry's own section (no Distribution key uses the name): the web UI.
    #[serde(deserialize_with = "section")]
    pub ui: Enabled,
}

/// `log`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Log {
    pub level: Option<Text>,
    pub formatter: Option<Text>,
    #[serde(deserialize_with = "section")]
    pub accesslog: AccessLog,
}

/// `log.accesslog`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct AccessLog {
    pub disabled: Option<Flag>,
}

/// `storage`. Distribution reads any other key here as the name of a storage driver.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Storage {
    #[serde(deserialize_with = "section")]
    pub filesystem: Filesystem,
    #[serde(deserialize_with = "section")]
    pub s3: S3,
    #[serde(deserialize_with = "section")]
    pub delete: Enabled,
    #[serde(deserialize_with = "section")]
    pub maintenance: Maintenance,
    #[serde(deserialize_with = "section")]
    pub redirect: Redirect,
}

/// `storage.filesystem`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Filesystem {
    pub rootdirectory: Option<Text>,
}

/// `storage.s3`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct S3 {
    pub bucket: Option<Text>,
    pub region: Option<Text>,
    pub regionendpoint: Option<Text>,
    pub accesskey: Option<Text>,
    pub secretkey: Option<Text>,
    pub forcepathstyle: Option<Flag>,
    pub secure: Option<Flag>,
    pub rootdirectory: Option<Text>,
    pub chunksize: Option<Bytes>,
    pub multipartcopychunksize: Option<Bytes>,
    pub multipartcopymaxconcurrency: Option<Count>,
    pub multipartcopythresholdsize: Option<Bytes>,
    pub encrypt: Option<Flag>,
    pub keyid: Option<Text>,
}

/// A section whose only key is `enabled` (`storage.delete`, `storage.maintenance.readonly`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Enabled {
    pub enabled: Option<Flag>,
}

/// `storage.maintenance`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Maintenance {
    #[serde(deserialize_with = "section")]
    pub uploadpurging: UploadPurging,
    #[serde(deserialize_with = "section")]
    pub readonly: Enabled,
}

/// `storage.maintenance.uploadpurging`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct UploadPurging {
    pub enabled: Option<Flag>,
    pub age: Option<GoDuration>,
    pub interval: Option<GoDuration>,
    pub dryrun: Option<Flag>,
}

/// `storage.redirect`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Redirect {
    pub disable: Option<Flag>,
}

/// `http`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Http {
    pub addr: Option<Text>,
    pub host: Option<Text>,
    pub relativeurls: Option<Flag>,
    pub draintimeout: Option<GoDuration>,
    #[serde(deserialize_with = "section")]
    pub tls: Tls,
    #[serde(deserialize_with = "section")]
    pub debug: DebugListener,
}

/// `http.debug`: the second, plain-HTTP listener (Prometheus metrics).
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct DebugListener {
    pub addr: Option<Text>,
    #[serde(deserialize_with = "section")]
    pub prometheus: Prometheus,
}

/// `http.debug.prometheus`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Prometheus {
    pub enabled: Option<Flag>,
    pub path: Option<Text>,
}

/// `http.tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Tls {
    pub certificate: Option<Text>,
    pub key: Option<Text>,
    pub clientcas: Option<TextList>,
    pub minimumtls: Option<Text>,
}

/// `auth`. An access controller written with nothing under it (`htpasswd:`) is present,
/// not absent: it then lacks its required keys, which is an error, never an open registry.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Auth {
    #[serde(deserialize_with = "present")]
    pub htpasswd: Option<Htpasswd>,
    #[serde(deserialize_with = "present")]
    pub token: Option<Token>,
    /// Ferry's extension: access rules.
    pub access: Option<Vec<AccessRule>>,
}

/// `auth.htpasswd`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Htpasswd {
    pub realm: Option<Text>,
    pub path: Option<Text>,
}

/// `auth.token`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Token {
    pub realm: Option<Text>,
    pub service: Option<Text>,
    pub issuer: Option<Text>,
    pub rootcertbundle: Option<Text>,
    pub jwks: Option<Text>,
    pub autoredirect: Option<Flag>,
    pub signingalgorithms: Option<TextList>,
}

/// One entry of `auth.access`; a misspelt key is an error (a rule that silently grants
/// less, or more, than written is worse than a refusal to start).
#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a rule: repositories, users, anonymous, actions"
)]
pub(super) struct AccessRule {
    pub repositories: Option<TextList>,
    pub users: Option<TextList>,
    pub anonymous: Option<Flag>,
    pub actions: Option<TextList>,
}

/// A section that is there, even when written with nothing under it.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// `health`. Distribution's other checks (`file`, `http`, `tcp`) are unsupported keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Health {
    #[serde(deserialize_with = "section")]
    pub storagedriver: StorageDriverHealth,
}

/// `health.storagedriver`: Distribution's periodic storage check. Accepted (the values are
/// checked for their type) and otherwise unused: `GET /health/ready` checks the metadata
/// database and the store on each request, so there is no background checker to tune.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
#[allow(dead_code)]
pub(super) struct StorageDriverHealth {
    pub enabled: Option<Flag>,
    pub interval: Option<GoDuration>,
    pub threshold: Option<Count>,
}

/// `catalog`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Catalog {
    pub maxentries: Option<Count>,
}

/// `tags`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Tags {
    pub maxtags: Option<Count>,
}

/// `database`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Database {
    pub path: Option<Text>,
    pub url: Option<Text>,
    pub maxconnections: Option<Count>,
    pub autoimport: Option<Flag>,
}

/// `connections`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Connections {
    pub headertimeout: Option<GoDuration>,
    pub bodytimeout: Option<GoDuration>,
}

/// `uploads`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Uploads {
    pub maxblobsize: Option<Bytes>,
}

/// `proxy`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Proxy {
    pub remoteurl: Option<Text>,
    pub username: Option<Text>,
    pub password: Option<Secret>,
    pub ttl: Option<GoDuration>,
    /// Ferry's extension: how long a tag is served from the cache before a `HEAD` asks the
    /// upstream again.
    pub tagrevalidate: Option<GoDuration>,
    /// Ferry's extension: repository patterns that are ordinary local repositories.
    pub local: Option<TextList>,
    /// Ferry's extension: upstreams by registry host name.
    pub upstreams: Option<std::collections::BTreeMap<String, Upstream>>,
}

/// One entry of `proxy.upstreams`; a misspelt key is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "an upstream: remoteurl, username, password, ttl"
)]
pub(super) struct Upstream {
    pub remoteurl: Option<Text>,
    pub username: Option<Text>,
    pub password: Option<Secret>,
    pub ttl: Option<GoDuration>,
}

/// `notifications`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct Notifications {
    #[serde(deserialize_with = "section")]
    pub events: NotificationEvents,
    pub endpoints: Option<NotificationEndpoints>,
    /// Ferry's extension: the most events queued per endpoint.
    pub queuelimit: Option<Count>,
}

/// `notifications.events`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of keys")]
pub(super) struct NotificationEvents {
    pub includereferences: Option<Flag>,
}

/// `notifications.endpoints`: a YAML list, or from the environment entries by index
/// (`REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL`, which arrive as a mapping `0: ...`).
#[derive(Debug, Default)]
pub(super) struct NotificationEndpoints(pub Vec<NotificationEndpoint>);

impl<'de> Deserialize<'de> for NotificationEndpoints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items: Vec<Value> = match Value::deserialize(deserializer)? {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items,
            Value::Mapping(entries) => {
                let mut indexed = entries
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::Number(n) => n.as_u64().map(|i| (i, v)),
                        Value::String(s) => s.parse::<u64>().ok().map(|i| (i, v)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| D::Error::custom("expected a list of endpoints"))?;
                indexed.sort_by_key(|(i, _)| *i);
                indexed.into_iter().map(|(_, v)| v).collect()
            }
            _ => return Err(D::Error::custom("expected a list of endpoints")),
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                NotificationEndpoint::deserialize(item)
                    .map_err(|e| D::Error::custom(format!("entry {i}: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(NotificationEndpoints)
    }
}

/// One entry of `notifications.endpoints`; a misspelt key is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "an endpoint: name, disabled, url, headers, timeout, threshold, backoff, ignoredmediatypes, ignore"
)]
pub(super) struct NotificationEndpoint {
    pub name: Option<Text>,
    pub disabled: Option<Flag>,
    pub url: Option<Text>,
    pub headers: Option<std::collections::BTreeMap<String, TextList>>,
    pub timeout: Option<GoDuration>,
    pub threshold: Option<Count>,
    pub backoff: Option<GoDuration>,
    pub ignoredmediatypes: Option<TextList>,
    pub ignore: Option<NotificationIgnore>,
}

/// `ignore` of an endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "mediatypes and actions to ignore"
)]
pub(super) struct NotificationIgnore {
    pub mediatypes: Option<TextList>,
    pub actions: Option<TextList>,
}

/// A string that is never shown (passwords): its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Text::deserialize(deserializer).map(|Text(s)| Secret(s))
    }
}

/// A section written as `key:` with nothing under it is the same as an absent one.
fn section<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string; a number is read as its text (`version: 0.1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            _ => Err(D::Error::custom("expected a string")),
        }
    }
}

/// A list of strings, written as Distribution accepts one: a YAML list; from the
/// environment one string, a YAML list in one string (`[/a.pem, /b.pem]`), or entries by
/// index (`REGISTRY_HTTP_TLS_CLIENTCAS_0`, which arrive as a mapping `0: ...`). Empty entries
/// are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TextList(pub Vec<String>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expected = || D::Error::custom("expected a list of strings");
        let items: Vec<Value> = match Value::deserialize(deserializer)? {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items,
            Value::String(s) if s.trim_start().starts_with('[') => {
                serde_norway::from_str(&s).map_err(|_| expected())?
            }
            one @ Value::String(_) => vec![one],
            Value::Mapping(entries) => {
                let mut indexed = entries
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::Number(n) => n.as_u64().map(|i| (i, v)),
                        Value::String(s) => s.parse::<u64>().ok().map(|i| (i, v)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(expected)?;
                indexed.sort_by_key(|(i, _)| *i);
                indexed.into_iter().map(|(_, v)| v).collect()
            }
            _ => return Err(expected()),
        };
        let mut list = Vec::new();
        for item in items {
            match item {
                Value::String(s) if s.trim().is_empty() => {}
                Value::String(s) => list.push(s),
                _ => return Err(expected()),
            }
        }
        Ok(TextList(list))
    }
}

/// `true` or `false`, also written `yes`/`no`, `on`/`off`, `1`/`0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Flag(pub bool);

/// Reads a boolean as Distribution's YAML and environment accept it.
pub(super) fn parse_flag(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Bool(b) => Ok(Flag(b)),
            Value::String(s) => parse_flag(&s)
                .map(Flag)
                .ok_or_else(|| D::Error::custom(format!("expected true or false, got {s:?}"))),
            other => Err(D::Error::custom(format!(
                "expected true or false, got {}",
                describe(&other)
            ))),
        }
    }
}

/// A positive whole number that fits in 32 bits (page sizes, concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        unsigned(Value::deserialize(deserializer)?)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Count)
            .ok_or_else(|| D::Error::custom("expected a positive whole number"))
    }
}

/// A number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        unsigned(Value::deserialize(deserializer)?)
            .map(Bytes)
            .ok_or_else(|| D::Error::custom("expected a number of bytes"))
    }
}

fn unsigned(value: Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A Go duration as Distribution writes them: `168h`, `1h30m`, `30s`, `500ms`, `0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Text(s) = Text::deserialize(deserializer)?;
        super::parse_duration(&s).map(GoDuration).ok_or_else(|| {
            D::Error::custom(format!(
                "expected a duration such as 30s or 168h, got {s:?}"
            ))
        })
    }
}

/// A value as it would be written in YAML, for messages.
pub(super) fn describe(value: &Value) -> String {
    serde_norway::to_string(value)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Walks the typed sections' `Deserialize` impls to list their leaf keys, so a test can
/// hold [`super::SUPPORTED_KEYS`] to them.
#[cfg(test)]
pub(super) mod probe {
    use serde::Deserialize;
    use serde::de::value::{Error, StrDeserializer};
    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
    use serde::forward_to_deserialize_any;

    use super::File;

    /// What the probe found at its target key.
    #[derive(Debug)]
    enum Found {
        Section(&'static [&'static str]),
        Leaf,
    }

    /// A deserializer that descends along `target`, one key per level, and records
    /// whether the key there is a section (and its keys) or a leaf.
    struct Probe<'a> {
        target: &'a [&'static str],
        found: &'a mut Option<Found>,
    }

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
            if self.target.is_empty() {
                *self.found = Some(Found::Leaf);
            }
            Err(de::Error::custom("a leaf"))
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            match self.target.split_first() {
                None => {
                    *self.found = Some(Found::Section(fields));
                    visitor.visit_map(OneKey(None))
                }
                Some((key, rest)) => visitor.visit_map(OneKey(Some((
                    key,
                    Probe {
                        target: rest,
                        found: self.found,
                    },
                )))),
            }
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    /// A mapping with at most one key, whose value is probed further.
    struct OneKey<'a>(Option<(&'static str, Probe<'a>)>);

    impl<'de> MapAccess<'de> for OneKey<'_> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            match &self.0 {
                None => Ok(None),
                Some((key, _)) => {
                    let key: StrDeserializer<'_, Error> = (*key).into_deserializer();
                    seed.deserialize(key).map(Some)
                }
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            match self.0.take() {
                Some((_, probe)) => seed.deserialize(probe),
                None => Err(de::Error::custom("no value")),
            }
        }
    }

    /// The dotted leaf keys of [`File`].
    pub fn typed_keys() -> Vec<String> {
        let mut keys = Vec::new();
        let mut pending: Vec<Vec<&'static str>> = vec![Vec::new()];
        while let Some(target) = pending.pop() {
            let mut found = None;
            let _ = File::deserialize(Probe {
                target: &target,
                found: &mut found,
            });
            match found {
                Some(Found::Section(fields)) => pending.extend(fields.iter().map(|f| {
                    let mut key = target.clone();
                    key.push(f);
                    key
                })),
                Some(Found::Leaf) => keys.push(target.join(".")),
                None => panic!("the probe did not reach {}", target.join(".")),
            }
        }
        keys
    }
}
