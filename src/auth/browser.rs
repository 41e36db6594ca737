//! Access for the web UI (`crate::ui`): a browser speaks only `Basic`, so the UI asks here
//! instead of [`Authenticator::authorize`], which may challenge with `Bearer` (Ferry's own
//! tokens) or need a scope. The rights are the API's: the same [`RuleRights`] for the same
//! caller, so a page shows exactly what that caller could pull through `/v2/`.
//!
//! - open registry: everybody, everything;
//! - `auth.htpasswd`: no credentials is the anonymous caller with the anonymous rules
//!   (when the rules give anonymous callers nothing, a login is asked for at once); valid
//!   `Basic` credentials are that user with that user's rules; anything else (wrong
//!   password, another scheme) is asked to log in again (`401` with a `Basic` challenge);
//! - `auth.token`: the UI is off. Rights come from an external token server, which a
//!   browser cannot ask, and Ferry cannot know what it would grant anonymously; showing
//!   nothing is the only answer that never shows too much.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Authenticator, Credentials, Grant, Kind, login, parse_credentials, quoted};
use crate::registry::context::Caller;

/// Why the UI does not serve a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrowserRefusal {
    /// A login is needed (or the one given is wrong): `401` with this `WWW-Authenticate`.
    Login {
        /// The `Basic` challenge.
        challenge: String,
    },
    /// The UI is not available with this access controller (`auth.token`).
    Unavailable,
}

impl Authenticator {
    /// Who the browser is and what it may do. `want_login`: the caller asked to log in
    /// (`/ui/login`), so no credentials is answered with the challenge even when anonymous
    /// callers have rights.
    pub async fn authorize_browser(
        &self,
        authorization: Option<&[u8]>,
        peer: Option<SocketAddr>,
        want_login: bool,
    ) -> Result<Grant, BrowserRefusal> {
        let (realm, file) = match &self.kind {
            Kind::Open => {
                return Ok(Grant {
                    caller: Caller::Anonymous,
                    rights: None,
                });
            }
            Kind::Token(_) => return Err(BrowserRefusal::Unavailable),
            Kind::Htpasswd { realm, file, .. } => (realm, file),
        };
        let login_needed = || BrowserRefusal::Login {
            challenge: format!("Basic realm=\"{}\"", quoted(realm)),
        };
        let caller = match parse_credentials(authorization) {
            Credentials::None => {
                let anonymous_has_rights = self
                    .rules
                    .as_ref()
                    .is_some_and(|r| r.has_any_for(&Caller::Anonymous));
                if want_login || !anonymous_has_rights {
                    return Err(login_needed());
                }
                Caller::Anonymous
            }
            Credentials::Basic { user, password } => login(file, user, &password, peer)
                .await
                .ok_or_else(login_needed)?,
            Credentials::Bearer(_) | Credentials::Malformed => return Err(login_needed()),
        };
        let rights = self.rule_rights(&caller);
        Ok(Grant {
            caller,
            rights: Some(Arc::new(rights)),
        })
    }

    /// Whether the controller is `auth.token` (the UI is off then).
    pub fn is_token(&self) -> bool {
        matches!(self.kind, Kind::Token(_))
    }
}
