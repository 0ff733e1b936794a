//! Reading a projection's tables: rows by filter, a row by key, and
//! read-only SQL. Every read runs on a read-only connection guarded against
//! writes and ATTACH.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::projections::caught_up;
use crate::App;
use crate::projection::Projection;

/// Rows one table read returns by default, and at most.
const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 1000;

/// Query parameters of table reads that are not column filters.
const RESERVED: &[&str] = &["limit", "offset", "order_by", "order", "min_position", "wait_ms"];

/// Runs `f` on a connection of `pool` on the calling task: for point
/// reads by primary key, which take microseconds — less than handing them
/// to another thread. Anything that scans stays on [`with_conn`].
fn with_conn_inline<R>(
    pool: &crate::db::ReadPool,
    f: impl FnOnce(&mut Connection) -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    pool.with(f).map_err(|e| ApiError::internal(format!("cannot open the projection database: {e}")))?
}

/// Runs `f` on a read connection of `p` off the async runtime.
async fn with_conn<R: Send + 'static>(
    p: &Projection,
    f: impl FnOnce(&mut Connection) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    let pool = p.readers().clone();
    tokio::task::spawn_blocking(move || pool.with(f))
        .await
        .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot open the projection database: {e}")))?
}

fn sql_error(e: rusqlite::Error) -> ApiError {
    let msg = e.to_string();
    if msg.contains("not authorized") {
        return ApiError::bad_request(
            "only read-only SELECT statements on this projection's database are allowed \
             (no writes, ATTACH, transaction control or PRAGMA changes)",
        );
    }
    if msg.contains("interrupted") {
        return ApiError::bad_request("the query ran past the time limit; narrow it or add a LIMIT");
    }
    ApiError::bad_request(format!("SQL error: {msg}"))
}

/// A column value as JSON: integers and reals as numbers, text as strings,
/// blobs as lowercase hex strings.
pub fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(r) => serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect::<String>().into(),
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A user table's columns and primary key, or 404.
struct TableInfo {
    columns: Vec<String>,
    primary_key: Vec<String>,
    has_rowid: bool,
    /// With a single-column primary key, the statement reading a row by
    /// it (see [`select_row`]).
    by_key: Option<String>,
}

const TABLE_KIND: &str = "SELECT type FROM sqlite_master WHERE name = ?1 AND type IN ('table', 'view')";
const TABLE_COLUMNS: &str = "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid";

/// Table descriptions by database file and table, each with the schema
/// version it was read at: a table's columns are read once per schema
/// change, not per request. Looked up by borrowed path and name, so a
/// read allocates nothing to find its description.
type InfoCache = std::collections::HashMap<PathBuf, std::collections::HashMap<String, (i64, Arc<TableInfo>)>>;
static TABLE_INFO: std::sync::Mutex<Option<InfoCache>> = std::sync::Mutex::new(None);
/// Databases kept before the cache starts over (old builds' entries go
/// too).
const TABLE_INFO_DATABASES: usize = 4096;

/// The cached description of `table` in `conn`'s database and the schema
/// version it was read at, unchecked.
fn cached_info(conn: &Connection, table: &str) -> Option<(i64, Arc<TableInfo>)> {
    let cache = TABLE_INFO.lock().unwrap_or_else(|p| p.into_inner());
    cache.as_ref()?.get(std::path::Path::new(conn.path().unwrap_or_default()))?.get(table).cloned()
}

/// The description of `table` at the database's current schema version.
fn table_info(conn: &Connection, projection: &str, table: &str) -> Result<Arc<TableInfo>, ApiError> {
    let version: i64 = conn
        .prepare_cached("PRAGMA schema_version")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql_error)?;
    if let Some((v, info)) = cached_info(conn, table)
        && v == version
    {
        return Ok(info);
    }
    let info = Arc::new(read_table_info(conn, projection, table)?);
    let mut cache = TABLE_INFO.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(InfoCache::new);
    let path = PathBuf::from(conn.path().unwrap_or_default());
    if cache.len() >= TABLE_INFO_DATABASES && !cache.contains_key(&path) {
        cache.clear();
    }
    cache.entry(path).or_default().insert(table.to_owned(), (version, info.clone()));
    Ok(info)
}

