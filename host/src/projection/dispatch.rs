//! A reactor's dispatcher: sends the commands its batches decided.
//!
//! The runner writes a batch's commands into `refract_commands` in the
//! batch's own transaction. The dispatcher, a thread beside the runner,
//! takes them in order and sends each through the command handlers with
//! the idempotency key `reactor:<name>:<position>:<index>`, then removes
//! it. A crash before the removal sends it again on restart, and the key
//! makes that a duplicate: each command takes effect exactly once. A
//! command the handler rejects (or that cannot be decided at all) is moved
//! to `refract_refused_commands` with the reason, and the reactor goes on;
//! one that cannot be sent now (the log unavailable, the handler not
//! loaded) is tried again with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::{Shared, sql};
use crate::command::{self, CommandError, CommandRequest, Handlers};
use crate::db::{self, Synchronous};
use crate::log::EventLog;

/// What a reactor's commands came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommandStats {
    /// Decided and waiting to be sent.
    pub pending: u64,
    /// Sent and accepted since the host started.
    pub sent: u64,
    /// Sent since the host started and found already done: sent before a
    /// crash or by another node on the same log (the idempotency key).
    pub duplicates: u64,
    /// Refused by their handler, or not valid at all: the ones listed by
    /// `GET /projections/{name}/refused-commands`.
    pub refused: u64,
}

/// Where a reactor's runner records the commands a batch returned.
pub(super) struct Record {
    /// The reactor's name: part of each command's idempotency key.
    pub reactor: String,
}

