//! The shared backend: the log in PostgreSQL (schema `refract`), for any
//! number of refract nodes on one database.
//!
//! Positions are assigned under a lock taken inside the append
//! transaction: every append transaction first locks the one row of
//! `refract.head` (`SELECT … FOR UPDATE`), numbers its events after it,
//! moves it and commits. Appends of all nodes therefore pass one at a
//! time, and a transaction that took position P commits before any that
//! takes a later one can start numbering: a reader that has seen position
//! P has seen every earlier one, so reading `position > checkpoint` never
//! misses an event that commits late, with no gap detection and no
//! timeout. (Sequences hand out numbers that commit out of order; stores
//! that skip gaps after a timeout lose events.) The price is a write
//! ceiling: one append transaction at a time for the whole cluster, which
//! each node's group commit amortizes over many appends (P8 in
//! BENCHMARKS.md).
//!
//! Each node runs, on a thread of its own, one writer connection that
//! group-commits the node's appends ([`writer`]), one connection that
//! `LISTEN`s for the new head each commit notifies, and a poller that
//! reads the head every [`PostgresOptions::poll`] in case a notification
//! is lost ([`follow`]). Reads go through a pool. PostgreSQL unreachable:
//! appends and log reads answer 503 at once or within
//! [`PostgresOptions::timeout`], and every connection comes back alone.
//!
//! Driver: `tokio-postgres` with `deadpool-postgres` — asynchronous on the
//! runtime the host already runs, pipelined queries (a group's reads go out
//! together), `LISTEN` through the connection's message stream, and a small
//! pool with wait, create and recycle timeouts; sqlx would bring a second
//! runtime abstraction, compile-time query checking we do not use, and a
//! larger build.

mod follow;
mod sql;
mod writer;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::value::RawValue;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{NoTls, Row};

use super::plan::{Outcome, Request};
use super::source::{Ask, BatchSource};
use super::types::{AppendError, Appended, ReadError, RecordedEvent};
use super::{Health, Read, ReadAnswer};
use crate::metrics::LogMetrics;
use crate::plugin::{Batch, EventRef};

/// How a node talks to the PostgreSQL log.
#[derive(Debug, Clone, Copy)]
pub struct PostgresOptions {
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long one append transaction or one read may take before it is
    /// abandoned (its connection dropped) and answered 503.
    pub timeout: Duration,
    /// How often the head is read, whatever notifications say: the most a
    /// lost notification delays a reader.
    pub poll: Duration,
    /// `LISTEN` for commits (off behind poolers that do not forward
    /// notifications; readers then rely on polling alone).
    pub notify: bool,
    /// Connections of the read pool.
    pub pool_size: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            poll: Duration::from_secs(1),
            notify: true,
            pool_size: 16,
        }
    }
}

/// `url` with its password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Why the log is unavailable, per part; none when all is well.
#[derive(Default)]
pub(super) struct HealthState {
    writer: Mutex<Option<String>>,
    poller: Mutex<Option<String>>,
}

