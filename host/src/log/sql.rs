//! Every SQL statement the event log runs.

/// Numbered schema migrations; `PRAGMA user_version` records how many ran.
pub const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("idempotency.sql")];

pub const FIND_KEY: &str = "SELECT command_id, stream_id, stream_version, first_position, last_position
    FROM idempotency_keys WHERE scope = ?1 AND key = ?2";

pub const INSERT_KEY: &str = "INSERT INTO idempotency_keys
    (scope, key, command_id, stream_id, stream_version, first_position, last_position, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub const READ_RANGE: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at
    FROM events WHERE position >= ?1 AND position <= ?2 ORDER BY position";

pub const HEAD: &str = "SELECT COALESCE(MAX(position), 0) FROM events";

pub const STREAM_VERSION: &str = "SELECT MAX(stream_version) FROM events WHERE stream_id = ?1";

pub const INSERT: &str = "INSERT INTO events
    (position, stream_id, stream_version, event_type, data, metadata, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub const READ_STREAM: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at
    FROM events WHERE stream_id = ?1 AND stream_version >= ?2
    ORDER BY stream_version LIMIT ?3";

pub const READ_ALL: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at
    FROM events WHERE position > ?1 AND position <= ?2
    ORDER BY position LIMIT ?3";

/// The events after `?1` up to `?2`, for a reader that stops when it has
/// enough.
pub const READ_AFTER: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at
    FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position";

/// `?4` is a JSON array of event types.
pub const READ_ALL_OF_TYPES: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at
    FROM events WHERE position > ?1 AND position <= ?2
      AND event_type IN (SELECT value FROM json_each(?4))
    ORDER BY position LIMIT ?3";

pub const RECORDED_AT: &str = "SELECT recorded_at FROM events WHERE position = ?1";
