//! One event as Distribution's receivers parse it (`notifications/event.go`): `id`,
//! `timestamp`, `action`, `target` (`mediaType`, `size`, `digest`, `length`, `repository`,
//! `fromRepository`, `url`, `tag`, `references`), `request` (`id`, `addr`, `host`,
//! `method`, `useragent`), `actor` (`name`), `source` (`addr`, `instanceID`). Empty fields
//! are left out, as Go's `omitempty` does (`request.id`, `method` and `useragent` always
//! appear).

use serde::Serialize;

use crate::oci::{Digest, RepositoryName};
use crate::registry::context::{Caller, RequestContext};

/// The media type of the envelope (`Content-Type` of every delivery), as `registry:2`
/// sends it.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The media type Distribution gives blobs in events (it does not know a layer's type).
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventAction {
    /// A manifest or blob was pushed.
    Push,
    /// A manifest or blob was pulled (`GET`).
    Pull,
    /// A blob was mounted from another repository.
    Mount,
    /// A manifest, tag or blob was deleted.
    Delete,
}

impl EventAction {
    /// Distribution's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Push => "push",
            EventAction::Pull => "pull",
            EventAction::Mount => "mount",
            EventAction::Delete => "delete",
        }
    }
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Blob,
    Manifest,
}

/// The target of an event, as the service that emits it knows it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    kind: Kind,
    repository: &'a RepositoryName,
    digest: &'a Digest,
    media_type: Option<&'a str>,
    size: Option<u64>,
    tag: Option<&'a str>,
    from_repository: Option<&'a str>,
    /// A manifest's bytes, for `references`.
    manifest: Option<&'a [u8]>,
}

impl<'a> Target<'a> {
    /// A blob of `size` bytes (push, pull, mount).
    pub fn blob(repository: &'a RepositoryName, digest: &'a Digest, size: u64) -> Self {
        Target {
            kind: Kind::Blob,
            repository,
            digest,
            media_type: Some(BLOB_MEDIA_TYPE),
            size: Some(size),
            tag: None,
            from_repository: None,
            manifest: None,
        }
    }

    /// A manifest (push, pull): its media type and bytes.
    pub fn manifest(
        repository: &'a RepositoryName,
        digest: &'a Digest,
        media_type: &'a str,
        bytes: &'a [u8],
    ) -> Self {
        Target {
            kind: Kind::Manifest,
            repository,
            digest,
            media_type: Some(media_type),
            size: Some(bytes.len() as u64),
            tag: None,
            from_repository: None,
            manifest: Some(bytes),
        }
    }

    /// A deleted blob: only its digest and repository.
    pub fn deleted_blob(repository: &'a RepositoryName, digest: &'a Digest) -> Self {
        Target {
            media_type: None,
            size: None,
            ..Target::blob(repository, digest, 0)
        }
    }

    /// A deleted manifest: only its digest and repository.
    pub fn deleted_manifest(repository: &'a RepositoryName, digest: &'a Digest) -> Self {
        Target {
            kind: Kind::Manifest,
            ..Target::deleted_blob(repository, digest)
        }
    }

    /// Named by `tag`.
    pub fn with_tag(self, tag: &'a str) -> Self {
        Target {
            tag: Some(tag),
            ..self
        }
    }

    /// Mounted from `from`.
    pub fn mounted_from(self, from: Option<&'a RepositoryName>) -> Self {
        Target {
            from_repository: from.map(RepositoryName::as_str),
            ..self
        }
    }

    /// The repository.
    pub fn repository(&self) -> &RepositoryName {
        self.repository
    }

    /// The media type, if the event carries one.
    pub fn media_type(&self) -> Option<&str> {
        self.media_type
    }
}

/// A descriptor in `target.references`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    media_type: String,
    #[serde(default)]
    size: u64,
    digest: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_repository: Option<&'a str>,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    references: Vec<Descriptor>,
}

#[derive(Serialize)]
struct RequestRecord<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    addr: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'a str,
    method: &'a str,
    useragent: &'a str,
}

#[derive(Serialize)]
struct ActorRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The node that generated the event.
#[derive(Clone, Debug, Serialize)]
pub struct SourceRecord {
    /// `host:port` of this registry.
    pub addr: String,
    /// This process's id (a new one each start).
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

#[derive(Serialize)]
struct EventRecord<'a> {
    id: String,
    timestamp: String,
    action: &'static str,
    target: TargetRecord<'a>,
    request: RequestRecord<'a>,
    actor: ActorRecord<'a>,
    source: &'a SourceRecord,
}

/// The event as JSON text; `None` for an operation without an HTTP request behind it
/// (the mirror's own cache fills).
pub fn render(
    cx: &RequestContext,
    action: EventAction,
    target: &Target<'_>,
    source: &SourceRecord,
    include_references: bool,
) -> Option<String> {
    let request = cx.request.as_deref()?;
    let path = match target.kind {
        Kind::Blob => "blobs",
        Kind::Manifest => "manifests",
    };
    let references = match (include_references, target.manifest) {
        (true, Some(bytes)) => references(bytes),
        _ => Vec::new(),
    };
    let record = EventRecord {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp: chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        action: action.as_str(),
        target: TargetRecord {
            media_type: target.media_type,
            size: target.size,
            digest: target.digest.to_string(),
            length: target.size,
            repository: target.repository.as_str(),
            from_repository: target.from_repository,
            url: format!(
                "{}/v2/{}/{path}/{}",
                request.base_url, target.repository, target.digest
            ),
            tag: target.tag,
            references,
        },
        request: RequestRecord {
            id: &cx.id,
            addr: &request.addr,
            host: &request.host,
            method: &request.method,
            useragent: &request.user_agent,
        },
        actor: ActorRecord {
            name: match &cx.caller {
                Caller::User(name) => Some(name),
                Caller::Anonymous => None,
            },
        },
        source,
    };
    serde_json::to_string(&record).ok()
}

/// The descriptors a manifest names, as Distribution's `References()` lists them: an
/// image's config and layers, an index's manifests.
fn references(bytes: &[u8]) -> Vec<Descriptor> {
    #[derive(serde::Deserialize)]
    struct Listed {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    match serde_json::from_slice::<Listed>(bytes) {
        Ok(listed) => listed
            .config
            .into_iter()
            .chain(listed.layers)
            .chain(listed.manifests)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The envelope around queued events (each already JSON text).
pub fn envelope<'a>(events: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = String::from("{\"events\":[");
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event);
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_joins_events() {
        assert_eq!(
            envelope(["{\"a\":1}", "{\"b\":2}"]),
            "{\"events\":[{\"a\":1},{\"b\":2}]}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&envelope([])).unwrap();
        assert_eq!(parsed["events"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn references_of_an_image_and_an_index() {
        let image = br#"{"config":{"mediaType":"c","size":3,"digest":"sha256:aa"},"layers":[{"mediaType":"l","size":5,"digest":"sha256:bb"}]}"#;
        let found = references(image);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].digest, "sha256:bb");
        let index = br#"{"manifests":[{"mediaType":"m","size":7,"digest":"sha256:cc"}]}"#;
        assert_eq!(references(index).len(), 1);
        assert!(references(b"not json").is_empty());
    }
}
