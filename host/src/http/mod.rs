//! The HTTP API (axum). JSON in and out; errors are `{ "error": "…" }` with
//! the status mapped in [`error`].

mod auth;
mod commands;
mod console;
mod evolution;
pub use auth::Token;
pub mod document;
mod encode;
pub mod error;
mod extract;
mod integration;
pub(crate) mod number;
pub(crate) mod projections;
pub mod schema;
pub mod serve;
mod streams;
mod subscribe;
mod tables;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

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
    /// Most bytes of rows one read of a read model answers with: a query
    /// is cut short (`truncated`), a page of rows ends early (its
    /// `next_offset` continues), a single row larger than this is 422.
    pub max_answer_bytes: usize,
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
            max_answer_bytes: 16 << 20,
            token: None,
            protect_reads: false,
            row_cache: true,
            max_connections: 1024,
            client_timeout: Duration::from_secs(30),
        }
    }
}

/// Every route of the API, over `app`, and the OpenAPI document that
/// describes them: each route is registered from its handler's
/// `#[utoipa::path]` (path, method, parameters, answers), so the router and
/// the document cannot disagree.
pub fn router(app: Arc<App>) -> Router {
    router_and_document(app).0
}

/// [`router`], and the document it serves at `GET /openapi.json`.
pub fn router_and_document(app: Arc<App>) -> (Router, utoipa::openapi::OpenApi) {
    use axum::middleware::from_fn_with_state;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let max_body = app.http.max_body_bytes;
    let reads: OpenApiRouter<Arc<App>> = OpenApiRouter::default()
        .routes(routes!(streams::read_stream))
        .routes(routes!(streams::read_all))
        .routes(routes!(subscribe::subscribe))
        .routes(routes!(integration::publishers))
        .routes(routes!(integration::ingests))
        .routes(routes!(commands::list))
        .routes(routes!(projections::list))
        .routes(routes!(projections::get))
        .routes(routes!(projections::history))
        .routes(routes!(tables::tables))
        .routes(routes!(tables::rows))
        .routes(routes!(tables::row))
        .routes(routes!(tables::query))
        .routes(routes!(evolution::schemas))
        .routes(routes!(evolution::upcasters))
        .routes(routes!(metrics));
    let writes: OpenApiRouter<Arc<App>> = OpenApiRouter::default()
        .routes(routes!(streams::append))
        .routes(routes!(commands::send))
        .routes(routes!(projections::pause))
        .routes(routes!(projections::resume))
        .routes(routes!(projections::skip))
        .routes(routes!(projections::rebuild))
        .routes(routes!(projections::verify))
        .routes(routes!(projections::dead_letters))
        .routes(routes!(projections::retry_dead_letters))
        .routes(routes!(projections::refused_commands))
        .routes(routes!(projections::snapshot))
        .routes(routes!(integration::ingest_dead_letters))
        .routes(routes!(evolution::check));
    let open: OpenApiRouter<Arc<App>> =
        OpenApiRouter::default().routes(routes!(healthz)).routes(routes!(document::serve));
    let (reads, mut read_doc) = reads.split_for_parts();
    let (writes, mut write_doc) = writes.split_for_parts();
    let (open, mut doc) = open.split_for_parts();
    let token = app.http.token.is_some();
    document::finish(&mut read_doc, token && app.http.protect_reads);
    document::finish(&mut write_doc, token);
    document::finish(&mut doc, false);
    doc.merge(read_doc);
    doc.merge(write_doc);
    let doc = document::complete(doc, &app.http);
    // Without a token there is nothing to check: no layer, no cost per request.
    let reads = if token && app.http.protect_reads {
        reads.route_layer(from_fn_with_state(app.clone(), auth::reads))
    } else {
        reads
    };
    let writes =
        if token { writes.route_layer(from_fn_with_state(app.clone(), auth::writes)) } else { writes };
    // Only `/openapi.json` and `/healthz` carry the document: a layer over
    // every route would cost every request an extension.
    let text = axum::body::Bytes::from(document::to_json(&doc));
    let open = open.layer(axum::Extension(document::Text(text)));
    let router = open
        .merge(console::routes())
        .merge(reads)
        .merge(writes)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(app.clone(), every_request))
        .with_state(app);
    (router, doc)
}

/// The `limit` of a paged read: `default` when not given; 400 outside
/// 1 to `max` (one rule for every paged route).
pub fn page_limit(requested: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!("limit must be between 1 and {max}, got {n}"))),
    }
}

/// Whether the server and its event log are up, and the head of the log
/// this node knows. With the log in PostgreSQL out of reach, 503 with the
/// reason: appends and commands answer 503 meanwhile, while reads of read
/// models keep serving.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Up", body = schema::Health),
        (status = 503, description = "The event log is unavailable", body = schema::Health),
    )
)]
async fn healthz(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
) -> (axum::http::StatusCode, axum::Json<schema::Health>) {
    let head = app.log.head();
    let log = app.log.backend();
    match app.log.health() {
        crate::log::Health::Available => {
            (axum::http::StatusCode::OK, axum::Json(schema::Health { status: "ok", head, log, error: None }))
        }
        crate::log::Health::Unavailable(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(schema::Health { status: "log_unavailable", head, log, error: Some(e) }),
        ),
    }
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

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "Every metric", content_type = "application/openmetrics-text", body = String))
)]
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
