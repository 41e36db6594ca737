//! Public keys: read from certificates (`SubjectPublicKeyInfo`) and JSON Web Keys, named by
//! their RFC 7638 thumbprint and their libtrust key id, and used to verify signatures (ring).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::der;
use super::error::TokenError;
use super::jws::Algorithm;

/// The smallest RSA modulus ring verifies with (bits).
const MIN_RSA_BITS: usize = 2048;

/// The elliptic curves Ferry verifies ECDSA on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (`ES256`).
    P256,
    /// NIST P-384 (`ES384`).
    P384,
}

impl Curve {
    /// The JWK `crv` name.
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// Bytes per coordinate.
    fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => der::OID_P256,
            Curve::P384 => der::OID_P384,
        }
    }
}

/// A public key Ferry can verify token signatures with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// ECDSA: the point's coordinates, each the curve's full size.
    Ec {
        /// The curve.
        curve: Curve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// Ed25519.
    Ed25519([u8; 32]),
}

impl PublicKey {
    /// The key of a DER `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &[u8]) -> Result<PublicKey, &'static str> {
        let spki = der::parse_spki(spki).ok_or("not a valid SubjectPublicKeyInfo")?;
        match (spki.algorithm, spki.curve) {
            (der::OID_RSA, None) => {
                let (n, e) = der::parse_rsa_public_key(spki.key).ok_or("not a valid RSA key")?;
                PublicKey::rsa(n, e)
            }
            (der::OID_EC, Some(curve)) => {
                let curve = match curve {
                    der::OID_P256 => Curve::P256,
                    der::OID_P384 => Curve::P384,
                    _ => return Err("EC keys must be on P-256 or P-384"),
                };
                let point = spki
                    .key
                    .strip_prefix(&[4])
                    .filter(|xy| xy.len() == 2 * curve.size())
                    .ok_or("EC keys must be uncompressed points")?;
                let (x, y) = point.split_at(curve.size());
                Ok(PublicKey::Ec {
                    curve,
                    x: x.to_vec(),
                    y: y.to_vec(),
                })
            }
            (der::OID_ED25519, None) => Ok(PublicKey::Ed25519(
                spki.key.try_into().map_err(|_| "not a valid Ed25519 key")?,
            )),
            _ => Err("only RSA, EC P-256/P-384 and Ed25519 keys are supported"),
        }
    }

    /// The key of a JSON Web Key (its public members; private ones are ignored).
    pub fn from_jwk(jwk: &Jwk) -> Result<PublicKey, &'static str> {
        let member = |value: &Option<String>, missing: &'static str| {
            let value = value.as_deref().ok_or(missing)?;
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| "a key member is not base64url")
        };
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => PublicKey::rsa(
                &member(&jwk.n, "RSA key without n")?,
                &member(&jwk.e, "RSA key without e")?,
            ),
            ("EC", Some(crv)) => {
                let curve = match crv {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    _ => return Err("EC keys must be on P-256 or P-384"),
                };
                let x = member(&jwk.x, "EC key without x")?;
                let y = member(&jwk.y, "EC key without y")?;
                if x.len() != curve.size() || y.len() != curve.size() {
                    return Err("EC key coordinates of the wrong size");
                }
                Ok(PublicKey::Ec { curve, x, y })
            }
            ("OKP", Some("Ed25519")) => Ok(PublicKey::Ed25519(
                member(&jwk.x, "OKP key without x")?
                    .try_into()
                    .map_err(|_| "Ed25519 key of the wrong size")?,
            )),
            ("EC", None) => Err("EC key without crv"),
            ("OKP", _) => Err("OKP keys must be Ed25519"),
            ("oct", _) => Err("symmetric (oct) keys are not accepted: HMAC tokens are refused"),
            _ => Err("only RSA, EC and OKP keys are supported"),
        }
    }

    fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, &'static str> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.is_empty() || e.is_empty() {
            return Err("RSA key of zero");
        }
        if bit_len(n) < MIN_RSA_BITS {
            return Err("RSA keys must have at least 2048 bits");
        }
        Ok(PublicKey::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    /// What kind of key this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "RSA",
            PublicKey::Ec {
                curve: Curve::P256, ..
            } => "EC P-256",
            PublicKey::Ec {
                curve: Curve::P384, ..
            } => "EC P-384",
            PublicKey::Ed25519(_) => "Ed25519",
        }
    }

    /// The RFC 7638 JWK thumbprint: base64url (no padding) of the SHA-256 of the required
    /// members, in lexicographic order, without whitespace.
    pub fn thumbprint(&self) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let canonical = match self {
            PublicKey::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
            PublicKey::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                b64(x),
                b64(y)
            ),
            PublicKey::Ed25519(x) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The DER `SubjectPublicKeyInfo`, encoded as Go's `x509.MarshalPKIXPublicKey` does.
    pub fn spki(&self) -> Vec<u8> {
        match self {
            PublicKey::Rsa { n, e } => {
                let mut integers = der::unsigned(n);
                integers.extend_from_slice(&der::unsigned(e));
                let rsa_public_key = der::element(der::SEQUENCE, &integers);
                der::spki(der::OID_RSA, &der::element(der::NULL, &[]), &rsa_public_key)
            }
            PublicKey::Ec { curve, x, y } => {
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                der::spki(der::OID_EC, &der::element(der::OID, curve.oid()), &point)
            }
            PublicKey::Ed25519(x) => der::spki(der::OID_ED25519, &[], x),
        }
    }

    /// The libtrust key id (docker/libtrust `keyIDFromCryptoKey`): the first 240 bits of the
    /// SHA-256 of the DER `SubjectPublicKeyInfo`, base32 (RFC 4648, upper case, no padding),
    /// in groups of four characters joined by `:`. Token servers built on libtrust
    /// (cesanta/docker_auth, GitLab, older Harbor) name their key by it in `kid`.
    pub fn libtrust_id(&self) -> String {
        let digest = Sha256::digest(self.spki());
        let encoded = base32(&digest[..30]);
        let groups: Vec<&str> = encoded
            .as_bytes()
            .chunks(4)
            .filter_map(|g| std::str::from_utf8(g).ok())
            .collect();
        groups.join(":")
    }

    /// Verifies `signature` over `message` with this key under `alg`, which must fit the key.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        let mismatch = || TokenError::AlgorithmKeyMismatch {
            alg,
            key: self.kind(),
        };
        let verified = match self {
            PublicKey::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(mismatch()),
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
            PublicKey::Ec { curve, x, y } => {
                let params: &signature::EcdsaVerificationAlgorithm = match (alg, curve) {
                    (Algorithm::ES256, Curve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (Algorithm::ES384, Curve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return Err(mismatch()),
                };
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(params, point).verify(message, signature)
            }
            PublicKey::Ed25519(x) => match alg {
                Algorithm::EdDSA => {
                    UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature)
                }
                _ => return Err(mismatch()),
            },
        };
        verified.map_err(|_| TokenError::BadSignature)
    }
}

