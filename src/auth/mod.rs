//! Access control: who the caller is ([`Authenticator::authorize`] reads the
//! `Authorization` header) and whether it may do what the request needs (the request
//! context's [`Access`]). The HTTP layer calls it between `classify` and `dispatch`
//! (`src/http/authorize.rs`) and renders a refusal; everything here is independent of HTTP
//! status codes.
//!
//! - **No `auth:`**: the registry is open; every caller may do everything.
//! - **`auth.htpasswd`**: HTTP Basic credentials checked against an htpasswd file
//!   ([`htpasswd`]); what a caller may do is decided by the access rules ([`rules`],
//!   `auth.access`), or, without rules, Distribution's way: authenticated users everything,
//!   anonymous callers nothing. Missing or bad credentials: [`Refusal::Unauthorized`]; valid
//!   credentials without the right: [`Refusal::Denied`].
//! - **`auth.token`**: bearer JWTs ([`token`]); the token's `access` claims decide. When
//!   `auth.access` is configured too, a right needs both the token and the rules (the rules
//!   see the token's subject as the user, an empty subject as anonymous). A missing, bad or
//!   insufficient token is always [`Refusal::Unauthorized`] with a challenge naming the exact
//!   scope the request needs, as Distribution answers: clients fetch a new token from it.
//!
//! `GET /v2/` needs an authenticated caller whenever access control is on, even when rules
//! let anonymous callers pull (as in Distribution): `docker login` and `docker push` send
//! credentials only to a registry whose `/v2/` answered `401` with a challenge (a `200`
//! would make `docker login` succeed with any password and pushes go out without
//! credentials). After a `Basic` challenge, though, the Docker engine refuses to go on
//! without a login, so when the rules give anonymous callers any right, an htpasswd
//! registry challenges with `Bearer` instead, naming Ferry's own token endpoint
//! ([`token::issuer`], `GET /auth/token`): Docker fetches a token there, anonymously or with
//! its login, and pulls. htpasswd credentials sent directly (`curl -u`, scripts) keep
//! working; skopeo, podman and containerd follow either challenge (an empty `Basic`
//! credential, `:`, counts as anonymous).

pub mod browser;
pub mod htpasswd;
pub mod rules;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use self::htpasswd::{Htpasswd, HtpasswdError};
use self::rules::{RuleError, RuleSpec, Rules};
use self::token::issuer::{IssuedToken, Issuer};
use self::token::{TokenAccess, TokenSettings, TokenSetupError, TokenVerifier};
use crate::registry::context::{Access, Action, Caller, Rights};

/// The longest `Authorization` header read (bytes); longer ones are refused unread.
pub const MAX_AUTHORIZATION_LEN: usize = token::MAX_TOKEN_LEN + 64;

/// The access controller, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Controller {
    /// `auth.htpasswd`.
    Htpasswd {
        /// `auth.htpasswd.realm`, for the `Basic` challenge.
        realm: String,
        /// `auth.htpasswd.path`.
        path: PathBuf,
    },
    /// `auth.token`.
    Token(TokenSettings),
}

/// `auth` as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `None`: the registry is open.
    pub controller: Option<Controller>,
    /// `auth.access`, if given.
    pub rules: Option<Vec<RuleSpec>>,
}

/// Why access control cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The htpasswd file.
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
    /// The token verifier's files or settings.
    #[error("auth.token: {0}")]
    Token(#[from] TokenSetupError),
    /// The access rules.
    #[error("auth.access: {0}")]
    Rules(#[from] RuleError),
}

/// The configured access controller, ready to decide.
#[derive(Debug)]
pub struct Authenticator {
    kind: Kind,
    rules: Option<Arc<Rules>>,
}

#[derive(Debug)]
enum Kind {
    Open,
    Htpasswd {
        realm: String,
        file: Htpasswd,
        /// Ferry's own tokens, when anonymous callers have rights (see [`token::issuer`]).
        issuer: Option<Issuer>,
    },
    Token(TokenVerifier),
}

/// A request the caller may not make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, bad or (with tokens) insufficient credentials: `401` with `challenge` as
    /// `WWW-Authenticate`.
    Unauthorized {
        /// The `WWW-Authenticate` value.
        challenge: String,
        /// For the error body.
        message: &'static str,
    },
    /// Valid credentials without the right: `403 DENIED`.
    Denied {
        /// Who.
        caller: Caller,
    },
}

