//! The operators' console: `GET /ui`, a page served by refract itself.
//! Its three files are written by hand (no build step) and embedded in
//! the binary; the page talks to the same HTTP API as any client, with the
//! token the operator gives it (kept for the tab only).
//!
//! Everything the page shows that comes from the log or from a user is set
//! as text, never as markup; the content security policy allows scripts,
//! styles and requests to this origin only, so even a slip could neither
//! run an inline script nor send anything elsewhere.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::App;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// The policy of every console file.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes (not part of the API document).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/ui", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/ui/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/ui/info.json", get(info))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// What the page needs to know before its first request: whether writes
/// (and reads) need the token.
async fn info(State(app): State<Arc<App>>) -> Response {
    let token = app.http.token.is_some();
    let body = serde_json::json!({
        "writes_need_token": token,
        "reads_need_token": token && app.http.protect_reads,
        "log": app.log.backend(),
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}
