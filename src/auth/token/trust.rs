//! The keys Ferry trusts and how a token's header names one: the root certificate bundle
//! (trust anchors for `x5c` chains, and its certificates' keys), the JSON Web Key Set, and the
//! ids each key answers to in `kid`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::Deserialize;
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use super::error::{TokenError, TokenSetupError};
use super::jws::{Algorithm, Header, shorten};
use super::keys::{Jwk, PublicKey};

/// Most certificates in an `x5c` header (leaf and intermediates).
const MAX_CHAIN_LEN: usize = 8;

/// Signature algorithms accepted inside certificate chains: everything ring verifies.
static CHAIN_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// A key tokens may be signed with.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// The key.
    pub key: PublicKey,
    /// The one algorithm its JWK allows (`alg`), if it names one.
    pub alg: Option<Algorithm>,
}

/// Everything Ferry trusts.
pub struct TrustStore {
    /// The root bundle's certificates, as given (to recognise a chain that is one of them).
    roots: Vec<CertificateDer<'static>>,
    /// The same certificates as webpki trust anchors.
    anchors: Vec<TrustAnchor<'static>>,
    /// Keys of the root certificates (where supported) and of the JWKS.
    keys: Vec<TrustedKey>,
    /// Key index by RFC 7638 thumbprint, libtrust id and JWKS `kid`.
    by_id: HashMap<String, usize>,
    /// Key index by RFC 7638 thumbprint only (a `jwk` header must be one of these keys).
    by_thumbprint: HashMap<String, usize>,
}

/// A JSON Web Key Set file.
#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

impl TrustStore {
    /// Reads the root certificate bundle and the JWKS file (either may be absent, not both).
    pub fn load(
        rootcertbundle: Option<&Path>,
        jwks: Option<&Path>,
    ) -> Result<TrustStore, TokenSetupError> {
        let mut store = TrustStore {
            roots: Vec::new(),
            anchors: Vec::new(),
            keys: Vec::new(),
            by_id: HashMap::new(),
            by_thumbprint: HashMap::new(),
        };
        if let Some(path) = rootcertbundle {
            store.load_bundle(path)?;
        }
        if let Some(path) = jwks {
            store.load_jwks(path)?;
        }
        if store.roots.is_empty() && store.keys.is_empty() {
            return Err(TokenSetupError::NoKeys);
        }
        Ok(store)
    }

