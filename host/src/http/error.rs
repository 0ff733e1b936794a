//! The one place errors become HTTP responses: `{ "error": "…" }` plus any
//! details, with the status that tells the client what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::command::CommandError;
use crate::log::{AppendError, ReadError};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// An error with `status` and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, body: json!({ "error": message.into() }) }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: the thing named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: a fault on the host's side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Adds a field to the JSON body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(m) = &mut self.body {
            m.insert(key.to_owned(), value.into());
        }
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        let message = e.to_string();
        match e {
            AppendError::Conflict { expected, actual, .. } => Self::new(StatusCode::CONFLICT, message)
                .with("expected", serde_json::to_value(expected).unwrap_or(Value::Null))
                .with("actual", actual.map_or(Value::Null, Value::from)),
            AppendError::Invalid(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            AppendError::TooLarge(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            AppendError::Storage(_) => Self::internal(message),
            AppendError::Closed | AppendError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            }
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            ReadError::Storage(_) => Self::internal(e.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let message = e.to_string();
        match e {
            CommandError::UnknownHandler(_) => Self::not_found(message),
            CommandError::UnknownCommandType { accepted, .. } => {
                Self::bad_request(message).with("accepted", accepted)
            }
            CommandError::Invalid(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            CommandError::Rejected { code, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, message).with("code", code)
            }
            CommandError::SchemaViolation { path, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, message).with("path", path)
            }
            CommandError::Conflict { .. } => Self::new(StatusCode::CONFLICT, message),
            CommandError::PluginFailed { plugin, .. } => Self::internal(message).with("plugin", plugin),
            CommandError::Storage(_) => Self::internal(message),
            CommandError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, message),
        }
    }
}
