//! SQL on the projection's own database.

use std::cell::{Cell, RefCell};
use std::fmt;

use crate::queued::Pending;
use crate::{Error, FromValue, Value};

/// Why a statement failed (see the `sql` interface in `wit/sql.wit`).
pub use crate::__private::bindings::refract::plugin::sql::SqlError;

/// A one-line description of `e` for people.
pub(crate) fn describe(e: &SqlError) -> String {
    match e {
        SqlError::Refused(m) => format!("statement refused by the host: {m}"),
        SqlError::Failed(m) => format!("SQL failed: {m}"),
    }
}

/// Rows returned by [`Db::query`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// Column names, in `SELECT` order.
    pub columns: Vec<String>,
    /// The rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the query returned no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The value at `row`, column `column` (by name), converted to `T`.
    pub fn get<T: FromValue>(&self, row: usize, column: &str) -> Result<T, Error> {
        let idx = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| Error::new(format!("no column `{column}` in the result")))?;
        let value = self
            .rows
            .get(row)
            .and_then(|r| r.get(idx))
            .ok_or_else(|| Error::new(format!("no row {row} in the result")))?;
        T::from_value(value).map_err(|e| Error::new(format!("column `{column}`: {e}")))
    }
}

/// The projection's own database.
///
/// In a plugin it is a handle to the host, which runs every statement inside
/// the current batch's transaction. Natively it wraps an in-memory SQLite
/// database (see [`Db::open_in_memory`]), so unit tests run the same SQL.
pub struct Db {
    /// The position of the event being applied, the one a failed
    /// [`Db::write`] is blamed on.
    position: Cell<u64>,
    /// Statements [`Db::write`] queued and not yet handed to the host.
    pending: RefCell<Pending>,
    #[cfg(not(target_family = "wasm"))]
    conn: rusqlite::Connection,
    #[cfg(not(target_family = "wasm"))]
    queue: Option<Box<dyn WriteQueue>>,
}

impl Db {
    /// Names the event being applied. The SDK's batch loop calls it; a
    /// native host driving projection code calls it too.
    #[doc(hidden)]
    pub fn set_position(&self, position: u64) {
        self.position.set(position);
    }

    /// Queues a statement of [`Db::write`] and sends the queue once it is
    /// full.
    fn queue(&self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
        let full = self.pending.borrow_mut().push(self.position.get(), sql, params);
        if full { self.flush() } else { Ok(()) }
    }
}

/// Where a host that runs projection code natively queues the statements
/// of [`Db::write`], as it does a plugin's `sql.write`. Not part of the
/// plugin API.
#[doc(hidden)]
#[cfg(not(target_family = "wasm"))]
pub trait WriteQueue {
    /// Queues the packed statements of `writes` (`sql.write-queued`).
    fn write_queued(
        &self,
        writes: crate::__private::bindings::refract::plugin::sql::QueuedWrites,
    ) -> Result<(), SqlError>;
    /// Waits until everything queued has run.
    fn drain(&self) -> Result<(), SqlError>;
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::*;
    use crate::__private::bindings::refract::plugin::sql as host;

    impl Db {
        pub(crate) fn host() -> Self {
            Db { position: Cell::new(0), pending: RefCell::default() }
        }

        /// Hands the statements [`Db::write`] queued to the host now; the
        /// SDK does so when its queue is full, before [`Db::execute`] and
        /// [`Db::query`], and at the end of each batch.
        #[doc(hidden)]
        pub fn flush(&self) -> Result<(), SqlError> {
            let mut pending = self.pending.borrow_mut();
            if pending.is_empty() {
                return Ok(());
            }
            let sent = host::write_queued(pending.writes());
            pending.clear();
            sent
        }

        /// Runs one statement that returns no rows, binding `?` placeholders
        /// to `params` in order; returns the number of rows changed.
        pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
            self.flush()?;
            host::execute(sql, params)
        }

        /// Runs one statement that returns no rows, like [`Db::execute`],
        /// but without waiting for it: the host queues it and runs queued
        /// statements in order on a thread of its own while the projection
        /// goes on with the next events, so a replay keeps SQLite and the
        /// plugin's code busy at once. Use it for writes whose changed-row
        /// count you do not need — the usual upserts and guarded updates.
        ///
        /// [`Db::execute`] and [`Db::query`] wait for the queue first (a
        /// projection always reads its own writes), and so does the end of
        /// the batch. If a queued statement fails, the batch fails at the
        /// event that queued it, with its error, and is rolled back like any
        /// failed batch; later calls return the error too, once the host has
        /// seen it. Natively, without a host, the statement runs at once.
        ///
        /// The SDK gathers queued statements and hands them to the host
        /// several at a time, so a statement costs the plugin little more
        /// than packing its parameters.
        pub fn write(&self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
            self.queue(sql, params)
        }