/// What was decided for an allowed request.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Who is calling.
    pub caller: Caller,
    /// What it may do (`None`: everything).
    pub rights: Option<Arc<dyn Rights>>,
}

/// What the `Authorization` header holds.
enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
    Malformed,
}

impl Authenticator {
    /// An open registry.
    pub fn open() -> Authenticator {
        Authenticator {
            kind: Kind::Open,
            rules: None,
        }
    }

    /// Builds the controller: reads the htpasswd file or the token keys, checks the rules.
    pub fn new(settings: &AuthSettings) -> Result<Authenticator, AuthSetupError> {
        let rules = settings
            .rules
            .as_deref()
            .map(Rules::new)
            .transpose()?
            .map(Arc::new);
        let kind = match &settings.controller {
            None => {
                if rules.is_some() {
                    tracing::warn!(
                        "auth.access is ignored: without auth.htpasswd or auth.token the registry is open"
                    );
                }
                return Ok(Authenticator::open());
            }
            Some(Controller::Htpasswd { realm, path }) => {
                let file = Htpasswd::open(path)?;
                tracing::info!(path = %path.display(), users = file.user_count(), "htpasswd authentication");
                Kind::Htpasswd {
                    realm: realm.clone(),
                    file,
                    issuer: None,
                }
            }
            Some(Controller::Token(settings)) => Kind::Token(TokenVerifier::new(settings.clone())?),
        };
        Ok(Authenticator { kind, rules })
    }

    /// Whether access control is on.
    pub fn is_open(&self) -> bool {
        matches!(self.kind, Kind::Open)
    }

