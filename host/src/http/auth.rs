//! Access control: a bearer token for writes, commands and administration,
//! and optionally for reads. Tokens are compared in constant time and never
//! logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::App;

/// A secret that never shows in logs or debug output.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps `token`; an empty string is no token.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let t = token.into();
        (!t.is_empty()).then_some(Self(t))
    }

    fn matches(&self, given: &str) -> bool {
        self.0.as_bytes().ct_eq(given.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

fn authorized(token: &Token, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| token.matches(given.trim()))
}

fn unauthorized() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token: send `Authorization: Bearer <token>`",
    )
    .into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

/// Guards appends, commands and administration when a token is set.
pub async fn writes(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    match &app.http.token {
        Some(t) if !authorized(t, req.headers()) => unauthorized(),
        _ => next.run(req).await,
    }
}

/// Guards reads when a token is set and reads are protected.
pub async fn reads(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    match &app.http.token {
        Some(t) if app.http.protect_reads && !authorized(t, req.headers()) => unauthorized(),
        _ => next.run(req).await,
    }
}