        /// Runs one query, binding `?` placeholders to `params` in order, and
        /// returns every row.
        pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, SqlError> {
            self.flush()?;
            host::query(sql, params).map(|r| Rows { columns: r.columns, rows: r.rows })
        }
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::*;
    use rusqlite::types::{ToSqlOutput, ValueRef};

    fn failed(e: rusqlite::Error) -> SqlError {
        SqlError::Failed(e.to_string())
    }

    fn bind(params: &[Value]) -> Vec<ToSqlOutput<'_>> {
        params
            .iter()
            .map(|v| {
                ToSqlOutput::Borrowed(match v {
                    Value::Null => ValueRef::Null,
                    Value::Integer(i) => ValueRef::Integer(*i),
                    Value::Real(r) => ValueRef::Real(*r),
                    Value::Text(s) => ValueRef::Text(s.as_bytes()),
                    Value::Blob(b) => ValueRef::Blob(b),
                })
            })
            .collect()
    }

    impl Db {
        /// Wraps a connection the caller opened, so natively compiled
        /// projection code can run on a host's database (the host's native
        /// twins in the benchmarks). Not part of the plugin API.
        #[doc(hidden)]
        pub fn from_connection(conn: rusqlite::Connection) -> Self {
            Db { position: Cell::new(0), pending: RefCell::default(), conn, queue: None }
        }

        /// Queues [`Db::write`]'s statements on `queue` instead of running
        /// them at once. Not part of the plugin API.
        #[doc(hidden)]
        pub fn with_write_queue(mut self, queue: Box<dyn WriteQueue>) -> Self {
            self.queue = Some(queue);
            self
        }

        /// Waits until every statement [`Db::write`] queued has run.
        fn drain(&self) -> Result<(), SqlError> {
            self.flush()?;
            self.queue.as_ref().map_or(Ok(()), |q| q.drain())
        }

        /// Hands the statements [`Db::write`] queued to the host's queue
        /// now; the SDK does so when its queue is full, before
        /// [`Db::execute`] and [`Db::query`], and at the end of each batch.
        #[doc(hidden)]
        pub fn flush(&self) -> Result<(), SqlError> {
            let Some(queue) = &self.queue else { return Ok(()) };
            let mut pending = self.pending.borrow_mut();
            if pending.is_empty() {
                return Ok(());
            }
            queue.write_queued(pending.take())
        }

        /// A fresh in-memory database, for unit tests of projection logic.
        pub fn open_in_memory() -> Result<Self, SqlError> {
            Ok(Db::from_connection(rusqlite::Connection::open_in_memory().map_err(failed)?))
        }

        /// Runs one statement that returns no rows, binding `?` placeholders
        /// to `params` in order; returns the number of rows changed.
        pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
            self.drain()?;
            let n = self
                .conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(bind(params))))
                .map_err(failed)?;
            Ok(n as u64)
        }

        /// Runs one statement that returns no rows, like [`Db::execute`],
        /// but without waiting for it: the host queues it and runs queued
        /// statements in order on a thread of its own while the projection
        /// goes on with the next events, so a replay keeps SQLite and the
        /// plugin's code busy at once. Use it for writes whose changed-row
        /// count you do not need — the usual upserts and guarded updates.
        ///
        /// [`Db::execute`] and [`Db::query`] wait for the queue first (a
        /// projection always reads its own writes), and so does the end of
        /// the batch. If a queued statement fails, the batch fails at the
        /// event that queued it, with its error, and is rolled back like any
        /// failed batch; later calls return the error too, once the host has
        /// seen it. Natively, without a host, the statement runs at once.
        ///
        /// The SDK gathers queued statements and hands them to the host
        /// several at a time, so a statement costs the plugin little more
        /// than packing its parameters.
        pub fn write(&self, sql: &str, params: &[Value]) -> Result<(), SqlError> {
            match &self.queue {
                Some(_) => self.queue(sql, params),
                None => self.execute(sql, params).map(drop),
            }
        }

        /// Runs one query, binding `?` placeholders to `params` in order, and
        /// returns every row.
        pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, SqlError> {
            self.drain()?;
            let mut stmt = self.conn.prepare_cached(sql).map_err(failed)?;
            let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            let n = columns.len();
            let mut rows = Vec::new();
            let mut cursor = stmt.query(rusqlite::params_from_iter(bind(params))).map_err(failed)?;
            while let Some(row) = cursor.next().map_err(failed)? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(match row.get_ref(i).map_err(failed)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::Integer(i),
                        ValueRef::Real(r) => Value::Real(r),
                        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                    });
                }
                rows.push(values);
            }
            Ok(Rows { columns, rows })
        }

        pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), SqlError> {
            self.conn.execute_batch(sql).map_err(failed)
        }
    }
}