fn read_table_info(conn: &Connection, projection: &str, table: &str) -> Result<TableInfo, ApiError> {
    let hidden = table.starts_with("refract_") || table.starts_with("sqlite_");
    let kind: Option<String> = if hidden {
        None
    } else {
        conn.prepare_cached(TABLE_KIND).and_then(|mut s| s.query_row([table], |r| r.get(0))).ok()
    };
    let Some(kind) = kind else {
        return Err(ApiError::not_found(format!("projection {projection} has no table {table:?}")));
    };
    let mut stmt = conn.prepare_cached(TABLE_COLUMNS).map_err(sql_error)?;
    let mut cols: Vec<(String, i64)> = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let columns = cols.iter().map(|(c, _)| c.clone()).collect();
    cols.retain(|(_, pk)| *pk > 0);
    cols.sort_by_key(|(_, pk)| *pk);
    let primary_key: Vec<String> = cols.into_iter().map(|(c, _)| c).collect();
    let by_key = match primary_key.as_slice() {
        [pk] => Some(format!(
            "SELECT (SELECT schema_version FROM pragma_schema_version), * FROM {} WHERE {} = ?1",
            quote(table),
            quote(pk)
        )),
        _ => None,
    };
    Ok(TableInfo { columns, primary_key, has_rowid: kind == "table", by_key })
}

/// The row's values from column `first` on, as an object keyed by
/// `columns` (the names of those columns).
fn row_object(row: &rusqlite::Row<'_>, columns: &[String], first: usize) -> rusqlite::Result<Value> {
    let mut m = Map::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        m.insert(c.clone(), to_json(row.get_ref(first + i)?));
    }
    Ok(Value::Object(m))
}

