//! What a projection reports about itself.

use serde::Serialize;

/// Where a projection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Opening its database and running migrations.
    Starting,
    /// Applying events; behind the head of the log.
    CatchingUp,
    /// Caught up with the head of the log, waiting for new events.
    Live,
    /// Stopped at an event after exhausting its retries (see `error`).
    Failed,
    /// The host is shutting down.
    Stopped,
}

/// Why a projection stopped or what its last failed attempt said.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// The event it failed at, when known.
    pub position: Option<u64>,
    /// How many attempts were made.
    pub attempts: u32,
    /// Unix ms of the last attempt.
    pub at: i64,
}

/// A snapshot of a projection's status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The projection's name.
    pub name: String,
    /// The plugin's version label.
    pub version: String,
    /// SHA-256 of the plugin's bytes.
    pub hash: String,
    /// The plugin file.
    pub file: String,
    /// Its state.
    pub status: State,
    /// Checkpoint: the last log position applied (0: none).
    pub position: u64,
    /// Events applied by this process since it started.
    pub events_applied: u64,
    /// The last failure, if the projection failed or is retrying.
    pub error: Option<Failure>,
}
