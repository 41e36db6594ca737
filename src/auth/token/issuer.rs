//! Ferry's own tokens, for an htpasswd registry that lets anonymous callers in.
//!
//! The Docker engine follows a `Basic` challenge only with credentials: without a login it
//! gives up ("no basic auth credentials"), so `docker pull` of an anonymously readable
//! repository on a `Basic` registry fails (Distribution issue #1230). Docker follows a
//! `Bearer` challenge anonymously, though. So when the access rules give anonymous callers
//! any right, Ferry answers with a `Bearer` challenge whose realm is its own token endpoint
//! (`GET /auth/token`, the Docker token protocol): it hands out a short-lived token for the
//! scopes the caller asked for, cut down to what the rules allow the caller, anonymous or
//! authenticated there with the htpasswd credentials (`docker login`).
//!
//! The tokens are JWTs signed with HMAC-SHA256 under a secret only the registry knows (kept
//! in the metadata database, so every replica on one database accepts every replica's
//! tokens, and a restart does not invalidate them). They are verified only by this module,
//! never by the `auth.token` verifier, which refuses HMAC outright: no key confusion.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::Serialize;

use super::claims::{Claims, Expected};
use super::error::TokenError;
use super::{MAX_TOKEN_LEN, TokenAccess, VerifiedToken, jws};

/// Where the token endpoint is served.
pub const TOKEN_PATH: &str = "/auth/token";

/// How long an issued token is valid (seconds): Distribution's and Docker Hub's 5 minutes.
pub const TOKEN_LIFETIME_SECS: i64 = 300;

/// The `iss` of Ferry's tokens.
const ISSUER: &str = "ferry";

/// Bytes of a newly made secret.
pub const SECRET_LEN: usize = 32;

/// Signs and verifies Ferry's own tokens.
pub struct Issuer {
    key: hmac::Key,
    service: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// A token just issued.
#[derive(Debug)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds it stays valid.
    pub expires_in: i64,
    /// When it was issued (Unix seconds).
    pub issued_at: i64,
}

#[derive(Serialize)]
struct Header {
    alg: &'static str,
    typ: &'static str,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'static str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    access: Vec<AccessEntry<'a>>,
}

#[derive(Serialize)]
struct AccessEntry<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a str,
    actions: &'a [String],
}

impl Issuer {
    /// An issuer signing with `secret` for `service` (the challenge's `service=`, the
    /// tokens' audience).
    pub fn new(secret: &[u8], service: &str) -> Issuer {
        Issuer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            service: service.to_string(),
        }
    }

    /// A new random secret, hex-encoded (for the metadata database); fails only when the
    /// system's random source does.
    pub fn new_secret() -> Result<String, ring::error::Unspecified> {
        let mut secret = [0u8; SECRET_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)?;
        Ok(hex::encode(secret))
    }

    /// The `service` tokens are issued for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A token for `subject` (empty: anonymous) granting `access`, valid from `now`.
    pub fn issue(&self, subject: &str, access: &[TokenAccess], now: SystemTime) -> IssuedToken {
        let now = unix(now);
        let header = Header {
            alg: "HS256",
            typ: "JWT",
        };
        let claims = IssuedClaims {
            iss: ISSUER,
            sub: subject,
            aud: &self.service,
            exp: now + TOKEN_LIFETIME_SECS,
            nbf: now,
            iat: now,
            access: access
                .iter()
                .map(|a| AccessEntry {
                    kind: &a.kind,
                    name: &a.name,
                    actions: &a.actions,
                })
                .collect(),
        };
        // Serializing these plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        IssuedToken {
            token,
            expires_in: TOKEN_LIFETIME_SECS,
            issued_at: now,
        }
    }

    /// Verifies a token this registry issued, as of `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let jws = jws::parse(token)?;
        if jws.header.alg != "HS256" {
            return Err(TokenError::AlgorithmNotAllowed(jws::shorten(
                &jws.header.alg,
            )));
        }
        hmac::verify(&self.key, jws.signing_input, &jws.signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = Claims::parse(&jws.claims)?;
        claims.check(&Expected {
            issuer: ISSUER,
            service: &self.service,
            now: unix(now),
        })?;
        Ok(VerifiedToken {
            subject: claims.subject(),
            expires: claims.expiry(),
            access: claims.access(),
        })
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn access(name: &str, actions: &[&str]) -> TokenAccess {
        TokenAccess {
            kind: "repository".to_string(),
            name: name.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_subject_and_access() {
        let issuer = Issuer::new(b"0123456789abcdef0123456789abcdef", "reg");
        let now = SystemTime::now();
        let grants = [access("team/app", &["pull", "push"])];
        let issued = issuer.issue("ci", &grants, now);
        assert_eq!(issued.expires_in, TOKEN_LIFETIME_SECS);
        let verified = issuer.verify(&issued.token, now).unwrap();
        assert_eq!(verified.subject, "ci");
        assert_eq!(verified.access, grants.to_vec());
        let anonymous = issuer.issue("", &[], now);
        assert_eq!(issuer.verify(&anonymous.token, now).unwrap().subject, "");
    }

    #[test]
    fn tokens_of_another_secret_service_or_time_are_refused() {
        let issuer = Issuer::new(b"secret one", "reg");
        let now = SystemTime::now();
        let token = issuer.issue("ci", &[access("a", &["push"])], now).token;
        assert!(matches!(
            Issuer::new(b"secret two", "reg").verify(&token, now),
            Err(TokenError::BadSignature)
        ));
        assert!(
            Issuer::new(b"secret one", "other")
                .verify(&token, now)
                .is_err()
        );
        let later = now + Duration::from_secs(TOKEN_LIFETIME_SECS as u64 + 120);
        assert!(matches!(
            issuer.verify(&token, later),
            Err(TokenError::Expired { .. })
        ));
        // A claim changed after signing.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let forged = serde_json::json!({"iss": "ferry", "sub": "admin", "aud": "reg",
            "exp": unix(now) + 60, "access": [{"type": "repository", "name": "a", "actions": ["*"]}]});
        parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
        assert!(issuer.verify(&parts.join("."), now).is_err());
        // Another algorithm named in the header.
        parts[0] = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert!(matches!(
            issuer.verify(&parts.join("."), now),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
        assert!(issuer.verify("not.a.token", now).is_err());
        assert!(issuer.verify(&"a".repeat(MAX_TOKEN_LEN + 1), now).is_err());
    }

    #[test]
    fn new_secrets_are_random_hex() {
        let a = Issuer::new_secret().unwrap();
        assert_eq!(a.len(), SECRET_LEN * 2);
        assert_ne!(a, Issuer::new_secret().unwrap());
    }
}