impl HealthState {
    fn set(slot: &Mutex<Option<String>>, error: Option<String>) {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    pub(super) fn writer(&self, error: Option<String>) {
        Self::set(&self.writer, error);
    }

    pub(super) fn poller(&self, error: Option<String>) {
        Self::set(&self.poller, error);
    }

    fn get(&self) -> Option<String> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        w.or_else(|| self.poller.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The message of a connection-level failure.
pub(super) fn unavailable(e: &dyn std::fmt::Display) -> String {
    format!("PostgreSQL is unavailable ({e}); retry later")
}

/// The PostgreSQL backend of an [`super::EventLog`].
pub(crate) struct PostgresLog {
    sender: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    shutdown: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pool: Pool,
    handle: Handle,
    options: PostgresOptions,
    health: Arc<HealthState>,
}

/// A connection configuration for `url`, tagged with `name` (shown in
/// `pg_stat_activity`).
pub(super) fn config(
    url: &str,
    options: &PostgresOptions,
    name: &str,
) -> Result<tokio_postgres::Config, ReadError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ReadError::Storage(format!("invalid PostgreSQL URL {}: {e}", redact(url))))?;
    config.connect_timeout(options.connect_timeout).application_name(name);
    Ok(config)
}

/// Opens a connection whose messages are driven on the current runtime
/// (the task ends with the connection).
pub(super) async fn connect(
    config: &tokio_postgres::Config,
    options: &PostgresOptions,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    let connected = tokio::time::timeout(options.connect_timeout, config.connect(NoTls)).await;
    match connected {
        Ok(Ok((client, connection))) => {
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            Ok((client, task))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {:?}", options.connect_timeout)),
    }
}

impl PostgresLog {
    /// Connects, creates or upgrades the schema, reads the head, and starts
    /// the log's thread (writer, listener, poller).
    pub(crate) async fn open(
        url: &str,
        options: &PostgresOptions,
        metrics: LogMetrics,
    ) -> Result<(Self, watch::Receiver<u64>, String), ReadError> {
        let admin = config(url, options, "refract-migrate")?;
        let (mut client, task) = connect(&admin, options)
            .await
            .map_err(|e| ReadError::Unavailable(format!("cannot connect to {}: {e}", redact(url))))?;
        let head = migrate(&mut client)
            .await
            .map_err(|e| ReadError::Storage(format!("cannot prepare the log's schema: {e}")));
        drop(client);
        let _ = task.await;
        let (head, id) = head?;
        let (head_tx, head_rx) = watch::channel(head);
        let (sender, requests) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let health = Arc::new(HealthState::default());
        let thread = {
            let (health, options) = (health.clone(), *options);
            let writer_config = config(url, &options, "refract-writer")?;
            let follow_config = config(url, &options, "refract-listen")?;
            std::thread::Builder::new()
                .name("refract-log-postgres".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start the PostgreSQL log's runtime");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let follow = tokio::spawn(follow::run(
                            follow_config,
                            options,
                            head_tx.clone(),
                            health.clone(),
                            shutdown_rx.clone(),
                        ));
                        writer::run(writer_config, options, requests, head_tx, metrics, health, shutdown_rx)
                            .await;
                        follow.abort();
                    });
                })
                .map_err(|e| ReadError::Storage(format!("cannot start the PostgreSQL log's thread: {e}")))?
        };
        let manager = Manager::from_config(
            config(url, options, "refract-read")?,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| ReadError::Storage(format!("cannot create the read pool: {e}")))?;
        let log = Self {
            sender: Mutex::new(Some(sender)),
            shutdown,
            thread: Mutex::new(Some(thread)),
            pool,
            handle: Handle::current(),
            options: *options,
            health,
        };
        Ok((log, head_rx, id))
    }

    /// Takes or renews lease `name` for `holder` for `ttl`; whether it is
    /// held (false: another holder has it and it has not expired).
    pub(crate) async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, ReadError> {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX) as f64;
        let held = async {
            let client = self.pool.get().await.map_err(read_error)?;
            let row =
                client.query_opt(sql::HOLD_LEASE, &[&name, &holder, &millis]).await.map_err(read_error)?;
            Ok(row.is_some())
        };
        match tokio::time::timeout(self.options.timeout, held).await {
            Ok(r) => r,
            Err(_) => Err(ReadError::Unavailable(unavailable(&format_args!(
                "no answer within {:?}",
                self.options.timeout
            )))),
        }
    }

    /// Hands `request` to the writer.
    pub(crate) fn submit(&self, request: Request) -> Result<(), AppendError> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().ok_or(AppendError::Closed)?.send(request).map_err(|_| AppendError::Closed)
    }

    pub(crate) fn health(&self) -> Health {
        match self.health.get() {
            None => Health::Available,
            Some(e) => Health::Unavailable(e),
        }
    }

    /// Answers `read` on a pooled connection within the timeout.
    pub(crate) async fn read(&self, read: Read) -> Result<ReadAnswer, ReadError> {
        match tokio::time::timeout(self.options.timeout, answer(&self.pool, read)).await {
            Ok(r) => r,
            Err(_) => Err(ReadError::Unavailable(unavailable(&format_args!(
                "no answer within {:?}",
                self.options.timeout
            )))),
        }
    }

    /// A source of batches on the read pool.
    pub(crate) fn source(&self) -> Box<dyn BatchSource> {
        Box::new(Source {
            pool: self.pool.clone(),
            handle: self.handle.clone(),
            timeout: self.options.timeout,
            stream: None,
        })
    }

    /// Stops accepting appends, lets the writer finish what it has queued,
    /// and stops the log's thread.
    pub(crate) fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.shutdown.send_replace(true);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        self.pool.close();
    }
}

