//! The loop that feeds one build of a projection: read a batch from the
//! log, apply it in the sandbox, commit it with the checkpoint, repeat; wait
//! for appends when caught up; obey pause, resume, skip and dead-letter
//! retries; retry failures with backoff, then apply the error policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::dispatch::{self, Record};
use super::status::{Failure, State};
use super::store::{self, DeadLetter};
use super::{Control, Shared};
use crate::db;
use crate::log::{Ask, BatchSource, EventLog, ReadError};
use crate::plugin::{Batch, Event, Kind, ProjectionInstance, ProjectionPlugin, SqlSession};

/// What a projection does with an event it cannot apply after its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Stop at the event (status `failed`) until resumed or skipped.
    #[default]
    Pause,
    /// Record the event in the dead letters and move on.
    DeadLetter,
}

/// How a runner batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// Most events per `apply` call (one transaction, unless a catch-up
    /// transaction spans several).
    pub batch_size: usize,
    /// Attempts at one batch before the error policy applies.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles with each further one.
    pub backoff: Duration,
    /// While a projection works through a backlog (its batches come back
    /// full), how long one transaction may stay open across batches before
    /// it commits. Zero commits every batch.
    pub catch_up_commit: Duration,
    /// The page cache of a projection's database while it catches up, in
    /// KiB (0 leaves SQLite's default, 2 000): a transaction spanning
    /// batches keeps every page it changed in the cache until it commits,
    /// and with less room SQLite writes them to the WAL early — several
    /// times over for a page that later batches change again. Given back
    /// once caught up or paused; only pages actually used take memory.
    pub catch_up_cache_kib: u32,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            catch_up_commit: Duration::from_secs(1),
            catch_up_cache_kib: 16 * 1024,
        }
    }
}

pub(super) struct Runner {
    pub shared: Arc<Shared>,
    pub plugin: Arc<ProjectionPlugin>,
    pub policy: ErrorPolicy,
    pub log: EventLog,
    pub head: watch::Receiver<u64>,
    pub control: watch::Receiver<Control>,
    pub shutdown: watch::Receiver<bool>,
    pub options: RunnerOptions,
    /// Its database, opened with the plugin's migrations run before the
    /// build was made visible (reads never meet a database without its
    /// tables), or why it could not be.
    pub opened: Option<Result<(SqlSession, store::Meta), String>>,
    pub rt: Handle,
}

/// Why a batch attempt failed.
pub(super) struct BatchError {
    pub message: String,
    pub position: Option<u64>,
    /// The instance is unusable (trap, timeout) and must be recreated.
    poisoned: bool,
}

/// The runner's working state.
struct Work {
    instance: Option<ProjectionInstance>,
    reader: Reader,
    checkpoint: u64,
    /// Apply one event per batch up to this position, to find the event
    /// that made a larger batch fail.
    single_until: u64,
    /// Commit every batch on its own up to this position: a transaction
    /// spanning batches failed there.
    solo_until: u64,
    /// Stopped at this event by the `pause` policy.
    stuck_at: Option<Event>,
    seen: Control,
    rate: Rate,
    /// The transaction spanning batches, while catching up.
    open: Option<Open>,
    /// The database's own page cache size while it is raised for catching
    /// up (see [`RunnerOptions::catch_up_cache_kib`]).
    raised_cache: Option<i64>,
    /// Reads of the log that failed in a row.
    read_failures: u32,
    /// For a reactor: where its commands go.
    record: Option<Record>,
}

/// The wait before reading the log again after a failed read; doubles with
/// each failure in a row, up to [`MAX_READ_BACKOFF`].
const READ_BACKOFF: Duration = Duration::from_millis(50);
const MAX_READ_BACKOFF: Duration = Duration::from_secs(2);

