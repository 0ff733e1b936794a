//! The shapes of the API's answers, as types: handlers build their JSON
//! from them, and `GET /openapi.json` describes them from the same
//! definitions, so the document and the answers cannot disagree. Answers
//! whose bytes are written by hand for speed (rows, a row, a query) are
//! described here too and checked against the document by the fuzzing run.

use serde::Serialize;
use utoipa::ToSchema;

/// An error: what happened and what to do next. Some errors carry details
/// beside `error` (a conflict's `expected` and `actual`, a rejection's
/// `code`, a timeout's `position` or `reason`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What happened, and what to do about it.
    pub error: String,
}

/// An error about one value of the request: `path` is a JSON Pointer to
/// it (for an event's data, `/events/<i>/data/...`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaErrorBody {
    /// What happened, and what to do about it.
    pub error: String,
    /// Where, when one value is at fault.
    pub path: Option<String>,
}

/// A conflict: the stream is not at the expected version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictBody {
    /// What happened.
    pub error: String,
    /// The expected version sent.
    #[schema(value_type = crate::log::ExpectedVersion)]
    pub expected: serde_json::Value,
    /// The stream's version (null: the stream does not exist).
    pub actual: Option<u64>,
}

/// A command the handler refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionBody {
    /// The handler's message.
    pub error: String,
    /// The handler's machine-readable reason, for example `already_paid`.
    pub code: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `log_unavailable`.
    pub status: &'static str,
    /// Position of the last event of the log this node knows.
    pub head: u64,
    /// The log's backend: `sqlite` or `postgres`.
    pub log: &'static str,
    /// Why the log is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /handlers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HandlerList {
    /// Every loaded command handler, by name.
    pub handlers: Vec<crate::command::HandlerInfo>,
}

/// A projection's status with where the log is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionView {
    /// The projection's own status.
    #[serde(flatten)]
    pub status: crate::projection::Status,
    /// Position of the last event in the log.
    pub head: u64,
    /// Events of the log the serving build has not applied.
    pub lag: u64,
    /// Age, in milliseconds, of the oldest event not applied yet (0 when
    /// caught up).
    pub lag_ms: i64,
}

/// A loaded projection, or a plugin file that failed to load.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProjectionEntry {
    /// A loaded projection.
    Loaded(Box<ProjectionView>),
    /// A plugin file that could not be loaded, with the reason.
    Invalid(crate::reload::InvalidPlugin),
}

/// `GET /projections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionList {
    /// Every loaded projection by name, then the plugin files that failed
    /// to load.
    pub projections: Vec<ProjectionEntry>,
    /// Position of the last event in the log.
    pub head: u64,
}

/// The answer to pause and resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    /// The projection.
    pub name: String,
    /// Whether it is now paused.
    pub paused: bool,
}

/// The answer to skip.
#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    /// The projection.
    pub name: String,
    /// Position of the event moved into the dead letters.
    pub skipped: u64,
}

/// The answer to a rebuild request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildStarted {
    /// The projection.
    pub name: String,
    /// Always true: a build is under way.
    pub rebuilding: bool,
    /// True when this request started the build; false when it joined one
    /// of the same plugin bytes already under way.
    pub started: bool,
    /// The build's database file (in `projections/<name>/`).
    pub build: String,
}

/// The answer to a dead-letter retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retrying {
    /// The projection.
    pub name: String,
    /// Always true: the retry is under way.
    pub retrying: bool,
}

/// `GET /projections/{name}/dead-letters`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    /// The projection.
    pub name: String,
    /// How many dead letters it has in all.
    pub count: u64,
    /// The oldest ones, at most `limit`.
    pub dead_letters: Vec<crate::projection::DeadLetter>,
}

/// `GET /projections/{name}/refused-commands`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedCommands {
    /// The reactor.
    pub name: String,
    /// How many refused commands it has in all.
    pub count: u64,
    /// The oldest ones, at most `limit`.
    pub commands: Vec<crate::projection::RefusedCommand>,
}

/// A page of rows of a table.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RowsPage {
    /// Rows as objects keyed by column: integers and reals as numbers,
    /// text as strings, blobs as lowercase hex strings, NULL as null.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
    /// The `offset` of the next page; null on the last one.
    pub next_offset: Option<u64>,
    /// The serving build's checkpoint when the rows were read.
    pub position: u64,
}

/// One row by its primary key.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RowAnswer {
    /// The serving build's checkpoint when the row was read.
    pub position: u64,
    /// The row, keyed by column.
    #[schema(value_type = Object)]
    pub row: serde_json::Value,
}

/// Which bound cut a query's answer short.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TruncatedBy {
    /// `max_rows` rows were returned and more were left.
    MaxRows,
    /// The next row would have taken the answer past `max_bytes`.
    MaxBytes,
}

/// The answer to a read-only query.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct QueryAnswer {
    /// The statement's column names.
    pub columns: Vec<String>,
    /// Rows as arrays of values, in column order.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when rows were left out (see `truncated_by`).
    pub truncated: bool,
    /// Which bound cut the answer short; null when it is whole.
    pub truncated_by: Option<TruncatedBy>,
    /// The serving build's checkpoint when the query ran.
    pub position: u64,
}
