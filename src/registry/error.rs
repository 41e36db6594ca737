//! The registry's error type: one variant per failure a client can be told about, each
//! mapped by the HTTP layer onto the distribution spec's error code and status.

use crate::metadata::MetadataError;
use crate::oci::{Digest, DigestError, ManifestError, NameError};
use crate::storage::StorageError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The blob is not in the repository.
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// No such upload session (in this repository).
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// The upload request does not fit the session (bad or out-of-order range, short body).
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A `Content-Range` that is not `<start>-<end>` (an open end, an end before the start,
    /// not numbers).
    #[error("invalid Content-Range: {0}")]
    ContentRangeInvalid(String),
    /// A chunk did not start where the upload stands; `size` bytes are staged.
    #[error("chunk out of order: the upload holds {size} bytes")]
    ChunkOutOfOrder {
        /// Bytes received so far.
        size: u64,
    },
    /// A requested byte range lies outside the blob of `size` bytes.
    #[error("requested range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// Size of the blob.
        size: u64,
    },
    /// A digest is malformed, unsupported or does not match the content.
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    /// A manifest references content the repository does not have.
    #[error("manifest references an unknown blob: {0}")]
    ManifestBlobUnknown(String),
    /// The manifest is malformed or inconsistent.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// The manifest is larger than the registry accepts.
    #[error("manifest is larger than {limit} bytes")]
    ManifestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An upload grew past `uploads.maxblobsize`.
    #[error("blob is larger than this registry accepts ({limit} bytes, uploads.maxblobsize)")]
    BlobTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// No such manifest or tag.
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    /// The repository name is invalid.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// The repository is not known.
    #[error("repository name not known to registry")]
    NameUnknown,
    /// A pagination parameter is not a number.
    #[error("invalid number of results requested: {0}")]
    PaginationNumberInvalid(String),
    /// The operation is disabled by configuration (deletes, read-only mode).
    #[error("the operation is unsupported: {0}")]
    Unsupported(&'static str),
    /// The content is not cached and the mirror's upstream cannot provide it now (down,
    /// timing out, rate-limiting, failing).
    #[error("the upstream registry is unreachable and the content is not cached: {0}")]
    UpstreamUnavailable(String),
    /// The request names an upstream the mirror does not have (`?ns=`, a host prefix).
    #[error("no upstream configured for {0}")]
    UpstreamUnknown(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The metadata database failed.
    #[error(transparent)]
    Metadata(MetadataError),
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Body(e) => RegistryError::BlobUploadInvalid(format!("request body: {e}")),
            StorageError::StagingShort { .. } => RegistryError::BlobUploadInvalid(e.to_string()),
            other => RegistryError::Storage(other),
        }
    }
}

impl From<MetadataError> for RegistryError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::MissingReference { .. } => {
                RegistryError::ManifestBlobUnknown(e.to_string())
            }
            MetadataError::SizeMismatch { .. } => RegistryError::ManifestInvalid(e.to_string()),
            other => RegistryError::Metadata(other),
        }
    }
}

impl From<NameError> for RegistryError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::InvalidName(_) => RegistryError::NameInvalid(e.to_string()),
            NameError::InvalidTag(_) => RegistryError::ManifestInvalid(e.to_string()),
            NameError::Digest(d) => d.into(),
        }
    }
}

impl From<DigestError> for RegistryError {
    fn from(e: DigestError) -> Self {
        RegistryError::DigestInvalid(e.to_string())
    }
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        RegistryError::ManifestInvalid(e.to_string())
    }
}

impl RegistryError {
    /// The error for content whose digest is not the one claimed.
    pub fn digest_mismatch(claimed: &Digest, actual: &Digest) -> Self {
        RegistryError::DigestInvalid(format!(
            "provided digest did not match uploaded content: expected {claimed}, content is {actual}"
        ))
    }
}