/// A transaction kept open across full batches while catching up.
///
/// Committing every batch writes each page the batch changed to the WAL
/// (and later back into the database file) once per batch. An index whose
/// inserts land all over the table (a customer index, say) has a page
/// changed by nearly every batch, so the bytes written per event grow with
/// the index; one commit a second (by default) writes such a page once for
/// many batches. Readers see the projection's progress at each
/// commit; live traffic, whose batches come back short, still commits every
/// batch.
struct Open {
    since: Instant,
    /// Batches and events applied in it, counted when it commits.
    batches: u64,
    applied: u64,
    /// The last batch was full: more events were waiting behind it.
    full: bool,
}

/// Events applied per second, over windows of about a second.
struct Rate {
    since: Instant,
    count: u64,
}

impl Runner {
    pub fn run(mut self) {
        let name = self.plugin.description.name.clone();
        if let Err(message) = self.run_inner() {
            tracing::error!(projection = %name, error = %message, "projection failed");
            self.shared.update(|s| {
                s.status = State::Failed;
                s.error = Some(Failure { message, position: None, attempts: 1, at: db::unix_ms() });
            });
            // Stay parked until shutdown so status remains readable.
            self.wait(false);
        }
        self.shared.update(|s| {
            if s.status != State::Failed {
                s.status = State::Stopped;
            }
        });
    }

    fn run_inner(&mut self) -> Result<(), String> {
        let (session, meta) = self.opened.take().ok_or("the database was opened already")??;
        self.shared.publish(meta.position);
        let dead = store::count_dead_letters(&session.conn()).unwrap_or(0);
        self.shared.update(|s| {
            s.position = meta.position;
            s.dead_letters = dead;
        });
        if meta.paused {
            self.shared.control.send_modify(|c| c.paused = true);
        }
        let reader = Reader::open(&self.log, &self.plugin)?;
        let instance = self.plugin.instantiate(Some(session)).map_err(|e| e.to_string())?;
        let mut w = Work {
            instance: Some(instance),
            reader,
            checkpoint: meta.position,
            single_until: 0,
            solo_until: 0,
            stuck_at: None,
            seen: Control { paused: meta.paused, ..*self.control.borrow() },
            rate: Rate { since: Instant::now(), count: 0 },
            open: None,
            raised_cache: None,
            read_failures: 0,
            record: (self.plugin.kind() == Kind::Reactor)
                .then(|| Record { reactor: self.plugin.description.name.clone() }),
        };
        loop {
            // Inside a catch-up transaction, the next batch follows at once;
            // anything else (an operator request, shutdown, waiting for
            // appends) happens with it committed.
            let go_on = w.open.as_ref().is_some_and(|open| {
                open.full
                    && open.since.elapsed() < self.options.catch_up_commit
                    && w.checkpoint < *self.head.borrow()
                    && !*self.shutdown.borrow()
                    && !self.control.has_changed().unwrap_or(true)
            });
            if !go_on {
                self.commit_open(&mut w)?;
                if *self.shutdown.borrow() {
                    return Ok(());
                }
                self.obey(&mut w)?;
                if w.seen.paused || w.stuck_at.is_some() {
                    self.lower_cache(&mut w);
                    self.shared
                        .update(|s| s.status = if w.seen.paused { State::Paused } else { State::Failed });
                    if !self.wait(true) {
                        return Ok(());
                    }
                    continue;
                }
            }
            let head = *self.head.borrow_and_update();
            if w.checkpoint >= head {
                self.lower_cache(&mut w);
                self.shared.update(|s| {
                    s.status = State::Live;
                    s.events_per_second = 0.0;
                });
                if !self.wait(true) {
                    return Ok(());
                }
                continue;
            }
            self.shared.update(|s| s.status = State::CatchingUp);
            let limit = if w.checkpoint < w.single_until { 1 } else { self.options.batch_size };
            let events = match w.reader.read(w.checkpoint, head, limit) {
                Ok(events) => {
                    w.read_failures = 0;
                    events
                }
                Err(e) => {
                    // The log is out of reach for now (PostgreSQL restarting,
                    // cut off): what is applied is committed, and the read
                    // is tried again, with backoff, from the checkpoint.
                    self.commit_open(&mut w)?;
                    w.read_failures += 1;
                    let attempts = w.read_failures;
                    tracing::warn!(projection = %self.plugin.description.name, attempts, error = %e, "cannot read the event log; retrying");
                    self.shared.update(|s| {
                        s.error = Some(Failure {
                            message: format!("cannot read the event log: {e}; retrying"),
                            position: None,
                            attempts,
                            at: db::unix_ms(),
                        })
                    });
                    let backoff = READ_BACKOFF.saturating_mul(1 << attempts.min(6)).min(MAX_READ_BACKOFF);
                    if !self.sleep(backoff) {
                        return Ok(());
                    }
                    continue;
                }
            };
            // A short batch covers everything up to the head, including
            // events of types this projection skips.
            let full = events.len() == limit;
            let upto = if full { events.last_position().unwrap_or(head) } else { head };
            let spanning = !self.options.catch_up_commit.is_zero()
                && w.checkpoint >= w.single_until.max(w.solo_until)
                && (w.open.is_some() || full);
            if spanning {
                // Reads ahead once the plugin is done with the batch.
                self.apply_spanning(&mut w, &events, upto, full)?;
            } else {
                w.reader.read_ahead();
                if !self.apply_with_retries(&mut w, &events, upto)? {
                    return Ok(());
                }
            }
        }
    }

