//! Why a token was refused, and why the verifier could not be set up. Messages never
//! contain the token; values from a token's header are shortened and quoted, values from its
//! claims are shown only once its signature has been verified (they come from the trusted
//! issuer then).

use std::path::PathBuf;

use super::jws::Algorithm;

/// Why a bearer token was refused. Every variant answers `401` with `error="invalid_token"`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`super::MAX_TOKEN_LEN`]; refused before any parsing.
    #[error("token is too large ({len} bytes; at most {max})")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a compact JWS with a JSON header and claims of the expected shapes.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` names an algorithm that is not allowed (`none`, `HS256`, ...) or not known.
    #[error("token algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// `alg` does not fit the signing key (an `ES256` token and an RSA key, ...).
    #[error("token algorithm {alg} does not fit its {key} key")]
    AlgorithmKeyMismatch {
        /// The token's algorithm.
        alg: Algorithm,
        /// The key's type (`RSA`, `EC P-256`, `Ed25519`).
        key: &'static str,
    },
    /// `alg` is not the one algorithm the JWKS entry of the key allows.
    #[error("token algorithm {alg} differs from its key's alg {key_alg}")]
    KeyAlgorithmMismatch {
        /// The token's algorithm.
        alg: Algorithm,
        /// The JWKS entry's `alg`.
        key_alg: Algorithm,
    },
    /// The header names its key by none of `x5c`, `jwk` or `kid`.
    #[error("token names no signing key (no x5c, jwk or kid header)")]
    NoKeyNamed,
    /// The `kid` or `jwk` header names a key that is not trusted.
    #[error("token signed by an untrusted key {0}")]
    UnknownKey(String),
    /// The `x5c` chain does not lead to a certificate of the root bundle, or a certificate
    /// in it is expired, not yet valid or badly signed.
    #[error("token certificate chain is not trusted: {0}")]
    UntrustedChain(String),
    /// The signing key is of a kind Ferry cannot verify with (RSA under 2048 bits, P-521, ...).
    #[error("token signing key is not supported: {0}")]
    UnsupportedKey(&'static str),
    /// The signature does not verify with the named key.
    #[error("token signature is invalid")]
    BadSignature,
    /// No `exp` claim: a token must expire.
    #[error("token has no expiry (exp)")]
    MissingExpiry,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {exp} (Unix time)")]
    Expired {
        /// The `exp` claim.
        exp: i64,
    },
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token is not valid before {nbf} (Unix time)")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: i64,
    },
    /// `aud` does not name this registry's service.
    #[error("token is for audience {found:?}, not {expected:?}")]
    WrongAudience {
        /// The `aud` claim's values.
        found: Vec<String>,
        /// `auth.token.service`.
        expected: String,
    },
    /// `iss` is not the configured issuer.
    #[error("token is from issuer {found:?}, not {expected:?}")]
    WrongIssuer {
        /// The `iss` claim (empty when missing).
        found: String,
        /// `auth.token.issuer`.
        expected: String,
    },
}

/// Why a [`super::TokenVerifier`] could not be built from its settings: stops the start.
#[derive(Debug, thiserror::Error)]
pub enum TokenSetupError {
    /// A configured file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `auth.token.rootcertbundle` or `auth.token.jwks`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root certificate bundle is not PEM, holds no certificate, or one that cannot be
    /// parsed.
    #[error("auth.token.rootcertbundle {path}: {message}")]
    RootCertBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The JSON Web Key Set is not valid.
    #[error("auth.token.jwks {path}: {message}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `auth.token.signingalgorithms` names an algorithm no JWT implementation knows.
    #[error("auth.token.signingalgorithms: unknown signing algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// `auth.token.signingalgorithms` names only algorithms Ferry does not verify.
    #[error(
        "auth.token.signingalgorithms: none of {0:?} is supported (Ferry verifies RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 and EdDSA)"
    )]
    NoUsableAlgorithm(Vec<String>),
    /// Neither file gave a key to trust.
    #[error(
        "token auth needs at least one token signing key: configure auth.token.rootcertbundle or auth.token.jwks"
    )]
    NoKeys,
}
