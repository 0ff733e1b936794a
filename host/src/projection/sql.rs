//! Every SQL statement the host runs on a projection database.

/// Numbered migrations of the host's bookkeeping tables.
pub const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("control.sql")];

pub const HAS_META: &str =
    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'refract_meta'";

pub const READ_META: &str =
    "SELECT plugin_hash, position, migrations_applied, paused FROM refract_meta WHERE id = 1";

pub const READ_IDENTITY: &str = "SELECT plugin_name, plugin_hash, position FROM refract_meta WHERE id = 1";

pub const READ_POSITION: &str = "SELECT position FROM refract_meta WHERE id = 1";

pub const INIT_META: &str = "INSERT INTO refract_meta
    (id, plugin_name, plugin_version, plugin_hash, position, migrations_applied, created_at)
    VALUES (1, ?1, ?2, ?3, 0, 0, ?4)";

pub const SET_POSITION: &str = "UPDATE refract_meta SET position = ?1 WHERE id = 1";

pub const SET_MIGRATIONS: &str = "UPDATE refract_meta SET migrations_applied = ?1 WHERE id = 1";

pub const SET_PAUSED: &str = "UPDATE refract_meta SET paused = ?1 WHERE id = 1";

pub const INSERT_DEAD_LETTER: &str = "INSERT OR REPLACE INTO refract_dead_letters
    (position, stream_id, stream_version, event_type, error, plugin_hash, attempts, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub const DEAD_LETTER_POSITIONS: &str = "SELECT position FROM refract_dead_letters ORDER BY position";

pub const DELETE_DEAD_LETTER: &str = "DELETE FROM refract_dead_letters WHERE position = ?1";

pub const COUNT_DEAD_LETTERS: &str = "SELECT count(*) FROM refract_dead_letters";

pub const LIST_DEAD_LETTERS: &str = "SELECT position, stream_id, stream_version, event_type, error,
    plugin_hash, attempts, recorded_at FROM refract_dead_letters ORDER BY position LIMIT ?1";

pub const BEGIN: &str = "BEGIN IMMEDIATE";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";