    /// Applies operator requests: pause/resume, skip, dead-letter retries.
    fn obey(&mut self, w: &mut Work) -> Result<(), String> {
        let wanted = *self.control.borrow_and_update();
        if wanted.paused != w.seen.paused {
            store::set_paused(&self.session(w)?.conn(), wanted.paused).map_err(|e| e.to_string())?;
            tracing::info!(projection = %self.plugin.description.name, paused = wanted.paused, "operator request");
        }
        if wanted.resume != w.seen.resume {
            // Resuming retries the event a failed projection stopped at.
            w.stuck_at = None;
        }
        if wanted.skip != w.seen.skip
            && let Some(event) = w.stuck_at.take()
        {
            let error = self.shared.status().error.map(|f| f.message).unwrap_or_default();
            let dead =
                DeadLetter { event: &event, error: &error, plugin_hash: &self.plugin.hash, attempts: 0 };
            store::dead_letter(&self.session(w)?.conn(), &dead, event.position).map_err(|e| e.to_string())?;
            self.shared.metrics.dead_lettered.inc();
            self.after_commit(w, event.position, 0);
            self.refresh_dead_letter_count(w)?;
            self.shared.update(|s| s.error = None);
        }
        if wanted.retry_dead_letters != w.seen.retry_dead_letters {
            self.retry_dead_letters(w)?;
        }
        w.seen = wanted;
        Ok(())
    }

