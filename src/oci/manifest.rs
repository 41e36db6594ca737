//! Manifest parsing for validation: which kind a pushed document is, what it references,
//! its subject and artifact type. The pushed bytes themselves are never re-serialised.

use serde::Deserialize;

use super::digest::{Digest, DigestError};

/// Media types Ferry recognises.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1 (refused).
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1, signed (refused).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// Layer types that are never pushed (Windows base layers and the like).
    pub const FOREIGN_LAYERS: [&str; 4] = [
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ];
}

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid JSON: {0}")]
    NotJson(String),
    /// Docker schema 1.
    #[error(
        "Docker schema 1 manifests are not supported; push with a current client (schema 2 or OCI)"
    )]
    Schema1,
    /// `Content-Type` and the body's `mediaType` disagree.
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch {
        /// From the request header.
        header: String,
        /// From the document.
        body: String,
    },
    /// Structurally wrong for its media type.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// A descriptor carries a bad digest.
    #[error("invalid descriptor digest: {0}")]
    Digest(#[from] DigestError),
}

/// Whether a manifest lists blobs (image) or other manifests (index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// Config plus layers.
    Image,
    /// A list of child manifests.
    Index,
}

/// What a manifest reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceKind {
    /// The config blob.
    Config,
    /// A layer blob.
    Layer,
    /// A child manifest of an index.
    Manifest,
}

impl ReferenceKind {
    /// Stable name stored in the metadata database.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceKind::Config => "config",
            ReferenceKind::Layer => "layer",
            ReferenceKind::Manifest => "manifest",
        }
    }
}

/// A blob or manifest the pushed manifest needs present in its repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentReference {
    /// Digest of the target.
    pub digest: Digest,
    /// Size the manifest declares.
    pub size: u64,
    /// What it is.
    pub kind: ReferenceKind,
}

/// The facts Ferry keeps about a manifest.
#[derive(Clone, Debug)]
pub struct ParsedManifest {
    /// Effective media type (the body's, or else the `Content-Type`).
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// `artifactType`, or for an image the config media type (what the referrers API lists).
    pub artifact_type: Option<String>,
    /// The manifest this one refers to, if any.
    pub subject: Option<Digest>,
    /// The `annotations` object as JSON text, if any.
    pub annotations: Option<String>,
    /// Content that must exist (foreign layers excluded).
    pub references: Vec<ContentReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
    // Present in schema 1 only.
    fs_layers: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
}

impl RawDescriptor {
    fn to_reference(&self, kind: ReferenceKind) -> Result<ContentReference, ManifestError> {
        let size = u64::try_from(self.size).map_err(|_| {
            ManifestError::Invalid(format!("descriptor {} has a negative size", self.digest))
        })?;
        Ok(ContentReference {
            digest: self.digest.parse()?,
            size,
            kind,
        })
    }

    fn is_foreign(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|mt| media_type::FOREIGN_LAYERS.contains(&mt))
    }
}