    /// Authenticates the caller from `authorization` (the header's raw bytes) and decides
    /// whether it may make a request that needs `access`. `peer` is only for the log line of
    /// a failed login.
    pub async fn authorize(
        &self,
        authorization: Option<&[u8]>,
        access: &Access,
        peer: Option<SocketAddr>,
        realm_url: &(dyn Fn() -> String + Sync),
    ) -> Result<Grant, Refusal> {
        match &self.kind {
            Kind::Open => Ok(Grant {
                caller: Caller::Anonymous,
                rights: None,
            }),
            Kind::Htpasswd {
                realm,
                file,
                issuer,
            } => {
                let credentials = parse_credentials(authorization);
                if let Some(issuer) = issuer {
                    return self
                        .authorize_issued(issuer, credentials, file, access, peer, realm_url)
                        .await;
                }
                let challenge = || format!("Basic realm=\"{}\"", quoted(realm));
                let caller = match credentials {
                    Credentials::None => Caller::Anonymous,
                    Credentials::Basic { user, password } => login(file, user, &password, peer)
                        .await
                        .ok_or_else(|| Refusal::Unauthorized {
                            challenge: challenge(),
                            message: "invalid user name or password",
                        })?,
                    Credentials::Bearer(_) | Credentials::Malformed => {
                        tracing::warn!(
                            client = %client(peer),
                            "failed login: Authorization header is not Basic credentials"
                        );
                        return Err(Refusal::Unauthorized {
                            challenge: challenge(),
                            message: "malformed or unsupported Authorization header",
                        });
                    }
                };
                let rights = self.rule_rights(&caller);
                match (self.rules_allow(&rights, access), &caller) {
                    (true, _) => Ok(Grant {
                        caller,
                        rights: Some(Arc::new(rights)),
                    }),
                    (false, Caller::Anonymous) => Err(Refusal::Unauthorized {
                        challenge: challenge(),
                        message: "authentication required",
                    }),
                    (false, Caller::User(_)) => Err(Refusal::Denied { caller }),
                }
            }
            Kind::Token(verifier) => {
                let settings = verifier.settings();
                let challenge = |error: Option<&str>| {
                    bearer_challenge(&settings.realm, &settings.service, access, error)
                };
                let token = match parse_credentials(authorization) {
                    Credentials::None => None,
                    Credentials::Bearer(token) => Some(token),
                    Credentials::Basic { .. } | Credentials::Malformed => {
                        return Err(Refusal::Unauthorized {
                            challenge: challenge(Some("invalid_token")),
                            message: "malformed or unsupported Authorization header",
                        });
                    }
                };
                let Some(token) = token else {
                    return Err(Refusal::Unauthorized {
                        challenge: challenge(None),
                        message: "authentication required",
                    });
                };
                let verified = match verifier.verify(&token) {
                    Ok(verified) => verified,
                    Err(e) => {
                        tracing::warn!(client = %client(peer), error = %e, "bearer token refused");
                        return Err(Refusal::Unauthorized {
                            challenge: challenge(Some("invalid_token")),
                            message: "invalid token",
                        });
                    }
                };
                let caller = if verified.subject.is_empty() {
                    Caller::Anonymous
                } else {
                    Caller::User(verified.subject.clone())
                };
                let rights = TokenRights {
                    access: verified.access,
                    rules: self.rules.clone(),
                    caller: caller.clone(),
                };
                let (allowed, rights): (bool, Option<Arc<dyn Rights>>) = match access {
                    Access::Base => (true, Some(Arc::new(rights))),
                    // A catalog token lists every repository, or with rules those the
                    // rules let the caller pull.
                    Access::Catalog => (
                        rights.grants("registry", "catalog", "*"),
                        self.rules.clone().map(|rules| {
                            Arc::new(RuleRights {
                                rules: Some(rules),
                                caller: caller.clone(),
                            }) as Arc<dyn Rights>
                        }),
                    ),
                    Access::Repository { name, actions } => (
                        actions.iter().all(|&a| rights.may(name.as_str(), a)),
                        Some(Arc::new(rights)),
                    ),
                };
                if allowed {
                    Ok(Grant { caller, rights })
                } else {
                    Err(Refusal::Unauthorized {
                        challenge: challenge(Some("insufficient_scope")),
                        message: "the token does not grant the access the request needs",
                    })
                }
            }
        }
    }
}

impl Authenticator {
    /// Whether this controller hands out its own tokens and so needs their secret
    /// ([`Authenticator::set_issuer_secret`]): htpasswd with rules that give anonymous
    /// callers a right.
    pub fn needs_issuer_secret(&self) -> bool {
        matches!(self.kind, Kind::Htpasswd { .. })
            && self
                .rules
                .as_ref()
                .is_some_and(|r| r.has_any_for(&Caller::Anonymous))
    }

    /// Turns on Ferry's own tokens (when [`Authenticator::needs_issuer_secret`]) with the
    /// registry's secret.
    pub fn set_issuer_secret(&mut self, secret: &[u8]) {
        let wanted = self.needs_issuer_secret();
        if let Kind::Htpasswd { realm, issuer, .. } = &mut self.kind
            && wanted
        {
            *issuer = Some(Issuer::new(secret, realm));
        }
    }

    /// Whether `GET /auth/token` is served.
    pub fn issues_tokens(&self) -> bool {
        matches!(
            self.kind,
            Kind::Htpasswd {
                issuer: Some(_),
                ..
            }
        )
    }