pub async fn rows(
    State(app): State<Arc<App>>,
    Path((name, table)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    let num = |k: &str| -> Result<Option<u64>, ApiError> {
        params
            .get(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("{k} must be a non-negative integer, got {v:?}"))
                })
            })
            .transpose()
    };
    let limit = num("limit")?.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let offset = crate::db::sqlite_int(num("offset")?.unwrap_or(0));
    let descending = match params.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(ApiError::bad_request(format!("order must be asc or desc, got {o:?}"))),
    };
    let p = caught_up(&app, &name, num("min_position")?, num("wait_ms")?).await?;
    let position = p.checkpoint();
    let order_by = params.get("order_by").cloned();
    let filters: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())).collect();
    let rows = with_conn(&p, move |conn| {
        let info = table_info(conn, &name, &table)?;
        let unknown = |c: &str| {
            ApiError::bad_request(format!(
                "table {table} has no column {c:?}; its columns are {}",
                info.columns.join(", ")
            ))
        };
        let mut sql = format!("SELECT * FROM {}", quote(&table));
        for (i, (col, _)) in filters.iter().enumerate() {
            if !info.columns.contains(col) {
                return Err(unknown(col));
            }
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(&format!("{} = ?{}", quote(col), i + 1));
        }
        let dir = if descending { "DESC" } else { "ASC" };
        let order: Vec<String> = match &order_by {
            Some(c) if info.columns.contains(c) => vec![quote(c)],
            Some(c) => return Err(unknown(c)),
            None if !info.primary_key.is_empty() => info.primary_key.iter().map(|c| quote(c)).collect(),
            None if info.has_rowid => vec!["rowid".into()],
            None => Vec::new(),
        };
        if !order.is_empty() {
            let order: Vec<String> = order.into_iter().map(|c| format!("{c} {dir}")).collect();
            sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        sql.push_str(&format!(" LIMIT {} OFFSET {offset}", limit + 1));
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let values = filters.iter().map(|(_, v)| v.as_str());
        let mut out: Vec<Value> = stmt
            .query_map(rusqlite::params_from_iter(values), |r| row_object(r, &columns, 0))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        let more = out.len() as u64 > limit;
        out.truncate(limit as usize);
        Ok((out, more))
    })
    .await?;
    let (rows, more) = rows;
    let next_offset = more.then_some(offset.saturating_add(limit as i64));
    Ok(axum::Json(json!({ "rows": rows, "next_offset": next_offset, "position": position })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    min_position: Option<u64>,
    wait_ms: Option<u64>,
}

pub async fn row(
    State(app): State<Arc<App>>,
    Path((name, table, key)): Path<(String, String, String)>,
    Query(q): Query<WaitQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let p = caught_up(&app, &name, q.min_position, q.wait_ms).await?;
    let position = p.checkpoint();
    let serving = p.serving();
    let cached = app.http.row_cache.then(|| serving.rows.get(serving.checkpoint, &table, &key)).flatten();
    let row = match cached {
        Some(row) => row,
        None => {
            let row = with_conn_inline(&serving.readers, |conn| read_row(conn, &name, &table, &key))?;
            let row = axum::body::Bytes::from(
                serde_json::to_vec(&row).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            if app.http.row_cache {
                serving.rows.put(serving.checkpoint, &table, &key, row.clone());
            }
            row
        }
    };
    // `{"position":N,"row":{…}}`, the row spliced in as it was serialized.
    let mut body = Vec::with_capacity(row.len() + 40);
    // Writing into a Vec cannot fail.
    let _ = write!(body, "{{\"position\":{position},\"row\":");
    body.extend_from_slice(&row);
    body.push(b'}');
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The row of `table` whose single-column primary key is `key`, as JSON.
///
/// With the table's description cached, this is one read transaction: the
/// statement reads the schema version beside the row, and the row is kept
/// only if the description is of that version. Otherwise (first read, a
/// changed schema, no such row, an error) the version is read first and
/// the description refreshed, which is a second transaction.
fn read_row(conn: &Connection, name: &str, table: &str, key: &str) -> Result<Value, ApiError> {
    if let Some((version, info)) = cached_info(conn, table)
        && let Ok(Some((v, row))) = select_row(conn, name, table, &info, key)
        && v == version
    {
        return Ok(row);
    }
    let info = table_info(conn, name, table)?;
    match select_row(conn, name, table, &info, key)? {
        Some((_, row)) => Ok(row),
        None => Err(ApiError::not_found(format!(
            "table {table} has no row with {} = {key:?}",
            info.primary_key.join(", ")
        ))),
    }
}

/// The row of `table` with `key` as its primary key described by `info`,
/// and the schema version it was read at.
fn select_row(
    conn: &Connection,
    name: &str,
    table: &str,
    info: &TableInfo,
    key: &str,
) -> Result<Option<(i64, Value)>, ApiError> {
    let Some(sql) = &info.by_key else {
        return Err(ApiError::bad_request(format!(
            "table {table} has no single-column primary key; filter with GET /projections/{name}/tables/{table}?column=value"
        )));
    };
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let mut rows = stmt.query([key]).map_err(sql_error)?;
    let Some(r) = rows.next().map_err(sql_error)? else { return Ok(None) };
    // The names as of this step: SQLite prepares the statement again if
    // the schema changed since it was cached.
    let columns: Vec<String> = r.as_ref().column_names().skip(1).map(str::to_owned).collect();
    let version: i64 = r.get(0).map_err(sql_error)?;
    Ok(Some((version, row_object(r, &columns, 1).map_err(sql_error)?)))
}

/// Body of `POST /projections/{name}/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    max_rows: Option<u64>,
    min_position: Option<u64>,
    wait_ms: Option<u64>,
}

fn bind(v: &Value) -> Result<rusqlite::types::Value, ApiError> {
    use rusqlite::types::Value as S;
    Ok(match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => S::Integer(i),
            (None, Some(f)) => S::Real(f),
            _ => return Err(ApiError::bad_request(format!("parameter {n} does not fit SQLite's numbers"))),
        },
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    })
}

pub async fn query(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Json(body): Json<QueryBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let p = caught_up(&app, &name, body.min_position, body.wait_ms).await?;
    let position = p.checkpoint();
    let max_rows = body.max_rows.unwrap_or(app.http.query_max_rows).min(app.http.query_max_rows) as usize;
    let timeout = app.http.query_timeout;
    let params = body.params.iter().map(bind).collect::<Result<Vec<_>, _>>()?;
    let (columns, rows, truncated) =
        with_conn(&p, move |conn| run_query(conn, &body.sql, params, max_rows, timeout)).await?;
    Ok(axum::Json(json!({ "columns": columns, "rows": rows, "truncated": truncated, "position": position })))
}

type QueryResult = (Vec<String>, Vec<Value>, bool);

fn run_query(
    conn: &mut Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    max_rows: usize,
    timeout: Duration,
) -> Result<QueryResult, ApiError> {
    crate::plugin::guard::precheck(sql).map_err(ApiError::bad_request)?;
    let deadline = Instant::now() + timeout;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline)).map_err(sql_error)?;
    let result = read_rows(conn, sql, params, max_rows);
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    result
}

