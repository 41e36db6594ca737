//! The claims of a registry token (Distribution's "Token Authentication Implementation"):
//! who (`sub`), from whom (`iss`), for whom (`aud`), when (`exp`, `nbf`, `iat`) and what
//! (`access`). Parsed with strict types: a time that is not a number, or an audience that is
//! neither a string nor a list of strings, makes the token malformed, never "absent".

use serde::Deserialize;

use super::TokenAccess;
use super::error::TokenError;

/// Allowed clock difference between the token server and Ferry, applied to `exp` and `nbf`:
/// Distribution's `Leeway` (60 s).
pub const LEEWAY_SECS: i64 = 60;

/// A token's claims.
#[derive(Debug, Deserialize)]
pub struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    // Tolerated, not checked (as in Distribution), but it must be a time if present.
    #[allow(dead_code)]
    iat: Option<NumericDate>,
    access: Option<Vec<AccessClaim>>,
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A JSON number of seconds since the epoch, whole or not (RFC 7519 §2).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(from = "f64")]
struct NumericDate(i64);

impl From<f64> for NumericDate {
    fn from(seconds: f64) -> Self {
        // Saturating: NaN cannot come from JSON; infinities and huge values clamp.
        NumericDate(seconds.floor() as i64)
    }
}

/// One entry of `access`.
#[derive(Debug, Deserialize)]
struct AccessClaim {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

/// What a token must say to be accepted.
pub struct Expected<'a> {
    /// `auth.token.issuer`.
    pub issuer: &'a str,
    /// `auth.token.service`.
    pub service: &'a str,
    /// Unix seconds.
    pub now: i64,
}

impl Claims {
    /// Parses the claims' JSON (only after the signature verified).
    pub fn parse(json: &[u8]) -> Result<Claims, TokenError> {
        serde_json::from_slice(json)
            .map_err(|_| TokenError::Malformed("claims are not a JSON object of the token's shape"))
    }

    /// Checks issuer, audience, expiry and not-before, in Distribution's order.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), TokenError> {
        let issuer = self.iss.as_deref().unwrap_or_default();
        if issuer != expected.issuer {
            return Err(TokenError::WrongIssuer {
                found: issuer.to_string(),
                expected: expected.issuer.to_string(),
            });
        }
        let audiences: &[String] = match &self.aud {
            Some(Audience::One(one)) => std::slice::from_ref(one),
            Some(Audience::Many(many)) => many,
            None => &[],
        };
        if !audiences.iter().any(|a| a == expected.service) {
            return Err(TokenError::WrongAudience {
                found: audiences.to_vec(),
                expected: expected.service.to_string(),
            });
        }
        let exp = self.exp.ok_or(TokenError::MissingExpiry)?.0;
        if expected.now > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired { exp });
        }
        if let Some(NumericDate(nbf)) = self.nbf
            && expected.now < nbf.saturating_sub(LEEWAY_SECS)
        {
            return Err(TokenError::NotYetValid { nbf });
        }
        Ok(())
    }

    /// `exp` (checked present by [`Claims::check`]; 0 when missing).
    pub fn expiry(&self) -> i64 {
        self.exp.map_or(0, |NumericDate(exp)| exp)
    }

    /// `sub` (empty when missing).
    pub fn subject(&self) -> String {
        self.sub.clone().unwrap_or_default()
    }

    /// `access` (none when missing: authenticated, without rights).
    pub fn access(self) -> Vec<TokenAccess> {
        self.access
            .unwrap_or_default()
            .into_iter()
            .map(|a| TokenAccess {
                kind: a.kind,
                name: a.name,
                actions: a.actions,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn check(json: &str) -> Result<(), TokenError> {
        Claims::parse(json.as_bytes())?.check(&Expected {
            issuer: "auth",
            service: "registry",
            now: NOW,
        })
    }

    #[test]
    fn good_claims_pass() {
        let ok = format!(r#"{{"iss":"auth","aud":"registry","exp":{}}}"#, NOW + 300);
        check(&ok).unwrap();
        let list = format!(
            r#"{{"iss":"auth","aud":["other","registry"],"exp":{}.5,"nbf":{},"iat":{}}}"#,
            NOW + 300,
            NOW,
            NOW
        );
        check(&list).unwrap();
    }

    #[test]
    fn times_allow_the_leeway_and_no_more() {
        let at = |exp: i64, nbf: i64| {
            check(&format!(
                r#"{{"iss":"auth","aud":"registry","exp":{exp},"nbf":{nbf}}}"#
            ))
        };
        at(NOW - LEEWAY_SECS, NOW).unwrap();
        assert!(matches!(
            at(NOW - LEEWAY_SECS - 1, NOW),
            Err(TokenError::Expired { .. })
        ));
        at(NOW + 600, NOW + LEEWAY_SECS).unwrap();
        assert!(matches!(
            at(NOW + 600, NOW + LEEWAY_SECS + 1),
            Err(TokenError::NotYetValid { .. })
        ));
    }

    #[test]
    fn wrong_types_are_malformed_not_absent() {
        for json in [
            r#"{"iss":"auth","aud":"registry","exp":"9999999999"}"#,
            r#"{"iss":"auth","aud":"registry","exp":9999999999,"nbf":"9999999999"}"#,
            r#"{"iss":"auth","aud":"registry","exp":9999999999,"iat":"soon"}"#,
            r#"{"iss":"auth","aud":{"x":1},"exp":9999999999}"#,
            r#"{"iss":"auth","aud":"registry","exp":9999999999,"access":{"type":"x"}}"#,
            r#"{"iss":"auth","aud":"registry","exp":9999999999,"access":[{"type":"repository","name":"a","actions":"pull"}]}"#,
            r#"["iss"]"#,
            r#""just a string""#,
            "not json",
        ] {
            assert!(
                matches!(check(json), Err(TokenError::Malformed(_))),
                "{json}"
            );
        }
    }

    #[test]
    fn issuer_audience_and_expiry_are_required() {
        assert!(matches!(
            check(r#"{"aud":"registry","exp":9999999999}"#),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            check(r#"{"iss":"other","aud":"registry","exp":9999999999}"#),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            check(r#"{"iss":"auth","exp":9999999999}"#),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            check(r#"{"iss":"auth","aud":[],"exp":9999999999}"#),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            check(r#"{"iss":"auth","aud":"registry"}"#),
            Err(TokenError::MissingExpiry)
        ));
    }

    #[test]
    fn access_is_read_and_defaults_to_nothing() {
        let claims = Claims::parse(
            br#"{"sub":"ci","access":[{"type":"repository","name":"team/app","actions":["pull","push"]},{"type":"registry","name":"catalog","actions":["*"]},{"type":"repository","name":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(claims.subject(), "ci");
        let access = claims.access();
        assert_eq!(access.len(), 3);
        assert_eq!(access[0].kind, "repository");
        assert_eq!(access[0].name, "team/app");
        assert_eq!(access[0].actions, ["pull", "push"]);
        assert_eq!(access[1].actions, ["*"]);
        assert!(access[2].actions.is_empty());
        let none = Claims::parse(br#"{"access":null}"#).unwrap();
        assert_eq!(none.subject(), "");
        assert!(none.access().is_empty());
    }
}
