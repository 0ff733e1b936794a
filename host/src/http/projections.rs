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

fn status_json(app: &App, p: &Projection) -> Value {
    let s = p.status();
    let head = app.log.head();
    let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("head".into(), head.into());
        m.insert("lag".into(), head.saturating_sub(s.position).into());
    }
    v
}

pub async fn list(State(app): State<Arc<App>>) -> axum::Json<Value> {
    let mut all: Vec<Value> = app.projections.all().iter().map(|p| status_json(&app, p)).collect();
    all.extend(app.invalid_plugins().into_iter().filter_map(|i| serde_json::to_value(i).ok()));
    axum::Json(json!({ "projections": all, "head": app.log.head() }))
}

pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(p) = app.projections.get(&name) {
        return Ok(axum::Json(status_json(&app, &p)));
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
