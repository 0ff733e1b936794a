//! What a projection reports about itself.

use serde::Serialize;

use super::ErrorPolicy;
use super::dispatch::CommandStats;
use crate::plugin::Kind;

/// Where a projection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Opening its database and running migrations.
    Starting,
    /// Applying events; behind the head of the log.
    CatchingUp,
    /// Caught up with the head of the log, waiting for new events.
    Live,
    /// Paused by an operator; resumes where it stopped.
    Paused,
    /// Stopped at an event after exhausting its retries (see `error`):
    /// `resume` retries it, `skip` moves it to the dead letters.
    Failed,
    /// A new version is being built beside the serving one (see `rebuild`).
    Rebuilding,
    /// Not running (shutting down, or a previous version kept serving
    /// queries while its replacement builds).
    Stopped,
}

/// Why a projection stopped or what its last failed attempt said.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// A new build under way beside the serving one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rebuild {
    /// The new build's own state.
    pub status: State,
    /// Its plugin's version label.
    pub version: String,
    /// Its plugin's hash.
    pub hash: String,
    /// Its checkpoint.
    pub position: u64,
    /// Its last failure, if any.
    pub error: Option<Failure>,
}

/// A snapshot of a projection's status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The projection's name.
    pub name: String,
    /// A projection, or a reactor (which also sends commands).
    pub kind: Kind,
    /// The plugin's version label.
    pub version: String,
    /// SHA-256 of the plugin's bytes.
    pub hash: String,
    /// The plugin file.
    pub file: String,
    /// Its state.
    pub status: State,
    /// What it does with an event it cannot apply.
    pub policy: ErrorPolicy,
    /// Checkpoint: the last log position applied (0: none).
    pub position: u64,
    /// Events applied by this build since the host started.
    pub events_applied: u64,
    /// Recent apply rate (0 when idle).
    pub events_per_second: f64,
    /// Events in the dead letters.
    pub dead_letters: u64,
    /// The last failure, if the projection failed or is retrying.
    pub error: Option<Failure>,
    /// The new build, while one is under way.
    pub rebuild: Option<Rebuild>,
    /// For a reactor: what became of its commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandStats>,
}

/// An event a projection gave up on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its position in the log.
    pub position: u64,
    /// Its stream.
    pub stream_id: String,
    /// Its version in the stream.
    pub stream_version: u64,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Why it could not be applied.
    pub error: String,
    /// SHA-256 of the plugin that gave up on it.
    pub plugin_hash: String,
    /// Attempts made (0 when an operator skipped it).
    pub attempts: u32,
    /// When it was dead-lettered (unix ms).
    pub recorded_at: i64,
}
