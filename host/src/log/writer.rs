//! The single writer: group commit of concurrent appends.
//!
//! Appends queue on a channel. The writer thread takes the first, then
//! whatever else is already waiting (up to a bound), and commits them all in
//! one SQLite transaction, so one fsync serves many appends. Each append is
//! still checked against its own expected version; a conflict fails that
//! append only.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{oneshot, watch};

use super::sql;
use super::types::{AppendError, Appended, ExpectedVersion, Idempotency};

/// An event ready to be written: validated, serialized.
pub(super) struct PreparedEvent {
    pub event_type: String,
    pub data: String,
    pub metadata: String,
}

/// One append waiting for the writer.
pub(super) struct Request {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<PreparedEvent>,
    pub idempotency: Option<Idempotency>,
    pub reply: oneshot::Sender<Result<Outcome, AppendError>>,
}

/// What the writer did with an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The append's positions (for a duplicate: those of the original).
    pub appended: Appended,
    /// `Some(original command id)` when the idempotency key had been used:
    /// nothing was written this time.
    pub duplicate_of: Option<String>,
}

/// Bounds of one group commit.
pub(super) const MAX_GROUP_REQUESTS: usize = 1024;
pub(super) const MAX_GROUP_EVENTS: usize = 50_000;

pub(super) fn run(mut conn: Connection, rx: Receiver<Request>, head: watch::Sender<u64>) {
    let mut next = *head.borrow() + 1;
    while let Ok(first) = rx.recv() {
        let mut events = first.events.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS && events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(r) => {
                    events += r.events.len();
                    group.push(r);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match commit(&mut conn, &group, next) {
            Ok((outcomes, new_next)) => {
                next = new_next;
                head.send_replace(next - 1);
                for (req, outcome) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = group.len(), "group commit failed; rolled back");
                for req in group {
                    let _ = req.reply.send(Err(AppendError::Storage(e.to_string())));
                }
            }
        }
    }
}

/// Reads a row of [`sql::FIND_KEY`].
pub(super) fn recorded_outcome(r: &rusqlite::Row<'_>) -> rusqlite::Result<Outcome> {
    Ok(Outcome {
        duplicate_of: Some(r.get(0)?),
        appended: Appended { stream_version: r.get(2)?, first_position: r.get(3)?, last_position: r.get(4)? },
    })
}

type Outcomes = Vec<Result<Outcome, AppendError>>;

/// Writes `group` in one transaction starting at position `next`; returns
/// each append's outcome and the next free position. An `Err` means nothing
/// was committed.
fn commit(conn: &mut Connection, group: &[Request], mut next: u64) -> rusqlite::Result<(Outcomes, u64)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = crate::db::unix_ms();
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut version = tx.prepare_cached(sql::STREAM_VERSION)?;
        let mut insert = tx.prepare_cached(sql::INSERT)?;
        let mut find_key = tx.prepare_cached(sql::FIND_KEY)?;
        let mut insert_key = tx.prepare_cached(sql::INSERT_KEY)?;
        // Versions of streams touched earlier in this group.
        let mut touched: HashMap<&str, Option<u64>> = HashMap::new();
        for req in group {
            if let Some(idem) = &req.idempotency {
                let found = find_key.query_row(params![idem.scope, idem.key], recorded_outcome).optional()?;
                if let Some(outcome) = found {
                    outcomes.push(Ok(outcome));
                    continue;
                }
            }
            let current = match touched.get(req.stream_id.as_str()) {
                Some(v) => *v,
                None => version.query_row([&req.stream_id], |r| r.get::<_, Option<u64>>(0))?,
            };
            if !req.expected.admits(current) {
                touched.insert(&req.stream_id, current);
                outcomes.push(Err(AppendError::Conflict {
                    stream_id: req.stream_id.clone(),
                    expected: req.expected,
                    actual: current,
                }));
                continue;
            }
            let base = current.unwrap_or(0);
            let first = next;
            for (i, e) in req.events.iter().enumerate() {
                insert.execute(params![
                    next,
                    req.stream_id,
                    base + i as u64 + 1,
                    e.event_type,
                    e.data,
                    e.metadata,
                    now
                ])?;
                next += 1;
            }
            let stream_version = base + req.events.len() as u64;
            if !req.events.is_empty() {
                touched.insert(&req.stream_id, Some(stream_version));
            }
            let appended = Appended { stream_version, first_position: first, last_position: next - 1 };
            if let Some(idem) = &req.idempotency {
                insert_key.execute(params![
                    idem.scope,
                    idem.key,
                    idem.command_id,
                    req.stream_id,
                    stream_version,
                    first,
                    next - 1,
                    now
                ])?;
            }
            outcomes.push(Ok(Outcome { appended, duplicate_of: None }));
        }
    }
    tx.commit()?;
    Ok((outcomes, next))
}
