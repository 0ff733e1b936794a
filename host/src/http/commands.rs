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
    Ok(axum::Json(command::execute(&app.log, &app.handlers, &handler, req).await?))
}

pub async fn list(State(app): State<Arc<App>>) -> axum::Json<Value> {
    axum::Json(json!({ "handlers": app.handlers.list() }))
}
