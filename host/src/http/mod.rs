//! The HTTP API (axum). JSON in and out; errors are `{ "error": "…" }` with
//! the status mapped in [`error`].

mod commands;
pub mod error;
mod extract;
mod projections;
mod streams;
mod tables;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::json;

use crate::App;
use error::ApiError;

/// Limits of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// How long a read with `min_position` waits when it names no `wait_ms`.
    pub default_wait: Duration,
    /// The most a read with `min_position` may wait.
    pub max_wait: Duration,
    /// Time limit of one `POST /projections/{name}/query`.
    pub query_timeout: Duration,
    /// Most rows one query returns (the rest is cut, with `truncated`).
    pub query_max_rows: u64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            query_timeout: Duration::from_secs(2),
            query_max_rows: 10_000,
        }
    }
}

/// Every route of the API, over `app`.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.http.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/streams/{stream_id}/events", post(streams::append))
        .route("/streams/{stream_id}", get(streams::read_stream))
        .route("/events", get(streams::read_all))
        .route("/commands/{handler}", post(commands::send))
        .route("/handlers", get(commands::list))
        .route("/projections", get(projections::list))
        .route("/projections/{name}", get(projections::get))
        .route("/projections/{name}/tables/{table}", get(tables::rows))
        .route("/projections/{name}/tables/{table}/{key}", get(tables::row))
        .route("/projections/{name}/query", post(tables::query))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

async fn healthz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok", "head": app.log.head() }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
