//! SQL on the projection's own database.

use std::fmt;

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
    #[cfg(not(target_family = "wasm"))]
    conn: rusqlite::Connection,
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
            Db {}
        }

        /// Runs one statement that returns no rows, binding `?` placeholders
        /// to `params` in order; returns the number of rows changed.
        pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
            host::execute(sql, params)
        }

        /// Runs one query, binding `?` placeholders to `params` in order, and
        /// returns every row.
        pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, SqlError> {
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
            Db { conn }
        }

        /// A fresh in-memory database, for unit tests of projection logic.
        pub fn open_in_memory() -> Result<Self, SqlError> {
            Ok(Db { conn: rusqlite::Connection::open_in_memory().map_err(failed)? })
        }

        /// Runs one statement that returns no rows, binding `?` placeholders
        /// to `params` in order; returns the number of rows changed.
        pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, SqlError> {
            let n = self
                .conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(bind(params))))
                .map_err(failed)?;
            Ok(n as u64)
        }

        /// Runs one query, binding `?` placeholders to `params` in order, and
        /// returns every row.
        pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, SqlError> {
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
