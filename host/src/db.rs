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
    open_rw_paged(path, sync, None)
}

/// Like [`open_rw`]; a file it creates gets pages of `page_size` bytes (a
/// power of two from 512 to 65 536), where an existing file keeps its own.
pub fn open_rw_paged(path: &Path, sync: Synchronous, page_size: Option<u32>) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if let Some(size) = page_size {
        // Before the first write, which fixes the size (WAL mode writes
        // the header).
        conn.pragma_update(None, "page_size", size)?;
    }
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

/// Bytes of WAL frames after which a commit asks the WAL thread for a
/// checkpoint: 8000 pages of 4 KiB (about 31 MiB), eight times SQLite's
/// own threshold. Fewer, larger checkpoints copy a page that many batches
/// changed once instead of once per checkpoint (measurements: P5b in
/// `bench/ANALYSIS.md`). Counted in bytes, so a database with larger pages
/// keeps a WAL of the same size.
const WAL_THREAD_BYTES: i64 = 8000 * 4096;
/// Bytes of WAL frames after which the committing connection checkpoints
/// itself, so the log stays bounded (64 MiB, plus what is committed while
/// a background checkpoint is still running) even when the WAL thread
/// never catches up with a writer that keeps committing.
const WAL_INLINE_BYTES: i64 = 16_384 * 4096;

/// [`WAL_THREAD_BYTES`] and [`WAL_INLINE_BYTES`] in frames of `page_size`.
fn wal_frames(page_size: i64) -> (std::ffi::c_int, std::ffi::c_int) {
    let frames = |bytes: i64| {
        std::ffi::c_int::try_from(bytes / page_size.max(512)).unwrap_or(std::ffi::c_int::MAX).max(1)
    };
    (frames(WAL_THREAD_BYTES), frames(WAL_INLINE_BYTES))
}

/// Bytes a WAL file reaches, at most, before its committing connection
/// checkpoints it itself ([`WAL_INLINE_BYTES`] of pages in frames of
/// `page_size` + 24 bytes, after a 32-byte header).
pub(crate) fn wal_reserve_bytes(page_size: i64) -> u64 {
    let (_, inline_frames) = wal_frames(page_size);
    32 + inline_frames as u64 * (page_size.max(512) as u64 + 24)
}

/// Writes zeros onto the end of the WAL of `conn`'s database until the
/// file is as long as the WAL grows between checkpoints
/// ([`wal_reserve_bytes`]), then syncs it; returns the bytes written.
///
/// A commit that extends a file waits for the filesystem to allocate its
/// blocks and to journal the new size at every fsync; one that overwrites
/// written blocks does not (a sync after a write took 193–250 µs extending
/// a file against 118–143 µs overwriting it on the benchmark machine; see
/// P2b in `bench/ANALYSIS.md`). SQLite restarts a WAL from its start once a
/// checkpoint has copied it all, so a running log overwrites the same
/// blocks; this gives a freshly opened one (SQLite deletes the WAL when
/// the last connection closes) such blocks from the start.
///
/// It holds the database's write lock meanwhile (an immediate transaction
/// that writes nothing), so no connection, of this process or another,
/// appends frames while the file is extended; SQLite reads frames only up
/// to the last commit, and after a crash it recovers the frames whose
/// salts and checksums match the header, which zeros never do.
pub fn reserve_wal(conn: &Connection) -> std::io::Result<u64> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(std::io::Error::other)?;
    let written = extend_wal(conn);
    let ended = conn.execute_batch("ROLLBACK").map_err(std::io::Error::other);
    let written = written?;
    ended?;
    Ok(written)
}

/// [`reserve_wal`]'s work, under the write lock.
fn extend_wal(conn: &Connection) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    // An in-memory or temporary database has no file, so no WAL.
    let Some(path) = conn.path().filter(|p| !p.is_empty()) else { return Ok(0) };
    let page_size: i64 =
        conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(std::io::Error::other)?;
    let mut wal = match std::fs::OpenOptions::new().write(true).open(format!("{path}-wal")) {
        Ok(f) => f,
        // Not in WAL mode: nothing to extend.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let target = wal_reserve_bytes(page_size);
    let len = wal.seek(SeekFrom::End(0))?;
    if len >= target {
        return Ok(0);
    }
    let zeros = vec![0u8; 1 << 20];
    let mut write = || -> std::io::Result<()> {
        let mut at = len;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            wal.write_all(&zeros[..n])?;
            at += n as u64;
        }
        wal.sync_all()
    };
    if let Err(e) = write() {
        // A full disk: give the space back (nothing of SQLite's is past
        // `len`), so that commits and checkpoints still find it.
        let _ = wal.set_len(len);
        return Err(e);
    }
    Ok(target - len)
}

