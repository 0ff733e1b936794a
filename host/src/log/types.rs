//! The event log's public data types.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What the writer expects a stream's version to be before an append
/// (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet (JSON `"no_stream"`, or `0`).
    NoStream,
    /// The stream must exist, at any version.
    Exists,
    /// The stream must be at exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose current version is `actual` (None: no stream)
    /// satisfies this expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match (self, actual) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream, None) | (ExpectedVersion::Exact(0), None) => true,
            (ExpectedVersion::Exists, Some(_)) => true,
            (ExpectedVersion::Exact(v), Some(a)) => v == a,
            _ => false,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::Exists => f.write_str("exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for ExpectedVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExpectedVersion::Exact(v) => s.serialize_u64(*v),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Word(String),
        }
        const EXPECTED: &str =
            "expected_version must be \"any\", \"no_stream\", \"exists\" or a non-negative integer";
        match Raw::deserialize(d).map_err(|_| de::Error::custom(EXPECTED))? {
            Raw::Number(0) => Ok(ExpectedVersion::NoStream),
            Raw::Number(v) => Ok(ExpectedVersion::Exact(v)),
            Raw::Word(w) => match w.as_str() {
                "any" => Ok(ExpectedVersion::Any),
                "no_stream" => Ok(ExpectedVersion::NoStream),
                "exists" => Ok(ExpectedVersion::Exists),
                _ => Err(de::Error::custom(EXPECTED)),
            },
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The event's type name, for example `OrderPlaced`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload: any JSON value.
    pub data: Box<RawValue>,
    /// Optional metadata: a JSON object.
    #[serde(default)]
    pub metadata: Option<Box<RawValue>>,
}

/// An event as stored in the log.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedEvent {
    /// Global position (1-based, gapless).
    pub position: u64,
    /// The stream it belongs to.
    pub stream_id: String,
    /// Its version within the stream (1-based, gapless).
    pub stream_version: u64,
    /// Type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Payload (JSON).
    pub data: Box<RawValue>,
    /// Metadata (a JSON object).
    pub metadata: Box<RawValue>,
    /// Unix milliseconds at which it was recorded.
    pub recorded_at: i64,
}

/// What a successful append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The stream's version after the append.
    pub stream_version: u64,
    /// Position of the first appended event.
    pub first_position: u64,
    /// Position of the last appended event; pass it as `min_position` to a
    /// projection read to see this append's effect.
    pub last_position: u64,
}

/// Makes an append happen at most once: a second append with the same
/// scope and key writes nothing and reports the first one's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Namespace of the key (the command handler's name).
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// The id of the command making this append, recorded with the key.
    pub command_id: String,
}

/// Why an append failed. Nothing of a failed append is written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The stream's version did not match the expectation.
    #[error(
        "stream {stream_id} is at version {}, expected {expected}; re-read the stream and retry",
        actual.map_or_else(|| "none (no stream)".to_string(), |v| v.to_string())
    )]
    Conflict {
        /// The stream.
        stream_id: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's actual version (None: it does not exist).
        actual: Option<u64>,
    },
    /// An event or the stream id is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The append exceeds a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// SQLite failed; the append was rolled back.
    #[error("event log storage error: {0}")]
    Storage(String),
    /// The log is shutting down.
    #[error("the event log is shutting down")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// SQLite failed.
    #[error("event log storage error: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        ReadError::Storage(e.to_string())
    }
}