    fn session<'a>(&self, w: &'a mut Work) -> Result<&'a mut SqlSession, String> {
        w.instance.as_mut().and_then(|i| i.sql()).ok_or_else(|| "lost the database session".to_owned())
    }

    /// Applies each dead letter again, on its own; those that succeed leave
    /// the dead letters.
    fn retry_dead_letters(&mut self, w: &mut Work) -> Result<(), String> {
        let positions = store::dead_letter_positions(&self.session(w)?.conn()).map_err(|e| e.to_string())?;
        for position in positions {
            let events = match w.reader.event_at(position) {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(projection = %self.plugin.description.name, error = %e, "cannot read a dead letter's event; the rest stay dead letters");
                    break;
                }
            };
            let inst = w.instance.take().ok_or("lost the plugin instance")?;
            let (inst, outcome) = self.apply_batch(inst, &events, None, Some(position), w.record.as_ref())?;
            w.instance = Some(inst);
            if outcome.is_ok() {
                self.shared.update(|s| s.events_applied += 1);
            }
        }
        self.refresh_dead_letter_count(w)
    }

    fn refresh_dead_letter_count(&self, w: &mut Work) -> Result<(), String> {
        let n = store::count_dead_letters(&self.session(w)?.conn()).map_err(|e| e.to_string())?;
        self.shared.update(|s| s.dead_letters = n);
        Ok(())
    }

    /// Applies one batch, retrying with backoff, then the error policy.
    /// False on shutdown.
    fn apply_with_retries(&mut self, w: &mut Work, events: &Batch, upto: u64) -> Result<bool, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let inst = w.instance.take().ok_or("lost the plugin instance")?;
            let started = Instant::now();
            let (inst, outcome) = self.apply_batch(inst, events, Some(upto), None, w.record.as_ref())?;
            w.instance = Some(inst);
            let err = match outcome {
                Ok(()) => {
                    self.shared.metrics.observe_batch(started.elapsed(), events.len() as u64);
                    self.after_commit(w, upto, events.len() as u64);
                    self.shared.update(|s| s.error = None);
                    return Ok(true);
                }
                Err(err) => err,
            };
            self.shared.metrics.failures.inc();
            let failure = Failure {
                message: err.message,
                position: err.position.or(events.first_position()),
                attempts: attempt,
                at: db::unix_ms(),
            };
            tracing::warn!(
                projection = %self.plugin.description.name,
                attempt, position = ?failure.position, error = %failure.message,
                "batch failed"
            );
            let retry = attempt < self.options.max_attempts;
            self.shared.update(|s| s.error = Some(failure.clone()));
            if retry {
                let backoff = self.options.backoff * 2u32.saturating_pow(attempt - 1);
                if !self.sleep(backoff) {
                    return Ok(false);
                }
                continue;
            }
            if events.len() > 1 {
                // Find the failing event: go one event at a time through
                // this batch.
                w.single_until = upto;
                return Ok(true);
            }
            let Some(event) = events.first().map(|e| e.to_event()) else { return Ok(true) };
            match self.policy {
                ErrorPolicy::Pause => {
                    tracing::error!(
                        projection = %self.plugin.description.name,
                        position = event.position,
                        "stopped at an event after {attempt} failed attempts; resume to retry, skip to dead-letter it"
                    );
                    w.stuck_at = Some(event);
                }
                ErrorPolicy::DeadLetter => {
                    let dead = DeadLetter {
                        event: &event,
                        error: &failure.message,
                        plugin_hash: &self.plugin.hash,
                        attempts: attempt,
                    };
                    store::dead_letter(&self.session(w)?.conn(), &dead, upto).map_err(|e| e.to_string())?;
                    self.shared.metrics.dead_lettered.inc();
                    self.after_commit(w, upto, 0);
                    self.refresh_dead_letter_count(w)?;
                }
            }
            return Ok(true);
        }
    }

    /// Applies a batch inside the transaction spanning batches (opening it
    /// if needed), without committing. A failure rolls the whole
    /// transaction back to the last commit; its batches are then applied
    /// again one transaction each, where retries and the error policy work
    /// as for any batch.
    fn apply_spanning(&mut self, w: &mut Work, events: &Batch, upto: u64, full: bool) -> Result<(), String> {
        let mut inst = w.instance.take().ok_or("lost the plugin instance")?;
        let started = Instant::now();
        if w.raised_cache.is_none()
            && self.options.catch_up_cache_kib > 0
            && let Some(s) = inst.sql()
        {
            w.raised_cache = raise_cache(&s.conn(), self.options.catch_up_cache_kib);
        }
        let outcome = match w.open {
            Some(_) => Ok(()),
            None => begin(&mut inst),
        }
        .and_then(|()| apply_events(&mut inst, events, w.record.as_ref(), || w.reader.read_ahead()));
        match outcome {
            Ok(()) => {
                w.instance = Some(inst);
                self.shared.metrics.observe_apply(started.elapsed());
                w.checkpoint = upto;
                let open = w.open.get_or_insert(Open { since: started, batches: 0, applied: 0, full });
                open.batches += 1;
                open.applied += events.len() as u64;
                open.full = full;
            }
            Err(e) => {
                let inst = self.roll_back(inst, &e)?;
                w.instance = Some(inst);
                w.open = None;
                tracing::debug!(
                    projection = %self.plugin.description.name,
                    position = ?e.position, error = %e.message,
                    "batch failed inside a catch-up transaction; applying batch by batch"
                );
                self.back_to_last_commit(w, upto);
            }
        }
        Ok(())
    }

    /// Gives the page cache raised for catching up back.
    fn lower_cache(&self, w: &mut Work) {
        if let Some(size) = w.raised_cache.take()
            && let Ok(s) = self.session(w)
        {
            let _ = s.conn().pragma_update(None, "cache_size", size);
        }
    }

    /// Commits the transaction spanning batches, with the checkpoint.
    fn commit_open(&mut self, w: &mut Work) -> Result<(), String> {
        let Some(open) = w.open.take() else { return Ok(()) };
        let checkpoint = w.checkpoint;
        let committed = store::commit_batch(&self.session(w)?.conn(), checkpoint);
        match committed {
            Ok(()) => {
                self.shared.metrics.observe_commit(open.batches, open.applied);
                self.after_commit(w, checkpoint, open.applied);
                self.shared.update(|s| s.error = None);
            }
            Err(e) => {
                // Nothing of it is kept: go again from the last commit.
                let _ = self.session(w)?.conn().execute_batch(super::sql::ROLLBACK);
                tracing::warn!(
                    projection = %self.plugin.description.name,
                    error = %e,
                    "cannot commit a catch-up transaction; applying batch by batch"
                );
                self.back_to_last_commit(w, checkpoint);
            }
        }
        Ok(())
    }

    /// After a catch-up transaction was rolled back: go on from the last
    /// commit, one transaction per batch up to `upto`.
    fn back_to_last_commit(&self, w: &mut Work, upto: u64) {
        w.checkpoint = self.shared.committed();
        w.solo_until = upto;
    }

    /// Publishes a new checkpoint and counts what was applied.
    fn after_commit(&self, w: &mut Work, checkpoint: u64, applied: u64) {
        w.checkpoint = checkpoint;
        self.shared.publish(checkpoint);
        if w.record.is_some() {
            self.shared.commands.notify_one();
        }
        w.rate.count += applied;
        let elapsed = w.rate.since.elapsed();
        let rate = (elapsed >= Duration::from_secs(1)).then(|| w.rate.count as f64 / elapsed.as_secs_f64());
        if rate.is_some() {
            w.rate = Rate { since: Instant::now(), count: 0 };
        }
        self.shared.update(|s| {
            s.position = checkpoint;
            s.events_applied += applied;
            if let Some(r) = rate {
                s.events_per_second = r;
            }
        });
        if w.stuck_at.is_none() && checkpoint >= w.single_until {
            w.single_until = 0;
        }
    }

    /// One attempt: BEGIN, apply, checkpoint (or drop the dead letter being
    /// retried), COMMIT; rolled back on any failure. Returns the (possibly
    /// recreated) instance.
    fn apply_batch(
        &self,
        mut inst: ProjectionInstance,
        events: &Batch,
        checkpoint: Option<u64>,
        dead_letter: Option<u64>,
        record: Option<&Record>,
    ) -> Result<(ProjectionInstance, Result<(), BatchError>), String> {
        let outcome = attempt(&mut inst, events, checkpoint, dead_letter, record);
        if let Err(e) = &outcome {
            inst = self.roll_back(inst, e)?;
        }
        Ok((inst, outcome))
    }

    /// Rolls back the open transaction after `e`; recreates the instance if
    /// `e` left it unusable.
    fn roll_back(&self, mut inst: ProjectionInstance, e: &BatchError) -> Result<ProjectionInstance, String> {
        if let Some(s) = inst.sql() {
            let _ = s.conn().execute_batch(super::sql::ROLLBACK);
        }
        if e.poisoned {
            let session: SqlSession = inst.into_sql().ok_or("lost the database session")?;
            inst = self.plugin.instantiate(Some(session)).map_err(|e| e.to_string())?;
        }
        Ok(inst)
    }

    /// Waits for shutdown, or (when `wake` is set) for new events or an
    /// operator request; false on shutdown.
    fn wait(&mut self, wake: bool) -> bool {
        let (head, control, shutdown) = (&mut self.head, &mut self.control, &mut self.shutdown);
        self.rt.block_on(async {
            loop {
                tokio::select! {
                    r = head.changed(), if wake => return r.is_ok(),
                    r = control.changed(), if wake => return r.is_ok(),
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            return false;
                        }
                    }
                }
            }
        })
    }

    /// Sleeps, waking early on shutdown; false on shutdown.
    fn sleep(&mut self, d: Duration) -> bool {
        let shutdown = &mut self.shutdown;
        self.rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(d) => true,
                _ = shutdown.changed() => false,
            }
        })
    }
}

