//! Every SQL statement the host runs on a projection database.

/// Numbered migrations of the host's bookkeeping tables.
pub const MIGRATIONS: &[&str] =
    &[include_str!("schema.sql"), include_str!("control.sql"), include_str!("commands.sql")];

pub const INSERT_COMMAND: &str = "INSERT INTO refract_commands
    (position, idx, handler, command_type, stream_id, data, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub const PENDING_COMMANDS: &str = "SELECT position, idx, handler, command_type, stream_id, data, metadata
    FROM refract_commands ORDER BY position, idx LIMIT ?1";

pub const COUNT_PENDING_COMMANDS: &str = "SELECT count(*) FROM refract_commands";

pub const DELETE_COMMAND: &str = "DELETE FROM refract_commands WHERE position = ?1 AND idx = ?2";

pub const INSERT_REFUSED_COMMAND: &str = "INSERT OR REPLACE INTO refract_refused_commands
    (position, idx, handler, command_type, stream_id, code, message, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub const LIST_REFUSED_COMMANDS: &str =
    "SELECT position, idx, handler, command_type, stream_id, code, message,
    recorded_at FROM refract_refused_commands ORDER BY position, idx LIMIT ?1";

pub const COUNT_REFUSED_COMMANDS: &str = "SELECT count(*) FROM refract_refused_commands";

pub const HAS_META: &str =
    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'refract_meta'";

pub const READ_META: &str =
    "SELECT plugin_hash, position, migrations_applied, paused FROM refract_meta WHERE id = 1";

pub const READ_HASH: &str = "SELECT plugin_hash FROM refract_meta WHERE id = 1";

pub const READ_IDENTITY: &str = "SELECT plugin_name, plugin_hash, position FROM refract_meta WHERE id = 1";

pub const READ_POSITION: &str = "SELECT position FROM refract_meta WHERE id = 1";

pub const INIT_META: &str = "INSERT INTO refract_meta
    (id, plugin_name, plugin_version, plugin_hash, position, migrations_applied, created_at)
    VALUES (1, ?1, ?2, ?3, 0, 0, ?4)";

pub const SET_COMMANDS_AFTER: &str = "UPDATE refract_meta SET commands_after = ?1 WHERE id = 1";

pub const READ_COMMANDS_AFTER: &str = "SELECT commands_after FROM refract_meta WHERE id = 1";

pub const RAISE_COMMANDS_AFTER: &str =
    "UPDATE refract_meta SET commands_after = max(commands_after, ?1) WHERE id = 1";

pub const DROP_COMMANDS_UPTO: &str = "DELETE FROM refract_commands WHERE position <= ?1";

pub const ALL_COMMANDS: &str = "SELECT position, idx, handler, command_type, stream_id, data, metadata
    FROM refract_commands ORDER BY position, idx";

pub const ALL_REFUSED_COMMANDS: &str =
    "SELECT position, idx, handler, command_type, stream_id, code, message,
    recorded_at FROM refract_refused_commands ORDER BY position, idx";

pub const KEEP_COMMAND: &str = "INSERT OR IGNORE INTO refract_commands
    (position, idx, handler, command_type, stream_id, data, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub const KEEP_REFUSED_COMMAND: &str = "INSERT OR IGNORE INTO refract_refused_commands
    (position, idx, handler, command_type, stream_id, code, message, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

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
