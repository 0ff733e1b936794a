//! `verify`: rebuild a projection from the log into a scratch database and
//! compare it with the serving one, table by table, row by row.
//!
//! The serving database is read inside one read transaction (a consistent
//! snapshot, even while its runner keeps applying), which fixes the
//! position the scratch build replays up to. Events the serving build
//! dead-lettered are left out of the scratch build too, so a projection
//! running under the dead-letter policy verifies clean. Rows are compared as
//! multisets of SHA-256 hashes of their values; no table needs a key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{runner, sql, store};
use crate::db;
use crate::log::EventLog;
use crate::plugin::ProjectionPlugin;

/// Differing rows shown per table.
const SAMPLES: usize = 5;

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The projection.
    pub projection: String,
    /// The checkpoint of the serving database the comparison was made at.
    pub position: u64,
    /// Events left out because the serving build dead-lettered them.
    pub dead_letters: u64,
    /// True when every table holds exactly the same rows.
    pub consistent: bool,
    /// One entry per table of either database.
    pub tables: Vec<TableReport>,
}

/// How one table compares.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// Rows in the serving database (`None`: the table is missing there).
    pub live_rows: Option<u64>,
    /// Rows in the rebuild (`None`: the rebuild has no such table).
    pub rebuilt_rows: Option<u64>,
    /// Rows only the serving database has (counting duplicates).
    pub only_live: u64,
    /// Rows only the rebuild has.
    pub only_rebuilt: u64,
    /// A few of the rows only the serving database has, as JSON arrays.
    pub only_live_sample: Vec<serde_json::Value>,
    /// A few of the rows only the rebuild has.
    pub only_rebuilt_sample: Vec<serde_json::Value>,
}

/// Row hashes of one table, with how often each occurs.
type Rows = BTreeMap<[u8; 32], u64>;

/// Rebuilds `plugin` from `log` into a scratch file in
/// `scratch_dir` and compares the result with the database at `live`.
pub fn verify(
    plugin: &ProjectionPlugin,
    live: &Path,
    log: &EventLog,
    scratch_dir: &Path,
    batch_size: usize,
) -> Result<Report, String> {
    let name = plugin.description.name.clone();
    let conn = db::open_ro(live).map_err(|e| format!("cannot open {}: {e}", live.display()))?;
    conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    let snapshot = (|| -> rusqlite::Result<_> {
        let position: u64 = conn.query_row(sql::READ_POSITION, [], |r| r.get(0))?;
        let dead: BTreeSet<u64> = store::dead_letter_positions(&conn)?.into_iter().collect();
        Ok((position, dead, hash_tables(&conn)?))
    })();
    let _ = conn.execute_batch("COMMIT");
    drop(conn);
    let (position, dead, live_tables) =
        snapshot.map_err(|e| format!("cannot read {}: {e}", live.display()))?;

    std::fs::create_dir_all(scratch_dir)
        .map_err(|e| format!("cannot create {}: {e}", scratch_dir.display()))?;
    // A file of its own, created exclusively: verifications of the same
    // projection may run at once.
    let scratch = super::layout::new_file(scratch_dir, &name)
        .map_err(|e| format!("cannot create a scratch database in {}: {e}", scratch_dir.display()))?;
    let rebuilt = rebuild(plugin, &scratch, log, position, &dead, batch_size).and_then(|conn| {
        let tables = hash_tables(&conn).map_err(|e| format!("cannot read the rebuild: {e}"))?;
        Ok((conn, tables))
    });
    let result = rebuilt.map(|(scratch_conn, rebuilt_tables)| {
        let names: BTreeSet<&String> = live_tables.keys().chain(rebuilt_tables.keys()).collect();
        let tables: Vec<TableReport> = names
            .into_iter()
            .map(|t| compare(t, live, &scratch_conn, live_tables.get(t), rebuilt_tables.get(t)))
            .collect();
        let consistent = tables.iter().all(|t| {
            t.only_live == 0 && t.only_rebuilt == 0 && t.live_rows.is_some() && t.rebuilt_rows.is_some()
        });
        Report { projection: name, position, dead_letters: dead.len() as u64, consistent, tables }
    });
    let _ = store::remove(&scratch);
    result
}

