//! `GET /auth/token`: Ferry's own token endpoint (the Docker token protocol), served when an
//! htpasswd registry lets anonymous callers in (see `crate::auth::token::issuer`). Clients
//! arrive here from the `Bearer realm=...` challenge, with htpasswd credentials or none, and
//! leave with a token for the scopes they asked for, as far as the rules allow them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};

use super::error::error_response;
use super::{AppState, Query};
use crate::auth::TokenRefusal;

/// Issues a token, or answers why not.
pub async fn issue(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let query = Query::from_uri(request.uri());
    let scopes: Vec<&str> = query.all("scope").collect();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let issued = state
        .auth
        .issue_token(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            &scopes,
            peer,
        )
        .await;
    match issued {
        Ok(issued) => {
            let issued_at = DateTime::from_timestamp(issued.issued_at, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            let body = serde_json::json!({
                "token": issued.token,
                "access_token": issued.token,
                "expires_in": issued.expires_in,
                "issued_at": issued_at,
            });
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body.to_string(),
            )
                .into_response()
        }
        Err(TokenRefusal::NotServed) => error_response(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "this registry issues no tokens".to_string(),
        ),
        Err(TokenRefusal::BadCredentials { challenge }) => {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "invalid user name or password".to_string(),
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
        Err(TokenRefusal::TooManyScopes) => error_response(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            format!(
                "at most {} scopes per token request",
                crate::auth::MAX_SCOPES
            ),
        ),
    }
}