fn read_rows(
    conn: &Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    max_rows: usize,
) -> Result<QueryResult, ApiError> {
    let mut stmt = conn.prepare(sql).map_err(sql_error)?;
    if !stmt.readonly() {
        return Err(ApiError::bad_request("only read-only statements are allowed; this one writes"));
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let result = (|| {
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            if out.len() == max_rows {
                return Ok((out, true));
            }
            let values: Vec<Value> =
                (0..columns.len()).map(|i| r.get_ref(i).map(to_json)).collect::<Result<_, _>>()?;
            out.push(Value::Array(values));
        }
        Ok((out, false))
    })();
    let (rows, truncated) = result.map_err(sql_error)?;
    Ok((columns, rows, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Synchronous};
    use crate::plugin::guard::{Policy, SqlGuard};
    use axum::http::StatusCode;

    #[test]
    fn a_row_read_by_key_follows_the_schema_on_the_same_connection() {
        let dir = db::scratch_dir("tables");
        let path = dir.join("read.db");
        let w = db::open_rw(&path, Synchronous::Normal).unwrap();
        w.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, a INTEGER); INSERT INTO t VALUES ('k', 1);")
            .unwrap();
        let mut r = db::open_ro(&path).unwrap();
        SqlGuard::install(&mut r, Policy::ReadOnly).unwrap();
        let read = |key: &str| read_row(&r, "p", "t", key);

        // The first read describes the table; the second uses the cached
        // description.
        assert_eq!(read("k").unwrap(), json!({ "id": "k", "a": 1 }));
        assert_eq!(read("k").unwrap(), json!({ "id": "k", "a": 1 }));

        // A column added: the cached statement is prepared again and the
        // row has it.
        w.execute_batch("ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'").unwrap();
        assert_eq!(read("k").unwrap(), json!({ "id": "k", "a": 1, "b": "x" }));

        // The key moved to another column while the old one is still
        // there: a read by the old key must not find the row through it.
        w.execute_batch(
            "DROP TABLE t; CREATE TABLE t (id TEXT, name TEXT PRIMARY KEY); INSERT INTO t VALUES ('k', 'n');",
        )
        .unwrap();
        let missing = read("k").unwrap_err();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(read("n").unwrap(), json!({ "id": "k", "name": "n" }));
        assert_eq!(read("n").unwrap(), json!({ "id": "k", "name": "n" }));

        // A key of two columns, then no table at all.
        w.execute_batch("DROP TABLE t; CREATE TABLE t (x TEXT, y TEXT, PRIMARY KEY (x, y)); INSERT INTO t VALUES ('n', 'n');")
            .unwrap();
        assert_eq!(read("n").unwrap_err().status(), StatusCode::BAD_REQUEST);
        w.execute_batch("DROP TABLE t").unwrap();
        assert_eq!(read("n").unwrap_err().status(), StatusCode::NOT_FOUND);
        drop((r, w));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