/// The media type part of a `Content-Type` header (parameters dropped).
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Parses and checks a pushed manifest. `content_type` is the request's `Content-Type`.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let header = content_type.map(essence).filter(|ct| !ct.is_empty());
    if matches!(
        header,
        Some(media_type::DOCKER_SCHEMA1 | media_type::DOCKER_SCHEMA1_SIGNED)
    ) {
        return Err(ManifestError::Schema1);
    }
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let schema_version = raw.schema_version.as_ref().and_then(|v| v.as_i64());
    if schema_version == Some(1)
        || raw.fs_layers.is_some()
        || matches!(
            raw.media_type.as_deref(),
            Some(media_type::DOCKER_SCHEMA1 | media_type::DOCKER_SCHEMA1_SIGNED)
        )
    {
        return Err(ManifestError::Schema1);
    }
    match &raw.schema_version {
        None => {
            return Err(ManifestError::Invalid(
                "schemaVersion is required (2)".into(),
            ));
        }
        Some(v) if schema_version != Some(2) => {
            return Err(ManifestError::Invalid(format!(
                "schemaVersion must be 2, not {v}"
            )));
        }
        Some(_) => {}
    }
    let media_type = match (header, raw.media_type.as_deref()) {
        (Some(h), Some(b)) if h != b && !generic_content_type(h) => {
            return Err(ManifestError::MediaTypeMismatch {
                header: h.to_string(),
                body: b.to_string(),
            });
        }
        (_, Some(b)) => b.to_string(),
        (Some(h), None) if !generic_content_type(h) => h.to_string(),
        _ if raw.manifests.is_some() => media_type::OCI_INDEX.to_string(),
        _ => media_type::OCI_MANIFEST.to_string(),
    };
    let kind = match media_type.as_str() {
        media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST => ManifestKind::Index,
        media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => ManifestKind::Image,
        _ if raw.manifests.is_some() && raw.config.is_none() => ManifestKind::Index,
        _ if raw.config.is_some() => ManifestKind::Image,
        other => {
            return Err(ManifestError::Invalid(format!(
                "unsupported manifest media type {other:?}"
            )));
        }
    };

    let mut references = Vec::new();
    let artifact_type = match kind {
        ManifestKind::Image => {
            let config = raw.config.as_ref().ok_or_else(|| {
                ManifestError::Invalid("an image manifest needs a config descriptor".into())
            })?;
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid(
                    "an image manifest cannot list manifests".into(),
                ));
            }
            references.push(config.to_reference(ReferenceKind::Config)?);
            for layer in raw.layers.iter().flatten() {
                let reference = layer.to_reference(ReferenceKind::Layer)?;
                if !layer.is_foreign() {
                    references.push(reference);
                }
            }
            raw.artifact_type
                .clone()
                .or_else(|| config.media_type.clone())
        }
        ManifestKind::Index => {
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| ManifestError::Invalid("an index needs a manifests list".into()))?;
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid(
                    "an index cannot have a config or layers".into(),
                ));
            }
            for child in manifests {
                references.push(child.to_reference(ReferenceKind::Manifest)?);
            }
            raw.artifact_type.clone()
        }
    };
    let subject = raw.subject.as_ref().map(|s| s.digest.parse()).transpose()?;
    let annotations = raw
        .annotations
        .filter(|a| !a.is_empty())
        .map(|a| serde_json::Value::Object(a).to_string());
    Ok(ParsedManifest {
        media_type,
        kind,
        artifact_type,
        subject,
        annotations,
        references,
    })
}

/// Content types that say nothing about the manifest format.
fn generic_content_type(ct: &str) -> bool {
    matches!(
        ct,
        "application/json" | "application/octet-stream" | "text/plain"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: &str, extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":10}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":20}}]{extra}}}"#
        )
    }

    #[test]
    fn parses_oci_image_with_references() {
        let body = image(media_type::OCI_MANIFEST, "");
        let m = parse(body.as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.references.len(), 2);
        assert_eq!(m.references[0].kind, ReferenceKind::Config);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn subject_artifact_type_and_annotations() {
        let extra = format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{}","digest":"{D1}","size":5}},"annotations":{{"a":"b"}}"#,
            media_type::OCI_MANIFEST
        );
        let body = image(media_type::OCI_MANIFEST, &extra);
        let m = parse(body.as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.subject.unwrap().to_string(), D1);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(m.annotations.as_deref(), Some(r#"{"a":"b"}"#));
    }

    #[test]
    fn index_lists_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":3}}]}}"#,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST
        );
        let m = parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.references[0].kind, ReferenceKind::Manifest);
    }

    #[test]
    fn refuses_schema1_mismatch_and_garbage() {
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            parse(b"{}", Some(media_type::DOCKER_SCHEMA1_SIGNED)),
            Err(ManifestError::Schema1)
        ));
        let body = image(media_type::OCI_MANIFEST, "");
        assert!(matches!(
            parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            parse(b"not json", None),
            Err(ManifestError::NotJson(_))
        ));
        assert!(matches!(
            parse(
                br#"{"schemaVersion":2,"mediaType":"application/x-unknown"}"#,
                None
            ),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn foreign_layers_need_not_exist() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","digest":"{D1}","size":1}},"layers":[{{"mediaType":"{}","digest":"{D2}","size":1,"urls":["http://x"]}}]}}"#,
            media_type::FOREIGN_LAYERS[3]
        );
        let m = parse(body.as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.references.len(), 1);
    }
}
