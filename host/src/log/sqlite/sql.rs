//! Every SQL statement the event log runs.

/// Numbered schema migrations; `PRAGMA user_version` records how many ran.
pub const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("idempotency.sql"),
    include_str!("meta.sql"),
    include_str!("versions.sql"),
];

pub const LOG_ID: &str = "SELECT log_id FROM log_meta WHERE id = 1";

pub const FIND_KEY: &str = "SELECT command_id, stream_id, stream_version, first_position, last_position
    FROM idempotency_keys WHERE scope = ?1 AND key = ?2";

pub const INSERT_KEY: &str = "INSERT INTO idempotency_keys
    (scope, key, command_id, stream_id, stream_version, first_position, last_position, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub const READ_RANGE: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version
    FROM events WHERE position >= ?1 AND position <= ?2 ORDER BY position";

pub const HEAD: &str = "SELECT COALESCE(MAX(position), 0) FROM events";

pub const STREAM_VERSION: &str = "SELECT MAX(stream_version) FROM events WHERE stream_id = ?1";

/// Columns of one event row, in the order [`insert_rows`] binds them.
pub const INSERT_COLUMNS: usize = 8;

/// An insert of `rows` events in one statement: `rows` ×
/// [`INSERT_COLUMNS`] parameters (position, stream id, stream version,
/// type, data, metadata, recorded at, schema version), row after row. One statement per
/// row costs SQLite a step and a reset per event; the writer inserts a
/// group's events [`INSERT_ROWS`] at a time.
pub fn insert_rows(rows: usize) -> String {
    let row = format!("({})", ["?"; INSERT_COLUMNS].join(","));
    format!(
        "INSERT INTO events (position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version) VALUES {}",
        vec![row; rows].join(",")
    )
}

/// Row counts of the writer's inserts, largest first: a group's events go
/// in as many of the first as fit, then of the next, down to one.
pub const INSERT_ROWS: [usize; 3] = [64, 8, 1];

// The last insert takes a single row, so every remainder fits.
const _: () = assert!(INSERT_ROWS[INSERT_ROWS.len() - 1] == 1);

/// The writer's inserts: each of [`INSERT_ROWS`] with its statement text,
/// built once.
pub fn inserts() -> &'static [(usize, String)] {
    static INSERTS: std::sync::LazyLock<Vec<(usize, String)>> =
        std::sync::LazyLock::new(|| INSERT_ROWS.iter().map(|&n| (n, insert_rows(n))).collect());
    &INSERTS
}

pub const READ_STREAM: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version
    FROM events WHERE stream_id = ?1 AND stream_version >= ?2
    ORDER BY stream_version LIMIT ?3";

pub const READ_ALL: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version
    FROM events WHERE position > ?1 AND position <= ?2
    ORDER BY position LIMIT ?3";

/// The events after `?1` up to `?2`, for a reader that stops when it has
/// enough.
pub const READ_AFTER: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version
    FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position";

/// `?4` is a JSON array of event types.
pub const READ_ALL_OF_TYPES: &str =
    "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version
    FROM events WHERE position > ?1 AND position <= ?2
      AND event_type IN (SELECT value FROM json_each(?4))
    ORDER BY position LIMIT ?3";

/// Every event, for `refract copy-log`.
pub const COPY_EVENTS: &str = "SELECT position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version FROM events ORDER BY position";

/// Every idempotency key, for `refract copy-log`.
pub const COPY_KEYS: &str =
    "SELECT scope, key, command_id, stream_id, stream_version, first_position, last_position,
    recorded_at FROM idempotency_keys ORDER BY scope, key";

pub const RECORDED_AT: &str = "SELECT recorded_at FROM events WHERE position = ?1";