    /// `GET /auth/token`: authenticates the caller (htpasswd credentials, or none for an
    /// anonymous token) and issues a token for the requested `scopes` (Docker's
    /// `type:name:actions`, several per value when space-separated), each cut down to what the
    /// rules allow the caller. Scopes the caller has no right in, or that name nothing
    /// Ferry knows, are left out rather than refused, as Docker's token servers do.
    pub async fn issue_token(
        &self,
        authorization: Option<&[u8]>,
        scopes: &[&str],
        peer: Option<SocketAddr>,
    ) -> Result<IssuedToken, TokenRefusal> {
        let Kind::Htpasswd {
            realm,
            file,
            issuer: Some(issuer),
        } = &self.kind
        else {
            return Err(TokenRefusal::NotServed);
        };
        let caller = match parse_credentials(authorization) {
            Credentials::None => Caller::Anonymous,
            Credentials::Basic { user, password } => login(file, user, &password, peer)
                .await
                .ok_or_else(|| TokenRefusal::BadCredentials {
                    challenge: format!("Basic realm=\"{}\"", quoted(realm)),
                })?,
            Credentials::Bearer(_) | Credentials::Malformed => {
                return Err(TokenRefusal::BadCredentials {
                    challenge: format!("Basic realm=\"{}\"", quoted(realm)),
                });
            }
        };
        let requested: Vec<&str> = scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .collect();
        if requested.len() > MAX_SCOPES {
            return Err(TokenRefusal::TooManyScopes);
        }
        let rights = self.rule_rights(&caller);
        let may_list = self.rules_allow(&rights, &Access::Catalog);
        let granted: Vec<TokenAccess> = requested
            .into_iter()
            .filter_map(|scope| grant_scope(scope, &rights, may_list))
            .collect();
        let subject = match &caller {
            Caller::Anonymous => "",
            Caller::User(name) => name.as_str(),
        };
        Ok(issuer.issue(subject, &granted, std::time::SystemTime::now()))
    }

    /// Rights from the rules for `caller`.
    fn rule_rights(&self, caller: &Caller) -> RuleRights {
        RuleRights {
            rules: self.rules.clone(),
            caller: caller.clone(),
        }
    }

    /// Whether the rules (htpasswd mode) let the caller of `rights` make a request that
    /// needs `access`.
    fn rules_allow(&self, rights: &RuleRights, access: &Access) -> bool {
        let caller = &rights.caller;
        match access {
            Access::Base => *caller != Caller::Anonymous,
            Access::Catalog => {
                *caller != Caller::Anonymous
                    || self.rules.as_ref().is_some_and(|r| r.has_any_for(caller))
            }
            Access::Repository { name, actions } => {
                actions.iter().all(|&a| rights.may(name.as_str(), a))
            }
        }
    }

    /// htpasswd with Ferry's own tokens: a bearer token of this registry, htpasswd
    /// credentials (curl, scripts) or nothing; refusals challenge with `Bearer` and the
    /// token endpoint as realm, so the Docker engine fetches a token, anonymously if it has
    /// no login.
    async fn authorize_issued(
        &self,
        issuer: &Issuer,
        credentials: Credentials,
        file: &Htpasswd,
        access: &Access,
        peer: Option<SocketAddr>,
        realm_url: &(dyn Fn() -> String + Sync),
    ) -> Result<Grant, Refusal> {
        let challenge =
            |error: Option<&str>| bearer_challenge(&realm_url(), issuer.service(), access, error);
        let token = match credentials {
            Credentials::Bearer(token) => token,
            Credentials::Malformed => {
                return Err(Refusal::Unauthorized {
                    challenge: challenge(Some("invalid_request")),
                    message: "malformed or unsupported Authorization header",
                });
            }
            Credentials::None | Credentials::Basic { .. } => {
                let caller = match credentials {
                    Credentials::Basic { user, password } => login(file, user, &password, peer)
                        .await
                        .ok_or_else(|| Refusal::Unauthorized {
                            challenge: challenge(None),
                            message: "invalid user name or password",
                        })?,
                    _ => Caller::Anonymous,
                };
                let rights = self.rule_rights(&caller);
                return match (self.rules_allow(&rights, access), &caller) {
                    (true, _) => Ok(Grant {
                        caller,
                        rights: Some(Arc::new(rights)),
                    }),
                    (false, Caller::Anonymous) => Err(Refusal::Unauthorized {
                        challenge: challenge(None),
                        message: "authentication required",
                    }),
                    (false, Caller::User(_)) => Err(Refusal::Denied { caller }),
                };
            }
        };
        let verified = issuer
            .verify(&token, std::time::SystemTime::now())
            .map_err(|e| {
                tracing::warn!(client = %client(peer), error = %e, "bearer token refused");
                Refusal::Unauthorized {
                    challenge: challenge(Some("invalid_token")),
                    message: "invalid token",
                }
            })?;
        let caller = if verified.subject.is_empty() {
            Caller::Anonymous
        } else {
            Caller::User(verified.subject)
        };
        let rights = TokenRights {
            access: verified.access,
            rules: self.rules.clone(),
            caller: caller.clone(),
        };
        let (allowed, grant_rights): (bool, Arc<dyn Rights>) = match access {
            Access::Base => (true, Arc::new(rights)),
            Access::Catalog => (
                rights.grants("registry", "catalog", "*"),
                Arc::new(self.rule_rights(&caller)),
            ),
            Access::Repository { name, actions } => (
                actions.iter().all(|&a| rights.may(name.as_str(), a)),
                Arc::new(rights),
            ),
        };
        if allowed {
            return Ok(Grant {
                caller,
                rights: Some(grant_rights),
            });
        }
        // A token that lacks a right the rules give: fetch another (401); a user the rules
        // refuse: no token will do (403).
        if matches!(caller, Caller::User(_))
            && !self.rules_allow(&self.rule_rights(&caller), access)
        {
            return Err(Refusal::Denied { caller });
        }
        Err(Refusal::Unauthorized {
            challenge: challenge(Some("insufficient_scope")),
            message: "the token does not grant the access the request needs",
        })
    }
}

