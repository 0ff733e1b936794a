//! Writes to and reads from the event log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::App;
use crate::log::{Appended, ExpectedVersion, NewEvent};

/// Most events one read returns.
pub const MAX_READ_LIMIT: u64 = 1000;
const DEFAULT_READ_LIMIT: u64 = 100;

/// Body of `POST /streams/{stream_id}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// Optimistic concurrency check; defaults to `any`.
    #[serde(default = "any")]
    expected_version: ExpectedVersion,
    /// The events, in order.
    events: Vec<NewEvent>,
}

fn any() -> ExpectedVersion {
    ExpectedVersion::Any
}

pub async fn append(
    State(app): State<Arc<App>>,
    Path(stream_id): Path<String>,
    Json(body): Json<AppendBody>,
) -> Result<(StatusCode, axum::Json<Appended>), ApiError> {
    let result = app.log.append(&stream_id, body.expected_version, body.events).await;
    app.metrics.append(match &result {
        Ok(_) => "ok",
        Err(crate::log::AppendError::Conflict { .. }) => "conflict",
        Err(crate::log::AppendError::Invalid(_) | crate::log::AppendError::TooLarge(_)) => "invalid",
        Err(_) => "error",
    });
    Ok((StatusCode::CREATED, axum::Json(result?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    from_version: Option<u64>,
    limit: Option<u64>,
}

fn limit(requested: Option<u64>) -> Result<u64, ApiError> {
    match requested.unwrap_or(DEFAULT_READ_LIMIT) {
        0 => Err(ApiError::bad_request("limit must be at least 1")),
        n => Ok(n.min(MAX_READ_LIMIT)),
    }
}

pub async fn read_stream(
    State(app): State<Arc<App>>,
    Path(stream_id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = limit(q.limit)?;
    let from = q.from_version.unwrap_or(1).max(1);
    let Some(events) = app.log.read_stream(stream_id.clone(), from, limit).await? else {
        return Err(ApiError::not_found(format!("stream {stream_id:?} does not exist")));
    };
    let next = (events.len() as u64 == limit).then(|| events.last().map(|e| e.stream_version + 1));
    Ok(axum::Json(json!({ "stream_id": stream_id, "events": events, "next_from_version": next.flatten() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllQuery {
    after: Option<u64>,
    limit: Option<u64>,
    /// Comma-separated event types.
    types: Option<String>,
}

pub async fn read_all(
    State(app): State<Arc<App>>,
    Query(q): Query<AllQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = limit(q.limit)?;
    let types = q.types.map(|t| t.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect());
    let events = app.log.read_all(q.after.unwrap_or(0), limit, types).await?;
    let next = (events.len() as u64 == limit).then(|| events.last().map(|e| e.position));
    Ok(axum::Json(json!({ "events": events, "head": app.log.head(), "next_after": next.flatten() })))
}
