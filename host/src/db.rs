//! SQLite plumbing shared by the event log and the projections: opening
//! connections with the host's settings, and a small connection pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Synchronous {
    /// fsync on every commit: a committed append survives power loss.
    #[default]
    Full,
    /// fsync at WAL checkpoints only: survives a process crash, may lose
    /// the last commits on power loss.
    Normal,
    /// No fsync at all; for benchmarks and throwaway data.
    Off,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// How long a connection waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) a read-write connection in WAL mode.
pub fn open_rw(path: &Path, sync: Synchronous) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens a read-only connection: SQLite refuses every write on it.
pub fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// Runs the migrations in `migrations` that `PRAGMA user_version` says have
/// not run yet, each in its own transaction.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in migrations.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A pool of read-only connections to one database file.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    init: fn(&mut Connection) -> rusqlite::Result<()>,
}

impl ReadPool {
    /// A pool for `path`, keeping at most `max_idle` connections open;
    /// `init` runs on each new connection.
    pub fn new(path: PathBuf, max_idle: usize, init: fn(&mut Connection) -> rusqlite::Result<()>) -> Self {
        Self { inner: Arc::new(PoolInner { path, idle: Mutex::new(Vec::new()), max_idle, init }) }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the idle connections (before the file is replaced).
    pub fn clear(&self) {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `f` on a pooled connection (opening one when none is idle).
    pub fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> rusqlite::Result<R> {
        let idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let mut c = open_ro(&self.inner.path)?;
                (self.inner.init)(&mut c)?;
                c
            }
        };
        let out = f(&mut conn);
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.inner.max_idle {
            idle.push(conn);
        }
        Ok(out)
    }
}

/// `v` as a SQLite integer parameter: SQLite integers are signed, and no
/// position, version, count or offset can exceed `i64::MAX`, so larger
/// values mean "past the end".
pub fn sqlite_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
