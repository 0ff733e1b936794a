//! Commands and the handlers that decide them.

use std::sync::Arc;

use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Json, Path};
use crate::App;
use crate::command::{self, CommandRequest, CommandResponse};

pub async fn send(
    State(app): State<Arc<App>>,
    Path(handler): Path<String>,
    Json(req): Json<CommandRequest>,
) -> Result<axum::Json<CommandResponse>, ApiError> {
    let result = command::execute(&app.log, &app.handlers, &handler, req).await;
    // Only loaded handlers become label values: unknown names are unbounded.
    let label = if app.handlers.get(&handler).is_some() { handler.as_str() } else { "(unknown)" };
    app.metrics.command(
        label,
        match &result {
            Ok(r) if r.duplicate => "duplicate",
            Ok(_) => "ok",
            Err(command::CommandError::Rejected { .. }) => "rejected",
            Err(command::CommandError::Conflict { .. }) => "conflict",
            Err(command::CommandError::PluginFailed { .. }) => "plugin_failed",
            Err(_) => "invalid",
        },
    );
    Ok(axum::Json(result?))
}

pub async fn list(State(app): State<Arc<App>>) -> axum::Json<Value> {
    axum::Json(json!({ "handlers": app.handlers.list() }))
}