/// Replays the log up to `upto`, leaving out `skip`, into a fresh database.
fn rebuild(
    plugin: &ProjectionPlugin,
    path: &Path,
    log: &EventLog,
    upto: u64,
    skip: &BTreeSet<u64>,
    batch_size: usize,
) -> Result<Connection, String> {
    let (session, _) = store::open(path, plugin, 0)?;
    let mut reader = runner::Reader::open(log, plugin)?;
    let mut inst = plugin.instantiate(Some(session)).map_err(|e| e.to_string())?;
    let mut after = 0;
    while after < upto {
        let events = reader
            .read(after, upto, batch_size.max(1))
            .map_err(|e| format!("cannot read the event log: {e}"))?;
        reader.read_ahead();
        let Some(last) = events.last_position() else { break };
        let events = if skip.is_empty() { events } else { events.filtered(|e| !skip.contains(&e.position)) };
        runner::attempt(&mut inst, &events, Some(last), None, None).map_err(|e| match e.position {
            Some(p) => format!("the rebuild failed at position {p}: {}", e.message),
            None => format!("the rebuild failed in the batch after position {after}: {}", e.message),
        })?;
        after = last;
    }
    let session = inst.into_sql().ok_or("lost the database session")?;
    Ok(session.into_conn())
}

/// The plugin's tables (not SQLite's, not the host's bookkeeping).
fn user_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'refract\\_%' ESCAPE '\\'
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

fn hash_tables(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Rows>> {
    let mut out = BTreeMap::new();
    for t in user_tables(conn)? {
        let mut rows = Rows::new();
        for_each_row(conn, &t, |h, _| *rows.entry(h).or_default() += 1)?;
        out.insert(t, rows);
    }
    Ok(out)
}

/// Calls `f` with the hash and the values of every row of `table`.
fn for_each_row(
    conn: &Connection,
    table: &str,
    mut f: impl FnMut([u8; 32], &rusqlite::Row<'_>),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))?;
    let n = stmt.column_count();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let mut h = Sha256::new();
        for i in 0..n {
            match row.get_ref(i)? {
                ValueRef::Null => h.update([0]),
                ValueRef::Integer(v) => {
                    h.update([1]);
                    h.update(v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.update([2]);
                    h.update(v.to_bits().to_le_bytes());
                }
                ValueRef::Text(v) => {
                    h.update([3]);
                    h.update((v.len() as u64).to_le_bytes());
                    h.update(v);
                }
                ValueRef::Blob(v) => {
                    h.update([4]);
                    h.update((v.len() as u64).to_le_bytes());
                    h.update(v);
                }
            }
        }
        f(h.finalize().into(), row);
    }
    Ok(())
}

fn row_json(row: &rusqlite::Row<'_>) -> serde_json::Value {
    let n = row.as_ref().column_count();
    let values = (0..n)
        .map(|i| match row.get_ref(i) {
            Ok(ValueRef::Null) | Err(_) => serde_json::Value::Null,
            Ok(ValueRef::Integer(v)) => v.into(),
            Ok(ValueRef::Real(v)) => v.into(),
            Ok(ValueRef::Text(v)) => String::from_utf8_lossy(v).into(),
            Ok(ValueRef::Blob(v)) => format!("<{} byte blob>", v.len()).into(),
        })
        .collect();
    serde_json::Value::Array(values)
}

/// Rows counted in `a` more often than in `b`, with by how much.
fn surplus(a: &Rows, b: &Rows) -> Rows {
    a.iter()
        .filter_map(|(h, &n)| {
            let m = b.get(h).copied().unwrap_or(0);
            (n > m).then_some((*h, n - m))
        })
        .collect()
}

/// A few rows of `table` whose hashes are in `wanted`, read from `conn`.
fn sample(conn: &Connection, table: &str, wanted: &Rows) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    if !wanted.is_empty() {
        let _ = for_each_row(conn, table, |h, row| {
            if out.len() < SAMPLES && wanted.contains_key(&h) {
                out.push(row_json(row));
            }
        });
    }
    out
}

fn compare(
    table: &str,
    live: &Path,
    scratch: &Connection,
    live_rows: Option<&Rows>,
    rebuilt_rows: Option<&Rows>,
) -> TableReport {
    let empty = Rows::new();
    let (l, r) = (live_rows.unwrap_or(&empty), rebuilt_rows.unwrap_or(&empty));
    let (only_live, only_rebuilt) = (surplus(l, r), surplus(r, l));
    // Samples of the serving side are read back outside the snapshot; a
    // row the runner changed since may be missing from them, never wrong.
    let only_live_sample = match db::open_ro(live) {
        Ok(conn) => sample(&conn, table, &only_live),
        Err(_) => Vec::new(),
    };
    let count = |rows: Option<&Rows>| rows.map(|m| m.values().sum());
    TableReport {
        table: table.to_owned(),
        live_rows: count(live_rows),
        rebuilt_rows: count(rebuilt_rows),
        only_live: only_live.values().sum(),
        only_rebuilt: only_rebuilt.values().sum(),
        only_live_sample,
        only_rebuilt_sample: sample(scratch, table, &only_rebuilt),
    }
}
