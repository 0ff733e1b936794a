//! The single writer: group commit of concurrent appends.
//!
//! Appends queue on a channel. The writer thread takes the first, then
//! whatever else is already waiting (up to a bound), and commits them all in
//! one SQLite transaction, so one fsync serves many appends. Each append is
//! still checked against its own expected version; a conflict fails that
//! append only.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::watch;

use super::sql;
use crate::log::plan::{self, EventRow, MAX_GROUP_EVENTS, MAX_GROUP_REQUESTS, Outcome, Request};
use crate::log::types::{AppendError, Appended};
use crate::metrics::LogMetrics;

pub(super) fn run(
    mut conn: Connection,
    rx: Receiver<Request>,
    head: watch::Sender<u64>,
    metrics: LogMetrics,
) {
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
        let start = Instant::now();
        match commit(&mut conn, &group, next) {
            Ok((outcomes, new_next)) => {
                metrics.observe_commit(group.len(), start.elapsed());
                next = new_next;
                head.send_replace(next - 1);
                for (req, outcome) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(outcome);
                }
            }
            Err(e) => {
                metrics.failed_commits.inc();
                tracing::error!(error = %e, appends = group.len(), "group commit failed; rolled back");
                for req in group {
                    let _ = req.reply.send(Err(AppendError::Storage(e.to_string())));
                }
            }
        }
    }
}

/// Reads a row of [`sql::FIND_KEY`].
pub(crate) fn recorded_outcome(r: &rusqlite::Row<'_>) -> rusqlite::Result<Outcome> {
    Ok(Outcome {
        duplicate_of: Some(r.get(0)?),
        appended: Appended { stream_version: r.get(2)?, first_position: r.get(3)?, last_position: r.get(4)? },
    })
}

type Outcomes = Vec<Result<Outcome, AppendError>>;

/// Writes `group` in one transaction starting at position `next`; returns
/// each append's outcome and the next free position. An `Err` means nothing
/// was committed.
fn commit(conn: &mut Connection, group: &[Request], next: u64) -> rusqlite::Result<(Outcomes, u64)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = crate::db::unix_ms();
    let plan = {
        let mut version = tx.prepare_cached(sql::STREAM_VERSION)?;
        let mut find_key = tx.prepare_cached(sql::FIND_KEY)?;
        plan::plan(
            group,
            next,
            |stream| version.query_row([stream], |r| r.get::<_, Option<u64>>(0)),
            |idem| find_key.query_row(params![idem.scope, idem.key], recorded_outcome).optional(),
        )?
    };
    // The group's events are written together at the end: an append's
    // check read what earlier appends of the group did from the plan,
    // never from their rows.
    write_rows(&tx, &plan.rows, now)?;
    {
        let mut insert_key = tx.prepare_cached(sql::INSERT_KEY)?;
        for k in &plan.keys {
            let (idem, a) = (k.idempotency, k.appended);
            insert_key.execute(params![
                idem.scope,
                idem.key,
                idem.command_id,
                k.stream_id,
                a.stream_version,
                a.first_position,
                a.last_position,
                now
            ])?;
        }
    }
    tx.commit()?;
    Ok((plan.outcomes, plan.next))
}