    fn load_bundle(&mut self, path: &Path) -> Result<(), TokenSetupError> {
        let pem = read(path, "auth.token.rootcertbundle")?;
        let error = |message: String| TokenSetupError::RootCertBundle {
            path: path.to_path_buf(),
            message,
        };
        for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let number = index + 1;
            let cert = cert.map_err(|e| error(format!("certificate {number}: {e}")))?;
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| error(format!("certificate {number}: {e}")))?
                .to_owned();
            let parsed = EndEntityCert::try_from(&cert);
            let key = parsed.map_err(|e| e.to_string()).and_then(|c| {
                PublicKey::from_spki(&c.subject_public_key_info()).map_err(str::to_string)
            });
            match key {
                Ok(key) => self.add_key(TrustedKey { key, alg: None }, None),
                // Still a trust anchor for chains; only naming it by kid or jwk is impossible.
                Err(why) => tracing::warn!(
                    path = %path.display(),
                    "auth.token.rootcertbundle certificate {number}: its key cannot sign tokens Ferry verifies ({why}); it stays a trust anchor for x5c chains"
                ),
            }
            self.anchors.push(anchor);
            self.roots.push(cert);
        }
        if self.roots.is_empty() {
            return Err(error("no PEM CERTIFICATE found".to_string()));
        }
        Ok(())
    }

    fn load_jwks(&mut self, path: &Path) -> Result<(), TokenSetupError> {
        let json = read(path, "auth.token.jwks")?;
        let error = |message: String| TokenSetupError::Jwks {
            path: path.to_path_buf(),
            message,
        };
        let set: JwkSet = serde_json::from_slice(&json)
            .map_err(|e| error(format!("not a JSON Web Key Set ({e})")))?;
        for (index, value) in set.keys.into_iter().enumerate() {
            let number = index + 1;
            let jwk: Jwk = serde_json::from_value(value)
                .map_err(|e| error(format!("key {number} is not a JSON Web Key ({e})")))?;
            let key_name = jwk.kid.as_deref().map_or_else(
                || format!("key {number}"),
                |kid| format!("key {number} ({kid:?})"),
            );
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                tracing::warn!(path = %path.display(), "auth.token.jwks {key_name}: not a signing key (use is not \"sig\"); ignored");
                continue;
            }
            let alg = match jwk.alg.as_deref() {
                None => None,
                Some(alg_name) => match Algorithm::from_name(alg_name) {
                    Some(alg) => Some(alg),
                    None => {
                        tracing::warn!(path = %path.display(), "auth.token.jwks {key_name}: algorithm {alg_name:?} is not supported; ignored");
                        continue;
                    }
                },
            };
            match PublicKey::from_jwk(&jwk) {
                Ok(key) => self.add_key(TrustedKey { key, alg }, jwk.kid.as_deref()),
                Err(why) => {
                    tracing::warn!(path = %path.display(), "auth.token.jwks {key_name}: {why}; ignored")
                }
            }
        }
        Ok(())
    }

    /// Adds a key under its thumbprint, its libtrust id and its JWKS `kid`.
    fn add_key(&mut self, key: TrustedKey, kid: Option<&str>) {
        let index = self.keys.len();
        let thumbprint = key.key.thumbprint();
        self.by_thumbprint
            .entry(thumbprint.clone())
            .or_insert(index);
        for id in [
            Some(thumbprint),
            Some(key.key.libtrust_id()),
            kid.map(str::to_string),
        ]
        .into_iter()
        .flatten()
        {
            self.by_id.entry(id).or_insert(index);
        }
        self.keys.push(key);
    }

    /// The key a token's header names, as Distribution 3 looks for it: by `x5c` if present,
    /// else by `jwk`, else by `kid`. `now` (Unix seconds) is when certificates must be valid.
    pub fn signer(&self, header: &Header, now: i64) -> Result<TrustedKey, TokenError> {
        let now = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0).unsigned_abs()));
        if let Some(x5c) = &header.x5c {
            Ok(TrustedKey {
                key: self.verify_chain(x5c, now)?,
                alg: None,
            })
        } else if let Some(jwk) = &header.jwk {
            self.by_jwk(jwk, now)
        } else if let Some(kid) = &header.kid {
            self.by_kid(kid)
        } else {
            Err(TokenError::NoKeyNamed)
        }
    }

    /// The key a `kid` header names.
    fn by_kid(&self, kid: &str) -> Result<TrustedKey, TokenError> {
        self.by_id
            .get(kid)
            .map(|&i| self.keys[i].clone())
            .ok_or_else(|| TokenError::UnknownKey(format!("(kid {:?})", shorten(kid))))
    }

    /// The trusted key a `jwk` header holds (the same key material), or the leaf key of the
    /// chain it carries.
    fn by_jwk(&self, jwk: &Jwk, now: UnixTime) -> Result<TrustedKey, TokenError> {
        let key = PublicKey::from_jwk(jwk)
            .map_err(|_| TokenError::Malformed("jwk header is not a supported public key"))?;
        if let Some(chain) = &jwk.x5c {
            let leaf = self.verify_chain(chain, now)?;
            return if leaf == key {
                Ok(TrustedKey { key, alg: None })
            } else {
                Err(TokenError::UntrustedChain(
                    "the jwk header's key is not its certificate's".to_string(),
                ))
            };
        }
        let thumbprint = key.thumbprint();
        match self.by_thumbprint.get(&thumbprint) {
            Some(&i) => Ok(self.keys[i].clone()),
            None => Err(TokenError::UnknownKey(format!(
                "(jwk thumbprint {thumbprint})"
            ))),
        }
    }

    /// Verifies an `x5c` chain (leaf first) up to a certificate of the root bundle at `now`;
    /// returns the leaf's key. Extended key usage is not required (Distribution accepts any).
    fn verify_chain(&self, x5c: &[String], now: UnixTime) -> Result<PublicKey, TokenError> {
        if x5c.is_empty() {
            return Err(TokenError::Malformed("empty x5c header"));
        }
        if x5c.len() > MAX_CHAIN_LEN {
            return Err(TokenError::Malformed(
                "x5c header holds too many certificates",
            ));
        }
        let certs: Vec<CertificateDer<'static>> = x5c
            .iter()
            .map(|c| STANDARD.decode(c).map(CertificateDer::from))
            .collect::<Result<_, _>>()
            .map_err(|_| TokenError::Malformed("x5c certificate is not base64"))?;
        let untrusted = |e: webpki::Error| TokenError::UntrustedChain(e.to_string());
        let (leaf, intermediates) = certs
            .split_first()
            .ok_or(TokenError::Malformed("empty x5c header"))?;
        let leaf_cert = EndEntityCert::try_from(leaf).map_err(untrusted)?;
        // A token signed with a root's own key may carry that root alone (a self-signed
        // certificate, often with CA:TRUE, which webpki refuses as an end entity): its key is
        // trusted as it is, as for kid and jwk.
        if !self.roots.iter().any(|root| root == leaf) {
            leaf_cert
                .verify_for_usage(
                    CHAIN_ALGORITHMS,
                    &self.anchors,
                    intermediates,
                    now,
                    AnyExtendedKeyUsage,
                    None,
                    None,
                )
                .map_err(untrusted)?;
        }
        PublicKey::from_spki(&leaf_cert.subject_public_key_info())
            .map_err(TokenError::UnsupportedKey)
    }
}

/// Accepts any extended key usage, or none (Go's `x509.ExtKeyUsageAny`, as Distribution asks).
struct AnyExtendedKeyUsage;

impl ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, mut iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // Still read them: a malformed extension is an error.
        iter.try_for_each(|id| id.map(drop))
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TokenSetupError> {
    std::fs::read(path).map_err(|source| TokenSetupError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}