/// Fills the empty PostgreSQL log at `url` with `chunks` (see
/// [`crate::log::copy`]), in one transaction: a failure leaves it empty.
pub(super) async fn fill_empty(
    url: &str,
    options: &PostgresOptions,
    log_id: Option<&str>,
    mut chunks: mpsc::Receiver<Result<super::copy::Chunk, ReadError>>,
) -> Result<super::copy::Copied, ReadError> {
    use super::copy::{Chunk, Copied};
    let config = config(url, options, "refract-copy-log")?;
    let (mut client, task) = connect(&config, options)
        .await
        .map_err(|e| ReadError::Unavailable(format!("cannot connect to {}: {e}", redact(url))))?;
    let pg = |e: tokio_postgres::Error| ReadError::Storage(e.to_string());
    let copied = async {
        migrate(&mut client).await.map_err(pg)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.query_one(sql::LOCK_HEAD, &[]).await.map_err(pg)?;
        let empty: bool = tx.query_one(sql::IS_EMPTY, &[]).await.map_err(pg)?.get(0);
        if !empty {
            return Err(ReadError::Storage(format!(
                "the log at {} is not empty; copy-log only fills an empty log (positions must stay as they are)",
                redact(url)
            )));
        }
        if let Some(id) = log_id {
            tx.execute(sql::SET_LOG_ID, &[&id]).await.map_err(pg)?;
        }
        let (insert_events, insert_keys) = (tx.prepare(sql::INSERT_EVENTS).await.map_err(pg)?, tx.prepare(sql::INSERT_KEYS).await.map_err(pg)?);
        let mut copied = Copied { events: 0, keys: 0 };
        while let Some(chunk) = chunks.recv().await {
            match chunk? {
                Chunk::Events(rows) => {
                    for (i, r) in rows.iter().enumerate() {
                        let expected = copied.events as i64 + i as i64 + 1;
                        if r.position != expected {
                            return Err(ReadError::Storage(format!(
                                "the source log has a gap: position {} where {expected} was expected",
                                r.position
                            )));
                        }
                    }
                    let col = |f: fn(&super::copy::EventRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
                    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
                    let versions: Vec<i64> = rows.iter().map(|r| r.stream_version).collect();
                    let recorded: Vec<i64> = rows.iter().map(|r| r.recorded_at).collect();
                    let schema_versions: Vec<i32> = rows.iter().map(|r| r.schema_version).collect();
                    tx.execute(
                        &insert_events,
                        &[
                            &positions,
                            &col(|r| &r.stream_id),
                            &versions,
                            &col(|r| &r.event_type),
                            &col(|r| &r.data),
                            &col(|r| &r.metadata),
                            &recorded,
                            &schema_versions,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                    copied.events += rows.len() as u64;
                }
                Chunk::Keys(rows) => {
                    let col = |f: fn(&super::copy::KeyRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
                    let num = |f: fn(&super::copy::KeyRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
                    tx.execute(
                        &insert_keys,
                        &[
                            &col(|k| &k.scope),
                            &col(|k| &k.key),
                            &col(|k| &k.command_id),
                            &col(|k| &k.stream_id),
                            &num(|k| k.stream_version),
                            &num(|k| k.first_position),
                            &num(|k| k.last_position),
                            &num(|k| k.recorded_at),
                        ],
                    )
                    .await
                    .map_err(pg)?;
                    copied.keys += rows.len() as u64;
                }
            }
        }
        if copied.events > 0 {
            tx.query(sql::ADVANCE_HEAD, &[&(copied.events as i64)]).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(copied)
    }
    .await;
    drop(client);
    let _ = task.await;
    copied
}

/// Creates the schema (or upgrades it) under an advisory lock; returns the
/// head and the log's id.
async fn migrate(client: &mut tokio_postgres::Client) -> Result<(u64, String), tokio_postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&sql::MIGRATION_LOCK]).await?;
    let done = async {
        client.batch_execute(sql::CREATE_SCHEMA).await?;
        let applied: i32 = client.query_one(sql::APPLIED, &[]).await?.get(0);
        for (i, migration) in sql::MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
            let tx = client.transaction().await?;
            tx.batch_execute(migration).await?;
            tx.execute(sql::RECORD_MIGRATION, &[&(i as i32 + 1)]).await?;
            tx.commit().await?;
            tracing::info!(migration = i + 1, "PostgreSQL log schema migrated");
        }
        let head: i64 = client.query_one(sql::HEAD, &[]).await?.get(0);
        let id: String = client.query_one(sql::LOG_ID, &[]).await?.get(0);
        Ok((head.max(0) as u64, id))
    }
    .await;
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&sql::MIGRATION_LOCK]).await;
    done
}