/// Copies a database's write-ahead log back into the database file on a
/// thread of its own.
///
/// SQLite does this every 1000 pages on the connection that commits, and
/// fsyncs the database file while doing it, so that connection's thread
/// waits for the disk. For a projection catching up, that thread is the one
/// applying events (profiles of a 5M-event replay had it blocked in fsync
/// for about a third of the time); for the event log it is the writer. With
/// [`WalThread::start`] the writer's commits only nudge this thread, which
/// checkpoints with its own connection in `PASSIVE` mode (never blocking
/// the writer or readers). Durability is unchanged: commits are exactly as
/// durable as before, only the copy into the main file moves.
pub struct WalThread {
    stop: Arc<std::sync::atomic::AtomicBool>,
    nudge: std::sync::mpsc::SyncSender<()>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl WalThread {
    /// Starts the thread for the database at `path` and makes `conn` (its
    /// writer) hand checkpoints to it.
    pub fn start(conn: &mut Connection, path: &Path, name: &str) -> rusqlite::Result<Self> {
        use rusqlite::hooks::Wal;
        use std::sync::atomic::{AtomicBool, Ordering};
        let background = Connection::open(path)?;
        background.busy_timeout(BUSY_TIMEOUT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
        let stopped = stop.clone();
        let db = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name(format!("refract-wal-{name}"))
            .spawn(move || {
                while nudged.recv().is_ok() && !stopped.load(Ordering::Acquire) {
                    if let Err(e) = background.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!(db, error = %e, "background WAL checkpoint failed; the next commit retries");
                    }
                }
            })
            .map_err(|e| {
                let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR);
                rusqlite::Error::SqliteFailure(code, Some(format!("cannot start the WAL thread: {e}")))
            })?;
        let sender = nudge.clone();
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let (thread_frames, inline_frames) = wal_frames(page_size);
        // Registering a WAL hook replaces SQLite's auto-checkpoint.
        conn.wal_hook(Some(move |wal: &mut Wal, frames: std::ffi::c_int| {
            if frames >= inline_frames {
                // Between transactions: everything written so far can be
                // copied, after which SQLite restarts the log from its start.
                if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE) {
                    tracing::debug!(error = %e, "inline WAL checkpoint failed; the next commit retries");
                }
            } else if frames >= thread_frames {
                let _ = sender.try_send(());
            }
            Ok(())
        }))?;
        Ok(Self { stop, nudge, handle: Some(handle) })
    }
}

impl Drop for WalThread {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // Wakes the thread if it is waiting; if the channel is full it is
        // about to wake anyway.
        let _ = self.nudge.try_send(());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
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
    /// Delete the database's files once the last handle to the pool is
    /// gone (see [`ReadPool::retire`]).
    retired: std::sync::atomic::AtomicBool,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Connections close before their files go.
        self.idle.get_mut().unwrap_or_else(|p| p.into_inner()).clear();
        if self.retired.load(std::sync::atomic::Ordering::Acquire)
            && let Err(e) = remove_db_files(&self.path)
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot remove a retired database");
        }
    }
}

