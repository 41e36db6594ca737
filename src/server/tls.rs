//! HTTPS (`http.tls`): the rustls server configuration (the ring provider only; TLS 1.2 and
//! 1.3, or 1.3 only; ALPN `h2` and `http/1.1`; client certificates checked against
//! `http.tls.clientcas` when it names any), and the certificate resolver that re-reads the
//! certificate and key when their files change, so a certificate renewed by certbot or
//! cert-manager (in place, or by renaming a new file over the old) is served to new
//! connections without a restart.
//!
//! Files that are missing, unreadable or invalid at startup stop the start, naming the key,
//! the path and the reason. After that a pair that does not load (half written, a key that
//! does not match the certificate) is logged and the previous pair stays in use.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsSettings, TlsVersion};

/// How often, at most, the files are looked at again (on a new handshake).
const RECHECK: Duration = Duration::from_secs(1);

/// Why HTTPS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by the configuration cannot be read.
    #[error("{key} {path}: cannot read it: {source}")]
    Read {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file does not hold what its key asks for.
    #[error("{key} {path}: {reason}")]
    Invalid {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS side of every connection, built from `http.tls`.
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = ReloadingCertificate::load(settings, provider.clone())?;
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.minimum_version {
        TlsVersion::Tls12 => &[&TLS13, &TLS12],
        TlsVersion::Tls13 => &[&TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?;
    let builder = if settings.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for path in &settings.client_cas {
            for certificate in read_certificates("http.tls.clientcas", path)? {
                roots
                    .add(certificate)
                    .map_err(|e| invalid("http.tls.clientcas", path, e.to_string()))?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(Arc::new(certificates));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn invalid(key: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        key,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in the PEM file at `path` (at least one).
fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, format!("not a valid PEM file: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(key, path, "holds no PEM CERTIFICATE block"));
    }
    Ok(certificates)
}

/// The certificate chain and its private key, checked to belong together.
fn load_pair(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates("http.tls.certificate", certificate)?;
    let pem = read("http.tls.key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (PKCS#8 PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                    .to_string()
            }
            other => format!("not a valid PEM file: {other}"),
        };
        invalid("http.tls.key", key, reason)
    })?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| invalid("http.tls.key", key, format!("unusable private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        invalid(
            "http.tls.key",
            key,
            format!(
                "is not the private key of the certificate in {} ({e})",
                certificate.display()
            ),
        )
    })?;
    Ok(pair)
}

/// What identifies a file's content without reading it: device, inode, size and
/// modification time. A rename over the file changes the inode; a rewrite in place the
/// time (and usually the size).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp(Option<(u64, u64, u64, Option<SystemTime>)>);

impl FileStamp {
    fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        // `metadata` follows symbolic links: Kubernetes swaps a link to a new directory.
        FileStamp(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.len(), m.modified().ok())),
        )
    }
}

/// The certificate and key files as they are now.
fn stamp(certificate: &Path, key: &Path) -> [FileStamp; 2] {
    [FileStamp::of(certificate), FileStamp::of(key)]
}

/// Serves the certificate and key of `http.tls`, re-read on a handshake at most once a
/// second when either file changed.
#[derive(Debug)]
struct ReloadingCertificate {
    certificate: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The pair served.
    current: Arc<CertifiedKey>,
    /// The files when `current` was read.
    stamp: [FileStamp; 2],
    /// The files when they last failed to load: not tried again until they change.
    rejected: Option<[FileStamp; 2]>,
    /// When the files were last looked at.
    checked: Instant,
}

impl ReloadingCertificate {
    fn load(settings: &TlsSettings, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamp = stamp(&settings.certificate, &settings.key);
        let pair = load_pair(&settings.certificate, &settings.key, &provider)?;
        Ok(ReloadingCertificate {
            certificate: settings.certificate.clone(),
            key: settings.key.clone(),
            provider,
            state: Mutex::new(Loaded {
                current: Arc::new(pair),
                stamp,
                rejected: None,
                checked: Instant::now(),
            }),
        })
    }

    /// Loads the files again if they changed since they were last loaded or rejected.
    fn reload_if_changed(&self, state: &mut Loaded) {
        let now = stamp(&self.certificate, &self.key);
        if now == state.stamp || state.rejected.as_ref() == Some(&now) {
            return;
        }
        match load_pair(&self.certificate, &self.key, &self.provider) {
            Ok(pair) => {
                state.current = Arc::new(pair);
                state.stamp = now;
                state.rejected = None;
                tracing::info!(
                    certificate = %self.certificate.display(),
                    key = %self.key.display(),
                    "TLS certificate reloaded: new connections get the new one"
                );
            }
            Err(e) => {
                state.rejected = Some(now);
                tracing::warn!(
                    error = %e,
                    "the TLS certificate files changed but do not load; still serving the previous certificate (retried when the files change again)"
                );
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            self.reload_if_changed(&mut state);
        }
        Some(state.current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            certificate: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            client_cas: vec![],
            minimum_version: TlsVersion::Tls12,
        }
    }

    #[test]
    fn bad_files_name_the_key_the_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let message = |s: &TlsSettings| acceptor(s).err().expect("refused").to_string();
        let missing = message(&s);
        assert!(
            missing.starts_with(&format!(
                "http.tls.certificate {}: cannot read it:",
                s.certificate.display()
            )),
            "{missing}"
        );
        std::fs::write(&s.certificate, "not pem\n").unwrap();
        std::fs::write(&s.key, "not pem either\n").unwrap();
        let empty = message(&s);
        assert!(empty.contains("holds no PEM CERTIFICATE block"), "{empty}");
        std::fs::write(
            &s.certificate,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let no_key = message(&s);
        assert!(
            no_key.starts_with(&format!("http.tls.key {}:", s.key.display()))
                && no_key.contains("holds no PEM private key"),
            "{no_key}"
        );
        let half = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        std::fs::write(&s.certificate, half).unwrap();
        let truncated = message(&s);
        assert!(truncated.contains("not a valid PEM file"), "{truncated}");
    }
}