pub(super) fn attempt(
    inst: &mut ProjectionInstance,
    events: &Batch,
    checkpoint: Option<u64>,
    dead_letter: Option<u64>,
    record: Option<&Record>,
) -> Result<(), BatchError> {
    begin(inst)?;
    apply_events(inst, events, record, || {})?;
    let session = inst.sql().ok_or_else(lost)?;
    let conn = session.conn();
    if let Some(position) = dead_letter {
        conn.execute(super::sql::DELETE_DEAD_LETTER, [position]).map_err(storage)?;
        return conn.execute_batch(super::sql::COMMIT).map_err(storage);
    }
    match checkpoint {
        Some(c) => store::commit_batch(&conn, c).map_err(storage),
        None => conn.execute_batch(super::sql::COMMIT).map_err(storage),
    }
}

fn storage(e: rusqlite::Error) -> BatchError {
    BatchError { message: format!("projection database error: {e}"), position: None, poisoned: false }
}

fn lost() -> BatchError {
    BatchError { message: "projection has no database session".into(), position: None, poisoned: true }
}

/// Raises `conn`'s page cache to `kib`; returns the size it had.
fn raise_cache(conn: &Connection, kib: u32) -> Option<i64> {
    let size: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0)).ok()?;
    conn.pragma_update(None, "cache_size", -i64::from(kib)).ok()?;
    Some(size)
}

