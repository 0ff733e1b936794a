//! The event log: an append-only sequence of events, the system of record,
//! behind one contract with two backends. SQLite ([`sqlite`], one file,
//! the embedded default) or PostgreSQL ([`postgres`], shared by any number
//! of nodes). Nothing outside this module names a backend's types: the
//! HTTP API, commands, projections and `verify` talk to [`EventLog`].
//!
//! Either backend assigns positions gapless and in commit order, checks
//! each append against its own expected version and records its
//! idempotency key in the same transaction, and group-commits concurrent
//! appends ([`plan`] decides what a group writes, the same way for both).

pub mod copy;
mod plan;
pub mod postgres;
mod source;
mod sqlite;
mod types;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

pub use copy::{Copied, copy_log};
pub use plan::Outcome;
pub use postgres::PostgresOptions;
pub use source::{Ask, BatchSource};
pub use types::{AppendError, Appended, ExpectedVersion, Idempotency, NewEvent, ReadError, RecordedEvent};

use crate::db::Synchronous;
use crate::metrics::LogMetrics;
use plan::{PreparedEvent, Request};

/// Limits and durability of the log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// `PRAGMA synchronous` of the SQLite writer.
    pub synchronous: Synchronous,
    /// Largest `data` + `metadata` of one event, in bytes.
    pub max_event_bytes: usize,
    /// Most events in one append.
    pub max_events_per_append: usize,
    /// SQLite, with `synchronous=FULL`: write the WAL's blocks once when the
    /// log opens, so that commits overwrite them instead of extending the
    /// file (see [`crate::db::reserve_wal`]; about 64 MiB).
    pub reserve_wal: bool,
    /// PostgreSQL: timeouts, notifications, polling.
    pub postgres: PostgresOptions,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_event_bytes: 1 << 20,
            max_events_per_append: 10_000,
            reserve_wal: true,
            postgres: PostgresOptions::default(),
        }
    }
}

/// Highest schema version of an event type.
pub const MAX_SCHEMA_VERSION: u32 = 65_535;

/// Longest stream id or event type, in characters (Unicode scalar values,
/// as JSON Schema's `maxLength` counts them).
pub const MAX_NAME_CHARS: usize = 256;

/// Where the log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// An SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database, by connection URL
    /// (`postgres://USER@HOST:PORT/DB`).
    Postgres(String),
}

impl std::fmt::Display for LogLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogLocation::Sqlite(p) => write!(f, "{}", p.display()),
            LogLocation::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

/// Handle to the event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    head: watch::Receiver<u64>,
    options: LogOptions,
    /// The log's identity (see [`EventLog::id`]).
    id: String,
}

enum Backend {
    Sqlite(sqlite::SqliteLog),
    Postgres(postgres::PostgresLog),
}

/// A read, answered by either backend.
pub(crate) enum Read {
    Stream { stream_id: String, from_version: u64, limit: u64 },
    All { after: u64, limit: u64, types: Option<Vec<String>> },
    Range { first: u64, last: u64 },
    RecordedAt(u64),
    Key { scope: String, key: String },
}

/// What a [`Read`] finds.
pub(crate) enum ReadAnswer {
    Events(Vec<RecordedEvent>),
    Stream(Option<Vec<RecordedEvent>>),
    RecordedAt(Option<i64>),
    Outcome(Option<Outcome>),
}

fn unexpected() -> ReadError {
    ReadError::Storage("the log answered a read with the wrong kind of answer".into())
}

/// Whether the log can take appends and reads right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It can.
    Available,
    /// It cannot (PostgreSQL unreachable, restarting, refusing); appends
    /// and log reads answer 503 meanwhile, and the log reconnects alone.
    Unavailable(String),
}

impl EventLog {
    /// Opens (creating if needed) the SQLite log at `path` and starts its
    /// writer, which records its group commits in `metrics`.
    pub fn open(path: &Path, options: LogOptions, metrics: LogMetrics) -> Result<Self, ReadError> {
        let (log, head, id) = sqlite::SqliteLog::open(path, &options, metrics)?;
        Ok(Self { inner: Arc::new(Inner { backend: Backend::Sqlite(log), head, options, id }) })
    }

    /// Connects to the PostgreSQL log at `url`, creating or upgrading its
    /// schema (under an advisory lock, so nodes starting together take
    /// turns), and starts its writer, its listener and its poller.
    pub async fn open_postgres(
        url: &str,
        options: LogOptions,
        metrics: LogMetrics,
    ) -> Result<Self, ReadError> {
        let (log, head, id) = postgres::PostgresLog::open(url, &options.postgres, metrics).await?;
        Ok(Self { inner: Arc::new(Inner { backend: Backend::Postgres(log), head, options, id }) })
    }

