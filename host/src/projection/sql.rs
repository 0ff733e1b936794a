//! Every SQL statement the host runs on a projection database.

/// Numbered migrations of the host's bookkeeping tables.
pub const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

pub const READ_META: &str = "SELECT plugin_hash, position, migrations_applied FROM refract_meta WHERE id = 1";

pub const INIT_META: &str = "INSERT INTO refract_meta
    (id, plugin_name, plugin_version, plugin_hash, position, migrations_applied, created_at)
    VALUES (1, ?1, ?2, ?3, 0, 0, ?4)";

pub const SET_POSITION: &str = "UPDATE refract_meta SET position = ?1 WHERE id = 1";

pub const SET_MIGRATIONS: &str = "UPDATE refract_meta SET migrations_applied = ?1 WHERE id = 1";

pub const BEGIN: &str = "BEGIN IMMEDIATE";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

pub const HAS_META: &str =
    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'refract_meta'";