/// Opens a transaction on the instance's database.
fn begin(inst: &mut ProjectionInstance) -> Result<(), BatchError> {
    inst.sql().ok_or_else(lost)?.conn().execute_batch(super::sql::BEGIN).map_err(storage)
}

/// Hands `events` to the plugin, inside the open transaction; for a
/// reactor, records the commands it returned in the same transaction
/// (`record`; without it they are dropped, as in `verify`'s scratch build).
/// `applied` runs when the plugin has returned, before its queued
/// statements are waited for.
fn apply_events(
    inst: &mut ProjectionInstance,
    events: &Batch,
    record: Option<&Record>,
    applied: impl FnOnce(),
) -> Result<(), BatchError> {
    if events.is_empty() {
        applied();
        return Ok(());
    }
    let outcome = inst.apply(events);
    applied();
    // Statements the plugin queued run (or, if the batch failed anyway, are
    // dropped) before the runner touches the connection again. One that
    // failed belongs to an event at or before the plugin's own failure, so
    // it is the batch's failure.
    let queued = inst.sql().and_then(|s| s.settle(matches!(outcome, Ok(Ok(_)))));
    match (outcome, queued) {
        (Err(e), queued) => {
            Err(BatchError { message: e.to_string(), position: queued.map(|f| f.position), poisoned: true })
        }
        (Ok(_), Some(f)) => Err(BatchError {
            message: failure_message(&f.error),
            position: Some(f.position),
            poisoned: false,
        }),
        (Ok(Ok(commands)), None) => match record {
            Some(r) if !commands.is_empty() => {
                let session = inst.sql().ok_or_else(lost)?;
                dispatch::record(&session.conn(), r, events, commands)
                    .map_err(|(message, position)| BatchError { message, position, poisoned: false })
            }
            _ => Ok(()),
        },
        (Ok(Err(e)), None) => {
            Err(BatchError { message: e.message, position: Some(e.position), poisoned: false })
        }
    }
}

/// How a failed queued statement reads in the projection's status: as the
/// SDK words a failed `execute` that fails an event.
fn failure_message(e: &crate::plugin::SqlError) -> String {
    match e {
        crate::plugin::SqlError::Refused(m) => format!("statement refused by the host: {m}"),
        crate::plugin::SqlError::Failed(m) => format!("SQL failed: {m}"),
    }
}

