//! The parameters of `queued-writes` (`wit/sql.wit`), read in place: a
//! queued statement's values are bound straight from the bytes the plugin
//! sent, without a `Value` or a `String` per parameter.

use rusqlite::Statement;
use rusqlite::types::{ToSqlOutput, ValueRef};

/// Tags of the parameter encoding.
const NULL: u8 = 0;
const INTEGER: u8 = 1;
const REAL: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

/// Why a statement's parameters could not be bound.
#[derive(Debug, PartialEq)]
pub enum BindError {
    /// The bytes do not follow the encoding; says where and how.
    Malformed(String),
    /// SQLite refused a value, or the count does not fit the statement.
    Sql(rusqlite::Error),
}

/// A cursor over the `params` bytes of one `queued-writes`.
pub struct Params<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Params<'a> {
    /// Starts at the first statement's parameters.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BindError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            BindError::Malformed(format!(
                "{n} bytes wanted at byte {} of {}, past the end",
                self.at,
                self.bytes.len()
            ))
        })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, BindError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, BindError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// The next parameter.
    fn value(&mut self) -> Result<ValueRef<'a>, BindError> {
        let at = self.at;
        let tag = self.take(1)?[0];
        Ok(match tag {
            NULL => ValueRef::Null,
            INTEGER => ValueRef::Integer(self.u64()? as i64),
            REAL => ValueRef::Real(f64::from_bits(self.u64()?)),
            TEXT | BLOB => {
                let len = self.u32()? as usize;
                let bytes = self.take(len)?;
                if tag == BLOB {
                    ValueRef::Blob(bytes)
                } else {
                    let text = std::str::from_utf8(bytes).map_err(|e| {
                        BindError::Malformed(format!("the text at byte {at} is not UTF-8: {e}"))
                    })?;
                    ValueRef::Text(text.as_bytes())
                }
            }
            other => return Err(BindError::Malformed(format!("unknown parameter tag {other} at byte {at}"))),
        })
    }

    /// Binds the next statement's parameters to `stmt`, checking that their
    /// number is the one `stmt` has.
    pub fn bind(&mut self, stmt: &mut Statement<'_>) -> Result<(), BindError> {
        let n = self.u32()? as usize;
        let wanted = stmt.parameter_count();
        if n != wanted {
            return Err(BindError::Sql(rusqlite::Error::InvalidParameterCount(n, wanted)));
        }
        for i in 1..=n {
            let v = self.value()?;
            stmt.raw_bind_parameter(i, ToSqlOutput::Borrowed(v)).map_err(BindError::Sql)?;
        }
        Ok(())
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// Encodes one statement's parameters as a plugin does.
    fn encode(values: &[ValueRef<'_>]) -> Vec<u8> {
        let mut out = (values.len() as u32).to_le_bytes().to_vec();
        for v in values {
            match v {
                ValueRef::Null => out.push(NULL),
                ValueRef::Integer(i) => {
                    out.push(INTEGER);
                    out.extend(i.to_le_bytes());
                }
                ValueRef::Real(r) => {
                    out.push(REAL);
                    out.extend(r.to_bits().to_le_bytes());
                }
                ValueRef::Text(b) | ValueRef::Blob(b) => {
                    out.push(if matches!(v, ValueRef::Text(_)) { TEXT } else { BLOB });
                    out.extend((b.len() as u32).to_le_bytes());
                    out.extend(*b);
                }
            }
        }
        out
    }

    /// A row of `t`: null, integer, real, text, blob.
    type Row = (Option<i64>, i64, f64, String, Vec<u8>);

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a, b, c, d, e)").unwrap();
        c
    }

    #[test]
    fn every_kind_of_value_is_bound_as_sent() {
        let c = db();
        let mut bytes = encode(&[
            ValueRef::Null,
            ValueRef::Integer(-7),
            ValueRef::Real(2.5),
            ValueRef::Text("ßé".as_bytes()),
            ValueRef::Blob(&[0, 255]),
        ]);
        bytes.extend(encode(&[
            ValueRef::Integer(i64::MAX),
            ValueRef::Real(-0.0),
            ValueRef::Text(b""),
            ValueRef::Blob(b""),
            ValueRef::Null,
        ]));
        let mut stmt = c.prepare("INSERT INTO t VALUES (?, ?, ?, ?, ?)").unwrap();
        let mut p = Params::new(&bytes);
        for _ in 0..2 {
            p.bind(&mut stmt).unwrap();
            stmt.raw_execute().unwrap();
        }
        assert!(p.is_done());
        drop(stmt);
        let rows: Vec<Row> = c
            .prepare("SELECT a, b, c, d, e FROM t WHERE rowid = 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(None, -7, 2.5, "ßé".to_owned(), vec![0, 255])]);
        let second: (i64, String, Option<i64>) = c
            .query_row("SELECT a, c, e FROM t WHERE rowid = 2", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        assert_eq!(second, (i64::MAX, String::new(), None));
        let typeof_d: String =
            c.query_row("SELECT typeof(d) FROM t WHERE rowid = 2", [], |r| r.get(0)).unwrap();
        assert_eq!(typeof_d, "blob", "an empty blob stays a blob");
    }

    #[test]
    fn a_wrong_count_is_sqlites_error() {
        let c = db();
        let bytes = encode(&[ValueRef::Integer(1)]);
        let mut stmt = c.prepare("INSERT INTO t (a, b) VALUES (?, ?)").unwrap();
        let err = Params::new(&bytes).bind(&mut stmt).unwrap_err();
        assert_eq!(err, BindError::Sql(rusqlite::Error::InvalidParameterCount(1, 2)));
    }

    #[test]
    fn malformed_bytes_are_named_not_panics() {
        let c = db();
        let mut stmt = c.prepare("INSERT INTO t (a) VALUES (?)").unwrap();
        let text = encode(&[ValueRef::Text(b"abc")]);
        let mut bad_utf8 = text.clone();
        *bad_utf8.last_mut().unwrap() = 0xff;
        let mut bad_tag = text.clone();
        bad_tag[4] = 9;
        let mut long = text.clone();
        long[5] = 200;
        let cases: [(&[u8], &str); 5] = [
            (&[], "past the end"),
            (&text[..7], "past the end"),
            (&bad_utf8, "not UTF-8"),
            (&bad_tag, "unknown parameter tag 9 at byte 4"),
            (&long, "past the end"),
        ];
        for (bytes, want) in cases {
            match Params::new(bytes).bind(&mut stmt) {
                Err(BindError::Malformed(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }
}