/// Inserts `rows` in order, as many at a time as the largest of
/// [`sql::inserts`] that still fits.
fn write_rows(tx: &Transaction<'_>, rows: &[EventRow<'_>], now: i64) -> rusqlite::Result<()> {
    let mut rest = rows;
    for (n, text) in sql::inserts() {
        if rest.len() < *n {
            continue;
        }
        let mut insert = tx.prepare_cached(text)?;
        while rest.len() >= *n {
            let (chunk, tail) = rest.split_at(*n);
            for (i, r) in chunk.iter().enumerate() {
                let at = i * sql::INSERT_COLUMNS;
                insert.raw_bind_parameter(at + 1, r.position)?;
                insert.raw_bind_parameter(at + 2, r.stream_id)?;
                insert.raw_bind_parameter(at + 3, r.stream_version)?;
                insert.raw_bind_parameter(at + 4, r.event.event_type.as_str())?;
                insert.raw_bind_parameter(at + 5, r.event.data.as_str())?;
                insert.raw_bind_parameter(at + 6, r.event.metadata.as_str())?;
                insert.raw_bind_parameter(at + 7, now)?;
                insert.raw_bind_parameter(at + 8, r.event.schema_version)?;
            }
            insert.raw_execute()?;
            rest = tail;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::plan::PreparedEvent;
    use crate::log::types::ExpectedVersion;
    use tokio::sync::oneshot;

    fn events(stream: &str, n: usize) -> Vec<PreparedEvent> {
        (0..n)
            .map(|i| PreparedEvent {
                event_type: format!("E{}", i % 3),
                data: format!(r#"{{"stream":"{stream}","i":{i}}}"#),
                metadata: "{}".into(),
                schema_version: 1,
            })
            .collect()
    }

    /// A fresh log database in a directory of its own, named after `test`.
    fn empty_log(test: &str) -> (std::path::PathBuf, Connection) {
        let dir = crate::db::scratch_dir(&format!("writer-{test}"));
        let mut conn = crate::db::open_rw(&dir.join("events.db"), crate::db::Synchronous::Normal).unwrap();
        crate::db::migrate(&mut conn, sql::MIGRATIONS).unwrap();
        (dir, conn)
    }

    /// An append of `n` events to `stream_id`, and where its answer comes.
    fn request(
        stream_id: &str,
        expected: ExpectedVersion,
        n: usize,
    ) -> (Request, oneshot::Receiver<Result<Outcome, AppendError>>) {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            stream_id: stream_id.into(),
            expected,
            events: events(stream_id, n),
            idempotency: None,
            reply,
        };
        (request, answer)
    }

    /// A group commit that fails is rolled back whole: every append of the
    /// group is answered with the storage error, nothing is written, and
    /// the metrics count a failed commit, not a commit; the next group
    /// commits again.
    #[test]
    fn a_failed_group_commit_answers_every_append_and_is_counted() {
        let (dir, conn) = empty_log("fail");
        // Refuses the events of stream "bad", standing in for a failing disk.
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.stream_id = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (head, head_rx) = watch::channel(0);
        let metrics = LogMetrics::default();
        let send = |stream_id: &str| {
            let (request, answer) = request(stream_id, ExpectedVersion::Any, 1);
            tx.send(request).unwrap();
            answer
        };
        // One group: all three are queued before the writer starts.
        let replies = [send("a"), send("bad"), send("b")];
        let writer = {
            let metrics = metrics.clone();
            std::thread::spawn(move || run(conn, rx, head, metrics))
        };
        let answers: Vec<_> = replies.into_iter().map(|r| r.blocking_recv().unwrap()).collect();
        for a in &answers {
            assert!(matches!(a, Err(AppendError::Storage(e)) if e.contains("refused")), "{answers:?}");
        }
        assert_eq!((metrics.failed_commits.get(), metrics.commits.get(), *head_rx.borrow()), (1, 0, 0));
        let answer = send("a").blocking_recv().unwrap();
        assert_eq!(
            answer.map(|o| o.appended.last_position).ok(),
            Some(1),
            "nothing of the failed group was kept"
        );
        assert_eq!((metrics.failed_commits.get(), metrics.commits.get(), metrics.appends.get()), (1, 1, 1));
        drop(tx);
        writer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A group whose events take every size of multi-row insert and a
    /// conflict in the middle: each append's events land in order, at the
    /// positions and versions its outcome reports, and the conflicting one
    /// writes nothing.
    #[test]
    fn a_group_is_written_in_order_across_multi_row_inserts() {
        let (dir, mut conn) = empty_log("rows");
        // 64 + 8 + 3 events, then 2, a conflict, then 9 more on the first stream.
        let group = [
            request("a", ExpectedVersion::NoStream, 75),
            request("b", ExpectedVersion::Any, 2),
            request("a", ExpectedVersion::NoStream, 4),
            request("a", ExpectedVersion::Exact(75), 9),
        ]
        .map(|(request, _)| request);
        let (outcomes, next) = commit(&mut conn, &group, 1).unwrap();
        assert_eq!(next, 87);
        let appended: Vec<Option<Appended>> =
            outcomes.iter().map(|o| o.as_ref().ok().map(|o| o.appended)).collect();
        let at = |stream_version, first_position, last_position| {
            Some(Appended { stream_version, first_position, last_position })
        };
        assert_eq!(appended, [at(75, 1, 75), at(2, 76, 77), None, at(84, 78, 86)]);
        assert!(matches!(outcomes[2], Err(AppendError::Conflict { actual: Some(75), .. })));
        let mut stmt = conn
            .prepare(
                "SELECT position, stream_id, stream_version, event_type, data FROM events ORDER BY position",
            )
            .unwrap();
        let rows: Vec<(u64, String, u64, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<(u64, String, u64, String, String)> =
            [("a", 0usize, 75usize), ("b", 0, 2), ("a", 75, 9)]
                .iter()
                .flat_map(|&(stream, from, n)| (0..n).map(move |i| (stream, from, i)))
                .zip(1u64..)
                .map(|((stream, from, i), position)| {
                    (
                        position,
                        stream.to_owned(),
                        (from + i + 1) as u64,
                        format!("E{}", i % 3),
                        format!(r#"{{"stream":"{stream}","i":{i}}}"#),
                    )
                })
                .collect();
        assert_eq!(rows, expected);
        drop(stmt);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