/// Reads a projection's events from the log: the batches it subscribes to
/// (its event types), the next one read on a helper thread while the
/// current one is being applied ([`Reader::read_ahead`]), so reading and
/// applying overlap in a replay. Each side has a source (a connection) of
/// its own.
pub(super) struct Reader {
    source: Box<dyn BatchSource>,
    types: Option<Arc<[String]>>,
    requests: std::sync::mpsc::SyncSender<Ask>,
    answers: std::sync::mpsc::Receiver<(Ask, Result<Batch, ReadError>)>,
    /// The read under way on the helper thread.
    pending: Option<Ask>,
    /// The read to start next, when [`Reader::read_ahead`] is called.
    next: Option<Ask>,
}

impl Reader {
    /// Opens `log` for `plugin` and starts the helper thread (it ends when
    /// the reader is dropped).
    pub(super) fn open(log: &EventLog, plugin: &ProjectionPlugin) -> Result<Reader, String> {
        let open = || log.batch_source().map_err(|e| format!("cannot open the event log: {e}"));
        let (source, mut helper) = (open()?, open()?);
        let types = (!plugin.description.event_types.is_empty())
            .then(|| plugin.description.event_types.iter().cloned().collect::<Arc<[String]>>());
        let helper_types = types.clone();
        let (requests, asked) = std::sync::mpsc::sync_channel::<Ask>(1);
        let (answer, answers) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("refract-read-{}", plugin.description.name))
            .spawn(move || {
                while let Ok(ask) = asked.recv() {
                    let events = helper.read(ask, helper_types.as_deref());
                    if answer.send((ask, events)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the log reader: {e}"))?;
        Ok(Reader { source, types, requests, answers, pending: None, next: None })
    }

    /// At most `limit` events after `after` up to `upto`, of the
    /// projection's types — taken from the read under way when it matches.
    /// When they fill the batch, the batch after them is the one that
    /// [`Reader::read_ahead`] starts reading.
    pub(super) fn read(&mut self, after: u64, upto: u64, limit: usize) -> Result<Batch, ReadError> {
        let wanted = Ask { after, upto, limit };
        self.next = None;
        let mut events = None;
        if let Some(ask) = self.pending.take()
            && let Ok((got, result)) = self.answers.recv()
        {
            // A full batch is the same whatever the head; a short one only
            // if the head has not moved since.
            let full = result.as_ref().is_ok_and(|e| e.len() == limit);
            if got == ask
                && ask.after == after
                && ask.limit == limit
                && (full || ask.upto == upto)
                && result.is_ok()
            {
                events = Some(result?);
            }
        }
        let events = match events {
            Some(e) => e,
            None => self.source.read(wanted, self.types.as_deref())?,
        };
        if events.len() == limit
            && let Some(last) = events.last_position()
        {
            self.next = Some(Ask { after: last, upto, limit });
        }
        Ok(events)
    }

    /// Starts reading, on the helper thread, the batch after the last full
    /// one [`Reader::read`] returned. A replay calls it once the plugin is
    /// done with the batch and waits for its queued statements: the read
    /// then takes the core the plugin leaves, instead of competing with
    /// the plugin and the writer of queued statements for two.
    pub(super) fn read_ahead(&mut self) {
        if let Some(ask) = self.next.take()
            && self.requests.try_send(ask).is_ok()
        {
            self.pending = Some(ask);
        }
    }

    /// The event at `position`, whatever its type.
    fn event_at(&mut self, position: u64) -> Result<Batch, ReadError> {
        self.source.read(Ask { after: position - 1, upto: position, limit: 1 }, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catch_up_cache_is_raised_and_its_old_size_returned() {
        let conn = Connection::open_in_memory().unwrap();
        let size = |c: &Connection| c.pragma_query_value(None, "cache_size", |r| r.get::<_, i64>(0)).unwrap();
        let before = size(&conn);
        assert_eq!(raise_cache(&conn, 16 * 1024), Some(before));
        // Negative: KiB, not pages.
        assert_eq!(size(&conn), -16 * 1024);
    }
}