impl ReadPool {
    /// A pool for `path`, keeping at most `max_idle` connections open;
    /// `init` runs on each new connection.
    pub fn new(path: PathBuf, max_idle: usize, init: fn(&mut Connection) -> rusqlite::Result<()>) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                path,
                idle: Mutex::new(Vec::new()),
                max_idle,
                init,
                retired: false.into(),
            }),
        }
    }

    /// Deletes the database's files (with its WAL and shared memory) once
    /// every handle to this pool is dropped: a read that took a handle
    /// before the database was retired finishes on it, and no new read can
    /// open a file that is already gone. Whoever writes the database must
    /// have closed it first.
    pub fn retire(&self) {
        self.inner.retired.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the idle connections: before the file is replaced, and on
    /// shutdown before the writer closes — SQLite removes the WAL when the
    /// last connection to the database closes, and only a writable one can.
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

/// Deletes a database file with its WAL and shared-memory files; files
/// that are already gone are no error.
pub fn remove_db_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
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

/// An empty directory of its own for the test `name` (under the system's
/// temporary directory, named after the process so runs do not collide).
#[cfg(test)]
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("refract-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Held by the unit tests that write the disk hard (a reserved WAL of
/// 64 MiB, tens of MiB of commits): one at a time, so that a test bounding
/// how far a WAL outruns its checkpoints is not measuring the others' I/O.
#[cfg(test)]
pub(crate) fn heavy_disk() -> std::sync::MutexGuard<'static, ()> {
    static DISK: Mutex<()> = Mutex::new(());
    DISK.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        scratch_dir(&format!("db-{name}"))
    }

    #[test]
    fn the_wal_thread_keeps_the_log_bounded_and_loses_nothing() {
        let _disk = heavy_disk();
        let dir = scratch("wal");
        let path = dir.join("t.db");
        // The read models' page size; the bound is in bytes, whatever it is.
        let page = 16 * 1024;
        let mut conn = open_rw_paged(&path, Synchronous::Normal, Some(page)).unwrap();
        conn.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        let wal = WalThread::start(&mut conn, &path, "test").unwrap();
        let (_, inline_frames) = wal_frames(i64::from(page));
        assert_eq!(inline_frames as i64 * i64::from(page), WAL_INLINE_BYTES);
        // Three times the inline bound in frames, one small commit at a
        // time: without checkpoints the log would hold all of it.
        let commits = 3 * inline_frames as usize;
        for _ in 0..commits {
            conn.execute("INSERT INTO t VALUES (zeroblob(400))", []).unwrap();
        }
        let wal_bytes = std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
        // The inline bound, plus what the writer adds while a background
        // checkpoint it cannot interrupt is still running: half as much
        // again on an idle machine, up to 1.9 times the bound seen with a
        // busy disk. Under 2.5 times, the log has restarted from its start
        // (without checkpoints it would hold all three times).
        let bound = (inline_frames as u64 * 5 / 2) * (u64::from(page) + 24);
        assert!(wal_bytes <= bound, "the WAL grew to {wal_bytes} bytes (bound {bound})");
        drop(conn);
        drop(wal);
        let n: usize = open_ro(&path).unwrap().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, commits);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_file_takes_the_page_size_and_an_existing_one_keeps_its_own() {
        let dir = scratch("pages");
        let page_size =
            |c: &Connection| c.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0)).unwrap();
        let fresh = dir.join("fresh.db");
        let conn = open_rw_paged(&fresh, Synchronous::Normal, Some(16 * 1024)).unwrap();
        assert_eq!(page_size(&conn), 16 * 1024);
        drop(conn);
        let old = dir.join("old.db");
        open_rw(&old, Synchronous::Normal).unwrap().execute_batch("CREATE TABLE t (v)").unwrap();
        let conn = open_rw_paged(&old, Synchronous::Normal, Some(16 * 1024)).unwrap();
        assert_eq!(page_size(&conn), 4096, "SQLite's default, written when the file was made");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_wal_is_reserved_under_the_write_lock() {
        let _disk = heavy_disk();
        let dir = scratch("wal-reserve-lock");
        let path = dir.join("t.db");
        let conn = open_rw(&path, Synchronous::Full).unwrap();
        conn.execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES (1)").unwrap();
        let wal = dir.join("t.db-wal");
        let before = std::fs::metadata(&wal).unwrap().len();
        // Another writer holds the lock, and could be appending frames.
        let other = open_rw(&path, Synchronous::Full).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2)").unwrap();
        conn.busy_timeout(Duration::from_millis(20)).unwrap();
        assert!(reserve_wal(&conn).is_err(), "reserved the WAL under another writer");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), before);
        other.execute_batch("COMMIT").unwrap();
        let committed = std::fs::metadata(&wal).unwrap().len();
        assert!(committed > before, "the other writer's frames");
        // Once it is free: from the end of those frames to the whole
        // reservation, then nothing more to do.
        let reserved = wal_reserve_bytes(4096);
        assert_eq!(reserve_wal(&conn).unwrap(), reserved - committed);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), reserved);
        assert_eq!(reserve_wal(&conn).unwrap(), 0);
        // Both writers' rows are there, after the zeros as before them.
        conn.execute("INSERT INTO t VALUES (3)", []).unwrap();
        drop(other);
        drop(conn);
        let n: i64 = open_ro(&path).unwrap().query_row("SELECT sum(v) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dropping_the_wal_thread_first_does_not_hang() {
        let dir = scratch("wal-order");
        let path = dir.join("t.db");
        let mut conn = open_rw(&path, Synchronous::Normal).unwrap();
        let wal = WalThread::start(&mut conn, &path, "test").unwrap();
        conn.execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES (1)").unwrap();
        drop(wal);
        // Commits after the thread stopped still work (and checkpoint inline
        // once the log is long).
        conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
