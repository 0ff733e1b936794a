//! Statements a projection queued with `sql.write`, run in order on a
//! thread of their own, on the projection's connection, while the plugin
//! goes on decoding the next events: a replay keeps one core in the
//! plugin's code and one in SQLite instead of taking turns.
//!
//! The connection is only ever used by one thread at a time: whatever else
//! touches it — the plugin's `execute` and `query`, and the runner at the
//! end of every `apply` call, before it commits or rolls back — first waits
//! until everything queued has run ([`WriteQueue::drain`]). The first
//! failure is kept with the position of the event whose statement failed;
//! what was queued after it is dropped, and every later `write` of the
//! batch returns the same error without queueing.
//!
//! Statements come one per call (`sql.write`) or many per call, packed
//! (`sql.write-queued`, what the SDK sends): a packed call is queued as it
//! came, and its parameters are bound on the writer straight from its
//! bytes, so the plugin's thread spends next to nothing per statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::bindings::refract::plugin::sql::{QueuedWrites, SqlError};
use super::bindings::refract::plugin::types::Value;
use super::guard::{self, SqlGuard};
use super::packed::{BindError, Params};
use super::state::{failed, refusal_or};

/// Most statements waiting at once; a plugin that queues faster than
/// SQLite runs them waits for room, so the queue's memory stays bounded.
const MAX_QUEUED: usize = 4096;

/// A queued statement that failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The event whose statement failed.
    pub position: u64,
    /// Why.
    pub error: SqlError,
}

enum Item {
    /// One statement (`sql.write`).
    One { position: u64, statement: String, params: Vec<Value> },
    /// Statements packed together (`sql.write-queued`), checked for shape.
    Packed(QueuedWrites),
}

impl Item {
    /// How many statements it holds.
    fn len(&self) -> usize {
        match self {
            Item::One { .. } => 1,
            Item::Packed(w) => w.positions.len(),
        }
    }
}

#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    /// Statements in `items`.
    queued: usize,
    /// The writer has taken items out and not finished them.
    running: bool,
    failed: Option<Failure>,
    /// Statements that have run, handed back so that the thread that
    /// allocated their strings frees them: freeing on the writer thread
    /// contends for the allocator's arena with the thread allocating.
    spent: Vec<Item>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when there is work for the writer (or it must stop).
    work: Condvar,
    /// Signalled when the writer took items out or finished them.
    progress: Condvar,
    /// Skip what the writer has taken out: a statement failed, or the batch
    /// failed anyway. Read without the lock, once per statement.
    skip: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread of one projection's connection.
pub struct DeferredWrites {
    /// Its queue.
    pub queue: WriteQueue,
    thread: Option<JoinHandle<()>>,
}

/// The queue of a writer thread, to queue statements and wait for them.
#[derive(Clone)]
pub struct WriteQueue {
    shared: Arc<Shared>,
}

impl DeferredWrites {
    /// Starts the writer for `conn`, checking statements with `guard`.
    pub fn start(conn: Arc<Mutex<Connection>>, guard: SqlGuard) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("refract-writes".into())
            .spawn(move || run(&s, &conn, &guard))?;
        Ok(Self { queue: WriteQueue { shared }, thread: Some(thread) })
    }
}

impl WriteQueue {
    /// Queues a statement of the event at `position`; the error of an
    /// earlier failed statement of the batch instead, without queueing.
    /// Refusals that need no database come at once.
    pub fn push(&self, position: u64, statement: String, params: Vec<Value>) -> Result<(), SqlError> {
        guard::precheck(&statement).map_err(SqlError::Refused)?;
        self.enqueue(Item::One { position, statement, params })
    }

    /// Queues packed statements (`sql.write-queued`) to run in order; the
    /// error of an earlier failed statement of the batch instead. Lists of
    /// different lengths, or an index past the statements, are refused
    /// here and nothing is queued; everything else about a statement is
    /// checked when it runs, and fails it at its event.
    pub fn push_packed(&self, writes: QueuedWrites) -> Result<(), SqlError> {
        let n = writes.statements.len();
        if writes.statement_indices.len() != writes.positions.len() {
            return Err(SqlError::Refused(format!(
                "malformed queued writes: {} positions but {} statement indices",
                writes.positions.len(),
                writes.statement_indices.len()
            )));
        }
        if let Some(i) = writes.statement_indices.iter().find(|&&i| i as usize >= n) {
            return Err(SqlError::Refused(format!(
                "malformed queued writes: statement index {i}, but only {n} statements"
            )));
        }
        if writes.positions.is_empty() {
            return self.earlier_failure();
        }
        self.enqueue(Item::Packed(writes))
    }

    /// The failure of an earlier statement of the batch, if there is one.
    fn earlier_failure(&self) -> Result<(), SqlError> {
        match &self.shared.lock().failed {
            Some(f) => Err(f.error.clone()),
            None => Ok(()),
        }
    }

