//! What a plugin instance's store holds, and the host side of the `sql` and
//! `log` imports.

use std::cell::OnceCell;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::Output;

use super::bindings::refract::plugin::log::{self, Level};
use super::bindings::refract::plugin::sql::{self, Rows, SqlError};
use super::bindings::refract::plugin::types::{self, Value};
use super::deferred::{DeferredWrites, Failure, WriteQueue};
use super::guard::{self, SqlGuard};

/// Most rows one `sql.query` call may return.
pub const MAX_QUERY_ROWS: usize = 100_000;
/// Most bytes of text and blobs one `sql.query` call may return.
pub const MAX_QUERY_BYTES: usize = 64 << 20;
/// Longest log message kept, in bytes.
pub const MAX_LOG_BYTES: usize = 4096;
/// Most log messages one call may write; one more ends the call with a trap.
pub const MAX_LOG_MESSAGES_PER_CALL: u32 = 10_000;
/// The fixed seed of the random numbers plugins get: a replay must produce
/// the same read model, so nothing a plugin can read may vary between runs.
const RANDOM_SEED: u64 = 0x7265_6672_6163_7421;

/// A projection's database connection with its SQL guard.
pub struct SqlSession {
    /// The writer of the statements the plugin queued (`sql.write`),
    /// started by the first one. Declared before `conn`: it must stop
    /// before the connection closes.
    deferred: OnceCell<DeferredWrites>,
    /// The connection to the projection's own database; used by one
    /// thread at a time (see [`SqlSession::conn`]).
    conn: Arc<Mutex<Connection>>,
    /// The authorizer installed on `conn`.
    pub guard: SqlGuard,
    /// The thread checkpointing the database's WAL. Declared after `conn`
    /// so it stops after the connection that nudges it is closed.
    pub wal: Option<crate::db::WalThread>,
}

impl SqlSession {
    /// A session on `conn`, guarded by `guard`, its WAL checkpointed by `wal`.
    pub fn new(conn: Connection, guard: SqlGuard, wal: Option<crate::db::WalThread>) -> Self {
        Self { deferred: OnceCell::new(), conn: Arc::new(Mutex::new(conn)), guard, wal }
    }

    /// The connection. Statements the plugin queued may still be running
    /// on it unless the batch was [settled](Self::settle) or
    /// [drained](Self::drain) since; the lock then waits for the one
    /// running, not for the queue.
    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session, keeping its connection.
    pub fn into_conn(self) -> Connection {
        let Self { deferred, conn, guard: _, wal: _ } = self;
        // The writer holds the other reference; stopping it gives it back.
        drop(deferred);
        match Arc::try_unwrap(conn) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(_) => unreachable!("only the session and its writer hold the connection"),
        }
    }

    /// Queues a statement of the event at `position` (`sql.write`): it runs
    /// after every statement queued before it, on the session's writer
    /// thread, while the caller goes on. Returns at once the refusals that
    /// need no database, and the failure of an earlier queued statement of
    /// the batch.
    pub fn write(&self, position: u64, statement: String, params: Vec<Value>) -> Result<(), SqlError> {
        self.write_queue()?.push(position, statement, params)
    }

    /// The queue of [`SqlSession::write`], its writer thread started if it
    /// was not yet.
    pub fn write_queue(&self) -> Result<&WriteQueue, SqlError> {
        if let Some(w) = self.deferred.get() {
            return Ok(&w.queue);
        }
        let w = DeferredWrites::start(self.conn.clone(), self.guard.clone())
            .map_err(|e| SqlError::Failed(format!("cannot start the thread for queued statements: {e}")))?;
        Ok(&self.deferred.get_or_init(|| w).queue)
    }

    /// Waits until every queued statement has run; the error of the one
    /// that failed, if one did.
    pub fn drain(&self) -> Result<(), SqlError> {
        self.deferred.get().map_or(Ok(()), |w| w.queue.drain())
    }

    /// Ends the batch's queued statements: runs what is queued (`keep`) or
    /// drops it, and returns the first that failed. Afterwards nothing is
    /// queued and only the caller uses the connection.
    pub fn settle(&self, keep: bool) -> Option<Failure> {
        self.deferred.get().and_then(|w| w.queue.settle(keep))
    }
}

/// The data of one plugin instance's store.
pub struct PluginState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// `wasi:http`, linked so that components built with it load; every
    /// outgoing request is refused.
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: RefuseHttp,
    /// What the plugin writes to stdout and stderr during a call.
    pub(super) output: Output,
    pub(super) limits: StoreLimits,
    sql: Option<SqlSession>,
    /// Log messages written by the current call.
    logged: u32,
}

impl PluginState {
    pub(super) fn new(plugin: Arc<str>, limits: StoreLimits, sql: Option<SqlSession>) -> Self {
        let output = Output::default();
        Self {
            plugin,
            wasi: sandbox(&output),
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: RefuseHttp,
            output,
            limits,
            sql,
            logged: 0,
        }
    }

    /// The plugin's name.
    pub(super) fn name(&self) -> &str {
        &self.plugin
    }

    /// Starts the log budget of a new call.
    pub(super) fn new_call(&mut self) {
        self.logged = 0;
    }

    /// The database session, if this instance has one.
    pub fn sql(&mut self) -> Option<&mut SqlSession> {
        self.sql.as_mut()
    }

    /// Takes the database session out, to hand it to a new instance.
    pub fn take_sql(&mut self) -> Option<SqlSession> {
        self.sql.take()
    }
}

