//! Reading a projection's tables: rows by filter, a row by key, and
//! read-only SQL. Every read runs on a read-only connection guarded against
//! writes and ATTACH.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::Value;

use super::encode::{Push, RowsWriter, Stop};
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
        return too_slow();
    }
    ApiError::bad_request(format!("SQL error: {msg}"))
}

/// 504: a query ran (or its answer was being encoded) past the time limit.
fn too_slow() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "the query ran past its time limit (reading and encoding its rows); narrow it or add a LIMIT",
    )
    .with("reason", "query_timeout")
}

/// 422: one row is larger than an answer may be.
fn row_too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        format!(
            "the row is larger than an answer may be ({max_bytes} bytes as JSON); select fewer or \
             shorter columns with POST /projections/{{name}}/query"
        ),
    )
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
        // An error reading the schema (a busy or unreadable file) is not a
        // missing table: it is answered as the error it is.
        conn.prepare_cached(TABLE_KIND)
            .and_then(|mut s| s.query_row([table], |r| r.get(0)).optional())
            .map_err(sql_error)?
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

/// The row's values from column `first` on, as a JSON object keyed by
/// `columns` (the names of those columns); 422 when it alone is larger
/// than `max_bytes`.
fn row_object(
    row: &rusqlite::Row<'_>,
    columns: &[String],
    first: usize,
    max_bytes: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut w = RowsWriter::new(max_bytes.saturating_add(2), None);
    match w.push(row, first, Some(columns)) {
        Ok(()) => {}
        Err(Push::Stop(_)) => return Err(row_too_large(max_bytes)),
        Err(Push::Sql(e)) => return Err(sql_error(e)),
    }
    let mut array = w.finish();
    // `[{…}]` → `{…}`
    array.pop();
    array.remove(0);
    Ok(array)
}

/// A table (or view) of a read model.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TableSummary {
    /// Its name.
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnSummary>,
    /// The columns of its primary key, in key order (empty: none); with
    /// one column, rows are read by key at `.../tables/{table}/{key}`.
    pub primary_key: Vec<String>,
}

/// A column of a table.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ColumnSummary {
    /// Its name.
    pub name: String,
    /// Its declared type, as written in the plugin's migration (may be
    /// empty).
    #[serde(rename = "type")]
    pub declared_type: String,
}

/// `GET /projections/{name}/tables`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TableList {
    /// The projection's tables and views, by name (not the host's own).
    pub tables: Vec<TableSummary>,
    /// The serving build's checkpoint when they were read.
    pub position: u64,
}

const LIST_TABLES: &str = "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')
    AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'refract\\_%' ESCAPE '\\' ORDER BY name";
const LIST_COLUMNS: &str = "SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid";

