//! Writes to and reads from the event log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::App;
use crate::log::{Appended, ExpectedVersion, NewEvent, RecordedEvent};

/// Most events one read returns.
pub const MAX_READ_LIMIT: u64 = 1000;
const DEFAULT_READ_LIMIT: u64 = 100;

/// Body of `POST /streams/{stream_id}/events`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// Optimistic concurrency check; defaults to `any`.
    #[serde(default = "any")]
    expected_version: ExpectedVersion,
    /// The events, in order: 1 to 10 000, each at most 1 MiB of data and
    /// metadata, nested at most 128 levels.
    #[schema(min_items = 1, max_items = 10000)]
    events: Vec<NewEvent>,
}

fn any() -> ExpectedVersion {
    ExpectedVersion::Any
}

/// Appends events to a stream, atomically, if its version is as expected.
#[utoipa::path(
    post,
    path = "/streams/{stream_id}/events",
    operation_id = "append",
    tag = "log",
    params(("stream_id" = String, Path, description = "The stream: 1 to 256 characters, no control characters", min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
    request_body = AppendBody,
    responses(
        (status = 201, description = "Appended; pass `last_position` as `min_position` to read your write", body = Appended),
        (status = 409, description = "The stream is not at the expected version; nothing was written", body = super::schema::ConflictBody),
        (status = 413, description = "Too many events, or an event too large; nothing was written", body = super::schema::ErrorBody),
        (status = 422, description = "An invalid event (name, metadata, nesting), or one whose data its type's schema refuses (`path` points at the failing value); nothing was written", body = super::schema::SchemaErrorBody),
    )
)]
pub async fn append(
    State(app): State<Arc<App>>,
    Path(stream_id): Path<String>,
    Json(body): Json<AppendBody>,
) -> Result<(StatusCode, axum::Json<Appended>), ApiError> {
    let mut events = body.events;
    if let Err(v) = app.handlers.contracts.check(&mut events) {
        app.metrics.append("invalid");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("events[{}]: {}", v.index, v.message),
        )
        .with("path", format!("/events/{}/data{}", v.index, v.path)));
    }
    let result = app.log.append(&stream_id, body.expected_version, events).await;
    app.metrics.append(match &result {
        Ok(_) => "ok",
        Err(crate::log::AppendError::Conflict { .. }) => "conflict",
        Err(crate::log::AppendError::Invalid(_) | crate::log::AppendError::TooLarge(_)) => "invalid",
        Err(_) => "error",
    });
    Ok((StatusCode::CREATED, axum::Json(result?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The first version to read (default 1).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    from_version: Option<u64>,
    /// Most events to read (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::number::optional")]
    limit: Option<u64>,
    /// Show each event's data upcast to the newest version the loaded
    /// upcasters reach (default false: as stored).
    #[serde(default)]
    upcast: Option<bool>,
}

fn limit(requested: Option<u64>) -> Result<u64, ApiError> {
    super::page_limit(requested, DEFAULT_READ_LIMIT, MAX_READ_LIMIT)
}

/// A page of one stream's events. Serialized as it is, never through
/// `serde_json::Value`: each event's data and metadata are the bytes
/// appended (a `Value` would sort object keys and re-print numbers).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamPage {
    /// The stream.
    pub stream_id: String,
    /// Its events from `from_version`, in order.
    pub events: Vec<RecordedEvent>,
    /// The `from_version` of the next page; null on the last one.
    pub next_from_version: Option<u64>,
}

/// Reads a stream's events, in order, a page at a time.
#[utoipa::path(
    get,
    path = "/streams/{stream_id}",
    operation_id = "read_stream",
    tag = "log",
    params(("stream_id" = String, Path, description = "The stream"), StreamQuery),
    responses(
        (status = 200, description = "A page of the stream's events: data and metadata as appended", body = StreamPage),
        (status = 404, description = "No such stream", body = super::schema::ErrorBody),
        (status = 422, description = "With `upcast=true`: an event that the loaded upcasters fail on", body = super::schema::ErrorBody),
    )
)]
pub async fn read_stream(
    State(app): State<Arc<App>>,
    Path(stream_id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Result<axum::Json<StreamPage>, ApiError> {
    let limit = limit(q.limit)?;
    let from = q.from_version.unwrap_or(1).max(1);
    let Some(events) = app.log.read_stream(stream_id.clone(), from, limit).await? else {
        return Err(ApiError::not_found(format!("stream {stream_id:?} does not exist")));
    };
    let mut events = events;
    upcast(&app, q.upcast, &mut events)?;
    let next = (events.len() as u64 == limit).then(|| events.last().map(|e| e.stream_version + 1));
    Ok(axum::Json(StreamPage { stream_id, events, next_from_version: next.flatten() }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllQuery {
    /// Read the events after this position (default 0: from the start).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    after: Option<u64>,
    /// Most events to read (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::number::optional")]
    limit: Option<u64>,
    /// Only events of these types, comma-separated (`A,B`); it must name
    /// at least one.
    #[param(pattern = "[^,]")]
    types: Option<String>,
    /// Show each event's data upcast to the newest version the loaded
    /// upcasters reach (default false: as stored).
    #[serde(default)]
    upcast: Option<bool>,
}

/// `events` upcast to the newest versions the loaded upcasters reach,
/// when `upcast` is set.
fn upcast(app: &App, upcast: Option<bool>, events: &mut [RecordedEvent]) -> Result<(), ApiError> {
    if upcast != Some(true) {
        return Ok(());
    }
    let types: Vec<(String, u32)> = events.iter().map(|e| (e.event_type.clone(), e.schema_version)).collect();
    let plan = app.upcasters.newest_plan(&types, &app.metrics);
    // Upcasters are plugins, run synchronously.
    tokio::task::block_in_place(|| plan.events(events)).map_err(|(position, message)| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the event at position {position} cannot be upcast: {message}"),
        )
        .with("position", position)
    })
}

/// A page of the global log, serialized as it is (see [`StreamPage`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    /// Events after `after`, in position order.
    pub events: Vec<RecordedEvent>,
    /// The head of the log when the page was read.
    pub head: u64,
    /// The `after` of the next page; null when this page reached the head.
    pub next_after: Option<u64>,
}

/// The event types of a `types=A,B` filter; `None` without one. A filter
/// naming no type (`types=`, `types=,`) is refused: it would read as an
/// empty log to a client paging through it.
pub fn type_filter(types: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(types) = types else { return Ok(None) };
    let list: Vec<String> = types.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if list.is_empty() {
        return Err(ApiError::bad_request(
            "types must name at least one event type (types=A,B); leave it out to read every type",
        ));
    }
    Ok(Some(list))
}

/// Reads the global log after a position, in position order, a page at a
/// time.
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "read_log",
    tag = "log",
    params(AllQuery),
    responses(
        (status = 200, description = "A page of the log: data and metadata as appended", body = LogPage),
        (status = 422, description = "With `upcast=true`: an event that the loaded upcasters fail on", body = super::schema::ErrorBody),
    )
)]
pub async fn read_all(
    State(app): State<Arc<App>>,
    Query(q): Query<AllQuery>,
) -> Result<axum::Json<LogPage>, ApiError> {
    let limit = limit(q.limit)?;
    let types = type_filter(q.types.as_deref())?;
    let mut events = app.log.read_all(q.after.unwrap_or(0), limit, types).await?;
    upcast(&app, q.upcast, &mut events)?;
    let next = (events.len() as u64 == limit).then(|| events.last().map(|e| e.position));
    Ok(axum::Json(LogPage { events, head: app.log.head(), next_after: next.flatten() }))
}
