//! The node's writer: group commit of the node's concurrent appends in one
//! PostgreSQL transaction, under the head row's lock (see the module
//! above). Without a connection it reconnects with backoff, and answers
//! appends that arrive meanwhile at once with the reason.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, Statement};

use super::{HealthState, PostgresOptions, connect, is_shutdown, sql, unavailable};
use crate::log::plan::{self, MAX_GROUP_EVENTS, MAX_GROUP_REQUESTS, Outcome, Request};
use crate::log::types::{AppendError, Appended};
use crate::metrics::LogMetrics;

/// The writer's connection and its prepared statements.
struct Connection {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    lock_head: Statement,
    versions: Statement,
    find_keys: Statement,
    insert_events: Statement,
    insert_keys: Statement,
    advance_head: Statement,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A connection abandoned mid-transaction (a timeout) is closed at
        // once; PostgreSQL rolls the transaction back.
        self.task.abort();
    }
}

async fn open(config: &tokio_postgres::Config, options: &PostgresOptions) -> Result<Connection, String> {
    let (client, task) = connect(config, options).await?;
    let prepare = async {
        Ok::<_, tokio_postgres::Error>((
            client.prepare(sql::LOCK_HEAD).await?,
            client.prepare(sql::VERSIONS).await?,
            client.prepare(sql::FIND_KEYS).await?,
            client.prepare(sql::INSERT_EVENTS).await?,
            client.prepare(sql::INSERT_KEYS).await?,
            client.prepare(sql::ADVANCE_HEAD).await?,
        ))
    };
    match tokio::time::timeout(options.timeout, prepare).await {
        Ok(Ok((lock_head, versions, find_keys, insert_events, insert_keys, advance_head))) => {
            Ok(Connection {
                client,
                task,
                lock_head,
                versions,
                find_keys,
                insert_events,
                insert_keys,
                advance_head,
            })
        }
        Ok(Err(e)) => {
            task.abort();
            Err(e.to_string())
        }
        Err(_) => {
            task.abort();
            Err(format!("no answer within {:?}", options.timeout))
        }
    }
}

/// How far a group's transaction got: whether a failure leaves its outcome
/// known (nothing written) or unknown (the commit was sent).
const BEFORE_COMMIT: u8 = 0;
const COMMITTING: u8 = 1;

/// Waits between connection attempts, doubling up to the last.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

