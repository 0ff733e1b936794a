//! Every SQL statement the PostgreSQL log runs.

/// The advisory lock taken while the schema is created or upgraded, so
/// that nodes starting together take turns (`refract` in ASCII).
pub const MIGRATION_LOCK: i64 = 0x0072_6566_7261_6374;

/// Numbered schema migrations; `refract.schema_migrations` records which
/// ran.
pub const MIGRATIONS: &[&str] =
    &[include_str!("schema.sql"), include_str!("meta.sql"), include_str!("versions.sql")];

pub const LOG_ID: &str = "SELECT log_id FROM refract.meta WHERE id = 1";

pub const SET_LOG_ID: &str = "UPDATE refract.meta SET log_id = $1 WHERE id = 1";

/// Takes or renews lease `$1` for holder `$2` for `$3` milliseconds, unless
/// another holder has it and it has not expired; a row when it is held.
/// PostgreSQL's clock decides, the one clock every node shares.
pub const HOLD_LEASE: &str = "INSERT INTO refract.leases (name, holder, expires_at)
    VALUES ($1, $2, now() + $3 * interval '1 millisecond')
    ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE refract.leases.holder = EXCLUDED.holder OR refract.leases.expires_at < now()
    RETURNING holder";

pub const CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS refract;
    CREATE TABLE IF NOT EXISTS refract.schema_migrations (
        version    integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )";

pub const APPLIED: &str = "SELECT coalesce(max(version), 0) FROM refract.schema_migrations";

pub const RECORD_MIGRATION: &str = "INSERT INTO refract.schema_migrations (version) VALUES ($1)";

/// The channel a commit notifies, with the new head as the payload.
pub const CHANNEL: &str = "refract_log";

pub const LISTEN: &str = "LISTEN refract_log";

pub const HEAD: &str = "SELECT position FROM refract.head WHERE id = 1";

/// Taken first by every append transaction: the one queue all nodes'
/// appends pass through.
pub const LOCK_HEAD: &str = "SELECT position FROM refract.head WHERE id = 1 FOR UPDATE";

/// Moves the head and notifies listeners, at commit.
pub const ADVANCE_HEAD: &str =
    "WITH moved AS (UPDATE refract.head SET position = $1 WHERE id = 1 RETURNING position)
    SELECT pg_notify('refract_log', position::text) FROM moved";

pub const VERSIONS: &str = "SELECT stream_id, max(stream_version) FROM refract.events
    WHERE stream_id = ANY($1::text[]) GROUP BY stream_id";

pub const FIND_KEYS: &str = "SELECT k.scope, k.key, k.command_id, k.stream_version, k.first_position, k.last_position
    FROM refract.idempotency_keys k
    JOIN unnest($1::text[], $2::text[]) AS wanted (scope, key) ON k.scope = wanted.scope AND k.key = wanted.key";

pub const INSERT_EVENTS: &str = "INSERT INTO refract.events
    (position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::integer[])";

pub const INSERT_KEYS: &str = "INSERT INTO refract.idempotency_keys
    (scope, key, command_id, stream_id, stream_version, first_position, last_position, recorded_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])";

const COLUMNS: &str =
    "position, stream_id, stream_version, event_type, data, metadata, recorded_at, schema_version";

pub fn read_stream() -> String {
    format!(
        "SELECT {COLUMNS} FROM refract.events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
    )
}

pub const STREAM_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM refract.events WHERE stream_id = $1)";

pub fn read_all() -> String {
    format!("SELECT {COLUMNS} FROM refract.events WHERE position > $1 ORDER BY position LIMIT $2")
}

pub fn read_all_of_types() -> String {
    format!(
        "SELECT {COLUMNS} FROM refract.events WHERE position > $1 AND event_type = ANY($3::text[]) ORDER BY position LIMIT $2"
    )
}

pub fn read_range() -> String {
    format!("SELECT {COLUMNS} FROM refract.events WHERE position >= $1 AND position <= $2 ORDER BY position")
}

/// The events after `$1`, at most `$2`, streamed to a reader that follows
/// the log.
pub fn stream_after() -> String {
    format!("SELECT {COLUMNS} FROM refract.events WHERE position > $1 ORDER BY position LIMIT $2")
}

/// [`stream_after`] of the types in `$3`.
pub fn stream_after_of_types() -> String {
    format!(
        "SELECT {COLUMNS} FROM refract.events WHERE position > $1 AND event_type = ANY($3::text[]) ORDER BY position LIMIT $2"
    )
}

pub const IS_EMPTY: &str = "SELECT NOT EXISTS (SELECT 1 FROM refract.events) AND NOT EXISTS (SELECT 1 FROM refract.idempotency_keys)";

pub const RECORDED_AT: &str = "SELECT recorded_at FROM refract.events WHERE position = $1";

pub const FIND_KEY: &str = "SELECT command_id, stream_version, first_position, last_position
    FROM refract.idempotency_keys WHERE scope = $1 AND key = $2";
