//! The loop that feeds one projection: read a batch from the log, apply it
//! in the sandbox, commit it with the checkpoint, repeat; wait for appends
//! when caught up; retry failures with backoff, then stop at the event.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::status::{Failure, State};
use super::{Shared, store};
use crate::db;
use crate::log::range_sql;
use crate::plugin::{CallError, Event, ProjectionInstance, ProjectionPlugin, SqlSession};

/// How a runner batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// Most events per `apply` call (one transaction).
    pub batch_size: usize,
    /// Attempts at one batch before the projection is marked failed.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles with each further one.
    pub backoff: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self { batch_size: 500, max_attempts: 5, backoff: Duration::from_millis(100) }
    }
}

pub(super) struct Runner {
    pub shared: Arc<Shared>,
    pub plugin: Arc<ProjectionPlugin>,
    pub db_path: std::path::PathBuf,
    pub log_path: std::path::PathBuf,
    pub head: watch::Receiver<u64>,
    pub shutdown: watch::Receiver<bool>,
    pub options: RunnerOptions,
    pub rt: Handle,
}

/// Why a batch attempt failed.
struct BatchError {
    message: String,
    position: Option<u64>,
    /// The instance is unusable (trap, timeout) and must be recreated.
    poisoned: bool,
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
            self.wait_shutdown();
        }
        self.shared.update(|s| {
            if s.status != State::Failed {
                s.status = State::Stopped;
            }
        });
    }

    fn run_inner(&mut self) -> Result<(), String> {
        let (session, mut checkpoint) = store::open(&self.db_path, &self.plugin)?;
        self.shared.checkpoint.send_replace(checkpoint);
        self.shared.update(|s| s.position = checkpoint);
        let log = db::open_ro(&self.log_path).map_err(|e| format!("cannot open the event log: {e}"))?;
        let types = (!self.plugin.description.event_types.is_empty())
            .then(|| serde_json::to_string(&self.plugin.description.event_types).unwrap_or_default());
        let mut instance = Some(self.plugin.instantiate(Some(session)).map_err(|e| e.to_string())?);
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            let head = *self.head.borrow_and_update();
            if checkpoint >= head {
                self.shared.update(|s| s.status = State::Live);
                if !self.wait_for_change() {
                    return Ok(());
                }
                continue;
            }
            self.shared.update(|s| {
                if s.status != State::CatchingUp {
                    s.status = State::CatchingUp;
                }
            });
            let events = read_batch(&log, checkpoint, head, self.options.batch_size, types.as_deref())
                .map_err(|e| format!("cannot read the event log: {e}"))?;
            // A short batch covers everything up to the head, including
            // events of types this projection skips.
            let upto = if events.len() < self.options.batch_size {
                head
            } else {
                events.last().map_or(head, |e| e.position)
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                let inst = match instance.take() {
                    Some(i) => i,
                    None => return Err("lost the plugin instance".into()),
                };
                let (inst, outcome) = self.apply_batch(inst, &events, upto)?;
                instance = Some(inst);
                match outcome {
                    Ok(()) => {
                        checkpoint = upto;
                        self.shared.checkpoint.send_replace(checkpoint);
                        self.shared.update(|s| {
                            s.position = checkpoint;
                            s.events_applied += events.len() as u64;
                            s.error = None;
                        });
                        break;
                    }
                    Err(err) => {
                        let failure = Failure {
                            message: err.message,
                            position: err.position.or(events.first().map(|e| e.position)),
                            attempts: attempt,
                            at: db::unix_ms(),
                        };
                        tracing::warn!(
                            projection = %self.plugin.description.name,
                            attempt, position = ?failure.position, error = %failure.message,
                            "batch failed"
                        );
                        if attempt >= self.options.max_attempts {
                            self.shared.update(|s| {
                                s.status = State::Failed;
                                s.error = Some(failure);
                            });
                            tracing::error!(
                                projection = %self.plugin.description.name,
                                "projection stopped after {attempt} failed attempts"
                            );
                            self.wait_shutdown();
                            return Ok(());
                        }
                        self.shared.update(|s| s.error = Some(failure));
                        let backoff = self.options.backoff * 2u32.saturating_pow(attempt - 1);
                        if !self.sleep(backoff) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// One attempt: BEGIN, apply, checkpoint, COMMIT; rolled back on any
    /// failure. Returns the (possibly recreated) instance.
    fn apply_batch(
        &self,
        mut inst: ProjectionInstance,
        events: &[Event],
        upto: u64,
    ) -> Result<(ProjectionInstance, Result<(), BatchError>), String> {
        let outcome = attempt(&mut inst, events, upto);
        if let Err(e) = &outcome {
            if let Some(s) = inst.sql() {
                let _ = s.conn.execute_batch(super::sql::ROLLBACK);
            }
            if e.poisoned {
                let session: SqlSession = inst.into_sql().ok_or("lost the database session")?;
                inst = self.plugin.instantiate(Some(session)).map_err(|e| e.to_string())?;
            }
        }
        Ok((inst, outcome))
    }

    /// Waits for a new head or shutdown; false on shutdown.
    fn wait_for_change(&mut self) -> bool {
        let (head, shutdown) = (&mut self.head, &mut self.shutdown);
        self.rt.block_on(async {
            tokio::select! {
                r = head.changed() => r.is_ok(),
                _ = shutdown.changed() => false,
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

    fn wait_shutdown(&mut self) {
        let shutdown = &mut self.shutdown;
        self.rt.block_on(async {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        });
    }
}

fn attempt(inst: &mut ProjectionInstance, events: &[Event], upto: u64) -> Result<(), BatchError> {
    let storage = |e: rusqlite::Error| BatchError {
        message: format!("projection database error: {e}"),
        position: None,
        poisoned: false,
    };
    let sql = inst.sql().ok_or_else(|| BatchError {
        message: "projection has no database session".into(),
        position: None,
        poisoned: true,
    })?;
    sql.conn.execute_batch(super::sql::BEGIN).map_err(storage)?;
    if !events.is_empty() {
        match inst.apply(events) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(BatchError { message: e.message, position: Some(e.position), poisoned: false });
            }
            Err(e @ (CallError::Timeout(_) | CallError::Trap(_))) => {
                return Err(BatchError { message: e.to_string(), position: None, poisoned: true });
            }
        }
    }
    let sql = inst.sql().ok_or_else(|| BatchError {
        message: "projection has no database session".into(),
        position: None,
        poisoned: true,
    })?;
    store::commit_batch(&sql.conn, upto).map_err(storage)
}

fn read_batch(
    log: &Connection,
    after: u64,
    upto: u64,
    limit: usize,
    types: Option<&str>,
) -> rusqlite::Result<Vec<Event>> {
    let sql = if types.is_some() { range_sql::OF_TYPES } else { range_sql::ALL };
    let mut stmt = log.prepare_cached(sql)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok(Event {
            position: r.get(0)?,
            stream_id: r.get(1)?,
            stream_version: r.get(2)?,
            event_type: r.get(3)?,
            data: r.get(4)?,
            metadata: r.get(5)?,
            recorded_at: r.get(6)?,
        })
    };
    let rows = match types {
        None => stmt.query_map(params![after, upto, limit as u64], map)?,
        Some(t) => stmt.query_map(params![after, upto, limit as u64, t], map)?,
    };
    rows.collect()
}
