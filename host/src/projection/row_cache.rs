//! Rows served by key (`GET …/tables/{table}/{key}`), kept per build until
//! its checkpoint moves.
//!
//! A build's tables change only when its runner commits a batch, and every
//! commit moves the build's checkpoint (published after the commit). So a
//! row read while the checkpoint was `c` may be served again for as long as
//! the checkpoint is still `c`; the first lookup after it moves empties the
//! cache. A row read just as a batch commits may be newer than its tag —
//! never older — which is what an uncached read could return as well.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// Most bytes of rows kept per build; past it the cache starts over.
pub const MAX_BYTES: usize = 8 << 20;

/// The cached rows of one build, as serialized JSON.
#[derive(Default)]
pub struct RowCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    checkpoint: u64,
    bytes: usize,
    tables: HashMap<String, HashMap<String, Bytes>>,
}

impl Inner {
    fn reset(&mut self, checkpoint: u64) {
        self.checkpoint = checkpoint;
        self.bytes = 0;
        self.tables.clear();
    }
}

impl RowCache {
    /// The row of `table` with primary key `key`, if it was read while the
    /// build's checkpoint was `checkpoint` (its value now).
    pub fn get(&self, checkpoint: u64, table: &str, key: &str) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.checkpoint != checkpoint {
            inner.reset(checkpoint);
            return None;
        }
        inner.tables.get(table)?.get(key).cloned()
    }

    /// Keeps `row`, read while the build's checkpoint was `checkpoint`.
    pub fn put(&self, checkpoint: u64, table: &str, key: &str, row: Bytes) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if checkpoint < inner.checkpoint {
            return;
        }
        if checkpoint > inner.checkpoint {
            inner.reset(checkpoint);
        }
        let size = row.len() + table.len() + key.len();
        if size > MAX_BYTES {
            return;
        }
        if inner.bytes + size > MAX_BYTES {
            inner.reset(checkpoint);
        }
        inner.bytes += size;
        let rows = match inner.tables.get_mut(table) {
            Some(rows) => rows,
            None => inner.tables.entry(table.to_owned()).or_default(),
        };
        if let Some(old) = rows.insert(key.to_owned(), row) {
            inner.bytes -= old.len() + table.len() + key.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_served_until_the_checkpoint_moves() {
        let c = RowCache::default();
        c.put(7, "t", "a", Bytes::from_static(b"{\"x\":1}"));
        assert_eq!(c.get(7, "t", "a").as_deref(), Some(&b"{\"x\":1}"[..]));
        assert_eq!(c.get(7, "t", "b"), None);
        assert_eq!(c.get(7, "u", "a"), None);
        assert_eq!(c.get(8, "t", "a"), None, "a newer checkpoint must not see rows read before it");
        assert_eq!(c.get(8, "t", "a"), None);
    }

    #[test]
    fn a_row_read_before_the_checkpoint_moved_is_not_kept() {
        let c = RowCache::default();
        assert_eq!(c.get(9, "t", "a"), None);
        c.put(8, "t", "a", Bytes::from_static(b"old"));
        assert_eq!(c.get(9, "t", "a"), None);
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let c = RowCache::default();
        let row = Bytes::from(vec![b'x'; 1 << 20]);
        for k in 0..20 {
            c.put(1, "t", &k.to_string(), row.clone());
        }
        let inner = c.inner.lock().unwrap();
        assert!(inner.bytes <= MAX_BYTES, "{} bytes kept", inner.bytes);
        let kept: usize = inner.tables.values().map(HashMap::len).sum();
        assert!((1..=MAX_BYTES >> 20).contains(&kept), "{kept} rows kept");
    }
}
