//! Statements [`Db::write`](crate::Db::write) queued and not yet sent to
//! the host, packed as `queued-writes` in `wit/sql.wit` says, so that one
//! host call carries many statements.

use crate::__private::bindings::refract::plugin::sql::QueuedWrites;
use crate::Value;

/// Send the queue once it holds this many statements: often enough that
/// the host's writer starts early in a batch, rarely enough that crossing
/// into the host costs next to nothing per statement.
const FLUSH_STATEMENTS: usize = 64;
/// Or once their parameters take this many bytes.
const FLUSH_BYTES: usize = 32 << 10;

/// Parameter tags of the encoding.
const NULL: u8 = 0;
const INTEGER: u8 = 1;
const REAL: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

/// The statements queued since the last send.
pub(crate) struct Pending {
    writes: QueuedWrites,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            writes: QueuedWrites {
                statements: Vec::new(),
                positions: Vec::new(),
                statement_indices: Vec::new(),
                params: Vec::new(),
            },
        }
    }
}

impl Pending {
    /// Queues `sql` with `params` for the event at `position`; whether the
    /// queue should now be sent.
    pub(crate) fn push(&mut self, position: u64, sql: &str, params: &[Value]) -> bool {
        let w = &mut self.writes;
        let index = match w.statements.iter().position(|s| same_bytes(s.as_bytes(), sql.as_bytes())) {
            Some(i) => i,
            None => {
                w.statements.push(sql.to_owned());
                w.statements.len() - 1
            }
        };
        w.positions.push(position);
        // A plugin's statements are far fewer than 2^32.
        w.statement_indices.push(index as u32);
        let out = &mut w.params;
        out.extend_from_slice(&(params.len() as u32).to_le_bytes());
        for v in params {
            match v {
                Value::Null => out.push(NULL),
                Value::Integer(i) => {
                    out.push(INTEGER);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Value::Real(r) => {
                    out.push(REAL);
                    out.extend_from_slice(&r.to_bits().to_le_bytes());
                }
                Value::Text(t) => bytes(out, TEXT, t.as_bytes()),
                Value::Blob(b) => bytes(out, BLOB, b),
            }
        }
        w.positions.len() >= FLUSH_STATEMENTS || w.params.len() >= FLUSH_BYTES
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.positions.is_empty()
    }

    /// What is queued, in the form the host takes.
    #[cfg(target_family = "wasm")]
    pub(crate) fn writes(&self) -> &QueuedWrites {
        &self.writes
    }

    /// Empties the queue, keeping its memory for the next statements.
    #[cfg(target_family = "wasm")]
    pub(crate) fn clear(&mut self) {
        let w = &mut self.writes;
        w.statements.clear();
        w.positions.clear();
        w.statement_indices.clear();
        w.params.clear();
    }

    /// Takes what is queued, leaving the queue empty.
    #[cfg(not(target_family = "wasm"))]
    pub(crate) fn take(&mut self) -> QueuedWrites {
        std::mem::take(self).writes
    }
}

fn bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    // A value over 4 GiB cannot be in a 32-bit plugin's memory.
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Byte equality eight bytes at a time: a statement's text is compared
/// with the queued ones on every write, and a byte-by-byte loop is slow
/// in Wasm.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((wa, ta), (wb, tb)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    wa.iter().zip(wb).all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y)) && ta == tb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_packed_as_the_contract_says() {
        let mut p = Pending::default();
        let insert = "INSERT INTO t VALUES (?, ?, ?, ?, ?)";
        assert!(!p.push(
            7,
            insert,
            &[
                Value::Null,
                Value::Integer(-2),
                Value::Real(0.5),
                Value::Text("é".into()),
                Value::Blob(vec![9])
            ]
        ));
        // The same text from another string is sent once.
        assert!(!p.push(8, &String::from(insert), &[]));
        assert!(!p.push(9, "DELETE FROM t", &[]));
        let w = p.take();
        assert_eq!(w.statements, [insert, "DELETE FROM t"]);
        assert_eq!(w.positions, [7, 8, 9]);
        assert_eq!(w.statement_indices, [0, 0, 1]);
        let mut want = vec![5, 0, 0, 0, NULL, INTEGER];
        want.extend((-2i64).to_le_bytes());
        want.push(REAL);
        want.extend(0.5f64.to_bits().to_le_bytes());
        want.extend([TEXT, 2, 0, 0, 0, 0xc3, 0xa9, BLOB, 1, 0, 0, 0, 9]);
        want.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(w.params, want);
        assert!(p.is_empty(), "taking empties the queue");
    }

    #[test]
    fn the_queue_asks_to_be_sent_when_full() {
        let mut p = Pending::default();
        let full = (0..FLUSH_STATEMENTS as u64).map(|i| p.push(i, "DELETE FROM t", &[])).collect::<Vec<_>>();
        assert_eq!(full.iter().filter(|&&f| f).count(), 1);
        assert_eq!(full.last(), Some(&true));
        let mut p = Pending::default();
        assert!(p.push(1, "INSERT INTO t VALUES (?)", &[Value::Blob(vec![0; FLUSH_BYTES])]));
    }

    #[test]
    fn texts_compare_whole() {
        for (a, b, same) in [
            ("", "", true),
            ("abcdefgh", "abcdefgh", true),
            ("abcdefghi", "abcdefghj", false),
            ("abcdefgX12", "abcdefgY12", false),
            ("abc", "abcd", false),
        ] {
            assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), same, "{a:?} {b:?}");
        }
    }
}