/// Records `commands`, returned by the reactor for `events`, in the open
/// transaction on `conn`: each one under the event it answers and its
/// index among that event's commands, with metadata naming the reactor
/// and the event (`reactor`, `causation_position`) and carrying the
/// event's `correlation_id` on. A command for an event outside the batch
/// fails the batch: (message, position).
pub(super) fn record(
    conn: &Connection,
    r: &Record,
    events: &crate::plugin::Batch,
    commands: Vec<crate::plugin::CommandOut>,
) -> Result<(), (String, Option<u64>)> {
    #[derive(serde::Deserialize)]
    struct Correlation<'a> {
        #[serde(borrow, default)]
        correlation_id: Option<&'a RawValue>,
    }
    let positions = events.positions();
    if let Some(c) = commands.iter().find(|c| positions.binary_search(&c.position).is_err()) {
        return Err((
            format!(
                "the reactor returned a command ({} to {}) for position {}, which is not in the batch",
                c.command_type, c.handler, c.position
            ),
            None,
        ));
    }
    let metadata: std::collections::HashMap<u64, &str> = events
        .iter()
        .filter(|e| commands.iter().any(|c| c.position == e.position))
        .map(|e| (e.position, e.metadata))
        .collect();
    let mut indices: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let storage = |e: rusqlite::Error| (format!("projection database error: {e}"), None);
    // Read in the transaction: a hand-over (see [`hand_over`]) moves it
    // between batches.
    let after: u64 = conn
        .prepare_cached(sql::READ_COMMANDS_AFTER)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(storage)?;
    let mut insert = conn.prepare_cached(sql::INSERT_COMMAND).map_err(storage)?;
    for c in commands {
        let idx = indices.entry(c.position).or_default();
        let this = *idx;
        *idx += 1;
        if c.position <= after {
            continue;
        }
        let correlation = metadata
            .get(&c.position)
            .and_then(|m| serde_json::from_str::<Correlation<'_>>(m).ok())
            .and_then(|m| m.correlation_id.map(|v| v.get().to_owned()));
        let mut meta = format!(
            r#"{{"reactor":{},"causation_position":{}"#,
            serde_json::Value::from(r.reactor.as_str()),
            c.position
        );
        if let Some(id) = correlation {
            meta.push_str(r#","correlation_id":"#);
            meta.push_str(&id);
        }
        meta.push('}');
        insert
            .execute(params![
                db::sqlite_int(c.position),
                this,
                c.handler,
                c.command_type,
                c.stream_id,
                c.data,
                meta
            ])
            .map_err(storage)?;
    }
    Ok(())
}

/// Hands a reactor over from its previous build (`old`, stopped) to its
/// new one (`new`, running): from then on the new build sends commands
/// only for events the old one had not reacted to — those it decided for
/// earlier events are dropped, and its runner records none for them
/// later — and it takes over the old one's unsent and refused commands.
/// The old file is left as it was, so a crash before the cut-over
/// completes loses nothing. Returns the old build's checkpoint.
pub(super) fn hand_over(old: &std::path::Path, new: &std::path::Path) -> rusqlite::Result<u64> {
    let from = db::open_ro(old)?;
    let upto: u64 = from.query_row(sql::READ_POSITION, [], |r| r.get(0))?;
    let pending: Vec<Pending> = {
        let mut stmt = from.prepare(sql::ALL_COMMANDS)?;
        stmt.query_map([], pending_row)?.collect::<rusqlite::Result<_>>()?
    };
    let refused: Vec<RefusedCommand> = {
        let mut stmt = from.prepare(sql::ALL_REFUSED_COMMANDS)?;
        stmt.query_map([], refused_row)?.collect::<rusqlite::Result<_>>()?
    };
    drop(from);
    let mut to = db::open_rw(new, Synchronous::Normal)?;
    to.busy_timeout(Duration::from_secs(30))?;
    let tx = to.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(sql::DROP_COMMANDS_UPTO, [db::sqlite_int(upto)])?;
    tx.execute(sql::RAISE_COMMANDS_AFTER, [db::sqlite_int(upto)])?;
    for p in &pending {
        tx.execute(
            sql::KEEP_COMMAND,
            params![p.position, p.idx, p.handler, p.command_type, p.stream_id, p.data, p.metadata],
        )?;
    }
    for r in &refused {
        tx.execute(
            sql::KEEP_REFUSED_COMMAND,
            params![
                r.position,
                r.index,
                r.handler,
                r.command_type,
                r.stream_id,
                r.code,
                r.message,
                r.recorded_at
            ],
        )?;
    }
    tx.commit()?;
    Ok(upto)
}

/// What the dispatcher needs.
pub(super) struct Dispatcher {
    pub name: String,
    pub db_path: PathBuf,
    pub log: EventLog,
    pub handlers: Arc<Handlers>,
    pub shared: Arc<Shared>,
    /// Pause the reactor when a command is refused (else go on).
    pub pause_on_refused: bool,
    pub shutdown: watch::Receiver<bool>,
    pub rt: Handle,
}

/// A pending command, as recorded.
struct Pending {
    position: u64,
    idx: u32,
    handler: String,
    command_type: String,
    stream_id: String,
    data: String,
    metadata: String,
}

/// What became of one command.
enum Sent {
    Done {
        duplicate: bool,
    },
    Refused {
        code: String,
        message: String,
    },
    /// Not now: try again later.
    Later(String),
}

const BATCH: u64 = 256;
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Dispatcher {
    pub fn run(mut self) {
        let mut conn: Option<Connection> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match db::open_rw(&self.db_path, Synchronous::Normal) {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        if !self.wait(backoff) {
                            return;
                        }
                        continue;
                    }
                },
            };
            match self.round(c) {
                // Nothing pending: wait for the runner's next commit.
                Ok(0) => {
                    backoff = Duration::from_millis(50);
                    if !self.wait(IDLE_POLL) {
                        return;
                    }
                }
                Ok(_) => backoff = Duration::from_millis(50),
                Err(reason) => {
                    tracing::debug!(reactor = %self.name, reason, "commands not sent yet; retrying");
                    if !self.wait(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Waits for the runner's nudge, `d`, or shutdown; false on shutdown.
    fn wait(&mut self, d: Duration) -> bool {
        let (shared, shutdown) = (self.shared.clone(), &mut self.shutdown);
        self.rt.block_on(async {
            tokio::select! {
                _ = shared.commands.notified() => true,
                _ = tokio::time::sleep(d) => true,
                r = shutdown.changed() => r.is_ok() && !*shutdown.borrow(),
            }
        })
    }

    /// Sends what is pending, in order; how many were settled. Stops at
    /// the first command that cannot be sent now.
    fn round(&mut self, conn: &mut Connection) -> Result<usize, String> {
        let pending = read_pending(conn).map_err(|e| e.to_string())?;
        self.update(conn);
        let mut settled = 0;
        for p in pending {
            // Paused: nothing more is sent until an operator resumes.
            if *self.shutdown.borrow() || self.shared.control.borrow().paused {
                break;
            }
            match self.send(&p) {
                Sent::Done { duplicate } => {
                    conn.execute(sql::DELETE_COMMAND, params![p.position, p.idx])
                        .map_err(|e| e.to_string())?;
                    self.count(|s| if duplicate { s.duplicates += 1 } else { s.sent += 1 });
                    self.shared.metrics.reactor_command(if duplicate { "duplicate" } else { "sent" });
                }
                Sent::Refused { code, message } => {
                    tracing::warn!(reactor = %self.name, position = p.position, handler = %p.handler, %code, %message, "command refused");
                    let tx = conn.transaction().map_err(|e| e.to_string())?;
                    tx.execute(
                        sql::INSERT_REFUSED_COMMAND,
                        params![
                            p.position,
                            p.idx,
                            p.handler,
                            p.command_type,
                            p.stream_id,
                            code,
                            message,
                            db::unix_ms()
                        ],
                    )
                    .and_then(|_| tx.execute(sql::DELETE_COMMAND, params![p.position, p.idx]))
                    .and_then(|_| tx.commit())
                    .map_err(|e| e.to_string())?;
                    self.shared.metrics.reactor_command("refused");
                    if self.pause_on_refused {
                        tracing::warn!(reactor = %self.name, position = p.position, "paused at a refused command; resume to go on");
                        self.shared.control.send_modify(|c| c.paused = true);
                    }
                }
                Sent::Later(reason) => return Err(reason),
            }
            settled += 1;
        }
        self.update(conn);
        Ok(settled)
    }

    fn count(&self, f: impl FnOnce(&mut CommandStats)) {
        self.shared.update(|s| f(s.commands.get_or_insert_with(CommandStats::default)));
    }

    /// Refreshes the pending and refused counts from the database.
    fn update(&self, conn: &Connection) {
        let pending = conn.query_row(sql::COUNT_PENDING_COMMANDS, [], |r| r.get::<_, u64>(0)).unwrap_or(0);
        let refused = conn.query_row(sql::COUNT_REFUSED_COMMANDS, [], |r| r.get::<_, u64>(0)).unwrap_or(0);
        self.count(|s| {
            s.pending = pending;
            s.refused = refused;
        });
    }

    fn send(&self, p: &Pending) -> Sent {
        let (Ok(data), Ok(metadata)) =
            (RawValue::from_string(p.data.clone()), RawValue::from_string(p.metadata.clone()))
        else {
            return Sent::Refused {
                code: "failed".into(),
                message: "the reactor returned data that is not JSON".into(),
            };
        };
        let req = CommandRequest {
            command_type: p.command_type.clone(),
            stream_id: p.stream_id.clone(),
            data,
            metadata: Some(metadata),
            idempotency_key: Some(format!("reactor:{}:{}:{}", self.name, p.position, p.idx)),
        };
        match self.rt.block_on(command::execute(&self.log, &self.handlers, &p.handler, req)) {
            Ok(r) => Sent::Done { duplicate: r.duplicate },
            Err(CommandError::Rejected { code, message }) => Sent::Refused { code, message },
            Err(
                e @ (CommandError::UnknownCommandType { .. }
                | CommandError::Invalid(_)
                | CommandError::SchemaViolation { .. }
                | CommandError::PluginFailed { .. }),
            ) => Sent::Refused { code: "failed".into(), message: e.to_string() },
            // The handler may be loaded later; the log may come back.
            Err(
                e @ (CommandError::UnknownHandler(_)
                | CommandError::Unavailable(_)
                | CommandError::Storage(_)
                | CommandError::Conflict { .. }),
            ) => Sent::Later(e.to_string()),
        }
    }
}

fn read_pending(conn: &Connection) -> rusqlite::Result<Vec<Pending>> {
    let mut stmt = conn.prepare_cached(sql::PENDING_COMMANDS)?;
    let rows = stmt.query_map([BATCH], pending_row)?;
    rows.collect()
}

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    Ok(Pending {
        position: r.get(0)?,
        idx: r.get(1)?,
        handler: r.get(2)?,
        command_type: r.get(3)?,
        stream_id: r.get(4)?,
        data: r.get(5)?,
        metadata: r.get(6)?,
    })
}

fn refused_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefusedCommand> {
    Ok(RefusedCommand {
        position: r.get(0)?,
        index: r.get(1)?,
        handler: r.get(2)?,
        command_type: r.get(3)?,
        stream_id: r.get(4)?,
        code: r.get(5)?,
        message: r.get(6)?,
        recorded_at: r.get(7)?,
    })
}

/// A refused command, as `GET /projections/{name}/refused-commands` lists
/// it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RefusedCommand {
    /// The event it answered.
    pub position: u64,
    /// Its index among that event's commands.
    pub index: u32,
    pub handler: String,
    #[serde(rename = "type")]
    pub command_type: String,
    pub stream_id: String,
    /// The handler's rejection code, or `failed`.
    pub code: String,
    pub message: String,
    pub recorded_at: i64,
}

pub(super) fn list_refused(conn: &Connection, limit: u64) -> rusqlite::Result<Vec<RefusedCommand>> {
    let mut stmt = conn.prepare_cached(sql::LIST_REFUSED_COMMANDS)?;
    let rows = stmt.query_map([db::sqlite_int(limit)], refused_row)?;
    rows.collect()
}
