//! The OCI vocabulary: digests, repository names, tags, references and manifests.
//! Pure parsing and validation; no I/O.

pub mod digest;
pub mod manifest;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{ManifestError, ManifestKind, ParsedManifest, ReferenceKind};
pub use name::{NameError, Reference, RepositoryName, Tag};