/// A failed read: the database refused it (500) or cannot be reached (503).
fn read_error(e: impl Into<ErrorKind>) -> ReadError {
    match e.into() {
        ErrorKind::Pool(e) => ReadError::Unavailable(unavailable(&e)),
        ErrorKind::Pg(e) if e.as_db_error().is_none() || is_shutdown(&e) => {
            ReadError::Unavailable(unavailable(&e))
        }
        ErrorKind::Pg(e) => ReadError::Storage(e.to_string()),
    }
}

/// Whether `e` is the server going away (shutting down, restarting, not
/// accepting connections yet).
pub(super) fn is_shutdown(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(c)
            || c.code().starts_with("08")
    })
}

enum ErrorKind {
    Pool(deadpool_postgres::PoolError),
    Pg(tokio_postgres::Error),
}

impl From<deadpool_postgres::PoolError> for ErrorKind {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ErrorKind::Pool(e)
    }
}

impl From<tokio_postgres::Error> for ErrorKind {
    fn from(e: tokio_postgres::Error) -> Self {
        ErrorKind::Pg(e)
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn recorded(r: &Row) -> Result<RecordedEvent, ReadError> {
    let raw = |s: String| RawValue::from_string(s).map_err(|e| ReadError::Storage(e.to_string()));
    Ok(RecordedEvent {
        position: r.get::<_, i64>(0) as u64,
        stream_id: r.get(1),
        stream_version: r.get::<_, i64>(2) as u64,
        event_type: r.get(3),
        data: raw(r.get(4))?,
        metadata: raw(r.get(5))?,
        recorded_at: r.get(6),
        schema_version: r.get::<_, i32>(7) as u32,
    })
}

fn events(rows: &[Row]) -> Result<Vec<RecordedEvent>, ReadError> {
    rows.iter().map(recorded).collect()
}

async fn answer(pool: &Pool, read: Read) -> Result<ReadAnswer, ReadError> {
    let client = pool.get().await.map_err(read_error)?;
    Ok(match read {
        Read::Stream { stream_id, from_version, limit } => {
            let stmt = client.prepare_cached(&sql::read_stream()).await.map_err(read_error)?;
            let rows = client
                .query(&stmt, &[&stream_id, &int(from_version), &int(limit)])
                .await
                .map_err(read_error)?;
            if rows.is_empty() {
                let exists: bool =
                    client.query_one(sql::STREAM_EXISTS, &[&stream_id]).await.map_err(read_error)?.get(0);
                if !exists {
                    return Ok(ReadAnswer::Stream(None));
                }
            }
            ReadAnswer::Stream(Some(events(&rows)?))
        }
        Read::All { after, limit, types } => {
            let rows = match types {
                None => {
                    let stmt = client.prepare_cached(&sql::read_all()).await.map_err(read_error)?;
                    client.query(&stmt, &[&int(after), &int(limit)]).await
                }
                Some(t) => {
                    let stmt = client.prepare_cached(&sql::read_all_of_types()).await.map_err(read_error)?;
                    client.query(&stmt, &[&int(after), &int(limit), &t]).await
                }
            }
            .map_err(read_error)?;
            ReadAnswer::Events(events(&rows)?)
        }
        Read::Range { first, last } => {
            let stmt = client.prepare_cached(&sql::read_range()).await.map_err(read_error)?;
            let rows = client.query(&stmt, &[&int(first), &int(last)]).await.map_err(read_error)?;
            ReadAnswer::Events(events(&rows)?)
        }
        Read::RecordedAt(position) => {
            let row = client.query_opt(sql::RECORDED_AT, &[&int(position)]).await.map_err(read_error)?;
            ReadAnswer::RecordedAt(row.map(|r| r.get(0)))
        }
        Read::Key { scope, key } => {
            let row = client.query_opt(sql::FIND_KEY, &[&scope, &key]).await.map_err(read_error)?;
            ReadAnswer::Outcome(row.map(|r| Outcome {
                duplicate_of: Some(r.get(0)),
                appended: Appended {
                    stream_version: r.get::<_, i64>(1) as u64,
                    first_position: r.get::<_, i64>(2) as u64,
                    last_position: r.get::<_, i64>(3) as u64,
                },
            }))
        }
    })
}

/// Batches read from a thread outside the async runtime, for a reader that
/// follows the log (a projection's runner, `verify`).
///
/// A replay asks for batch after batch, each continuing where the last
/// ended. The source answers them from one query per [`STREAM_ROWS`]
/// events, streamed: PostgreSQL sends rows while the batches before them
/// are being applied, instead of one round trip per batch.
struct Source {
    pool: Pool,
    handle: Handle,
    timeout: Duration,
    /// The query under way and what it continues.
    stream: Option<Stream>,
}

struct Stream {
    /// Holds the connection while the query streams.
    _client: deadpool_postgres::Object,
    rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
    /// The position of the last row handed out (or the query's start).
    after: u64,
    types: Option<Vec<String>>,
    /// A row read past an ask's `upto`, for the next ask.
    pending: Option<Row>,
    /// Rows the query may still send (it has a `LIMIT`).
    left: usize,
    /// The query has sent all it will.
    ended: bool,
}

/// Rows one streamed query reads at most; a query abandoned early (an ask
/// that does not continue it) leaves at most this many unread.
const STREAM_ROWS: usize = 50_000;

impl Source {
    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ReadError>>,
    ) -> Result<T, ReadError> {
        let timeout = self.timeout;
        self.handle.block_on(async move {
            tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
                Err(ReadError::Unavailable(unavailable(&format_args!("no answer within {timeout:?}"))))
            })
        })
    }

    /// Starts a query of at most `rows` rows after `after` (of `types`).
    fn query(&mut self, after: u64, types: Option<&[String]>, wanted: usize) -> Result<(), ReadError> {
        self.stream = None;
        let pool = &self.pool;
        let types_owned = types.map(<[String]>::to_vec);
        let (client, rows) = self.block_on(async {
            let client = pool.get().await.map_err(read_error)?;
            let limit = i64::try_from(wanted).unwrap_or(i64::MAX);
            let rows = match &types_owned {
                None => {
                    let stmt = client.prepare_cached(&sql::stream_after()).await.map_err(read_error)?;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&int(after), &limit];
                    client.query_raw(&stmt, params).await
                }
                Some(t) => {
                    let stmt =
                        client.prepare_cached(&sql::stream_after_of_types()).await.map_err(read_error)?;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&int(after), &limit, t];
                    client.query_raw(&stmt, params).await
                }
            }
            .map_err(read_error)?;
            Ok((client, rows))
        })?;
        self.stream = Some(Stream {
            _client: client,
            rows: Box::pin(rows),
            after,
            types: types_owned,
            pending: None,
            left: wanted,
            ended: false,
        });
        Ok(())
    }

    /// Moves rows of the query under way into `out`, up to `limit` in all,
    /// stopping before the first past `upto` (kept for the next ask).
    /// Returns whether the query has sent all it will.
    fn fill(&mut self, out: &mut Vec<Row>, upto: u64, limit: usize) -> Result<bool, ReadError> {
        use futures_util::StreamExt;
        let Some(s) = self.stream.as_mut() else { return Ok(true) };
        let timeout = self.timeout;
        let pulled = self.handle.block_on(async move {
            tokio::time::timeout(timeout, async {
                while out.len() < limit {
                    let row = match s.pending.take() {
                        Some(r) => r,
                        None if s.ended => return Ok(true),
                        None => match s.rows.next().await {
                            Some(Ok(r)) => {
                                s.left = s.left.saturating_sub(1);
                                r
                            }
                            Some(Err(e)) => return Err(read_error(e)),
                            None => {
                                s.ended = true;
                                return Ok(true);
                            }
                        },
                    };
                    let position = row.get::<_, i64>(0) as u64;
                    if position > upto {
                        s.pending = Some(row);
                        return Ok(false);
                    }
                    s.after = position;
                    out.push(row);
                }
                Ok(false)
            })
            .await
        });
        match pulled {
            Ok(Ok(ended)) => Ok(ended),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(ReadError::Unavailable(unavailable(&format_args!("no answer within {timeout:?}"))))
            }
        }
    }
}

