//! A projection's own database file: bookkeeping, plugin migrations, the
//! checkpoint, and the batch transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::sql;
use crate::db::{self, Synchronous};
use crate::plugin::guard::{Policy, SqlGuard};
use crate::plugin::{ProjectionPlugin, SqlSession};

/// Largest string or blob a projection database holds, in bytes.
pub const MAX_VALUE_BYTES: i32 = 32 << 20;
/// The page size of a read model's database file, set when the file is
/// created (by a rebuild too; an older file keeps its own): 16 KiB rather
/// than SQLite's 4 KiB keeps a large read model's B-trees shallower, so
/// the cost of applying an event grows less with the read model's size
/// (P5b in `bench/ANALYSIS.md`).
pub const PAGE_SIZE: u32 = 16 * 1024;

/// Where a projection database left off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// The checkpoint.
    pub position: u64,
    /// Whether an operator paused it.
    pub paused: bool,
}

/// Opens the database of `plugin` at `path`, ready to apply events.
///
/// A file built by different plugin bytes is deleted and rebuilt from
/// position 1. A new file records `commands_after`: a reactor sends
/// commands only for events after it (see `commands.sql`).
/// Returns the session and where to resume.
pub fn open(
    path: &Path,
    plugin: &ProjectionPlugin,
    commands_after: u64,
) -> Result<(SqlSession, Meta), String> {
    let ctx = |what: &str, e: rusqlite::Error| format!("{what} {}: {e}", path.display());
    // A new build's file exists but is empty; only a file that other
    // plugin bytes built is started over.
    if path.exists() {
        let built_by = read_hash(path).map_err(|e| ctx("cannot read", e))?;
        if built_by.as_ref().is_some_and(|h| *h != plugin.hash) {
            tracing::info!(
                projection = %plugin.description.name,
                "plugin changed since its read model was built; rebuilding from position 1"
            );
            remove(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    // A read model can always be rebuilt from the log, so NORMAL is enough:
    // in WAL mode it is still atomic and survives a process crash.
    let mut conn =
        db::open_rw_paged(path, Synchronous::Normal, Some(PAGE_SIZE)).map_err(|e| ctx("cannot open", e))?;
    conn.set_prepared_statement_cache_capacity(128);
    // No string or blob a plugin writes may exceed this: a runaway value
    // fails its statement instead of filling the disk.
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        .map_err(|e| ctx("cannot limit", e))?;
    db::migrate(&mut conn, sql::MIGRATIONS).map_err(|e| ctx("cannot migrate", e))?;
    let d = &plugin.description;
    let meta = |c: &Connection| {
        c.query_row(sql::READ_META, [], |r| {
            Ok((r.get::<_, u64>(1)?, r.get::<_, usize>(2)?, r.get::<_, bool>(3)?))
        })
        .optional()
    };
    if meta(&conn).map_err(|e| ctx("cannot read", e))?.is_none() {
        let tx = conn.transaction().map_err(|e| ctx("cannot initialise", e))?;
        tx.execute(sql::INIT_META, params![d.name, d.version, plugin.hash, db::unix_ms()])
            .and_then(|_| tx.execute(sql::SET_COMMANDS_AFTER, [db::sqlite_int(commands_after)]))
            .and_then(|_| tx.commit())
            .map_err(|e| ctx("cannot initialise", e))?;
    }
    let (position, applied, paused) = meta(&conn).map_err(|e| ctx("cannot read", e))?.unwrap_or_default();
    let guard = SqlGuard::install(&mut conn, Policy::Plugin).map_err(|e| ctx("cannot guard", e))?;
    let wal = db::WalThread::start(&mut conn, path, &d.name)
        .map_err(|e| ctx("cannot start the WAL thread for", e))?;
    let session = SqlSession::new(conn, guard, Some(wal));
    run_migrations(&session, &d.migrations, applied)?;
    Ok((session, Meta { position, paused }))
}

/// Runs the plugin's migrations from index `applied` on, each in its own
/// transaction together with the count of applied migrations.
fn run_migrations(s: &SqlSession, migrations: &[String], applied: usize) -> Result<(), String> {
    for (i, m) in migrations.iter().enumerate().skip(applied) {
        let run = || -> Result<(), String> {
            crate::plugin::guard::precheck(m)?;
            s.conn().execute_batch(sql::BEGIN).map_err(|e| e.to_string())?;
            {
                let _armed = s.guard.arm();
                s.conn()
                    .execute_batch(m)
                    .map_err(|e| s.guard.take_denial().unwrap_or_else(|| e.to_string()))?;
            }
            s.conn().execute(sql::SET_MIGRATIONS, [i + 1]).map_err(|e| e.to_string())?;
            s.conn().execute_batch(sql::COMMIT).map_err(|e| e.to_string())
        };
        if let Err(e) = run() {
            let _ = s.conn().execute_batch(sql::ROLLBACK);
            return Err(format!("migration {} failed: {e}", i + 1));
        }
    }
    Ok(())
}

/// What a read model's bookkeeping says about it.
#[derive(Debug, Clone)]
pub struct MetaInfo {
    /// The projection it is a read model of.
    pub name: String,
    /// SHA-256 of the plugin that built it.
    pub hash: String,
    /// Its checkpoint.
    pub position: u64,
}

/// The bookkeeping of the read model at `path`.
pub fn read_meta(path: &Path) -> rusqlite::Result<MetaInfo> {
    let conn = db::open_ro(path)?;
    conn.query_row(sql::READ_IDENTITY, [], |r| {
        Ok(MetaInfo { name: r.get(0)?, hash: r.get(1)?, position: r.get(2)? })
    })
}

/// The hash of the plugin that built the database at `path`, if any.
pub fn read_hash(path: &Path) -> rusqlite::Result<Option<String>> {
    let conn = db::open_ro(path)?;
    let has_meta: bool = conn.query_row(sql::HAS_META, [], |r| r.get(0))?;
    if !has_meta {
        return Ok(None);
    }
    conn.query_row(sql::READ_HASH, [], |r| r.get(0)).optional()
}

/// Deletes a database file with its WAL and shared-memory files.
pub fn remove(path: &Path) -> std::io::Result<()> {
    db::remove_db_files(path)
}

/// Commits a batch: `apply` has run inside the open transaction; this
/// records `position` as the checkpoint and commits both together.
pub fn commit_batch(conn: &Connection, position: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(sql::SET_POSITION)?.execute([position])?;
    conn.execute_batch(sql::COMMIT)
}

/// Records that the operator paused (or resumed) the projection.
pub fn set_paused(conn: &Connection, paused: bool) -> rusqlite::Result<()> {
    conn.execute(sql::SET_PAUSED, [paused]).map(|_| ())
}

/// A dead letter: an event the projection gave up on.
pub struct DeadLetter<'a> {
    pub event: &'a crate::plugin::Event,
    pub error: &'a str,
    pub plugin_hash: &'a str,
    pub attempts: u32,
}

/// Records `dead` and moves the checkpoint past it, in one transaction.
pub fn dead_letter(conn: &Connection, dead: &DeadLetter<'_>, checkpoint: u64) -> rusqlite::Result<()> {
    conn.execute_batch(sql::BEGIN)?;
    let result = (|| {
        let e = dead.event;
        conn.execute(
            sql::INSERT_DEAD_LETTER,
            params![
                e.position,
                e.stream_id,
                e.stream_version,
                e.event_type,
                dead.error,
                dead.plugin_hash,
                dead.attempts,
                db::unix_ms()
            ],
        )?;
        commit_batch(conn, checkpoint)
    })();
    if result.is_err() {
        let _ = conn.execute_batch(sql::ROLLBACK);
    }
    result
}

/// Positions of the dead letters, oldest first.
pub fn dead_letter_positions(conn: &Connection) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(sql::DEAD_LETTER_POSITIONS)?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Number of dead letters.
pub fn count_dead_letters(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(sql::COUNT_DEAD_LETTERS, [], |r| r.get(0))
}