/// Why `GET /auth/token` issued no token.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    /// This registry issues no tokens (`404`).
    NotServed,
    /// Wrong or unusable credentials (`401` with `challenge`).
    BadCredentials {
        /// The `WWW-Authenticate` value.
        challenge: String,
    },
    /// More than [`MAX_SCOPES`] scopes (`400`).
    TooManyScopes,
}

/// The most scopes one token request may ask for.
pub const MAX_SCOPES: usize = 32;

/// One requested scope (`repository:team/app:pull,push`, `registry:catalog:*`) cut down to
/// what `rights` allow; `None` when nothing is left or the scope names nothing Ferry knows.
fn grant_scope(scope: &str, rights: &RuleRights, may_list: bool) -> Option<TokenAccess> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<String> = match kind {
        "repository" => {
            crate::oci::RepositoryName::parse(name).ok()?;
            [Action::Pull, Action::Push, Action::Delete]
                .into_iter()
                .filter(|a| {
                    actions
                        .split(',')
                        .any(|asked| asked == a.as_str() || asked == "*")
                })
                .filter(|&a| rights.may(name, a))
                .map(|a| a.as_str().to_string())
                .collect()
        }
        "registry" if name == "catalog" && may_list && actions.split(',').any(|a| a == "*") => {
            vec!["*".to_string()]
        }
        _ => Vec::new(),
    };
    (!actions.is_empty()).then(|| TokenAccess {
        kind: kind.to_string(),
        name: name.to_string(),
        actions,
    })
}

/// A `Bearer` challenge naming the token server (`realm`), the `service`, the scope the
/// request needs (none for `/v2/`) and, after a refused token, why (`error`).
fn bearer_challenge(realm: &str, service: &str, access: &Access, error: Option<&str>) -> String {
    let mut c = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        quoted(realm),
        quoted(service)
    );
    if let Some(scope) = access.scope() {
        c.push_str(&format!(",scope=\"{}\"", quoted(&scope)));
    }
    if let Some(error) = error {
        c.push_str(&format!(",error=\"{error}\""));
    }
    c
}

/// The client's address for a log line.
fn client(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string())
}