impl BatchSource for Source {
    fn read(&mut self, ask: Ask, types: Option<&[String]>) -> Result<Batch, ReadError> {
        let Ask { after, upto, limit } = ask;
        let continues = self.stream.as_ref().is_some_and(|s| s.after == after && s.types.as_deref() == types);
        // Whether the query under way started for this ask: one that ends
        // short then has sent everything there is.
        let mut fresh = false;
        if !continues {
            // One batch's worth: an ask that does not continue the last is
            // often the only one (a live projection, a mismatch); one that
            // is continued gets the long query.
            self.query(after, types, limit.saturating_add(1))?;
            fresh = true;
        }
        let mut rows: Vec<Row> = Vec::with_capacity(limit.min(4096));
        loop {
            let ended = self.fill(&mut rows, upto, limit)?;
            let stopped_at_upto = self.stream.as_ref().is_some_and(|s| s.pending.is_some());
            if rows.len() >= limit || stopped_at_upto || !ended {
                break;
            }
            // The query sent all it will: it hit its LIMIT, or it started
            // before events that committed since. Ask again from here,
            // unless it started for this very ask and ended short.
            let (left, last) = self.stream.as_ref().map_or((0, after), |s| (s.left, s.after));
            if left > 0 && fresh {
                break;
            }
            self.query(last, types, STREAM_ROWS)?;
            fresh = true;
        }
        let text: usize = rows.iter().map(|r| r.get::<_, &str>(4).len()).sum();
        let mut batch = Batch::with_capacity(rows.len(), text);
        for r in &rows {
            batch.push(EventRef {
                position: r.get::<_, i64>(0) as u64,
                stream_id: r.get(1),
                stream_version: r.get::<_, i64>(2) as u64,
                event_type: r.get(3),
                data: r.get(4),
                metadata: r.get(5),
                recorded_at: r.get(6),
                schema_version: r.get::<_, i32>(7) as u32,
            });
        }
        Ok(batch)
    }
}
