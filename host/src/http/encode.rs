//! Rows of a read model written straight into a response body as JSON,
//! within a byte budget and a deadline: what a read returns is bounded in
//! memory and time whatever the rows hold (a `zeroblob(50000000)` is
//! refused before it is hex-encoded, not after).

use std::io::Write as _;
use std::time::Instant;

use rusqlite::types::ValueRef;

/// Why rows stopped being added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The next row would take the body past its byte budget.
    Bytes,
    /// The deadline passed while rows were being read or encoded.
    Deadline,
}

/// A JSON array of rows being written, each row an array of values or an
/// object keyed by column name.
pub struct RowsWriter {
    buf: Vec<u8>,
    max_bytes: usize,
    deadline: Option<Instant>,
    rows: usize,
}

impl RowsWriter {
    /// An empty array that may grow to `max_bytes`, written until
    /// `deadline`.
    pub fn new(max_bytes: usize, deadline: Option<Instant>) -> Self {
        let mut buf = Vec::with_capacity(max_bytes.min(16 << 10));
        buf.push(b'[');
        Self { buf, max_bytes, deadline, rows: 0 }
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds `row` (its columns from `first` on) as an array of values, or,
    /// with `names`, as an object keyed by them. On `Err`, nothing of the
    /// row is kept.
    pub fn push(
        &mut self,
        row: &rusqlite::Row<'_>,
        first: usize,
        names: Option<&[String]>,
    ) -> Result<(), Push> {
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Err(Push::Stop(Stop::Deadline));
        }
        let start = self.buf.len();
        let written = self.write_row(row, first, names);
        let over = self.buf.len() + 1 > self.max_bytes;
        match written {
            Ok(()) if !over => {
                self.rows += 1;
                Ok(())
            }
            Ok(()) => {
                self.buf.truncate(start);
                Err(Push::Stop(Stop::Bytes))
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    fn write_row(
        &mut self,
        row: &rusqlite::Row<'_>,
        first: usize,
        names: Option<&[String]>,
    ) -> Result<(), Push> {
        let n = names.map_or_else(|| row.as_ref().column_count().saturating_sub(first), <[String]>::len);
        if self.rows > 0 {
            self.buf.push(b',');
        }
        self.buf.push(if names.is_some() { b'{' } else { b'[' });
        for i in 0..n {
            if i > 0 {
                self.buf.push(b',');
            }
            if let Some(names) = names {
                write_str(&mut self.buf, names[i].as_bytes());
                self.buf.push(b':');
            }
            let value = row.get_ref(first + i).map_err(Push::Sql)?;
            // The least the value takes encoded: refused before it is.
            let least = match value {
                ValueRef::Text(t) => t.len() + 2,
                ValueRef::Blob(b) => 2 * b.len() + 2,
                _ => 0,
            };
            if self.buf.len() + least + 1 > self.max_bytes {
                return Err(Push::Stop(Stop::Bytes));
            }
            write_value(&mut self.buf, value);
        }
        self.buf.push(if names.is_some() { b'}' } else { b']' });
        Ok(())
    }

    /// The array's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(b']');
        self.buf
    }
}

/// Why a row was not added.
#[derive(Debug)]
pub enum Push {
    /// A bound was reached.
    Stop(Stop),
    /// Reading the row failed.
    Sql(rusqlite::Error),
}

/// A column value as JSON: integers and reals as numbers (a real that is
/// not finite as null), text as a string, a blob as a lowercase hex string.
pub fn write_value(buf: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => buf.extend_from_slice(b"null"),
        ValueRef::Integer(i) => {
            let _ = write!(buf, "{i}");
        }
        ValueRef::Real(r) if r.is_finite() => {
            let _ = serde_json::to_writer(&mut *buf, &r);
        }
        ValueRef::Real(_) => buf.extend_from_slice(b"null"),
        ValueRef::Text(t) => write_str(buf, t),
        ValueRef::Blob(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.reserve(2 * b.len() + 2);
            buf.push(b'"');
            for x in b {
                buf.push(HEX[usize::from(x >> 4)]);
                buf.push(HEX[usize::from(x & 15)]);
            }
            buf.push(b'"');
        }
    }
}

/// A JSON string of `text` (SQLite text that is not UTF-8 is shown with
/// replacement characters).
fn write_str(buf: &mut Vec<u8>, text: &[u8]) {
    let _ = serde_json::to_writer(&mut *buf, &String::from_utf8_lossy(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(sql: &str, max_bytes: usize, names: bool) -> (String, usize, Option<Stop>) {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([]).unwrap();
        let mut w = RowsWriter::new(max_bytes, None);
        let mut stop = None;
        while let Some(r) = rows.next().unwrap() {
            match w.push(r, 0, names.then_some(columns.as_slice())) {
                Ok(()) => {}
                Err(Push::Stop(s)) => {
                    stop = Some(s);
                    break;
                }
                Err(Push::Sql(e)) => panic!("{e}"),
            }
        }
        let n = w.rows();
        (String::from_utf8(w.finish()).unwrap(), n, stop)
    }

    #[test]
    fn values_are_encoded_as_the_api_documents() {
        let (json, n, stop) = rows_of(
            "SELECT 1, 9.600000000000001, 'a\"b', x'00ff', NULL, 1e999, 9223372036854775807",
            1 << 20,
            false,
        );
        assert_eq!(json, r#"[[1,9.600000000000001,"a\"b","00ff",null,null,9223372036854775807]]"#);
        assert_eq!((n, stop), (1, None));
        let (json, _, _) = rows_of("SELECT 1 AS a, 'x' AS \"b\"\"c\"", 1 << 20, true);
        assert_eq!(json, r#"[{"a":1,"b\"c":"x"}]"#);
    }

    #[test]
    fn a_row_past_the_budget_is_left_out_before_it_is_encoded() {
        let sql = "SELECT zeroblob(1000) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)";
        // Two rows of 2 002 bytes each fit in 4 100, the third does not.
        let (json, n, stop) = rows_of(sql, 4100, false);
        assert_eq!((n, stop), (2, Some(Stop::Bytes)));
        assert!(json.len() <= 4100, "{}", json.len());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap().as_array().unwrap().len(), 2);
        let (json, n, _) = rows_of("SELECT zeroblob(50000000)", 1 << 20, false);
        assert_eq!((json.as_str(), n), ("[]", 0));
    }
}
