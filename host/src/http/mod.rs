//! The HTTP API (axum). JSON in and out; errors are `{ "error": "…" }` with
//! the status mapped in [`error`].

mod auth;
mod commands;
pub use auth::Token;
pub mod error;
mod extract;
mod projections;
pub mod serve;
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
    /// Bearer token required for appends, commands and administration.
    pub token: Option<auth::Token>,
    /// Require the token for reads too.
    pub protect_reads: bool,
    /// Serve rows read by key from memory while their build's checkpoint
    /// is unchanged.
    pub row_cache: bool,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// The longest the server waits on a client: for a request's headers,
    /// for the next piece of a request's body, between requests on a
    /// kept-alive connection, or to take some of an answer it is sent (at
    /// most a day: longer is taken as a day).
    /// Past it the connection is closed; a body that stops arriving is
    /// answered 408 first.
    pub client_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            query_timeout: Duration::from_secs(2),
            query_max_rows: 10_000,
            token: None,
            protect_reads: false,
            row_cache: true,
            max_connections: 1024,
            client_timeout: Duration::from_secs(30),
        }
    }
}

/// Every route of the API, over `app`.
pub fn router(app: Arc<App>) -> Router {
    use axum::middleware::from_fn_with_state;
    let max_body = app.http.max_body_bytes;
    let reads = Router::new()
        .route("/streams/{stream_id}", get(streams::read_stream))
        .route("/events", get(streams::read_all))
        .route("/handlers", get(commands::list))
        .route("/projections", get(projections::list))
        .route("/projections/{name}", get(projections::get))
        .route("/projections/{name}/tables/{table}", get(tables::rows))
        .route("/projections/{name}/tables/{table}/{key}", get(tables::row))
        .route("/projections/{name}/query", post(tables::query))
        .route("/metrics", get(metrics));
    let writes = Router::new()
        .route("/streams/{stream_id}/events", post(streams::append))
        .route("/commands/{handler}", post(commands::send))
        .route("/projections/{name}/pause", post(projections::pause))
        .route("/projections/{name}/resume", post(projections::resume))
        .route("/projections/{name}/skip", post(projections::skip))
        .route("/projections/{name}/rebuild", post(projections::rebuild))
        .route("/projections/{name}/verify", post(projections::verify))
        .route("/projections/{name}/dead-letters", get(projections::dead_letters))
        .route("/projections/{name}/dead-letters/retry", post(projections::retry_dead_letters));
    // Without a token there is nothing to check: no layer, no cost per request.
    let reads = if app.http.token.is_some() && app.http.protect_reads {
        reads.route_layer(from_fn_with_state(app.clone(), auth::reads))
    } else {
        reads
    };
    let writes = if app.http.token.is_some() {
        writes.route_layer(from_fn_with_state(app.clone(), auth::writes))
    } else {
        writes
    };
    Router::new()
        .route("/healthz", get(healthz))
        .merge(reads)
        .merge(writes)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(app.clone(), every_request))
        .with_state(app)
}

async fn healthz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok", "head": app.log.head() }))
}

/// Most bytes of request headers (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// What every request goes through, in one layer (each `from_fn` layer
/// costs a boxed service clone per request): headers larger in total than
/// [`MAX_HEADER_BYTES`] are refused with 431, and every request is counted
/// and timed by method, matched route and status.
async fn every_request(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let start = std::time::Instant::now();
    let method = crate::metrics::method_label(req.method());
    let route = crate::metrics::Route::new(req.extensions().get::<axum::extract::MatchedPath>().cloned());
    let size: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let response = if size > MAX_HEADER_BYTES {
        ApiError::new(
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers are {size} bytes; the limit is {MAX_HEADER_BYTES}"),
        )
        .into_response()
    } else {
        next.run(req).await
    };
    app.metrics.request(method, route, response.status().as_u16(), start.elapsed());
    response
}

async fn metrics(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
) -> impl axum::response::IntoResponse {
    let projections: Vec<_> =
        app.projections.all().iter().map(|p| (p.name().to_owned(), p.status())).collect();
    let gauges: Vec<crate::metrics::ProjectionGauges<'_>> = projections
        .iter()
        .map(|(name, s)| crate::metrics::ProjectionGauges {
            name,
            position: s.position,
            dead_letters: s.dead_letters,
        })
        .collect();
    let body = app.metrics.render(app.log.head(), &gauges);
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
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
