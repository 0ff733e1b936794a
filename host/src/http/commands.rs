//! Commands and the handlers that decide them.

use std::sync::Arc;

use axum::extract::State;

use super::error::ApiError;
use super::extract::{Json, Path};
use crate::App;
use crate::command::{self, CommandRequest, CommandResponse};

/// Sends a command to a handler: it decides, from the stream's history,
/// which events to append (or rejects the command); the events are
/// appended with the history's version as the expected version, deciding
/// again when another writer got there first.
#[utoipa::path(
    post,
    path = "/commands/{handler}",
    operation_id = "send_command",
    tag = "commands",
    params(("handler" = String, Path, description = "The command handler")),
    request_body = CommandRequest,
    responses(
        (status = 200, description = "Decided and appended (or, with a repeated idempotency key, the original outcome)", body = CommandResponse),
        (status = 400, description = "The handler does not accept this command type", body = super::schema::ErrorBody),
        (status = 404, description = "No such handler", body = super::schema::ErrorBody),
        (status = 409, description = "The stream kept changing for 50 attempts", body = super::schema::ErrorBody),
        (status = 422, description = "The handler rejected the command (`code` says why), or the command is invalid", body = super::schema::RejectionBody),
        (status = 500, description = "The handler trapped, ran out of time or returned invalid events; nothing was appended", body = super::schema::ErrorBody),
    )
)]
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

/// Every loaded command handler and the command types it accepts.
#[utoipa::path(
    get,
    path = "/handlers",
    operation_id = "list_handlers",
    tag = "commands",
    responses((status = 200, description = "The handlers", body = super::schema::HandlerList))
)]
pub async fn list(State(app): State<Arc<App>>) -> axum::Json<super::schema::HandlerList> {
    axum::Json(super::schema::HandlerList { handlers: app.handlers.list() })
}
