//! The embedded backend: the log in one SQLite file (`DATA/events.db`), WAL
//! mode. Appends go through one writer thread that group-commits
//! concurrent appends ([`writer`]); reads use a pool of read-only
//! connections and never wait for the writer.

pub(crate) mod sql;
pub(crate) mod writer;

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::plan::Request;
use super::source::{Ask, BatchSource};
use super::types::{AppendError, ReadError, RecordedEvent};
use super::{LogOptions, Read, ReadAnswer};
use crate::db::{self, ReadPool, Synchronous};
use crate::metrics::LogMetrics;
use crate::plugin::{Batch, EventRef};

/// The SQLite backend of an [`super::EventLog`].
pub(crate) struct SqliteLog {
    path: std::path::PathBuf,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: ReadPool,
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path` and starts its writer;
    /// the head of the log is sent on the returned watch.
    pub(crate) fn open(
        path: &Path,
        options: &LogOptions,
        metrics: LogMetrics,
    ) -> Result<(Self, watch::Receiver<u64>, String), ReadError> {
        let mut conn = db::open_rw(path, options.synchronous)?;
        db::migrate(&mut conn, sql::MIGRATIONS)?;
        let head: u64 = conn.query_row(sql::HEAD, [], |r| r.get(0))?;
        let id: String = conn.query_row(sql::LOG_ID, [], |r| r.get(0))?;
        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel();
        let wal = db::WalThread::start(&mut conn, path, "log")?;
        if options.reserve_wal && options.synchronous == Synchronous::Full {
            // Before the writer's first commit (about 50 ms for 64 MiB).
            let start = std::time::Instant::now();
            match db::reserve_wal(&conn) {
                Ok(0) => {}
                Ok(bytes) => {
                    let ms = start.elapsed().as_millis() as u64;
                    tracing::debug!(bytes, ms, "wrote the event log's WAL blocks ahead");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the event log's WAL blocks ahead; commits extend it")
                }
            }
        }
        let writer = std::thread::Builder::new()
            .name("refract-log-writer".into())
            .spawn(move || {
                writer::run(conn, rx, head_tx, metrics);
                // After the writer's connection is closed.
                drop(wal);
            })
            .map_err(|e| ReadError::Storage(format!("cannot start the writer thread: {e}")))?;
        let log = Self {
            path: path.to_path_buf(),
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: ReadPool::new(path.to_path_buf(), 16, |_| Ok(())),
        };
        Ok((log, head_rx, id))
    }

    /// Hands `request` to the writer.
    pub(crate) fn submit(&self, request: Request) -> Result<(), AppendError> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().ok_or(AppendError::Closed)?.send(request).map_err(|_| AppendError::Closed)
    }

    /// Answers `read` from a pooled read-only connection, off the async
    /// runtime.
    pub(crate) async fn read(&self, read: Read) -> Result<ReadAnswer, ReadError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(|c| answer(c, read))?)
            .await
            .map_err(|e| ReadError::Storage(format!("read task failed: {e}")))?
    }

    /// A source of batches with a read-only connection of its own.
    pub(crate) fn source(&self) -> Result<Box<dyn BatchSource>, ReadError> {
        Ok(Box::new(Source { conn: db::open_ro(&self.path)? }))
    }

    /// Stops accepting appends and waits for the writer to finish what it
    /// has queued.
    pub(crate) fn close(&self) {
        // Read-only connections close first, so the writer's close removes
        // the WAL (see `ReadPool::clear`).
        self.readers.clear();
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.join();
        }
    }
}

fn answer(conn: &Connection, read: Read) -> Result<ReadAnswer, ReadError> {
    let int = db::sqlite_int;
    Ok(match read {
        Read::Stream { stream_id, from_version, limit } => {
            let events =
                query_events(conn, sql::READ_STREAM, params![stream_id, int(from_version), int(limit)])?;
            if events.is_empty() && stream_version(conn, &stream_id)?.is_none() {
                ReadAnswer::Stream(None)
            } else {
                ReadAnswer::Stream(Some(events))
            }
        }
        Read::All { after, limit, types: None } => {
            ReadAnswer::Events(query_events(conn, sql::READ_ALL, params![int(after), i64::MAX, int(limit)])?)
        }
        Read::All { after, limit, types: Some(t) } => {
            let t = serde_json::to_string(&t).map_err(|e| ReadError::Storage(e.to_string()))?;
            ReadAnswer::Events(query_events(
                conn,
                sql::READ_ALL_OF_TYPES,
                params![int(after), i64::MAX, int(limit), t],
            )?)
        }
        Read::Range { first, last } => {
            ReadAnswer::Events(query_events(conn, sql::READ_RANGE, params![int(first), int(last)])?)
        }
        Read::RecordedAt(position) => ReadAnswer::RecordedAt(
            conn.query_row(sql::RECORDED_AT, [int(position)], |r| r.get(0)).optional()?,
        ),
        Read::Key { scope, key } => ReadAnswer::Outcome(
            conn.query_row(sql::FIND_KEY, params![scope, key], writer::recorded_outcome).optional()?,
        ),
    })
}

fn stream_version(conn: &Connection, stream_id: &str) -> rusqlite::Result<Option<u64>> {
    conn.query_row(sql::STREAM_VERSION, [stream_id], |r| r.get(0))
}

fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let raw = |s: String| RawValue::from_string(s).map_err(|e| ReadError::Storage(e.to_string()));
        out.push(RecordedEvent {
            position: r.get(0)?,
            stream_id: r.get(1)?,
            stream_version: r.get(2)?,
            event_type: r.get(3)?,
            data: raw(r.get(4)?)?,
            metadata: raw(r.get(5)?)?,
            recorded_at: r.get(6)?,
            schema_version: r.get(7)?,
        });
    }
    Ok(out)
}

/// Batches read on a connection of their own.
struct Source {
    conn: Connection,
}

impl BatchSource for Source {
    /// The types are matched here rather than in SQL: a projection has a
    /// handful, and comparing them costs less than SQLite's lookup of each
    /// row's type in a table made from the list.
    fn read(&mut self, ask: Ask, types: Option<&[String]>) -> Result<Batch, ReadError> {
        let Ask { after, upto, limit } = ask;
        let mut stmt = self.conn.prepare_cached(sql::READ_AFTER)?;
        let mut rows = stmt.query(params![db::sqlite_int(after), db::sqlite_int(upto)])?;
        // Rows are packed as they are read: their strings are borrowed from
        // SQLite and copied once, into the batch.
        let mut batch = Batch::with_capacity(limit.min(4096), 0);
        while batch.len() < limit
            && let Some(r) = rows.next()?
        {
            let event_type = r.get_ref(3)?.as_str()?;
            if types.is_some_and(|t| !t.iter().any(|t| t == event_type)) {
                continue;
            }
            batch.push(EventRef {
                position: r.get(0)?,
                stream_id: r.get_ref(1)?.as_str()?,
                stream_version: r.get(2)?,
                event_type,
                data: r.get_ref(4)?.as_str()?,
                metadata: r.get_ref(5)?.as_str()?,
                recorded_at: r.get(6)?,
                schema_version: r.get(7)?,
            });
        }
        Ok(batch)
    }
}

impl From<rusqlite::types::FromSqlError> for ReadError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        ReadError::Storage(e.to_string())
    }
}