/// The tables and views of a projection's read model, with their columns.
#[utoipa::path(
    get,
    path = "/projections/{name}/tables",
    operation_id = "list_tables",
    tag = "read models",
    params(("name" = String, Path, description = "The projection")),
    responses(
        (status = 200, description = "Its tables", body = TableList),
        (status = 404, description = "No such projection", body = super::schema::ErrorBody),
    )
)]
pub async fn tables(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<TableList>, ApiError> {
    let p = caught_up(&app, &name, None, None).await?;
    let position = p.checkpoint();
    let tables = with_conn(&p, |conn| {
        let mut stmt = conn.prepare_cached(LIST_TABLES).map_err(sql_error)?;
        let names: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(sql_error)?;
        let mut columns = conn.prepare_cached(LIST_COLUMNS).map_err(sql_error)?;
        names
            .into_iter()
            .map(|(name, kind)| {
                let mut cols: Vec<(String, String, i64)> = columns
                    .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(sql_error)?;
                let list = cols
                    .iter()
                    .map(|(n, t, _)| ColumnSummary { name: n.clone(), declared_type: t.clone() })
                    .collect();
                cols.retain(|c| c.2 > 0);
                cols.sort_by_key(|c| c.2);
                Ok(TableSummary {
                    name,
                    kind,
                    columns: list,
                    primary_key: cols.into_iter().map(|c| c.0).collect(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(axum::Json(TableList { tables, position }))
}

/// Rows of a projection's table, filtered by column equality
/// (`?column=value`, any of the table's columns, repeatable), a page at a
/// time. A page ends early when its rows reach the answer's byte bound;
/// `next_offset` then continues after them.
#[utoipa::path(
    get,
    path = "/projections/{name}/tables/{table}",
    operation_id = "read_rows",
    tag = "read models",
    params(
        ("name" = String, Path, description = "The projection"),
        ("table" = String, Path, description = "One of its tables"),
        ("order_by" = Option<String>, Query, description = "A column to order by (default: the primary key)"),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc`", pattern = "^(asc|desc)$"),
        ("limit" = Option<u64>, Query, description = "Most rows (default 100)", minimum = 1, maximum = 1000),
        ("offset" = Option<u64>, Query, description = "Rows to skip", minimum = 0),
        ("min_position" = Option<u64>, Query, description = "Wait until the projection has applied this position (read-your-writes)", minimum = 0),
        ("wait_ms" = Option<u64>, Query, description = "How long to wait for `min_position` (default 5000; capped by the server)", minimum = 0),
    ),
    responses(
        (status = 200, description = "A page of rows", body = super::schema::RowsPage),
        (status = 404, description = "No such projection or table", body = super::schema::ErrorBody),
        (status = 422, description = "A single row is larger than an answer may be", body = super::schema::ErrorBody),
        (status = 504, description = "The projection has not reached `min_position` in time", body = super::schema::ErrorBody),
    )
)]
pub async fn rows(
    State(app): State<Arc<App>>,
    Path((name, table)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<axum::response::Response, ApiError> {
    let num = |k: &str| -> Result<Option<u64>, ApiError> {
        params
            .get(k)
            .map(|v| super::number::parse(v).map_err(|e| ApiError::bad_request(format!("{k}: {e}"))))
            .transpose()
    };
    let limit = super::page_limit(num("limit")?, DEFAULT_PAGE, MAX_PAGE)?;
    let offset = crate::db::sqlite_int(num("offset")?.unwrap_or(0));
    let descending = match params.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(ApiError::bad_request(format!("order must be asc or desc, got {o:?}"))),
    };
    let p = caught_up(&app, &name, num("min_position")?, num("wait_ms")?).await?;
    let position = p.checkpoint();
    let max_bytes = app.http.max_answer_bytes;
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
        let mut rows = stmt.query(rusqlite::params_from_iter(values)).map_err(sql_error)?;
        // The page stops early at the byte budget; `next_offset` then
        // continues after the rows it holds.
        let mut w = RowsWriter::new(max_bytes, None);
        let mut more = false;
        while let Some(r) = rows.next().map_err(sql_error)? {
            if w.rows() as u64 == limit {
                more = true;
                break;
            }
            match w.push(r, 0, Some(&columns)) {
                Ok(()) => {}
                Err(Push::Stop(_)) if w.rows() == 0 => return Err(row_too_large(max_bytes)),
                Err(Push::Stop(_)) => {
                    more = true;
                    break;
                }
                Err(Push::Sql(e)) => return Err(sql_error(e)),
            }
        }
        let n = w.rows() as i64;
        Ok((w.finish(), more.then_some(offset.saturating_add(n))))
    })
    .await?;
    let (rows, next_offset) = rows;
    let mut body = Vec::with_capacity(rows.len() + 64);
    body.extend_from_slice(b"{\"rows\":");
    body.extend_from_slice(&rows);
    match next_offset {
        Some(n) => {
            let _ = write!(body, ",\"next_offset\":{n}");
        }
        None => body.extend_from_slice(b",\"next_offset\":null"),
    }
    let _ = write!(body, ",\"position\":{position}}}");
    Ok(json_body(body))
}

/// A response of JSON bytes written by hand.
fn json_body(body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait until the projection has applied this position
    /// (read-your-writes).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    min_position: Option<u64>,
    /// How long to wait for `min_position`, in ms (default 5000; capped by
    /// the server).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    wait_ms: Option<u64>,
}

/// One row of a table by its single-column primary key.
#[utoipa::path(
    get,
    path = "/projections/{name}/tables/{table}/{key}",
    operation_id = "read_row",
    tag = "read models",
    params(
        ("name" = String, Path, description = "The projection"),
        ("table" = String, Path, description = "One of its tables, with a single-column primary key"),
        ("key" = String, Path, description = "The row's primary key"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The row", body = super::schema::RowAnswer),
        (status = 400, description = "The table's primary key is not a single column", body = super::schema::ErrorBody),
        (status = 404, description = "No such projection, table or row", body = super::schema::ErrorBody),
        (status = 422, description = "The row is larger than an answer may be", body = super::schema::ErrorBody),
        (status = 504, description = "The projection has not reached `min_position` in time", body = super::schema::ErrorBody),
    )
)]
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
            let max_bytes = app.http.max_answer_bytes;
            let row =
                with_conn_inline(&serving.readers, |conn| read_row(conn, &name, &table, &key, max_bytes))?;
            let row = axum::body::Bytes::from(row);
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
fn read_row(
    conn: &Connection,
    name: &str,
    table: &str,
    key: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, ApiError> {
    if let Some((version, info)) = cached_info(conn, table)
        && let Ok(Some((v, row))) = select_row(conn, name, table, &info, key, max_bytes)
        && v == version
    {
        return Ok(row);
    }
    let info = table_info(conn, name, table)?;
    match select_row(conn, name, table, &info, key, max_bytes)? {
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
    max_bytes: usize,
) -> Result<Option<(i64, Vec<u8>)>, ApiError> {
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
    Ok(Some((version, row_object(r, &columns, 1, max_bytes)?)))
}

/// Body of `POST /projections/{name}/query`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// One read-only SQL statement (SQLite), with `?` placeholders.
    sql: String,
    /// One value per placeholder, in order: null, booleans (as 0 and 1),
    /// integers that fit 64 signed bits, reals, strings; arrays and objects
    /// are bound as their JSON text.
    #[serde(default)]
    #[schema(value_type = Vec<serde_json::Value>)]
    params: Vec<Value>,
    /// Most rows to return (capped by the server, 10 000 by default).
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    max_rows: Option<u64>,
    /// Most bytes of rows to return (capped by the server, 16 MiB by
    /// default).
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    max_bytes: Option<u64>,
    /// Wait until the projection has applied this position.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    min_position: Option<u64>,
    /// How long to wait for `min_position`, in ms.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "super::number::optional")]
    wait_ms: Option<u64>,
}

fn bind(v: &Value) -> Result<rusqlite::types::Value, ApiError> {
    use rusqlite::types::Value as S;
    Ok(match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.is_f64(), n.as_f64()) {
            (Some(i), _, _) => S::Integer(i),
            (None, true, Some(f)) => S::Real(f),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "parameter {n} does not fit SQLite's integers (-2^63 to 2^63-1); send it as a string"
                )));
            }
        },
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    })
}

/// Runs one read-only SQL statement on a projection's database, on a
/// read-only connection, within a time limit (reading and encoding its
/// rows) and a row and byte bound (`truncated` says whether one cut the
/// answer short). Writes, `ATTACH`, transaction control and PRAGMA changes
/// are refused with 400, as are SQL errors and a `params` count that does
/// not match the statement's placeholders.
#[utoipa::path(
    post,
    path = "/projections/{name}/query",
    operation_id = "query",
    tag = "read models",
    params(("name" = String, Path, description = "The projection")),
    request_body = QueryBody,
    responses(
        (status = 200, description = "Columns and rows", body = super::schema::QueryAnswer),
        (status = 400, description = "Not a read-only statement, an SQL error, or `params` that do not match it", body = super::schema::ErrorBody),
        (status = 404, description = "No such projection", body = super::schema::ErrorBody),
        (status = 504, description = "The query ran past its time limit, or the projection has not reached `min_position` in time", body = super::schema::ErrorBody),
    )
)]
pub async fn query(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Json(body): Json<QueryBody>,
) -> Result<axum::response::Response, ApiError> {
    let p = caught_up(&app, &name, body.min_position, body.wait_ms).await?;
    let position = p.checkpoint();
    let max_rows = body.max_rows.unwrap_or(app.http.query_max_rows).min(app.http.query_max_rows) as usize;
    let max_bytes =
        body.max_bytes.map_or(app.http.max_answer_bytes, |b| (b as usize).min(app.http.max_answer_bytes));
    let timeout = app.http.query_timeout;
    let params = body.params.iter().map(bind).collect::<Result<Vec<_>, _>>()?;
    let limits = Limits { max_rows, max_bytes, deadline: Instant::now() + timeout };
    let answer = with_conn(&p, move |conn| run_query(conn, &body.sql, params, limits)).await?;
    let mut out = Vec::with_capacity(answer.rows.len() + 128);
    out.extend_from_slice(b"{\"columns\":");
    let _ = serde_json::to_writer(&mut out, &answer.columns);
    out.extend_from_slice(b",\"rows\":");
    out.extend_from_slice(&answer.rows);
    let truncated_by = match answer.truncated_by {
        None => "null",
        Some(Limit::Rows) => "\"max_rows\"",
        Some(Limit::Bytes) => "\"max_bytes\"",
    };
    let truncated = answer.truncated_by.is_some();
    let _ =
        write!(out, ",\"truncated\":{truncated},\"truncated_by\":{truncated_by},\"position\":{position}}}");
    Ok(json_body(out))
}

/// Bounds of one query's answer.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_rows: usize,
    max_bytes: usize,
    /// Reading and encoding the rows must be done by then.
    deadline: Instant,
}

/// Which bound cut an answer short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Rows,
    Bytes,
}

/// A query's answer: its columns and the JSON array of its rows.
struct Answer {
    columns: Vec<String>,
    rows: Vec<u8>,
    truncated_by: Option<Limit>,
}

fn run_query(
    conn: &mut Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    limits: Limits,
) -> Result<Answer, ApiError> {
    if sql.trim().is_empty() {
        return Err(ApiError::bad_request("sql is empty: send one read-only statement"));
    }
    crate::plugin::guard::precheck(sql).map_err(ApiError::bad_request)?;
    let deadline = limits.deadline;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline)).map_err(sql_error)?;
    let result = read_rows(conn, sql, params, limits);
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    result
}

fn read_rows(
    conn: &Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    limits: Limits,
) -> Result<Answer, ApiError> {
    let mut stmt = conn.prepare(sql).map_err(sql_error)?;
    if !stmt.readonly() {
        return Err(ApiError::bad_request("only read-only statements are allowed; this one writes"));
    }
    let expected = stmt.parameter_count();
    if params.len() != expected {
        return Err(ApiError::bad_request(format!(
            "the statement has {expected} parameter(s) and params has {}; send one value per `?`",
            params.len()
        )));
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(sql_error)?;
    let mut w = RowsWriter::new(limits.max_bytes, Some(limits.deadline));
    let mut truncated_by = None;
    while let Some(r) = rows.next().map_err(sql_error)? {
        if w.rows() == limits.max_rows {
            truncated_by = Some(Limit::Rows);
            break;
        }
        match w.push(r, 0, None) {
            Ok(()) => {}
            Err(Push::Stop(Stop::Bytes)) => {
                truncated_by = Some(Limit::Bytes);
                break;
            }
            Err(Push::Stop(Stop::Deadline)) => return Err(too_slow()),
            Err(Push::Sql(e)) => return Err(sql_error(e)),
        }
    }
    Ok(Answer { columns, rows: w.finish(), truncated_by })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Synchronous};
    use crate::plugin::guard::{Policy, SqlGuard};
    use axum::http::StatusCode;
    use serde_json::json;

    #[test]
    fn a_row_read_by_key_follows_the_schema_on_the_same_connection() {
        let dir = db::scratch_dir("tables");
        let path = dir.join("read.db");
        let w = db::open_rw(&path, Synchronous::Normal).unwrap();
        w.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, a INTEGER); INSERT INTO t VALUES ('k', 1);")
            .unwrap();
        let mut r = db::open_ro(&path).unwrap();
        SqlGuard::install(&mut r, Policy::ReadOnly).unwrap();
        let read = |key: &str| {
            read_row(&r, "p", "t", key, 1 << 20).map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        };

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
