//! OCI and Docker formats the tests push and check: media types (the only place they are
//! spelled), digests, random content, descriptors, image manifests and indexes.

use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_FOREIGN_LAYER: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Artifact types the tests invent: an SBOM and a signature attached to an image.
pub const SBOM_TYPE: &str = "application/vnd.ferry.test.sbom";
pub const SIG_CONFIG_TYPE: &str = "application/vnd.ferry.test.signature.config";

/// The `Accept` header a modern client sends when it pulls a manifest.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The digest of `{}`, the OCI empty descriptor's content.
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The sha256 digest of zero bytes.
pub const EMPTY_BLOB_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// Fast deterministic pseudo-random generator (SplitMix64), seeded per call site.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeded from a fresh v4 UUID: different content on every run and in every test.
    pub fn random() -> Self {
        let u = uuid::Uuid::new_v4().as_u128();
        Rng((u as u64) ^ ((u >> 64) as u64))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `n` random bytes, different on every call.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    Rng::random().fill(&mut v);
    v
}

/// A descriptor's worth of content.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Self {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256(&data),
            data,
        }
    }

    /// `{"mediaType","digest","size"}`.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// A pushed image: its manifest bytes, digest and the blobs it references.
#[derive(Clone, Debug)]
pub struct Image {
    pub media_type: String,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// A descriptor of this image's manifest, for an index or a `subject`.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.manifest.len()})
    }
}

/// A random OCI config blob (valid JSON, unique content).
pub fn random_config() -> Blob {
    let body = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"nonce": hex::encode(random_bytes(16))}}
    });
    Blob::new(OCI_CONFIG, serde_json::to_vec(&body).unwrap())
}

/// An OCI image manifest's bytes over `config` and `layers`, with `extra` fields merged in.
pub fn oci_manifest(config: &Blob, layers: &[Blob], extra: Value) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    merge(&mut m, extra);
    serde_json::to_vec_pretty(&m).unwrap()
}

/// An OCI index's bytes over `manifests` descriptors, with `extra` fields merged in.
pub fn oci_index(manifests: &[Value], extra: Value) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    merge(&mut m, extra);
    serde_json::to_vec_pretty(&m).unwrap()
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        for (k, v) in e {
            t.insert(k, v);
        }
    }
}

/// The strings of a JSON array (`null` counts as empty).
pub fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect(),
        other => panic!("expected an array of strings, got {other}"),
    }
}