/// The caller htpasswd credentials name, or `None` when they are wrong (logged with the
/// user and the client's address, never the password).
async fn login(
    file: &Htpasswd,
    user: String,
    password: &str,
    peer: Option<SocketAddr>,
) -> Option<Caller> {
    if file.verify(&user, password).await {
        return Some(Caller::User(user));
    }
    tracing::warn!(
        user = %printable(&user),
        client = %client(peer),
        "failed login: wrong user name or password"
    );
    None
}

/// Rights from the access rules (none configured: users everything, anonymous nothing).
#[derive(Debug)]
struct RuleRights {
    rules: Option<Arc<Rules>>,
    caller: Caller,
}

impl Rights for RuleRights {
    fn may(&self, repository: &str, action: Action) -> bool {
        match &self.rules {
            Some(rules) => rules.may(&self.caller, repository, action),
            None => self.caller != Caller::Anonymous,
        }
    }
}

/// Rights a token grants (and, if configured, the rules allow).
#[derive(Debug)]
struct TokenRights {
    access: Vec<TokenAccess>,
    rules: Option<Arc<Rules>>,
    caller: Caller,
}

impl TokenRights {
    fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind
                && a.name == name
                && a.actions
                    .iter()
                    .any(|granted| granted == action || granted == "*")
        })
    }
}

impl Rights for TokenRights {
    fn may(&self, repository: &str, action: Action) -> bool {
        self.grants("repository", repository, action.as_str())
            && self
                .rules
                .as_ref()
                .is_none_or(|rules| rules.may(&self.caller, repository, action))
    }
}

/// Reads an `Authorization` header. Anything unusable (not ASCII, too long, an unknown
/// scheme, bad base64, no colon, not UTF-8) is [`Credentials::Malformed`].
fn parse_credentials(header: Option<&[u8]>) -> Credentials {
    let Some(raw) = header else {
        return Credentials::None;
    };
    if raw.len() > MAX_AUTHORIZATION_LEN {
        return Credentials::Malformed;
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Credentials::Malformed;
    };
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = STANDARD.decode(rest) else {
            return Credentials::Malformed;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Credentials::Malformed;
        };
        match decoded.split_once(':') {
            // What clients without credentials send after a Basic challenge (skopeo,
            // podman: `Basic Og==`): anonymous.
            Some(("", "")) => Credentials::None,
            Some((user, password)) if !user.is_empty() => Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            },
            _ => Credentials::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials::Bearer(rest.to_string())
    } else {
        Credentials::Malformed
    }
}

/// A value for a quoted-string of a challenge (quotes and backslashes escaped).
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A user name as it may appear in a log line (control characters escaped, length capped).
fn printable(user: &str) -> String {
    let mut s: String = user.chars().take(64).flat_map(char::escape_debug).collect();
    if user.chars().count() > 64 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse_or_are_malformed() {
        let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert!(matches!(
            parse_credentials(Some(basic("u:p:q").as_bytes())),
            Credentials::Basic { user, password } if user == "u" && password == "p:q"
        ));
        assert!(matches!(
            parse_credentials(Some(b"bearer abc")),
            Credentials::Bearer(t) if t == "abc"
        ));
        for bad in [
            basic("nocolon"),
            basic(":p"),
            basic("u"),
            "Basic !!!".to_string(),
            "Basic".to_string(),
            "Bearer".to_string(),
            "Digest x".to_string(),
            format!("Basic {}", "A".repeat(MAX_AUTHORIZATION_LEN)),
        ] {
            assert!(
                matches!(
                    parse_credentials(Some(bad.as_bytes())),
                    Credentials::Malformed
                ),
                "{bad:.40}"
            );
        }
        assert!(matches!(
            parse_credentials(Some(b"Basic \xff\xfe")),
            Credentials::Malformed
        ));
        assert!(matches!(
            parse_credentials(Some(
                format!("Basic {}", STANDARD.encode(b"u:\xff")).as_bytes()
            )),
            Credentials::Malformed
        ));
        assert!(matches!(parse_credentials(None), Credentials::None));
        assert!(matches!(
            parse_credentials(Some(basic(":").as_bytes())),
            Credentials::None
        ));
    }
}
