//! `GET /subscribe`: the log as server-sent events (see
//! [`crate::subscribe`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::Query;
use crate::App;
use crate::subscribe::Filter;

/// The query of `GET /subscribe`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscribeQuery {
    /// Events after this position (default 0: the whole log). A
    /// `Last-Event-ID` header, sent by a reconnecting client, wins.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    after: Option<u64>,
    /// Only events of these types, comma-separated (`A,B`).
    #[param(pattern = "[^,]")]
    types: Option<String>,
    /// Only the events of this stream.
    #[param(min_length = 1)]
    stream: Option<String>,
    /// Only the events of streams whose id starts with this.
    #[param(min_length = 1)]
    stream_prefix: Option<String>,
}

/// The log's events after a position, then every new one as it commits, as
/// server-sent events: each `id: <position>`, `event: <type>`, `data: <the
/// event as JSON>`. A `caught-up` event marks the end of the history; a
/// comment `: head <position>` comes every `--sse-heartbeat-secs`; a
/// subscriber that reads too slowly gets a last `fell-behind` event with
/// the position to resume after, and is let go. Streams until the client
/// closes it.
#[utoipa::path(
    get,
    path = "/subscribe",
    operation_id = "subscribe",
    tag = "log",
    params(
        SubscribeQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (what a reconnecting EventSource sends)"),
    ),
    responses(
        (status = 200, description = "The events, as they come", content_type = "text/event-stream", body = String),
        (status = 503, description = "As many subscribers as the server takes are connected (--max-subscribers)", body = super::schema::ErrorBody),
    )
)]
pub async fn subscribe(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<SubscribeQuery>,
) -> Result<Response, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(v) => {
            let text = v.to_str().map_err(|_| ApiError::bad_request("Last-Event-ID must be a position"))?;
            super::number::parse(text).map_err(|e| ApiError::bad_request(format!("Last-Event-ID: {e}")))?
        }
        None => q.after.unwrap_or(0),
    };
    let nonempty = |what: &str, v: Option<String>| match v {
        Some(s) if s.is_empty() => {
            Err(ApiError::bad_request(format!("{what} must not be empty; leave it out")))
        }
        v => Ok(v),
    };
    let filter = Filter {
        types: super::streams::type_filter(q.types.as_deref())?,
        stream: nonempty("stream", q.stream)?,
        stream_prefix: nonempty("stream_prefix", q.stream_prefix)?,
    };
    let Some(sub) = app.subscriptions.subscribe(after, filter) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} subscribers are connected, as many as this server takes (--max-subscribers); retry later",
                app.subscriptions.options().max_subscribers
            ),
        ));
    };
    // The frames, then the one that ends them, if the feed ended on
    // purpose.
    let frames = futures_util::stream::unfold(sub, |mut sub| async move {
        sub.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), sub))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(axum::body::Body::from_stream(frames))
        .map_err(|e| ApiError::internal(e.to_string()))
}
