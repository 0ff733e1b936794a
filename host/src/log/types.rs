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

impl utoipa::PartialSchema for ExpectedVersion {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).enum_values(Some([
                "any",
                "no_stream",
                "exists",
            ])))
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(0))
                    .maximum(Some(i64::MAX as f64)),
            )
            .description(Some(
                "`any`; `no_stream` (or 0): the stream must not exist; `exists`: it must; N: it must \
                 be at exactly version N",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ExpectedVersion {}

impl<'de> Deserialize<'de> for ExpectedVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(serde_json::Number),
            Word(String),
        }
        const EXPECTED: &str =
            "expected_version must be \"any\", \"no_stream\", \"exists\" or an integer from 0 to 2^63 - 1";
        // A whole number however it is spelled (`3` or `3.0`), as JSON
        // Schema's `integer` reads it.
        let whole = |n: &serde_json::Number| {
            n.as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9.007_199_254_740_992e15)
                        .map(|f| f as u64)
                })
                .filter(|v| i64::try_from(*v).is_ok())
        };
        match Raw::deserialize(d).map_err(|_| de::Error::custom(EXPECTED))? {
            Raw::Number(n) => match whole(&n) {
                Some(0) => Ok(ExpectedVersion::NoStream),
                Some(v) => Ok(ExpectedVersion::Exact(v)),
                None => Err(de::Error::custom(EXPECTED)),
            },
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The event's type name, for example `OrderPlaced`: 1 to 256
    /// characters, no control characters.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub event_type: String,
    /// The payload: any JSON value, stored and read back as the exact text
    /// sent.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// Optional metadata: a JSON object, stored as the exact text sent.
    /// `null` is the same as leaving it out: the event reads back `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, nullable)]
    pub metadata: Option<Box<RawValue>>,
    /// The version of its type's schema the data follows (see
    /// `GET /schemas`): at least 1. Left out: the newest registered
    /// version of the type, or 1 when the type has no schema.
    #[serde(default, deserialize_with = "crate::http::number::optional_u32")]
    #[schema(minimum = 1, maximum = 65535)]
    pub schema_version: Option<u32>,
}

/// An event as stored in the log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Payload: the JSON text appended, unchanged.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// Metadata: the JSON object appended, unchanged (`{}` when none was).
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    /// Unix milliseconds at which it was recorded.
    pub recorded_at: i64,
    /// The version of its type's schema it was written with (1 when the
    /// type had none). With `upcast=true`, the version it was upcast to.
    pub schema_version: u32,
}

/// What a successful append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The storage failed; the append was rolled back.
    #[error("event log storage error: {0}")]
    Storage(String),
    /// The log's database cannot be reached right now (PostgreSQL down,
    /// restarting, cut off); the message says whether the append may have
    /// been written. Retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The log is shutting down.
    #[error("the event log is shutting down")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The storage failed.
    #[error("event log storage error: {0}")]
    Storage(String),
    /// The log's database cannot be reached right now; retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        ReadError::Storage(e.to_string())
    }
}
