//! `storage.s3` settings, with Distribution's key names and defaults.

use object_store::Certificate;

use crate::storage::StorageError;

/// The smallest part S3 accepts (except the last one of an upload).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part S3 accepts, and so the largest single server-side copy.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Where and how to reach the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// `bucket`.
    pub bucket: String,
    /// `region` (default `us-east-1`).
    pub region: String,
    /// `regionendpoint`: an S3-compatible endpoint such as `http://minio:9000`.
    pub region_endpoint: Option<String>,
    /// `accesskey`; with `secretkey` unset, credentials come from the AWS environment.
    pub access_key: Option<String>,
    /// `secretkey`.
    pub secret_key: Option<String>,
    /// `forcepathstyle`: `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    pub force_path_style: bool,
    /// `secure`: HTTPS when the endpoint names no scheme (default true).
    pub secure: bool,
    /// `rootdirectory`: key prefix inside the bucket, without surrounding slashes.
    pub root_directory: String,
    /// `chunksize`: bytes per uploaded part (at least 5 MiB).
    pub chunk_size: u64,
    /// `multipartcopychunksize`: bytes per part copy.
    pub copy_chunk_size: u64,
    /// `multipartcopymaxconcurrency`: part copies at once.
    pub copy_max_concurrency: usize,
    /// `multipartcopythresholdsize`: larger blobs are copied in parts.
    pub copy_threshold: u64,
    /// `storage.redirect.disable: false`: answer blob GETs with a presigned URL.
    pub redirect: bool,
    /// `encrypt` and `keyid`: server-side encryption of every object Ferry writes.
    pub encryption: Encryption,
}

/// Server-side encryption, as Distribution's `encrypt` and `keyid` ask for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// `encrypt: false` (the bucket's default encryption, if any, still applies).
    #[default]
    None,
    /// `encrypt: true`: SSE-S3 (`AES256`).
    S3Managed,
    /// `encrypt: true` with `keyid`: SSE-KMS with that key.
    Kms(String),
}

impl S3Settings {
    /// Settings for `bucket` with Distribution's defaults for everything else.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Settings {
            bucket: bucket.into(),
            region: "us-east-1".into(),
            region_endpoint: None,
            access_key: None,
            secret_key: None,
            force_path_style: false,
            secure: true,
            root_directory: String::new(),
            chunk_size: MIN_PART_SIZE,
            copy_chunk_size: 32 * 1024 * 1024,
            copy_max_concurrency: 100,
            copy_threshold: 32 * 1024 * 1024,
            redirect: false,
            encryption: Encryption::None,
        }
    }

    /// What the metadata database records as the storage it indexes: backend, bucket and
    /// root directory (not the endpoint, which may legitimately change).
    pub fn identity(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.root_directory)
    }

    /// Whether requests name the bucket in the path (`endpoint/bucket/key`): when
    /// `forcepathstyle` says so, and always for an endpoint that is an IP address, where a
    /// bucket subdomain cannot exist.
    pub fn path_style(&self) -> bool {
        self.force_path_style || self.endpoint_is_ip()
    }

    fn endpoint_is_ip(&self) -> bool {
        let Some(endpoint) = self.region_endpoint.as_deref() else {
            return false;
        };
        let authority = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or_default();
        if authority.starts_with('[') {
            return true;
        }
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        host.parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// The endpoint URL to give `object_store`, if not AWS's default one.
    pub fn endpoint_url(&self) -> Option<String> {
        let scheme = if self.secure { "https" } else { "http" };
        let Some(endpoint) = self.region_endpoint.as_deref().filter(|e| !e.is_empty()) else {
            // AWS itself; plain HTTP only when asked for.
            return (!self.secure).then(|| {
                if self.force_path_style {
                    format!("http://s3.{}.amazonaws.com", self.region)
                } else {
                    format!("http://{}.s3.{}.amazonaws.com", self.bucket, self.region)
                }
            });
        };
        let endpoint = endpoint.trim_end_matches('/');
        let (scheme, host) = match endpoint.split_once("://") {
            Some((scheme, host)) => (scheme, host),
            None => (scheme, endpoint),
        };
        Some(if self.path_style() {
            format!("{scheme}://{host}")
        } else {
            // object_store takes a virtual-hosted endpoint as the bucket's own URL.
            format!("{scheme}://{}.{host}", self.bucket)
        })
    }

    /// Whether requests go over plain HTTP.
    pub fn endpoint_is_http(&self) -> bool {
        self.endpoint_url()
            .is_some_and(|url| url.starts_with("http://"))
    }

    /// Extra trusted roots from `AWS_CA_BUNDLE` (a PEM file), as AWS's own tools honour it.
    /// An unreadable bundle is logged and skipped: the system roots still apply.
    pub fn ca_bundle(&self) -> Result<Option<Vec<Certificate>>, StorageError> {
        let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(path = %path.to_string_lossy(), error = %e, "AWS_CA_BUNDLE is not readable; using the system's trusted roots only");
                return Ok(None);
            }
        };
        match Certificate::from_pem_bundle(&pem) {
            Ok(certificates) => Ok(Some(certificates)),
            Err(e) => {
                tracing::warn!(path = %path.to_string_lossy(), error = %e, "AWS_CA_BUNDLE holds no usable certificates; using the system's trusted roots only");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_distribution_keys() {
        let mut s = S3Settings::new("images");
        assert_eq!(s.endpoint_url(), None);
        s.region_endpoint = Some("http://127.0.0.1:9000/".into());
        s.force_path_style = true;
        assert_eq!(s.endpoint_url().as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.endpoint_is_http());
        s.force_path_style = false;
        s.region_endpoint = Some("minio.lan:9000".into());
        assert_eq!(
            s.endpoint_url().as_deref(),
            Some("https://images.minio.lan:9000")
        );
        s.secure = false;
        assert_eq!(
            s.endpoint_url().as_deref(),
            Some("http://images.minio.lan:9000")
        );
    }

    #[test]
    fn an_ip_endpoint_is_always_path_style() {
        // A bucket subdomain of an IP address does not exist (object_store panicked on it).
        let mut s = S3Settings::new("images");
        for endpoint in [
            "http://127.0.0.1:9000",
            "10.0.0.5",
            "https://[::1]:9000/",
            "192.168.1.10:9000/base",
        ] {
            s.region_endpoint = Some(endpoint.into());
            assert!(s.path_style(), "{endpoint}");
            assert!(!s.endpoint_url().unwrap().contains("images."), "{endpoint}");
        }
        s.region_endpoint = Some("http://minio.lan:9000".into());
        assert!(!s.path_style());
    }

    #[test]
    fn identity_names_backend_bucket_and_root() {
        let mut s = S3Settings::new("images");
        s.root_directory = "prod/registry".into();
        assert_eq!(s.identity(), "s3://images/prod/registry");
    }
}
