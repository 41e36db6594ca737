//! Middleware between `classify` and `dispatch`: asks the access controller
//! ([`crate::auth::Authenticator`]) whether the caller may make the request the context
//! describes, puts the caller and its rights into the context, or answers `401
//! UNAUTHORIZED` (with the `WWW-Authenticate` challenge) or `403 DENIED`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::error_response;
use crate::auth::Refusal;
use crate::auth::token::issuer::TOKEN_PATH;
use crate::registry::context::RequestContext;

/// Decides on the request [`super::classify`] described.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.auth.is_open() {
        return next.run(request).await;
    }
    let Some(access) = request
        .extensions()
        .get::<RequestContext>()
        .map(|c| c.access.clone())
    else {
        // `classify` always runs first; should a request ever arrive here without its
        // context, it is refused, never let through.
        return error_response(
            StatusCode::FORBIDDEN,
            "DENIED",
            "the request could not be authorized".to_string(),
        );
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let (urls, headers) = (&state.urls, request.headers());
    let decision = state
        .auth
        .authorize(
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            &access,
            peer,
            &|| urls.absolute(headers, TOKEN_PATH),
        )
        .await;
    match decision {
        Ok(grant) => {
            let caller = grant.caller.clone();
            if let Some(context) = request.extensions_mut().get_mut::<RequestContext>() {
                context.caller = grant.caller;
                context.rights = grant.rights;
            }
            let mut response = next.run(request).await;
            // For the access log, which sits outside and sees only the response.
            response.extensions_mut().insert(caller);
            response
        }
        Err(Refusal::Unauthorized { challenge, message }) => {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                message.to_string(),
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
        Err(Refusal::Denied { caller }) => error_response(
            StatusCode::FORBIDDEN,
            "DENIED",
            format!(
                "{caller} is not allowed {}",
                access.scope().unwrap_or_else(|| "this".to_string())
            ),
        ),
    }
}