    /// Opens the log at `location`.
    pub async fn open_at(
        location: &LogLocation,
        options: LogOptions,
        metrics: LogMetrics,
    ) -> Result<Self, ReadError> {
        match location {
            LogLocation::Sqlite(path) => Self::open(path, options, metrics),
            LogLocation::Postgres(url) => Self::open_postgres(url, options, metrics).await,
        }
    }

    /// Which backend holds the log: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The log's identity: made when the log is created, kept by
    /// `copy-log`, named in every message the outbox publishes.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Takes or renews lease `name` for `holder` for `ttl` (so that exactly
    /// one node does what must be done once, such as publishing); whether
    /// `holder` holds it. A single-node (SQLite) log always grants it.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, ReadError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.hold_lease(name, holder, ttl).await,
        }
    }

    /// Position of the last committed event known to this node (0 for an
    /// empty log). With PostgreSQL, other nodes' commits arrive by
    /// notification or by polling.
    pub fn head(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// A receiver that changes whenever new events are committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.head.clone()
    }

    /// Whether the log can take appends and reads right now.
    pub fn health(&self) -> Health {
        match &self.inner.backend {
            Backend::Sqlite(_) => Health::Available,
            Backend::Postgres(p) => p.health(),
        }
    }

    /// Appends `events` to `stream_id` atomically if the stream's version
    /// satisfies `expected`.
    pub async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, AppendError> {
        if events.is_empty() {
            return Err(AppendError::Invalid("an append needs at least one event".into()));
        }
        let events = self.prepare(stream_id, events)?;
        self.submit(stream_id, expected, events, None).await.map(|o| o.appended)
    }

    /// Appends like [`EventLog::append`], at most once per idempotency key.
    /// `events` may be empty: the version check and the key are still
    /// recorded (a command that decided nothing).
    pub async fn append_once(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        idempotency: Option<Idempotency>,
    ) -> Result<Outcome, AppendError> {
        let events = self.prepare(stream_id, events)?;
        self.submit(stream_id, expected, events, idempotency).await
    }

    async fn submit(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<PreparedEvent>,
        idempotency: Option<Idempotency>,
    ) -> Result<Outcome, AppendError> {
        let (reply, rx) = oneshot::channel();
        let request = Request { stream_id: stream_id.to_owned(), expected, events, idempotency, reply };
        match &self.inner.backend {
            Backend::Sqlite(s) => s.submit(request)?,
            Backend::Postgres(p) => p.submit(request)?,
        }
        rx.await.map_err(|_| AppendError::Closed)?
    }

    fn prepare(&self, stream_id: &str, events: Vec<NewEvent>) -> Result<Vec<PreparedEvent>, AppendError> {
        validate_name("stream id", stream_id)?;
        let limits = &self.inner.options;
        if events.len() > limits.max_events_per_append {
            return Err(AppendError::TooLarge(format!(
                "{} events in one append; the limit is {}",
                events.len(),
                limits.max_events_per_append
            )));
        }
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                validate_name("event type", &e.event_type)
                    .map_err(|err| AppendError::Invalid(format!("events[{i}]: {err}")))?;
                // A raw value's text becomes the stored string without a copy.
                let metadata = match e.metadata {
                    Some(m) if m.get().starts_with('{') => String::from(Box::<str>::from(m)),
                    Some(_) => {
                        return Err(AppendError::Invalid(format!(
                            "events[{i}]: metadata must be a JSON object"
                        )));
                    }
                    None => "{}".to_owned(),
                };
                let data = String::from(Box::<str>::from(e.data));
                for (what, text) in [("data", &data), ("metadata", &metadata)] {
                    if too_deep(text) {
                        return Err(AppendError::Invalid(format!(
                            "events[{i}]: {what} nests deeper than {MAX_JSON_DEPTH} levels"
                        )));
                    }
                }
                if data.len() + metadata.len() > limits.max_event_bytes {
                    return Err(AppendError::TooLarge(format!(
                        "events[{i}] is {} bytes; the limit is {} bytes per event",
                        data.len() + metadata.len(),
                        limits.max_event_bytes
                    )));
                }
                let schema_version = e.schema_version.unwrap_or(1);
                if !(1..=MAX_SCHEMA_VERSION).contains(&schema_version) {
                    return Err(AppendError::Invalid(format!(
                        "events[{i}]: schema_version must be from 1 to {MAX_SCHEMA_VERSION}"
                    )));
                }
                Ok(PreparedEvent { event_type: e.event_type, data, metadata, schema_version })
            })
            .collect()
    }

    async fn read(&self, read: Read) -> Result<ReadAnswer, ReadError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(read).await,
            Backend::Postgres(p) => p.read(read).await,
        }
    }

    /// Events of one stream from `from_version` (1-based), at most `limit`.
    /// `None` when the stream does not exist.
    pub async fn read_stream(
        &self,
        stream_id: String,
        from_version: u64,
        limit: u64,
    ) -> Result<Option<Vec<RecordedEvent>>, ReadError> {
        match self.read(Read::Stream { stream_id, from_version, limit }).await? {
            ReadAnswer::Stream(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    /// Events of the whole log after position `after`, at most `limit`,
    /// optionally only of the given types.
    pub async fn read_all(
        &self,
        after: u64,
        limit: u64,
        types: Option<Vec<String>>,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        match self.read(Read::All { after, limit, types }).await? {
            ReadAnswer::Events(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    /// Every event of a stream, oldest first (empty for a new stream).
    pub async fn read_whole_stream(&self, stream_id: String) -> Result<Vec<RecordedEvent>, ReadError> {
        Ok(self.read_stream(stream_id, 1, u64::MAX).await?.unwrap_or_default())
    }

    /// Events from position `first` to `last`, inclusive.
    pub async fn read_range(&self, first: u64, last: u64) -> Result<Vec<RecordedEvent>, ReadError> {
        match self.read(Read::Range { first, last }).await? {
            ReadAnswer::Events(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    /// When the event at `position` was recorded (unix ms), if it exists.
    pub async fn recorded_at(&self, position: u64) -> Result<Option<i64>, ReadError> {
        match self.read(Read::RecordedAt(position)).await? {
            ReadAnswer::RecordedAt(at) => Ok(at),
            _ => Err(unexpected()),
        }
    }

    /// The recorded outcome of an append made with `scope` and `key`.
    pub async fn find_idempotent(&self, scope: String, key: String) -> Result<Option<Outcome>, ReadError> {
        match self.read(Read::Key { scope, key }).await? {
            ReadAnswer::Outcome(o) => Ok(o),
            _ => Err(unexpected()),
        }
    }

    /// A source of batches with a connection of its own, for a reader that
    /// follows the log (a projection's runner, `verify`). Blocking; call it
    /// off the async runtime's workers.
    pub fn batch_source(&self) -> Result<Box<dyn BatchSource>, ReadError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.source(),
            Backend::Postgres(p) => Ok(p.source()),
        }
    }

    /// Stops accepting appends and waits for the writer to finish what it
    /// has queued.
    pub fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.close(),
            Backend::Postgres(p) => p.close(),
        }
    }
}

/// Checks a stream id or event type: 1 to 256 characters, no control
/// characters.
pub fn validate_name(what: &str, name: &str) -> Result<(), AppendError> {
    if name.is_empty() {
        return Err(AppendError::Invalid(format!("{what} must not be empty")));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(AppendError::Invalid(format!(
            "{what} is {chars} characters; the limit is {MAX_NAME_CHARS}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AppendError::Invalid(format!("{what} must not contain control characters")));
    }
    Ok(())
}

/// Deepest nesting of arrays and objects an event's data or metadata may
/// have: deeper documents overflow the parsers of the plugins that read them.
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether `json` nests deeper than [`MAX_JSON_DEPTH`]. A document cannot
/// nest deeper than it has `[` and `{` bytes, and counting them is a fast
/// pass; only documents with more of them than the limit are walked.
fn too_deep(json: &str) -> bool {
    let openers = json.bytes().filter(|&b| b == b'[' || b == b'{').count();
    openers > MAX_JSON_DEPTH && json_depth(json) > MAX_JSON_DEPTH
}

/// How deeply arrays and objects nest in the (valid) JSON text `json`.
fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod depth_tests {
    use super::{MAX_JSON_DEPTH, json_depth, too_deep};

    #[test]
    fn counts_nesting_outside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(json_depth(r#"{"a":"[[[[\"{{"}"#), 1);
        assert_eq!(json_depth(&format!("{}{}", "[".repeat(300), "]".repeat(300))), 300);
    }

    #[test]
    fn too_deep_only_past_the_limit() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!too_deep(&nested(MAX_JSON_DEPTH)));
        assert!(too_deep(&nested(MAX_JSON_DEPTH + 1)));
        // Many brackets, shallow: inside strings or side by side.
        let wide = format!("[{}]", vec!["[]"; 500].join(","));
        assert!(!too_deep(&wide));
        assert!(!too_deep(&format!("{{\"a\":\"{}\"}}", "[".repeat(500))));
    }
}

/// An event of type `A` whose data is `i`, for the unit tests.
#[cfg(test)]
fn test_event(i: usize) -> NewEvent {
    NewEvent {
        event_type: "A".into(),
        data: serde_json::value::RawValue::from_string(i.to_string()).unwrap(),
        metadata: None,
        schema_version: None,
    }
}

#[cfg(test)]
mod close_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    // The guard only orders tests; each has a runtime of its own.
    #[allow(clippy::await_holding_lock)]
    async fn closing_after_reads_leaves_no_wal_behind() {
        let _disk = crate::db::heavy_disk();
        let dir = crate::db::scratch_dir("log-close");
        let path = dir.join("events.db");
        let log = EventLog::open(&path, LogOptions::default(), LogMetrics::default()).unwrap();
        log.append("s", ExpectedVersion::Any, vec![test_event(1)]).await.unwrap();
        // A read leaves an idle read-only connection in the pool.
        assert_eq!(log.read_stream("s".into(), 1, 10).await.unwrap().map(|e| e.len()), Some(1));
        log.close();
        let wal = dir.join("events.db-wal");
        assert!(!wal.exists(), "the WAL outlived a clean close");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod wal_reserve_tests {
    use super::*;
    use crate::db;

    fn count_in(path: &Path) -> (u64, u64) {
        let conn = db::open_rw(path, Synchronous::Normal).unwrap();
        conn.query_row("SELECT count(*), COALESCE(MAX(position), 0) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    // The guard only orders tests; each has a runtime of its own.
    #[allow(clippy::await_holding_lock)]
    async fn a_reserved_wal_is_overwritten_in_place_and_recovers_after_a_crash() {
        let _disk = crate::db::heavy_disk();
        let dir = crate::db::scratch_dir("log-wal-reserve");
        let path = dir.join("events.db");
        let wal = dir.join("events.db-wal");
        let reserved = db::wal_reserve_bytes(4096);
        let log = EventLog::open(&path, LogOptions::default(), LogMetrics::default()).unwrap();
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            reserved,
            "the WAL's blocks are written when the log opens"
        );
        for i in 0..200 {
            log.append(&format!("s-{i}"), ExpectedVersion::NoStream, vec![test_event(i)]).await.unwrap();
        }
        // SQLite wrote its frames over the zeros: the file neither grew nor
        // shrank.
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), reserved);
        // What a crash leaves: the files as they are, the process gone. The
        // committed frames are followed by zeros, which recovery must stop at.
        let crashed = dir.join("crashed");
        std::fs::create_dir_all(&crashed).unwrap();
        std::fs::copy(&path, crashed.join("events.db")).unwrap();
        std::fs::copy(&wal, crashed.join("events.db-wal")).unwrap();
        assert_eq!(count_in(&crashed.join("events.db")), (200, 200));
        log.close();
        // Reopened: reserved again (SQLite deleted the WAL at the close), and
        // every event is there.
        let log = EventLog::open(&path, LogOptions::default(), LogMetrics::default()).unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), reserved);
        assert_eq!(log.head(), 200);
        let appended = log.append("s-0", ExpectedVersion::Exact(1), vec![test_event(0)]).await.unwrap();
        assert_eq!((appended.stream_version, appended.last_position), (2, 201));
        log.close();
        assert_eq!(count_in(&path), (201, 201));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_wal_is_reserved_only_when_asked_and_with_full_sync() {
        let _disk = crate::db::heavy_disk();
        let dir = crate::db::scratch_dir("log-wal-unreserved");
        let wal_len = |name: &str, options: LogOptions| {
            let path = dir.join(name);
            let log = EventLog::open(&path, options, LogMetrics::default()).unwrap();
            let mut wal = path.into_os_string();
            wal.push("-wal");
            let len = std::fs::metadata(&wal).unwrap().len();
            log.close();
            len
        };
        let reserved = db::wal_reserve_bytes(4096);
        assert_eq!(wal_len("default.db", LogOptions::default()), reserved);
        let off = wal_len("off.db", LogOptions { reserve_wal: false, ..LogOptions::default() });
        let normal =
            wal_len("normal.db", LogOptions { synchronous: Synchronous::Normal, ..LogOptions::default() });
        // Only the migrations' frames.
        assert!(off < reserved / 10 && normal < reserved / 10, "{off} and {normal} bytes");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
