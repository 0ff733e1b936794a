//! An ingest's dead letters: messages that could not be taken, with the
//! reason, in a database of the node's own (`DATA/inbox.db`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::db::{self, Synchronous};

const MIGRATIONS: &[&str] = &["CREATE TABLE dead_letters (
    ingest          TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    stream_sequence INTEGER NOT NULL,
    subject         TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    deliveries      INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    PRIMARY KEY (ingest, message_id)
)"];

const INSERT: &str = "INSERT OR REPLACE INTO dead_letters
    (ingest, message_id, stream_sequence, subject, payload, reason, deliveries, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const LIST: &str =
    "SELECT ingest, message_id, stream_sequence, subject, payload, reason, deliveries, recorded_at
    FROM dead_letters WHERE ingest = ?1 ORDER BY stream_sequence LIMIT ?2";
const COUNT: &str = "SELECT count(*) FROM dead_letters WHERE ingest = ?1";

/// A message an ingest gave up on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub ingest: String,
    /// Its id (`Nats-Msg-Id`, else `<stream>:<sequence>`).
    pub message_id: String,
    /// Its sequence in the JetStream stream.
    pub stream_sequence: u64,
    pub subject: String,
    /// Its payload (as text; bytes that are not UTF-8 shown replaced).
    pub payload: String,
    /// Why it was given up on.
    pub reason: String,
    /// How often it was delivered.
    pub deliveries: u32,
    /// When (unix ms).
    pub recorded_at: i64,
}

/// The dead letters of every ingest of the node.
pub struct DeadLetters {
    conn: Mutex<Connection>,
}

impl DeadLetters {
    pub fn open(path: &Path) -> rusqlite::Result<DeadLetters> {
        let mut conn = db::open_rw(path, Synchronous::Full)?;
        db::migrate(&mut conn, MIGRATIONS)?;
        Ok(DeadLetters { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, d: &DeadLetter) -> rusqlite::Result<()> {
        self.conn().execute(
            INSERT,
            params![
                d.ingest,
                d.message_id,
                d.stream_sequence,
                d.subject,
                d.payload,
                d.reason,
                d.deliveries,
                d.recorded_at
            ],
        )?;
        Ok(())
    }

    pub fn list(&self, ingest: &str, limit: u64) -> rusqlite::Result<Vec<DeadLetter>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(LIST)?;
        let rows = stmt.query_map(params![ingest, db::sqlite_int(limit)], |r| {
            Ok(DeadLetter {
                ingest: r.get(0)?,
                message_id: r.get(1)?,
                stream_sequence: r.get(2)?,
                subject: r.get(3)?,
                payload: r.get(4)?,
                reason: r.get(5)?,
                deliveries: r.get(6)?,
                recorded_at: r.get(7)?,
            })
        })?;
        rows.collect()
    }

    pub fn count(&self, ingest: &str) -> rusqlite::Result<u64> {
        self.conn().query_row(COUNT, [ingest], |r| r.get(0))
    }
}