    fn enqueue(&self, item: Item) -> Result<(), SqlError> {
        let mut q = self.shared.lock();
        let spent = std::mem::take(&mut q.spent);
        while q.queued >= MAX_QUEUED && q.failed.is_none() {
            q = self.shared.progress.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(f) = &q.failed {
            return Err(f.error.clone());
        }
        q.queued += item.len();
        q.items.push(item);
        if !q.running && q.items.len() == 1 {
            self.shared.work.notify_one();
        }
        drop(q);
        // Freed here, by the thread that allocated them, outside the lock.
        drop(spent);
        Ok(())
    }

    /// Waits until everything queued has run; the error of the first
    /// statement that failed, if one did (kept for [`settle`](Self::settle)).
    pub fn drain(&self) -> Result<(), SqlError> {
        let mut q = self.wait_idle(false);
        let _spent = std::mem::take(&mut q.spent);
        match &q.failed {
            Some(f) => Err(f.error.clone()),
            None => Ok(()),
        }
    }

    /// Ends a batch: waits for what is queued to run (`keep`) or drops it
    /// (the batch failed anyway), and returns the first failure, clearing
    /// it for the next batch.
    pub fn settle(&self, keep: bool) -> Option<Failure> {
        let mut q = self.wait_idle(!keep);
        self.shared.skip.store(false, Ordering::Relaxed);
        let _spent = std::mem::take(&mut q.spent);
        q.failed.take()
    }

    fn wait_idle(&self, discard: bool) -> MutexGuard<'_, Queue> {
        let mut q = self.shared.lock();
        if discard {
            q.items.clear();
            q.queued = 0;
            self.shared.skip.store(true, Ordering::Relaxed);
        }
        while q.running || !q.items.is_empty() {
            q = self.shared.progress.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        q
    }
}

impl Drop for DeferredWrites {
    fn drop(&mut self) {
        let shared = &self.queue.shared;
        {
            let mut q = shared.lock();
            q.items.clear();
            q.queued = 0;
            q.stop = true;
            shared.skip.store(true, Ordering::Relaxed);
        }
        shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer: takes everything queued at once and runs it in order.
fn run(shared: &Shared, conn: &Mutex<Connection>, guard: &SqlGuard) {
    let mut batch = Vec::new();
    loop {
        {
            let mut q = shared.lock();
            if q.spent.is_empty() {
                std::mem::swap(&mut q.spent, &mut batch);
            } else {
                q.spent.append(&mut batch);
            }
            q.running = false;
            shared.progress.notify_all();
            while q.items.is_empty() && !q.stop {
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.stop {
                return;
            }
            std::mem::swap(&mut q.items, &mut batch);
            q.running = true;
            if std::mem::take(&mut q.queued) >= MAX_QUEUED {
                shared.progress.notify_all();
            }
        }
        // Nobody else uses the connection until the queue is drained. The
        // statements passed `precheck` when queued; the guard is armed once
        // for all of them (a denial ends the run, so none is left over).
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let _armed = guard.arm();
        for item in &batch {
            if shared.skip.load(Ordering::Relaxed) {
                continue;
            }
            let outcome = match item {
                Item::One { position, statement, params } => conn
                    .prepare_cached(statement)
                    .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(params.iter())))
                    .map(drop)
                    .map_err(|e| Failure { position: *position, error: refusal_or(guard, failed(e)) }),
                Item::Packed(writes) => run_packed(&conn, writes, guard, &shared.skip),
            };
            if let Err(failure) = outcome {
                let mut q = shared.lock();
                q.failed = Some(failure);
                shared.skip.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Runs packed statements in order, each statement text prepared (and
/// checked) once, at its first use; stops at the first failure, or when
/// `skip` is set.
fn run_packed(
    conn: &Connection,
    writes: &QueuedWrites,
    guard: &SqlGuard,
    skip: &AtomicBool,
) -> Result<(), Failure> {
    let mut prepared: Vec<Option<rusqlite::CachedStatement<'_>>> =
        writes.statements.iter().map(|_| None).collect();
    let mut params = Params::new(&writes.params);
    for (&position, &index) in writes.positions.iter().zip(&writes.statement_indices) {
        if skip.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fail = |error: SqlError| Failure { position, error };
        // `push_packed` checked every index.
        let slot = &mut prepared[index as usize];
        let stmt = match slot {
            Some(stmt) => stmt,
            None => {
                let text = &writes.statements[index as usize];
                guard::precheck(text).map_err(|m| fail(SqlError::Refused(m)))?;
                let stmt = conn.prepare_cached(text).map_err(|e| fail(refusal_or(guard, failed(e))))?;
                slot.insert(stmt)
            }
        };
        params.bind(stmt).map_err(|e| {
            fail(match e {
                BindError::Malformed(m) => SqlError::Refused(format!("malformed queued writes: {m}")),
                BindError::Sql(e) => refusal_or(guard, failed(e)),
            })
        })?;
        stmt.raw_execute().map_err(|e| fail(refusal_or(guard, failed(e))))?;
    }
    if !params.is_done() {
        let last = writes.positions.last().copied().unwrap_or(0);
        return Err(Failure {
            position: last,
            error: SqlError::Refused("malformed queued writes: bytes left after the last parameters".into()),
        });
    }
    Ok(())
}
