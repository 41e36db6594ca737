//! The compact JWS form of a token (`header.claims.signature`, each base64url), its header,
//! and the signature algorithms Ferry verifies.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::error::TokenError;
use super::keys::Jwk;

/// The signature algorithms Ferry verifies (JWA names). No `none`, no HMAC: registry tokens
/// are signed by a token server whose public key or certificate Ferry trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm Ferry verifies: the default of `auth.token.signingalgorithms`.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Algorithms Distribution accepts in `signingalgorithms` that Ferry does not verify:
    /// HMAC needs a shared secret (and is the algorithm of key-confusion attacks), ES512 needs
    /// P-521, which ring does not implement.
    pub const KNOWN_UNSUPPORTED: [&'static str; 4] = ["HS256", "HS384", "HS512", "ES512"];

    /// The JWA name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm a JWA name stands for, if Ferry verifies it.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The JOSE header members Ferry reads. Others (`typ`, `cty`, `x5t`, `jku`, `x5u`, ...) are
/// ignored: Ferry fetches nothing a token points to.
#[derive(Debug, Deserialize)]
pub struct Header {
    /// The signature algorithm.
    pub alg: String,
    /// Key id: a trusted key's RFC 7638 thumbprint, libtrust id, or JWKS `kid`.
    pub kid: Option<String>,
    /// The signer's certificate chain, leaf first, each standard base64 DER.
    pub x5c: Option<Vec<String>>,
    /// The signer's public key.
    pub jwk: Option<Jwk>,
    /// Extensions the verifier must understand (RFC 7515 §4.1.11): Ferry understands none.
    pub crit: Option<serde_json::Value>,
}

/// A token split into its parts; nothing verified yet.
pub struct Compact<'a> {
    /// The decoded header.
    pub header: Header,
    /// What the signature covers: `base64url(header) "." base64url(claims)`.
    pub signing_input: &'a [u8],
    /// The claims' JSON (decoded; parsed only once the signature verifies).
    pub claims: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS.
pub fn parse(token: &str) -> Result<Compact<'_>, TokenError> {
    let malformed = TokenError::Malformed;
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(malformed("not three dot-separated parts"))?;
    let (header, claims) = signing_input
        .split_once('.')
        .filter(|(_, claims)| !claims.contains('.'))
        .ok_or(malformed("not three dot-separated parts"))?;
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("header is not base64url"))?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| malformed("claims are not base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| malformed("signature is not base64url"))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|_| malformed("header is not a JSON object of the JWS header's shape"))?;
    if header.crit.is_some() {
        return Err(malformed("critical header extensions are not supported"));
    }
    Ok(Compact {
        header,
        signing_input: signing_input.as_bytes(),
        claims,
        signature,
    })
}

/// A header value for an error message: at most 64 characters.
pub fn shorten(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    }
}
