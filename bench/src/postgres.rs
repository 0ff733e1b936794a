//! The scenarios of the log in PostgreSQL: P8 (appends against the same
//! driver's raw inserts; group commit against a transaction per append),
//! P9 (an append on one node visible in another node's read model) and
//! P1 with the log in PostgreSQL against P1 with the SQLite log. Each runs
//! on a database of its own on the server at `REFRACT_BENCH_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use refract::log::{EventLog, ExpectedVersion, LogOptions};
use refract::metrics::LogMetrics;
use refract::plugin::{PluginEngine, ProjectionPlugin, SandboxLimits};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::report::Row;
use crate::scenarios::{
    Size, batch_events, load_projection, order_log, pair_order, rate, replay_once, thousands,
};
use crate::workload::{Server, build_plugin, median, paired_ratio, percentile, secs};

/// The server the scenarios make their databases on.
fn admin_url() -> String {
    std::env::var("REFRACT_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of the run's own, dropped when done with.
struct Database {
    name: String,
}

impl Database {
    async fn create(tag: &str) -> anyhow::Result<Database> {
        let name = format!("refract_bench_{tag}_{}", std::process::id());
        let admin = admin().await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        Ok(Database { name })
    }

    fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        format!("{base}/{}", self.name)
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.url(), NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        admin().await?.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await?;
        Ok(())
    }
}

async fn admin() -> anyhow::Result<tokio_postgres::Client> {
    let url = admin_url();
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.with_context(|| {
        format!("PostgreSQL is not reachable at {url}: the P8, P9 and P1-PG scenarios need it (set REFRACT_BENCH_PG)")
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// A fresh log in `db` (the schema refract creates).
async fn open_log(db: &Database, metrics: LogMetrics) -> anyhow::Result<EventLog> {
    Ok(EventLog::open_postgres(&db.url(), LogOptions::default(), metrics).await?)
}

/// The baseline's insert: the rows refract writes, with the same driver,
/// into the same table, one statement per append.
const RAW_INSERT: &str = "INSERT INTO refract.events
    (position, stream_id, stream_version, event_type, data, metadata, recorded_at)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[])";

/// P8: 1000-event appends against raw inserts of the same rows; 64
/// concurrent single-event appends (group commit) against one transaction
/// per append.
pub fn p8(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let batches = size.pick(10, 100);
    let runs = size.pick(1, 5);
    let n = batches * 1000;
    let (mut raw_t, mut ours_t) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for run in 0..runs {
            let mut t = [Duration::ZERO; 2];
            for native in pair_order(run) {
                let db = Database::create(if native { "p8raw" } else { "p8" }).await?;
                let log = open_log(&db, LogMetrics::default()).await?;
                let bodies: Vec<_> = (0..batches).map(|b| batch_events(b, 1000)).collect();
                if native {
                    log.close();
                    let mut client = db.connect().await?;
                    let insert = client.prepare(RAW_INSERT).await?;
                    let start = Instant::now();
                    let mut position = 0i64;
                    for (b, events) in bodies.iter().enumerate() {
                        let stream = format!("raw-{b}");
                        let (mut positions, mut versions) = (Vec::new(), Vec::new());
                        for v in 0..events.len() {
                            position += 1;
                            positions.push(position);
                            versions.push(v as i64 + 1);
                        }
                        let streams = vec![stream.as_str(); events.len()];
                        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                        let data: Vec<&str> = events.iter().map(|e| e.data.get()).collect();
                        let metadata = vec!["{}"; events.len()];
                        let recorded = vec![0i64; events.len()];
                        let tx = client.transaction().await?;
                        tx.execute(
                            &insert,
                            &[&positions, &streams, &versions, &types, &data, &metadata, &recorded],
                        )
                        .await?;
                        tx.commit().await?;
                    }
                    t[1] = start.elapsed();
                } else {
                    let start = Instant::now();
                    for (b, events) in bodies.into_iter().enumerate() {
                        log.append(&format!("s-{b}"), ExpectedVersion::NoStream, events).await?;
                    }
                    t[0] = start.elapsed();
                    log.close();
                }
                db.drop_now().await?;
            }
            eprintln!(
                "P8 run {}: refract {:.3} s, raw tokio-postgres {:.3} s",
                run + 1,
                secs(t[0]),
                secs(t[1])
            );
            ours_t.push(t[0]);
            raw_t.push(t[1]);
        }
        anyhow::Ok(())
    })?;
    let ratio = paired_ratio(&ours_t, &raw_t);
    let mut rows = vec![Row::new(
        "P8",
        format!(
            "append {} events, 1000 per append, into the PostgreSQL log (in-process)",
            thousands(n as f64)
        ),
        format!("{} events/s", thousands(rate(n, median(ours_t)))),
        format!(
            "raw tokio-postgres inserts, same rows and schema: {} events/s",
            thousands(rate(n, median(raw_t)))
        ),
        Some(ratio),
        "≥ 0.80×",
        Some(ratio >= 0.80),
    )];
    rows.push(p8_single(rt, size)?);
    Ok(rows)
}

/// One transaction per append, as the log would run without group commit:
/// lock the head, read the stream's version, insert, move the head.
const LOCK_HEAD: &str = "SELECT position FROM refract.head WHERE id = 1 FOR UPDATE";
const VERSION: &str = "SELECT max(stream_version) FROM refract.events WHERE stream_id = $1";
const INSERT_ONE: &str = "INSERT INTO refract.events
    (position, stream_id, stream_version, event_type, data, metadata, recorded_at) VALUES ($1, $2, $3, $4, $5, '{}', 0)";
const MOVE_HEAD: &str = "UPDATE refract.head SET position = $1 WHERE id = 1";

/// P8, single appends: 64 concurrent clients, group commit against one
/// PostgreSQL transaction per append.
fn p8_single(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Row> {
    let clients = 64usize;
    let per_client = size.pick(5, 100);
    let runs = size.pick(1, 3);
    let appends = (clients * per_client) as u64;
    let (mut ours_t, mut base_t, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for run in 0..runs {
            for native in pair_order(run) {
                let db = Database::create(if native { "p8txn" } else { "p8group" }).await?;
                let metrics = LogMetrics::default();
                let log = open_log(&db, metrics.clone()).await?;
                if native {
                    log.close();
                    let mut tasks = Vec::new();
                    let start = Instant::now();
                    for c in 0..clients {
                        let mut client = db.connect().await?;
                        tasks.push(tokio::spawn(async move {
                            let stmts = (
                                client.prepare(LOCK_HEAD).await?,
                                client.prepare(VERSION).await?,
                                client.prepare(INSERT_ONE).await?,
                                client.prepare(MOVE_HEAD).await?,
                            );
                            for i in 0..per_client {
                                let stream = format!("c{c}-{i}");
                                let tx = client.transaction().await?;
                                let head: i64 = tx.query_one(&stmts.0, &[]).await?.get(0);
                                let version: Option<i64> = tx.query_one(&stmts.1, &[&stream]).await?.get(0);
                                let data = json!({ "i": i }).to_string();
                                tx.execute(
                                    &stmts.2,
                                    &[&(head + 1), &stream, &(version.unwrap_or(0) + 1), &"Pinged", &data],
                                )
                                .await?;
                                tx.execute(&stmts.3, &[&(head + 1)]).await?;
                                tx.commit().await?;
                            }
                            anyhow::Ok(())
                        }));
                    }
                    for t in tasks {
                        t.await??;
                    }
                    base_t.push(start.elapsed());
                } else {
                    let log = Arc::new(log);
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..clients)
                        .map(|c| {
                            let log = log.clone();
                            tokio::spawn(async move {
                                for i in 0..per_client {
                                    let events = vec![refract::log::NewEvent {
                                        event_type: "Pinged".into(),
                                        data: crate::workload::raw(json!({ "i": i })),
                                        metadata: None,
                                        schema_version: None,
                                    }];
                                    log.append(&format!("c{c}-{i}"), ExpectedVersion::NoStream, events)
                                        .await?;
                                }
                                anyhow::Ok(())
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await??;
                    }
                    ours_t.push(start.elapsed());
                    commits.push(metrics.commits.get());
                    log.close();
                }
                db.drop_now().await?;
            }
            eprintln!(
                "P8 single run {}: group commit {:.3} s in {} commits, a transaction per append {:.3} s",
                run + 1,
                secs(ours_t[run]),
                commits[run],
                secs(base_t[run])
            );
        }
        anyhow::Ok(())
    })?;
    let ratio = paired_ratio(&ours_t, &base_t);
    commits.sort_unstable();
    let per_commit = appends as f64 / commits[commits.len() / 2].max(1) as f64;
    Ok(Row::new(
        "P8",
        format!(
            "single-event appends from 64 concurrent clients into the PostgreSQL log ({} appends)",
            thousands(appends as f64)
        ),
        format!("{} appends/s, {per_commit:.1} appends per commit", thousands(rate(appends, median(ours_t)))),
        format!(
            "one PostgreSQL transaction per append (head lock, version read, insert), 64 connections: {} appends/s",
            thousands(rate(appends, median(base_t)))
        ),
        Some(ratio),
        "≥ 5× (group commit)",
        Some(ratio >= 5.0),
    ))
}

/// P9: an append on node A visible in node B's read model, under 1000
/// appends/s in all, two nodes on one PostgreSQL log.
pub fn p9(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let d = Duration::from_secs(size.pick(1, 10));
    let clients = 8;
    let db = rt.block_on(Database::create("p9"))?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(build_plugin("order-summary")?, plugins.join("order_summary.wasm"))?;
    let node = |data: &str| {
        let mut config = refract::Config::new(dir.path().join(data), &plugins);
        config.log_url = Some(db.url());
        config.watch = false;
        Server::start(rt, &config)
    };
    let (a, b) = (node("a")?, node("b")?);
    let (base_a, base_b) = (a.base.clone(), b.base.clone());
    let (visible, errors) = (std::sync::Mutex::new(Vec::new()), std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (base_a, base_b, visible, errors) = (&base_a, &base_b, &visible, &errors);
            s.spawn(move || {
                let agent = ureq::Agent::new();
                let period = Duration::from_micros(1_000_000 * clients as u64 / 1000);
                let mut next = Instant::now();
                let mut i = 0;
                while start.elapsed() < d {
                    i += 1;
                    next += period;
                    let body = json!({ "expected_version": "no_stream", "events": [{ "type": "OrderPlaced", "schema_version": 2, "data": { "customer": { "id": "p9", "name": "p9" }, "items": [] } }] });
                    let Ok(r) = agent.post(&format!("{base_a}/streams/p9-{c}-{i}/events")).send_json(body) else {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    };
                    let Ok(v) = r.into_json::<Value>() else { continue };
                    let acked = Instant::now();
                    let url = format!(
                        "{base_b}/projections/order-summary/tables/order_summaries/p9-{c}-{i}?min_position={}&wait_ms=5000",
                        v["last_position"]
                    );
                    match agent.get(&url).call() {
                        Ok(_) => visible.lock().unwrap_or_else(|p| p.into_inner()).push(acked.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            });
        }
    });
    let mut visible = visible.into_inner().unwrap_or_default();
    anyhow::ensure!(!visible.is_empty(), "no append became visible on the other node");
    let errors = errors.into_inner();
    anyhow::ensure!(errors == 0, "{errors} appends or reads failed");
    let achieved = visible.len() as f64 / secs(start.elapsed());
    drop((a, b));
    rt.block_on(db.drop_now())?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p99 = percentile(&mut visible, 99.0);
    Ok(vec![Row::new(
        "P9",
        format!(
            "append on node A → visible in node B's read model (`min_position`), {} appends/s, two nodes, one PostgreSQL log",
            thousands(achieved)
        ),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms (from A's answer to B's)",
            ms(percentile(&mut visible, 50.0)),
            ms(p99)
        ),
        "—".into(),
        None,
        "p99 ≤ 100 ms",
        Some(p99 <= Duration::from_millis(100)),
    )])
}

/// P1 with the log in PostgreSQL against P1 with the SQLite log: the same
/// events (the SQLite log copied into PostgreSQL with `copy-log`), replayed
/// through `order-summary.wasm`.
pub fn p1_postgres(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let n = size.pick(20_000, 1_000_000);
    let runs = size.pick(1, 5);
    let batch = refract::projection::RunnerOptions::default().batch_size;
    let wasm = build_plugin("order-summary")?;
    let dir = tempfile::tempdir()?;
    let (mut pg_t, mut sqlite_t) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let sqlite = order_log(dir.path(), n).await?;
        sqlite.close();
        let db = Database::create("p1pg").await?;
        refract::log::copy_log(dir.path(), &db.url(), &Default::default()).await?;
        let sqlite =
            EventLog::open(&dir.path().join("events.db"), LogOptions::default(), LogMetrics::default())?;
        let pg = open_log(&db, LogMetrics::default()).await?;
        anyhow::ensure!(pg.head() == n, "the PostgreSQL log holds {} events, not {n}", pg.head());
        let engine = PluginEngine::new(SandboxLimits::default(), None)?;
        for run in 0..runs {
            for postgres in pair_order(run) {
                let plugin: ProjectionPlugin = load_projection(&engine, &wasm)?;
                let (log, times, label) =
                    if postgres { (&pg, &mut pg_t, "postgres") } else { (&sqlite, &mut sqlite_t, "sqlite") };
                let t = replay_once(log, dir.path().join(format!("{label}{run}")), plugin, batch).await?;
                eprintln!("P1-PG run {}: {label} {:.3} s", run + 1, secs(t));
                times.push(t);
            }
        }
        pg.close();
        sqlite.close();
        db.drop_now().await?;
        anyhow::Ok(())
    })?;
    let ratio = paired_ratio(&pg_t, &sqlite_t);
    Ok(vec![Row::new(
        "P1-PG",
        format!("replay {} events through order-summary.wasm, the log in PostgreSQL", thousands(n as f64)),
        format!("{} events/s", thousands(rate(n, median(pg_t)))),
        format!("the same replay from the SQLite log: {} events/s", thousands(rate(n, median(sqlite_t)))),
        Some(ratio),
        "≥ 0.80×",
        Some(ratio >= 0.80),
    )])
}