/// The WASI context of every plugin: no preopened directories (no files),
/// no environment variables, no arguments, no sockets (TCP, UDP and name
/// lookup all off), stdin empty, stdout and stderr captured into `output`
/// (see [`Output`]). The wall
/// clock is frozen at the Unix epoch and random numbers come from a fixed
/// seed, so a plugin cannot make its output depend on when or how often it
/// runs; only the monotonic clock is real (it can measure, not date).
fn sandbox(output: &Output) -> WasiCtx {
    let mut b = WasiCtx::builder();
    b.stdout(output.stdout.clone()).stderr(output.stderr.clone());
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .secure_random(SplitMix64(RANDOM_SEED))
        .insecure_random(SplitMix64(RANDOM_SEED ^ 1))
        .insecure_random_seed(u128::from(RANDOM_SEED));
    b.build()
}

/// A wall clock that always reads 1970-01-01T00:00:00Z.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// SplitMix64: a small deterministic generator, good enough for a plugin's
/// hash seeds and test data. Not secret, by design.
struct SplitMix64(u64);

impl rand_core::TryRng for SplitMix64 {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.try_next_u64().map(|v| (v >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for PluginState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// `wasi:http`'s outgoing handler for plugins: refuses every request, so a
/// network attempt fails inside the sandbox with `HTTP-request-denied`
/// instead of the plugin failing to load.
struct RefuseHttp;

type HttpIo = Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl wasmtime_wasi_http::WasiHttpHooks for RefuseHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _io: HttpIo,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (http::Response<wasmtime_wasi_http::WasiBody>, HttpIo),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(uri = %request.uri(), "a plugin tried an outgoing HTTP request; refused");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl types::Host for PluginState {}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl PluginState {
    fn session(&self) -> Result<&SqlSession, SqlError> {
        self.sql.as_ref().ok_or_else(|| {
            SqlError::Refused("no database here: sql is only available to projections, inside apply".into())
        })
    }

    /// Runs `f` on the plugin's connection under the plugin SQL policy,
    /// after the statements the plugin queued, and turns failures into the
    /// WIT error, with the authorizer's reason for denials.
    fn guarded<R>(
        &self,
        statement: &str,
        f: impl FnOnce(&Connection) -> Result<R, SqlError>,
    ) -> Result<R, SqlError> {
        guard::precheck(statement).map_err(SqlError::Refused)?;
        let s = self.session()?;
        s.drain()?;
        let conn = s.conn();
        let _armed = s.guard.arm();
        f(&conn).map_err(|e| refusal_or(&s.guard, e))
    }
}

/// The authorizer's reason if it denied the failed statement, else `e`.
pub(super) fn refusal_or(guard: &SqlGuard, e: SqlError) -> SqlError {
    match guard.take_denial() {
        Some(reason) => SqlError::Refused(reason),
        None => e,
    }
}

pub(super) fn failed(e: rusqlite::Error) -> SqlError {
    SqlError::Failed(e.to_string())
}

impl sql::Host for PluginState {
    fn execute(&mut self, statement: String, params: Vec<Value>) -> Result<u64, SqlError> {
        self.guarded(&statement, |conn| {
            let mut stmt = conn.prepare_cached(&statement).map_err(failed)?;
            let n = stmt.execute(rusqlite::params_from_iter(params.iter())).map_err(failed)?;
            Ok(n as u64)
        })
    }

    fn write(&mut self, position: u64, statement: String, params: Vec<Value>) -> Result<(), SqlError> {
        self.session()?.write(position, statement, params)
    }

    fn write_queued(&mut self, writes: sql::QueuedWrites) -> Result<(), SqlError> {
        self.session()?.write_queue()?.push_packed(writes)
    }

    fn query(&mut self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        self.guarded(&statement, |conn| {
            let mut stmt = conn.prepare_cached(&statement).map_err(failed)?;
            let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            let n = columns.len();
            let mut rows = Vec::new();
            let mut bytes = 0usize;
            let mut cursor = stmt.query(rusqlite::params_from_iter(params.iter())).map_err(failed)?;
            while let Some(row) = cursor.next().map_err(failed)? {
                if rows.len() == MAX_QUERY_ROWS {
                    return Err(SqlError::Refused(format!(
                        "the query returns more than {MAX_QUERY_ROWS} rows; add a LIMIT"
                    )));
                }
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    let v = match row.get_ref(i).map_err(failed)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::Integer(i),
                        ValueRef::Real(r) => Value::Real(r),
                        ValueRef::Text(t) => {
                            bytes += t.len();
                            Value::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(b) => {
                            bytes += b.len();
                            Value::Blob(b.to_vec())
                        }
                    };
                    values.push(v);
                }
                if bytes > MAX_QUERY_BYTES {
                    return Err(SqlError::Refused(format!(
                        "the query returns more than {} MiB; select fewer rows or columns",
                        MAX_QUERY_BYTES >> 20
                    )));
                }
                rows.push(values);
            }
            Ok(Rows { columns, rows })
        })
    }
}

impl log::Host for PluginState {
    fn write(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        self.logged += 1;
        if self.logged > MAX_LOG_MESSAGES_PER_CALL {
            wasmtime::bail!(
                "log flood: more than {MAX_LOG_MESSAGES_PER_CALL} log messages in one call; log less, or per batch"
            );
        }
        if message.len() > MAX_LOG_BYTES {
            let mut end = MAX_LOG_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("… (truncated)");
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "refract::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "refract::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "refract::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "refract::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "refract::plugin", plugin, "{message}"),
        }
        Ok(())
    }
}
