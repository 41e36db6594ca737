//! Bearer tokens (`auth.token`): verifying the JWTs a Docker token server issues, as
//! Distribution's token access controller does, so that existing token servers
//! (cesanta/docker_auth, Harbor's, GitLab's, Distribution's own test issuers) work unchanged.
//!
//! # What is checked, in order
//! 1. **Size**: at most [`MAX_TOKEN_LEN`] bytes, before any parsing.
//! 2. **Form**: a compact JWS (`header.claims.signature`, each base64url without padding); the
//!    header a JSON object with a string `alg`; no `crit` extensions (RFC 7515 §4.1.11).
//! 3. **Algorithm**: `alg` must be one of `auth.token.signingalgorithms` (empty: every
//!    algorithm Ferry verifies: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA).
//!    `none` and the HMAC algorithms are never accepted: a registry has no shared secret, and
//!    `HS256` verified with a public key as its secret is the classic key-confusion forgery.
//!    `alg` must also fit the key (`ES256` with a P-256 key, `EdDSA` with Ed25519, `RS*`/`PS*`
//!    with RSA) and, for a JWKS key that names an `alg`, be that one.
//! 4. **Key**, chosen by the header as in Distribution 3 (first match wins):
//!    - `x5c`: the signer's certificate chain, leaf first. It must verify (signatures,
//!      validity at the current time, CA constraints; any or no extended key usage, like Go's
//!      `ExtKeyUsageAny`) up to a certificate of `rootcertbundle`; the token is then verified
//!      with the leaf's key. A chain that is exactly one bundle certificate is trusted as is.
//!    - `jwk`: the signer's public key; accepted only if it is one of the trusted keys (same
//!      key material), or if it carries its own `x5c` chain that verifies as above and whose
//!      leaf holds that key.
//!    - `kid`: a trusted key's id. Every trusted key answers to its RFC 7638 JWK thumbprint
//!      (base64url SHA-256, what Distribution 3 computes), its libtrust key id (base32 of the
//!      first 240 bits of the SHA-256 of its DER SubjectPublicKeyInfo, in groups of four
//!      joined by `:`, what libtrust-based servers such as docker_auth, GitLab and older
//!      Harbor send, and what Distribution 2 expected), and, for JWKS keys, the JWKS `kid`.
//!
//!    The trusted keys are the public keys of the `rootcertbundle` certificates and the keys
//!    of the `jwks` file. A header naming no key is refused.
//! 5. **Signature** over `header.claims` with that key (ring).
//! 6. **Claims**, parsed only now and with strict types (a time given as a string is
//!    malformed, never "absent"): `iss` equals `auth.token.issuer`; `aud` (a string or a list)
//!    contains `auth.token.service`; `exp` is present and not past; `nbf`, if present, is not
//!    ahead; both with Distribution's leeway of [`LEEWAY_SECS`] seconds. `iat` is tolerated.
//!    `access` is optional: without it the token authenticates `sub` with no rights.
//!
//! # Where Ferry differs from Distribution
//! - HMAC (`HS*`) and `ES512` (P-521, which ring lacks) are not verified; naming them in
//!   `signingalgorithms` is logged and ignored (naming an unknown algorithm stops the start,
//!   as in Distribution). JWKS `oct` keys are ignored.
//! - `kid` also finds keys by libtrust id, so token servers written for Distribution 2 keep
//!   working; Distribution 3 only knows thumbprints and JWKS ids. Ferry computes EC
//!   thumbprints from the key's own point with fixed-size coordinates, as RFC 7638 and
//!   RFC 7518 say (the `GetJWKThumbprint` of the Distribution 3 sources read for this hashes
//!   the curve's base point for EC keys, so an EC root is not found there by a correct
//!   thumbprint).
//! - JWKS keys are also found by thumbprint and libtrust id, not only by their `kid`; a
//!   JWKS key whose `use` is not `sig` is ignored, and one that names an `alg` is used with
//!   that algorithm only.
//! - A `jwk` header is matched by key material, not by the `kid` member inside it.
//! - RSA keys need at least 2048 bits (ring's floor); trust anchors' own validity dates are
//!   not checked (webpki treats a root as a name and a key, as browsers do).
//! - A bundle file without any certificate stops the start instead of being skipped.
//!
//! The files are read once, when the verifier is built; nothing a token points to
//! (`jku`, `x5u`) is ever fetched.

mod cache;
mod claims;
mod der;
mod error;
pub mod issuer;
mod jws;
mod keys;
mod trust;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub use claims::LEEWAY_SECS;
pub use error::{TokenError, TokenSetupError};
pub use jws::Algorithm;

use claims::{Claims, Expected};
use trust::TrustStore;