pub(super) async fn run(
    config: tokio_postgres::Config,
    options: PostgresOptions,
    mut requests: mpsc::UnboundedReceiver<Request>,
    head: watch::Sender<u64>,
    metrics: LogMetrics,
    health: Arc<HealthState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<Connection> = None;
    let mut failures = 0usize;
    let mut next_try = Instant::now();
    let mut last_error = String::from("not connected yet");
    loop {
        if conn.is_none() && Instant::now() >= next_try {
            match open(&config, &options).await {
                Ok(c) => {
                    if failures > 0 {
                        tracing::info!("PostgreSQL writer connection restored");
                    }
                    conn = Some(c);
                    failures = 0;
                    health.writer(None);
                }
                Err(e) => {
                    last_error = unavailable(&e);
                    if failures == 0 {
                        tracing::warn!(error = %e, "PostgreSQL writer cannot connect; retrying");
                    }
                    health.writer(Some(last_error.clone()));
                    next_try = Instant::now() + BACKOFF[failures.min(BACKOFF.len() - 1)];
                    failures += 1;
                }
            }
        }
        let first = if conn.is_some() {
            tokio::select! {
                r = requests.recv() => r,
                _ = shutdown.changed() => None,
            }
        } else {
            tokio::select! {
                r = requests.recv() => r,
                _ = tokio::time::sleep_until(next_try.into()) => continue,
                _ = shutdown.changed() => None,
            }
        };
        let Some(first) = first else {
            // Shutting down: what is queued is answered, not dropped.
            requests.close();
            while let Ok(r) = requests.try_recv() {
                let _ = r.reply.send(Err(AppendError::Closed));
            }
            return;
        };
        let mut events = first.events.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS && events < MAX_GROUP_EVENTS {
            match requests.try_recv() {
                Ok(r) => {
                    events += r.events.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let Some(c) = conn.as_mut() else {
            for r in group {
                let _ = r.reply.send(Err(AppendError::Unavailable(last_error.clone())));
            }
            continue;
        };
        let start = Instant::now();
        let stage = AtomicU8::new(BEFORE_COMMIT);
        let committed = tokio::time::timeout(options.timeout, commit(c, &group, &stage)).await;
        let failure = match committed {
            Ok(Ok((outcomes, last))) => {
                metrics.observe_commit(group.len(), start.elapsed());
                head.send_if_modified(|h| {
                    let moved = last > *h;
                    *h = (*h).max(last);
                    moved
                });
                for (req, outcome) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(outcome);
                }
                continue;
            }
            Ok(Err(e)) => Failure::from_pg(&e),
            Err(_) => Failure::Connection(format!("no answer within {:?}", options.timeout)),
        };
        metrics.failed_commits.inc();
        let known = stage.load(Ordering::Acquire) == BEFORE_COMMIT;
        let error = match failure {
            Failure::Refused(e) => {
                tracing::error!(error = %e, appends = group.len(), "group commit refused by PostgreSQL; rolled back");
                AppendError::Storage(e)
            }
            Failure::Connection(e) => {
                tracing::warn!(error = %e, appends = group.len(), known, "group commit failed; reconnecting");
                conn = None;
                last_error = unavailable(&e);
                health.writer(Some(last_error.clone()));
                next_try = Instant::now();
                if known {
                    AppendError::Unavailable(format!("{last_error}; nothing was written"))
                } else {
                    AppendError::Unavailable(format!(
                        "PostgreSQL failed while committing ({e}): the append may or may not have been written; \
                         read the stream before retrying, or retry with an idempotency key"
                    ))
                }
            }
        };
        for req in group {
            let _ = req.reply.send(Err(error.clone()));
        }
    }
}

/// Why a group did not commit.
enum Failure {
    /// The database refused a statement (the connection is fine).
    Refused(String),
    /// The connection failed, timed out, or the server is going away.
    Connection(String),
}

impl Failure {
    fn from_pg(e: &tokio_postgres::Error) -> Self {
        if e.as_db_error().is_some() && !is_shutdown(e) {
            Failure::Refused(e.to_string())
        } else {
            Failure::Connection(e.to_string())
        }
    }
}

type Outcomes = Vec<Result<Outcome, AppendError>>;

/// One group in one transaction: lock the head, read the streams' versions
/// and the keys the group uses, decide ([`plan::plan`]), insert, move the
/// head (which notifies), commit. Returns each append's outcome and the
/// new head.
async fn commit(
    c: &mut Connection,
    group: &[Request],
    stage: &AtomicU8,
) -> Result<(Outcomes, u64), tokio_postgres::Error> {
    let Connection {
        client, lock_head, versions, find_keys, insert_events, insert_keys, advance_head, ..
    } = c;
    let tx = client.transaction().await?;
    let head: i64 = tx.query_one(&*lock_head, &[]).await?.get(0);
    let head = head.max(0) as u64;
    let mut streams: Vec<&str> = group.iter().map(|r| r.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let (scopes, keys): (Vec<&str>, Vec<&str>) = group
        .iter()
        .filter_map(|r| r.idempotency.as_ref())
        .map(|i| (i.scope.as_str(), i.key.as_str()))
        .unzip();
    // Both reads go out together.
    let stream_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&streams];
    let (current, found) = tokio::try_join!(tx.query(&*versions, &stream_params), async {
        if keys.is_empty() { Ok(Vec::new()) } else { tx.query(&*find_keys, &[&scopes, &keys]).await }
    })?;
    let current: HashMap<String, u64> =
        current.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64)).collect();
    let found: HashMap<(String, String), Outcome> = found
        .iter()
        .map(|r| {
            let outcome = Outcome {
                duplicate_of: Some(r.get(2)),
                appended: Appended {
                    stream_version: r.get::<_, i64>(3) as u64,
                    first_position: r.get::<_, i64>(4) as u64,
                    last_position: r.get::<_, i64>(5) as u64,
                },
            };
            ((r.get(0), r.get(1)), outcome)
        })
        .collect();
    let plan = plan::plan::<Infallible>(
        group,
        head + 1,
        |stream| Ok(current.get(stream).copied()),
        |idem| Ok(found.get(&(idem.scope.clone(), idem.key.clone())).cloned()),
    )
    .unwrap_or_else(|never| match never {});
    let now = crate::db::unix_ms();
    if !plan.rows.is_empty() {
        let n = plan.rows.len();
        let (mut positions, mut stream_ids, mut stream_versions, mut types, mut data, mut metadata) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut schema_versions: Vec<i32> = Vec::with_capacity(n);
        for r in &plan.rows {
            positions.push(r.position as i64);
            stream_ids.push(r.stream_id);
            stream_versions.push(r.stream_version as i64);
            types.push(r.event.event_type.as_str());
            data.push(r.event.data.as_str());
            metadata.push(r.event.metadata.as_str());
            schema_versions.push(r.event.schema_version as i32);
        }
        let recorded = vec![now; n];
        tx.execute(
            &*insert_events,
            &[
                &positions,
                &stream_ids,
                &stream_versions,
                &types,
                &data,
                &metadata,
                &recorded,
                &schema_versions,
            ],
        )
        .await?;
    }
    if !plan.keys.is_empty() {
        let text =
            |f: for<'k> fn(&'k plan::KeyRow<'_>) -> &'k str| plan.keys.iter().map(f).collect::<Vec<&str>>();
        let number =
            |f: fn(&plan::KeyRow<'_>) -> u64| plan.keys.iter().map(|k| f(k) as i64).collect::<Vec<i64>>();
        let recorded = vec![now; plan.keys.len()];
        tx.execute(
            &*insert_keys,
            &[
                &text(|k| &k.idempotency.scope),
                &text(|k| &k.idempotency.key),
                &text(|k| &k.idempotency.command_id),
                &text(|k| k.stream_id),
                &number(|k| k.appended.stream_version),
                &number(|k| k.appended.first_position),
                &number(|k| k.appended.last_position),
                &recorded,
            ],
        )
        .await?;
    }
    let last = plan.next - 1;
    if last > head {
        tx.query(&*advance_head, &[&(last as i64)]).await?;
    }
    stage.store(COMMITTING, Ordering::Release);
    tx.commit().await?;
    Ok((plan.outcomes, last.max(head)))
}