/// A JSON Web Key (RFC 7517), as a JWKS file or a token's `jwk` header holds it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP` (`oct` is refused).
    pub kty: String,
    /// Its id, as the issuer names it in tokens' `kid`.
    pub kid: Option<String>,
    /// Intended use: only `sig` keys (or keys without `use`) are trusted.
    #[serde(rename = "use")]
    pub use_: Option<String>,
    /// The one algorithm the key is for, if it says.
    pub alg: Option<String>,
    /// Curve of EC and OKP keys.
    pub crv: Option<String>,
    /// RSA modulus.
    pub n: Option<String>,
    /// RSA exponent.
    pub e: Option<String>,
    /// EC or OKP x coordinate.
    pub x: Option<String>,
    /// EC y coordinate.
    pub y: Option<String>,
    /// A certificate chain for the key, leaf first.
    pub x5c: Option<Vec<String>>,
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Bits in a big-endian magnitude without leading zero bytes.
fn bit_len(magnitude: &[u8]) -> usize {
    magnitude
        .first()
        .map_or(0, |&b| magnitude.len() * 8 - b.leading_zeros() as usize)
}

/// RFC 4648 base32, upper case, without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u16, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 31)]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 31)],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: &str) -> PublicKey {
        PublicKey::from_jwk(&serde_json::from_str(json).unwrap()).unwrap()
    }

    // The vectors' thumbprints are RFC 7638 §3.1's and RFC 8037 §A.3's; the libtrust ids were
    // computed independently (Python `cryptography`'s DER and `base64.b32encode`).
    const RSA: &str = r#"{"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","alg":"RS256","kid":"2011-04-29"}"#;
    const P256: &str = r#"{"kty":"EC","crv":"P-256","x":"ra_7xGmvRCp6XpwKyj-cW4xYEYhstCev-gkAbLtcL0k","y":"UjA8-RCfJh1pQc4mTmGaHfsAdWNH7cQYPhwXPIIQa64"}"#;
    const P384: &str = r#"{"kty":"EC","crv":"P-384","x":"yZsteLvEDwZoiO30nhBg4Zq3fDA6kZrHpxj6O84lub9XGais529Lm-Dmqz3XPt0D","y":"6-7JMctNmXQtW8eFNf9yZkD_ilu9DyV3kn7Tdbhei2QPg54fHX-W0gz6_ldEjkSU"}"#;
    const ED25519: &str =
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    #[test]
    fn thumbprints_follow_rfc_7638() {
        assert_eq!(
            jwk(RSA).thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(
            jwk(ED25519).thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(
            jwk(P256).thumbprint(),
            "CkteoUrs4fZZJPXqsP1B4VG0iRjA9KxoXnAhy0BglPo"
        );
        assert_eq!(
            jwk(P384).thumbprint(),
            "0fHfYa9UNR3c6g8-6cruu47IshzQZDZ_-n1fkFWlMzE"
        );
    }

    #[test]
    fn libtrust_ids_match_go() {
        assert_eq!(
            jwk(RSA).libtrust_id(),
            "VUZD:EDHW:YWLN:RBFQ:KOA3:UVZ2:XKG5:2V2J:WTPI:6SRD:U6PZ:VCO5"
        );
        assert_eq!(
            jwk(P256).libtrust_id(),
            "MQKD:ZVCM:APFQ:GDFQ:AYFE:REYY:7MR3:T6OL:IUPV:BEFM:NXYL:NTB2"
        );
        assert_eq!(
            jwk(P384).libtrust_id(),
            "FOBY:L22V:T6ZI:JEA7:YCPG:JIHI:57BB:CMVS:IAWY:QFV5:CG2U:L5N6"
        );
        assert_eq!(
            jwk(ED25519).libtrust_id(),
            "A3R7:3D62:FG5W:BK2Z:KV66:MHW3:BLWN:WIYR:GS7D:BZ23:IVPY:4G3Z"
        );
    }

    #[test]
    fn spki_round_trips() {
        for key in [RSA, P256, P384, ED25519].map(jwk) {
            assert_eq!(PublicKey::from_spki(&key.spki()), Ok(key.clone()));
        }
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), output);
        }
    }

    #[test]
    fn unusable_keys_are_refused() {
        for json in [
            r#"{"kty":"oct","k":"c2VjcmV0"}"#,
            r#"{"kty":"RSA","e":"AQAB","n":"AQAB"}"#,
            r#"{"kty":"RSA","e":"AQAB"}"#,
            r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#,
            r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
            r#"{"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            r#"{"kty":"OKP","crv":"Ed25519","x":"not base64!"}"#,
        ] {
            let parsed: Jwk = serde_json::from_str(json).unwrap();
            assert!(PublicKey::from_jwk(&parsed).is_err(), "{json}");
        }
    }

    #[test]
    fn algorithms_must_fit_the_key() {
        let rsa = jwk(RSA);
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            assert!(matches!(
                rsa.verify(alg, b"x", b"y"),
                Err(TokenError::AlgorithmKeyMismatch { .. })
            ));
        }
        assert!(matches!(
            jwk(P256).verify(Algorithm::ES384, b"x", b"y"),
            Err(TokenError::AlgorithmKeyMismatch { .. })
        ));
        assert!(matches!(
            jwk(ED25519).verify(Algorithm::RS256, b"x", b"y"),
            Err(TokenError::AlgorithmKeyMismatch { .. })
        ));
        assert!(matches!(
            rsa.verify(Algorithm::RS256, b"x", b"y"),
            Err(TokenError::BadSignature)
        ));
    }
}