/// The longest token accepted (bytes). Tokens with a two-certificate `x5c` chain and a few
/// dozen access entries stay well under it.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// `auth.token.*` as configured (the config loader fills it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSettings {
    /// The token server's URL, for the `WWW-Authenticate: Bearer realm=...` challenge.
    pub realm: String,
    /// The audience tokens must name, and the challenge's `service=`.
    pub service: String,
    /// The issuer tokens must name (`iss`).
    pub issuer: String,
    /// PEM certificates: roots for `x5c` chains; their keys are trusted for `kid` and `jwk`.
    pub rootcertbundle: Option<PathBuf>,
    /// A JSON Web Key Set file: more trusted keys.
    pub jwks: Option<PathBuf>,
    /// Distribution's `autoredirect`: the middleware builds the realm from the request's
    /// host. Not used here.
    pub autoredirect: bool,
    /// Allowed `alg`s; empty: every algorithm Ferry verifies.
    pub signing_algorithms: Vec<String>,
}

/// Verifies bearer tokens against the trusted keys of [`TokenSettings`].
pub struct TokenVerifier {
    settings: TokenSettings,
    algorithms: Vec<Algorithm>,
    trust: TrustStore,
    cache: cache::VerifiedCache,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: who the token server authenticated (empty for anonymous tokens).
    pub subject: String,
    /// `exp` (Unix seconds): the token is refused after it (plus the leeway).
    pub expires: i64,
    /// `access`: what it may do.
    pub access: Vec<TokenAccess>,
}

/// One `access` entry of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAccess {
    /// `type`: `repository` or `registry`.
    pub kind: String,
    /// `name`: `team/app`, or `catalog`.
    pub name: String,
    /// `actions`: `pull`, `push`, `delete`, or `*` for all.
    pub actions: Vec<String>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("settings", &self.settings)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Reads and parses the configured files. Fails when neither gives a key, when a file
    /// cannot be read or parsed, or when `signing_algorithms` names an unknown algorithm or
    /// none Ferry verifies.
    pub fn new(settings: TokenSettings) -> Result<Self, TokenSetupError> {
        let algorithms = allowed_algorithms(&settings.signing_algorithms)?;
        let trust = TrustStore::load(settings.rootcertbundle.as_deref(), settings.jwks.as_deref())?;
        Ok(TokenVerifier {
            settings,
            algorithms,
            trust,
            cache: cache::VerifiedCache::default(),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Verifies `token` (the bearer credential, without `Bearer `) now. A token verified
    /// in the last [`cache::CACHE_TTL`] is not verified again (until its expiry): a client
    /// sends the same token with every request of a pull, and an RSA verification costs
    /// more than serving a manifest.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let now = SystemTime::now();
        let unix = unix_secs(now);
        let key = cache::key(token);
        if let Some(verified) = self.cache.get(&key, unix) {
            return Ok(verified);
        }
        let verified = self.verify_at(token, now)?;
        self.cache.put(key, &verified, unix);
        Ok(verified)
    }

    /// Verifies `token` as of `now` (for the claims' times and the certificates' validity).
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let now = unix_secs(now);
        let jws = jws::parse(token)?;
        let alg = Algorithm::from_name(&jws.header.alg)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(jws::shorten(&jws.header.alg)))?;

        let signer = self.trust.signer(&jws.header, now)?;
        if let Some(key_alg) = signer.alg.filter(|&only| only != alg) {
            return Err(TokenError::KeyAlgorithmMismatch { alg, key_alg });
        }
        signer.key.verify(alg, jws.signing_input, &jws.signature)?;

        let claims = Claims::parse(&jws.claims)?;
        claims.check(&Expected {
            issuer: &self.settings.issuer,
            service: &self.settings.service,
            now,
        })?;
        Ok(VerifiedToken {
            subject: claims.subject(),
            expires: claims.expiry(),
            access: claims.access(),
        })
    }
}

/// Unix seconds of `t` (0 before the epoch).
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The algorithms `signingalgorithms` allows.
fn allowed_algorithms(names: &[String]) -> Result<Vec<Algorithm>, TokenSetupError> {
    if names.is_empty() {
        return Ok(Algorithm::ALL.to_vec());
    }
    let mut allowed = Vec::new();
    for name in names {
        match Algorithm::from_name(name) {
            Some(alg) => allowed.push(alg),
            None if Algorithm::KNOWN_UNSUPPORTED.contains(&name.as_str()) => tracing::warn!(
                "auth.token.signingalgorithms: {name} is not supported by Ferry; tokens signed with it are refused"
            ),
            None => return Err(TokenSetupError::UnknownAlgorithm(name.clone())),
        }
    }
    if allowed.is_empty() {
        return Err(TokenSetupError::NoUsableAlgorithm(names.to_vec()));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_algorithms_default_to_all_and_refuse_unknown_names() {
        assert_eq!(allowed_algorithms(&[]).unwrap(), Algorithm::ALL.to_vec());
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            allowed_algorithms(&names(&["HS256", "RS256", "ES512"])).unwrap(),
            vec![Algorithm::RS256]
        );
        assert!(matches!(
            allowed_algorithms(&names(&["HS256"])),
            Err(TokenSetupError::NoUsableAlgorithm(_))
        ));
        assert!(matches!(
            allowed_algorithms(&names(&["RS256", "none"])),
            Err(TokenSetupError::UnknownAlgorithm(n)) if n == "none"
        ));
    }

    #[test]
    fn no_key_at_all_is_a_setup_error() {
        assert!(matches!(
            TokenVerifier::new(TokenSettings::default()),
            Err(TokenSetupError::NoKeys)
        ));
    }
}
