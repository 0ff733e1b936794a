//! Projection status, and waiting for a projection to catch up
//! (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::Path;
use crate::App;
use crate::projection::Projection;

/// A projection's status with the log's head, and its lag in events and in
/// milliseconds (how long ago the oldest event it has not applied was
/// recorded).
async fn status_json(app: &App, p: &Projection) -> Value {
    let s = p.status();
    let head = app.log.head();
    let lag = head.saturating_sub(s.position);
    let lag_ms = if lag == 0 {
        0
    } else {
        match app.log.recorded_at(s.position + 1).await {
            Ok(Some(at)) => (crate::db::unix_ms() - at).max(0),
            _ => 0,
        }
    };
    let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("head".into(), head.into());
        m.insert("lag".into(), lag.into());
        m.insert("lag_ms".into(), lag_ms.into());
    }
    v
}

pub async fn list(State(app): State<Arc<App>>) -> axum::Json<Value> {
    let mut all = Vec::new();
    for p in app.projections.all() {
        all.push(status_json(&app, &p).await);
    }
    all.extend(app.invalid_plugins().into_iter().filter_map(|i| serde_json::to_value(i).ok()));
    axum::Json(json!({ "projections": all, "head": app.log.head() }))
}

pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(p) = app.projections.get(&name) {
        return Ok(axum::Json(status_json(&app, &p).await));
    }
    if let Some(i) = app.invalid_plugins().into_iter().find(|i| i.name == name) {
        return Ok(axum::Json(serde_json::to_value(i).unwrap_or(Value::Null)));
    }
    Err(unknown(&name))
}

/// 404 for an unknown projection.
pub fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no projection named {name:?}; GET /projections lists them"))
}

/// Looks up `name` and, when `min_position` is given, waits (at most
/// `wait_ms`, capped by the configured maximum) until the projection has
/// applied the log up to it; 504 if it has not by then.
pub async fn caught_up(
    app: &App,
    name: &str,
    min_position: Option<u64>,
    wait_ms: Option<u64>,
) -> Result<Arc<Projection>, ApiError> {
    let p = app.projections.get(name).ok_or_else(|| unknown(name))?;
    let Some(min) = min_position else {
        return Ok(p);
    };
    let wait = Duration::from_millis(wait_ms.unwrap_or(app.http.default_wait.as_millis() as u64))
        .min(app.http.max_wait);
    let reached = p.wait_for(min, wait).await;
    if reached < min {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "projection {name} is at position {reached}, behind the requested min_position {min} \
                 after waiting {} ms; retry, or raise wait_ms (at most {} ms)",
                wait.as_millis(),
                app.http.max_wait.as_millis()
            ),
        )
        .with("position", reached)
        .with("min_position", min)
        .with("head", app.log.head()));
    }
    Ok(p)
}

fn loaded(app: &App, name: &str) -> Result<Arc<Projection>, ApiError> {
    app.projections.get(name).ok_or_else(|| unknown(name))
}

pub async fn pause(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let p = loaded(&app, &name)?;
    p.pause();
    Ok(axum::Json(json!({ "name": name, "paused": true })))
}

pub async fn resume(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let p = loaded(&app, &name)?;
    p.resume();
    Ok(axum::Json(json!({ "name": name, "paused": false })))
}

pub async fn skip(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let p = loaded(&app, &name)?;
    let position = p.skip().map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(axum::Json(json!({ "name": name, "skipped": position })))
}

pub async fn rebuild(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    match app.projections.rebuild(&name) {
        Ok(true) => Ok((StatusCode::ACCEPTED, axum::Json(json!({ "name": name, "rebuilding": true })))),
        Ok(false) => Err(unknown(&name)),
        Err(e) => Err(ApiError::internal(format!("cannot start the rebuild: {e:#}"))),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    limit: Option<u64>,
}

pub async fn dead_letters(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    super::extract::Query(q): super::extract::Query<LimitQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let p = loaded(&app, &name)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let p2 = p.clone();
    let rows = tokio::task::spawn_blocking(move || p2.dead_letters(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(json!({ "name": name, "count": p.status().dead_letters, "dead_letters": rows })))
}

pub async fn retry_dead_letters(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let p = loaded(&app, &name)?;
    p.retry_dead_letters();
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "name": name, "retrying": true }))))
}

/// Rebuilds the projection into a scratch database and compares it with the
/// serving one; 200 with the report whether or not they agree.
pub async fn verify(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let app2 = app.clone();
    let name2 = name.clone();
    let report = tokio::task::spawn_blocking(move || app2.projections.verify(&name2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot verify {name}: {e}")))?;
    let report = report.ok_or_else(|| unknown(&name))?;
    Ok(axum::Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}
