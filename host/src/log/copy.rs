//! `refract copy-log`: moving an SQLite log into PostgreSQL, as it is —
//! every event at its position and stream version, with its data and
//! metadata bytes and its recording time, and every idempotency key — in
//! one transaction, into an empty log only.

use std::path::Path;

use tokio::sync::mpsc;

use super::postgres::{self, PostgresOptions};
use super::sqlite::sql as sqlite_sql;
use super::types::ReadError;

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Events copied (positions 1 to this).
    pub events: u64,
    /// Idempotency keys copied.
    pub keys: u64,
}

/// Rows read from SQLite per insert into PostgreSQL.
const CHUNK: usize = 5000;

/// One event row, as stored.
pub(super) struct EventRow {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub data: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub schema_version: i32,
}

/// One idempotency key row, as stored.
pub(super) struct KeyRow {
    pub scope: String,
    pub key: String,
    pub command_id: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub first_position: i64,
    pub last_position: i64,
    pub recorded_at: i64,
}

pub(super) enum Chunk {
    Events(Vec<EventRow>),
    Keys(Vec<KeyRow>),
}

/// Copies the SQLite log at `from` (a data directory or its `events.db`)
/// into the PostgreSQL log at `to`, which must be empty.
pub async fn copy_log(from: &Path, to: &str, options: &PostgresOptions) -> Result<Copied, ReadError> {
    let file = if from.is_dir() { from.join("events.db") } else { from.to_path_buf() };
    if !file.is_file() {
        return Err(ReadError::Storage(format!("no event log at {}", file.display())));
    }
    let conn = crate::db::open_ro(&file)?;
    // A log made before logs had ids keeps the one PostgreSQL gives it.
    let id: Option<String> = conn.query_row(sqlite_sql::LOG_ID, [], |r| r.get(0)).ok();
    let (tx, rx) = mpsc::channel::<Result<Chunk, ReadError>>(2);
    let reader = std::thread::Builder::new()
        .name("refract-copy-read".into())
        .spawn(move || read_sqlite(&conn, &tx))
        .map_err(|e| ReadError::Storage(format!("cannot start the reader: {e}")))?;
    let copied = postgres::fill_empty(to, options, id.as_deref(), rx).await;
    let _ = reader.join();
    copied
}

/// Sends every event, then every key, of the SQLite log in chunks.
fn read_sqlite(conn: &rusqlite::Connection, tx: &mpsc::Sender<Result<Chunk, ReadError>>) {
    let read = || -> Result<(), ReadError> {
        let mut stmt = conn.prepare(sqlite_sql::COPY_EVENTS)?;
        let mut rows = stmt.query([])?;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(r) = rows.next()? {
            chunk.push(EventRow {
                position: r.get(0)?,
                stream_id: r.get(1)?,
                stream_version: r.get(2)?,
                event_type: r.get(3)?,
                data: r.get(4)?,
                metadata: r.get(5)?,
                recorded_at: r.get(6)?,
                schema_version: r.get(7)?,
            });
            if chunk.len() == CHUNK
                && tx.blocking_send(Ok(Chunk::Events(std::mem::take(&mut chunk)))).is_err()
            {
                return Ok(());
            }
        }
        if !chunk.is_empty() && tx.blocking_send(Ok(Chunk::Events(chunk))).is_err() {
            return Ok(());
        }
        let mut stmt = conn.prepare(sqlite_sql::COPY_KEYS)?;
        let mut rows = stmt.query([])?;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(r) = rows.next()? {
            chunk.push(KeyRow {
                scope: r.get(0)?,
                key: r.get(1)?,
                command_id: r.get(2)?,
                stream_id: r.get(3)?,
                stream_version: r.get(4)?,
                first_position: r.get(5)?,
                last_position: r.get(6)?,
                recorded_at: r.get(7)?,
            });
            if chunk.len() == CHUNK && tx.blocking_send(Ok(Chunk::Keys(std::mem::take(&mut chunk)))).is_err()
            {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(Chunk::Keys(chunk)));
        }
        Ok(())
    };
    if let Err(e) = read() {
        let _ = tx.blocking_send(Err(e));
    }
}
