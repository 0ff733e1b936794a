//! The scenarios P1–P7 (and the hot-reload timing). Each returns the rows
//! of the report; variants with a baseline run interleaved in one process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use refract::db::Synchronous;
use refract::log::{EventLog, ExpectedVersion, LogOptions, NewEvent};
use refract::metrics::{LogMetrics, Metrics};
use refract::plugin::{HandlerPlugin, Plugin, PluginEngine, ProjectionPlugin, SandboxLimits};
use refract::projection::{ProjectionOptions, Projections, RunnerOptions};
use serde_json::{Value, json};

use crate::load;
use crate::report::Row;
use crate::twins::{OrderSummaryTwin, OrdersTwin};
use crate::workload::{
    Server, build_plugin, median, median_f64, paired_ratio, percentile, raw, secs, write_orders,
};

/// Sizes: the full run, or a quick check that everything still works.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub quick: bool,
}

impl Size {
    pub fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }
}

pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / secs(d)
}

pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

pub fn load_projection(engine: &PluginEngine, path: &Path) -> anyhow::Result<ProjectionPlugin> {
    match engine.load(path) {
        Ok(Plugin::Projection(p)) => Ok(p),
        Ok(Plugin::Handler(_)) => anyhow::bail!("{} is a command handler", path.display()),
        Ok(Plugin::Upcaster(_)) => anyhow::bail!("{} is an upcaster", path.display()),
        Err(e) => Err(e.into()),
    }
}

/// A log of `n` events of order traffic, written without fsync.
pub async fn order_log(dir: &Path, n: u64) -> anyhow::Result<EventLog> {
    let path = dir.join("events.db");
    let log = EventLog::open(
        &path,
        LogOptions { synchronous: Synchronous::Off, ..LogOptions::default() },
        LogMetrics::default(),
    )?;
    write_orders(&log, n).await?;
    Ok(log)
}

/// Replays the whole log through `plugin` into a fresh database under
/// `dir`; the time from start to caught up (the plugin is already
/// compiled).
pub async fn replay_once(
    log: &EventLog,
    dir: PathBuf,
    plugin: ProjectionPlugin,
    batch_size: usize,
) -> anyhow::Result<Duration> {
    let head = log.head();
    let name = plugin.description.name.clone();
    let projections = Projections::new(
        log.clone(),
        Default::default(),
        ProjectionOptions {
            dir: dir.clone(),
            runner: RunnerOptions { batch_size, ..RunnerOptions::default() },
            default_policy: Default::default(),
            policies: Default::default(),
            pause_on_refused: Default::default(),
            drop_removed: false,
        },
        Metrics::new(),
    )?;
    let start = Instant::now();
    projections.load(plugin, false).map_err(anyhow::Error::msg)?;
    let p = projections.get(&name).context("the projection did not load")?;
    while p.wait_for(head, Duration::from_secs(3600)).await < head {
        anyhow::ensure!(p.status().error.is_none(), "replay failed: {:?}", p.status().error);
    }
    let elapsed = start.elapsed();
    projections.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(elapsed)
}

/// The order in which repetition `run` measures a pair, as `native` flags:
/// the plugin first in even repetitions, its native twin first in odd ones,
/// so neither always runs on a machine just warmed (or slowed) by the other.
pub fn pair_order(run: usize) -> [bool; 2] {
    let even = run.is_multiple_of(2);
    [!even, even]
}

/// P1: replay through `order-summary.wasm` against its native twin.
pub fn p1(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let n = std::env::var("REFRACT_BENCH_P1_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(size.pick(20_000, 1_000_000));
    // A pair takes about two seconds, about as long as the machine's
    // neighbours stay quiet or busy: nine pairs, so that a median holds
    // against a few pairs caught by a change of load.
    let runs = size.pick(1, 9);
    let batch = RunnerOptions::default().batch_size;
    let wasm = build_plugin("order-summary")?;
    let dir = tempfile::tempdir()?;
    rt.block_on(async {
        let log = order_log(dir.path(), n).await?;
        let engine = PluginEngine::new(SandboxLimits::default(), None)?;
        let (mut w, mut nat) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for native in pair_order(run) {
                let (plugin, dest, times, label) = if native {
                    (ProjectionPlugin::native(Arc::new(OrderSummaryTwin)), "n", &mut nat, "native")
                } else {
                    (load_projection(&engine, &wasm)?, "w", &mut w, "wasm")
                };
                let t = replay_once(&log, dir.path().join(format!("{dest}{run}")), plugin, batch).await?;
                eprintln!("P1 run {}: {label} {:.3} s", run + 1, secs(t));
                times.push(t);
            }
        }
        log.close();
        let ratio = paired_ratio(&w, &nat);
        let (w, nat) = (median(w), median(nat));
        let (rw, rn) = (rate(n, w), rate(n, nat));
        Ok(vec![Row::new(
            "P1",
            format!("replay {} events from position 1, batch {batch} (the default)", thousands(n as f64)),
            format!("{} events/s ({:.2} s)", thousands(rw), secs(w)),
            format!("native twin: {} events/s ({:.2} s)", thousands(rn), secs(nat)),
            Some(ratio),
            "≥ 0.90× and ≥ 250 000 events/s",
            Some(ratio >= 0.90 && rw >= 250_000.0),
        )])
    })
}

/// P1b: the replay rate by batch size.
pub fn p1b(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let n = size.pick(5_000, 100_000);
    // The larger batches replay in well under a second, where the machine's
    // noise is largest, so they get more repetitions; batch 1 takes ~10 s.
    let runs = size.pick(1, 7);
    let runs_of = |b: usize| if b < 100 { runs.min(5) } else { runs };
    let wasm = build_plugin("order-summary")?;
    let dir = tempfile::tempdir()?;
    rt.block_on(async {
        let log = order_log(dir.path(), n).await?;
        let engine = PluginEngine::new(SandboxLimits::default(), None)?;
        let sizes = [1usize, 10, 100, 500, 1000];
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); sizes.len()];
        for run in 0..runs {
            for (i, &b) in sizes.iter().enumerate().filter(|(_, b)| run < runs_of(**b)) {
                let plugin = load_projection(&engine, &wasm)?;
                let t =
                    replay_once(&log, dir.path().join(format!("b{b}-{run}")), plugin, b).await?;
                eprintln!("P1b run {}: batch {b}: {:.3} s", run + 1, secs(t));
                times[i].push(t);
            }
        }
        log.close();
        let curve: Vec<String> =
            sizes.iter().zip(times).map(|(b, t)| format!("{b}: {}", thousands(rate(n, median(t))))).collect();
        Ok(vec![Row::new(
            "P1b",
            format!(
                "replay {} events by batch size (events/s, median of {} — of {} for 1 and 10; the default is {})",
                thousands(n as f64),
                runs,
                runs_of(1),
                RunnerOptions::default().batch_size
            ),
            curve.join(" · "),
            "—".into(),
            None,
            "show the curve; pick the default from it",
            None,
        )])
    })
}

/// The events of append `b`: `n` small events.
pub fn batch_events(b: u64, n: u64) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            event_type: "ItemAdded".into(),
            data: raw(json!({ "product_id": format!("p{}", (b + i) % 97), "quantity": 2, "price": 1.25 })),
            metadata: None,
            schema_version: None,
        })
        .collect()
}

const RAW_INSERT: &str = "INSERT INTO events
    (position, stream_id, stream_version, event_type, data, metadata, recorded_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Opens a database with the event log's schema for raw inserts.
fn raw_log(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    EventLog::open(path, LogOptions::default(), LogMetrics::default())?.close();
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    Ok(conn)
}

/// Raw rusqlite: each batch of `per_tx` events in one transaction.
fn raw_inserts(path: &Path, batches: u64, per_tx: u64) -> anyhow::Result<Duration> {
    let mut conn = raw_log(path)?;
    let events: Vec<(String, String)> = (0..batches)
        .flat_map(|b| {
            batch_events(b, per_tx)
                .into_iter()
                .map(|e| (e.event_type, e.data.get().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let start = Instant::now();
    let mut position = 0u64;
    for b in 0..batches {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(RAW_INSERT)?;
            let stream = format!("raw-{b}");
            for v in 0..per_tx {
                let (ty, data) = &events[(b * per_tx + v) as usize];
                position += 1;
                insert.execute(rusqlite::params![position, stream, v + 1, ty, data, "{}", 0i64])?;
            }
        }
        tx.commit()?;
    }
    Ok(start.elapsed())
}

/// P2: appends of 1000 events in-process and over HTTP, against raw
/// inserts into the same schema; P2b: durable single-event appends from 64
/// HTTP clients against one transaction per event.
pub fn p2(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let batches = size.pick(20, 200);
    let runs = size.pick(1, 5);
    let n = batches * 1000;
    let (mut raw_t, mut inproc_t, mut http_t) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let t = raw_inserts(&dir.path().join("raw.db"), batches, 1000)?;
        raw_t.push(t);
        let t = rt.block_on(async {
            let log =
                EventLog::open(&dir.path().join("inproc.db"), LogOptions::default(), LogMetrics::default())?;
            let bodies: Vec<Vec<NewEvent>> = (0..batches).map(|b| batch_events(b, 1000)).collect();
            let start = Instant::now();
            for (b, events) in bodies.into_iter().enumerate() {
                log.append(&format!("s-{b}"), ExpectedVersion::NoStream, events).await?;
            }
            let t = start.elapsed();
            log.close();
            anyhow::Ok(t)
        })?;
        inproc_t.push(t);
        let server =
            Server::start(rt, &refract::Config::new(dir.path().join("data"), dir.path().join("none")))?;
        let bodies: Vec<Vec<u8>> = (0..batches)
            .map(|b| {
                let events: Vec<Value> = batch_events(b, 1000)
                    .iter()
                    .map(|e| json!({ "type": e.event_type, "data": serde_json::from_str::<Value>(e.data.get()).unwrap_or(Value::Null) }))
                    .collect();
                serde_json::to_vec(&json!({ "expected_version": "no_stream", "events": events })).unwrap_or_default()
            })
            .collect();
        let agent = ureq::Agent::new();
        let start = Instant::now();
        for (b, body) in bodies.iter().enumerate() {
            agent
                .post(&format!("{}/streams/h-{b}/events", server.base))
                .set("content-type", "application/json")
                .send_bytes(body)?;
        }
        http_t.push(start.elapsed());
        drop(server);
        eprintln!(
            "P2 run {}: raw {:.3} s, in-process {:.3} s, HTTP {:.3} s",
            run + 1,
            secs(raw_t[run]),
            secs(inproc_t[run]),
            secs(http_t[run])
        );
    }
    let (ri, rh) = (paired_ratio(&inproc_t, &raw_t), paired_ratio(&http_t, &raw_t));
    let (r, i, h) = (rate(n, median(raw_t)), rate(n, median(inproc_t)), rate(n, median(http_t)));
    let baseline = format!("raw rusqlite, same schema: {} events/s", thousands(r));
    let mut rows = vec![
        Row::new(
            "P2",
            format!("append {} events, 1000 per append, in-process (durable)", thousands(n as f64)),
            format!("{} events/s", thousands(i)),
            baseline.clone(),
            Some(ri),
            "≥ 0.80×",
            Some(ri >= 0.80),
        ),
        Row::new(
            "P2",
            format!("append {} events, 1000 per request, over HTTP (durable)", thousands(n as f64)),
            format!("{} events/s", thousands(h)),
            baseline,
            Some(rh),
            "≥ 0.80×",
            Some(rh >= 0.80),
        ),
    ];
    rows.extend(p2b(rt, size)?);
    Ok(rows)
}

fn p2b(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let clients = 64;
    let per_client = size.pick(5, 300);
    let single = size.pick(100, 2000);
    let runs = size.pick(1, 5);
    // The HTTP stack alone, for scale: the same requests answered by a
    // handler that reads the body and returns a fixed 201, no log behind it.
    let bare = serve_static(
        rt,
        axum::Router::new().route(
            "/streams/{stream_id}/events",
            axum::routing::post(|_body: axum::body::Bytes| async {
                let answer = r#"{"stream_version":1,"first_position":1,"last_position":1}"#;
                (
                    axum::http::StatusCode::CREATED,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
            }),
        ),
    )?;
    let requests = || {
        load::posts(clients, per_client as usize, |c, i| {
            let body = json!({ "expected_version": "no_stream", "events": [{ "type": "Pinged", "data": { "i": i } }] });
            (format!("/streams/c{c}-{i}/events"), body)
        })
    };
    let appends = clients as u64 * per_client;
    // By variant: refract as configured by default, and with the log's WAL
    // extended as it fills (`--no-wal-reserve`).
    let variants = [("reserved", true), ("extended", false)];
    let mut ours: [Vec<Duration>; 2] = Default::default();
    let mut commits: [Vec<u64>; 2] = Default::default();
    let (mut base, mut stack) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        base.push(raw_inserts(&dir.path().join("raw.db"), single, 1)?);
        stack.push(load::send_all(&bare, requests())?.elapsed);
        let mut line = Vec::new();
        // Which variant goes first alternates.
        for v in (0..variants.len()).map(|i| (i + run) % variants.len()) {
            let (name, reserve) = variants[v];
            let mut config = refract::Config::new(dir.path().join(name), dir.path().join("none"));
            config.log.reserve_wal = reserve;
            let server = Server::start(rt, &config)?;
            let before = log_totals(&server.base)?;
            let sent = load::send_all(&server.base, requests())?;
            ours[v].push(sent.elapsed);
            let after = log_totals(&server.base)?;
            let answered = (after.appends - before.appends) as u64;
            anyhow::ensure!(answered == appends, "the log's writer answered {answered} appends of {appends}");
            let made = (after.commits - before.commits) as u64;
            commits[v].push(made);
            let in_commits = after.commit_seconds - before.commit_seconds;
            let cpu: Vec<String> = sent.cpu_ms.iter().map(|(name, ms)| format!("{name} {ms}")).collect();
            line.push(format!(
                "WAL {name} {:.3} s in {made} commits, the writer in them {:.0} % of it (CPU ms by thread: {})",
                secs(sent.elapsed),
                100.0 * in_commits / secs(sent.elapsed),
                cpu.join(", "),
            ));
        }
        eprintln!(
            "P2b run {}: 64 clients, {}; HTTP alone {:.3} s, raw single {:.3} s",
            run + 1,
            line.join("; "),
            secs(stack[run]),
            secs(base[run]),
        );
    }
    let b = rate(single, median(base.clone()));
    let s = rate(appends, median(stack.clone()));
    // A variant's ratio to the baseline (appends/s against transactions/s,
    // per repetition: different counts), to the HTTP stack alone, and its
    // rate and commits.
    let summary = |v: usize| {
        let ratio = paired_ratio(&ours[v], &base) * appends as f64 / single as f64;
        let mut counts = commits[v].clone();
        counts.sort_unstable();
        let per_commit = appends as f64 / counts[counts.len() / 2] as f64;
        let o = rate(appends, median(ours[v].clone()));
        let measured = format!("{} appends/s, {per_commit:.1} appends per commit (fsync)", thousands(o));
        (ratio, paired_ratio(&ours[v], &stack), measured)
    };
    let (ratio, of_stack, measured) = summary(0);
    let (extended_ratio, extended_of_stack, extended) = summary(1);
    let per_commit = {
        let mut counts = commits[0].clone();
        counts.sort_unstable();
        appends as f64 / counts[counts.len() / 2] as f64
    };
    Ok(vec![
        Row::new(
            "P2b",
            "durable single-event appends, 64 HTTP clients, distinct streams (ratio: to the HTTP stack alone)".into(),
            measured,
            format!(
                "the HTTP stack alone, a fixed 201 for the same requests: {} requests/s; one transaction per event, synchronous=FULL: {} events/s ({ratio:.2}× of it)",
                thousands(s),
                thousands(b),
            ),
            Some(of_stack),
            "≥ 20 appends per fsync and ≥ 0.5× the HTTP stack alone",
            Some(per_commit >= 20.0 && of_stack >= 0.5),
        ),
        Row::new(
            "P2b",
            "same, the log's WAL extended as it fills (`--no-wal-reserve`)".into(),
            extended,
            format!(
                "the same baseline ({extended_of_stack:.2}× of the HTTP stack alone); the default is {:.2}× as fast (median of the repetitions' pairs)",
                paired_ratio(&ours[0], &ours[1])
            ),
            Some(extended_ratio),
            "(the WAL without its blocks written ahead)",
            None,
        ),
    ])
}

/// The log writer's totals as a server's `/metrics` reports them.
struct LogTotals {
    commits: f64,
    appends: f64,
    /// Time inside commits (checks, inserts, commit and fsync); the rest
    /// of the writer's time it waited for appends.
    commit_seconds: f64,
}

fn log_totals(base: &str) -> anyhow::Result<LogTotals> {
    let text = ureq::get(&format!("{base}/metrics")).call()?.into_string()?;
    let sample = |name: &str| -> anyhow::Result<f64> {
        let value = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
        Ok(value.with_context(|| format!("no sample {name} at {base}/metrics"))?.parse()?)
    };
    Ok(LogTotals {
        commits: sample("refract_log_commits_total")?,
        appends: sample("refract_log_committed_appends_total")?,
        commit_seconds: sample("refract_log_commit_seconds_sum")?,
    })
}

/// Serves `app` on a loopback port of its own for the rest of the run
/// (the bare HTTP stack a scenario compares against); its base address.
fn serve_static(rt: &tokio::runtime::Runtime, app: axum::Router) -> anyhow::Result<String> {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(base)
    })
}

/// P3: reading a row by key against a static handler with the same bytes.
pub fn p3(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let orders = size.pick(2_000u64, 10_000);
    let d = Duration::from_secs(size.pick(1, 3));
    let runs = size.pick(1, 5);
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(build_plugin("order-summary")?, plugins.join("order_summary.wasm"))?;
    // The default server, and one reading every row from SQLite.
    let start = |data: &str, row_cache: bool| -> anyhow::Result<Server> {
        let mut config = refract::Config::new(dir.path().join(data), &plugins);
        config.http.row_cache = row_cache;
        let server = Server::start(rt, &config)?;
        rt.block_on(write_orders(&server.app.log, orders * 10))?;
        Ok(server)
    };
    let server = start("data", true)?;
    let uncached = start("data-uncached", false)?;
    let head = server.app.log.head();
    let first_row = |base: &str| -> anyhow::Result<String> {
        let url = format!(
            "{base}/projections/order-summary/tables/order_summaries/order-7?min_position={head}&wait_ms=30000"
        );
        Ok(ureq::get(&url).call()?.into_string()?)
    };
    let row = first_row(&server.base)?;
    first_row(&uncached.base)?;
    let body = row.clone();
    let static_base = serve_static(
        rt,
        axum::Router::new().route(
            "/projections/order-summary/tables/order_summaries/{id}",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        ),
    )?;
    let path = move |i: usize| {
        format!("/projections/order-summary/tables/order_summaries/order-{}", i as u64 % orders)
    };
    let bases = [server.base.as_str(), uncached.base.as_str(), static_base.as_str()];
    let mut lats: [Vec<Duration>; 3] = Default::default();
    // Requests answered in each run, by variant (for the ratios per run).
    let mut counts: [Vec<f64>; 3] = Default::default();
    for run in 0..runs {
        // Which variant goes first rotates, as in P1.
        for v in (0..bases.len()).map(|i| (i + run) % bases.len()) {
            let answered = load::get_for(bases[v], 16, d, path)?;
            counts[v].push(answered.len() as f64);
            lats[v].extend(answered);
        }
        let n: Vec<f64> = counts.iter().map(|c| c[run]).collect();
        eprintln!(
            "P3 run {}: refract {} requests, without the row cache {}, static {}",
            run + 1,
            n[0],
            n[1],
            n[2]
        );
    }
    let total = secs(d) * runs as f64;
    let [ours, bare, theirs] = &mut lats;
    let t = theirs.len() as f64 / total;
    let p99_static = percentile(theirs, 99.0);
    let baseline = format!(
        "static axum handler, same bytes: {} requests/s, p99 {:.2} ms",
        thousands(t),
        p99_static.as_secs_f64() * 1e3
    );
    let measured = |l: &mut Vec<Duration>| {
        let rate = l.len() as f64 / total;
        let (p50, p99) = (percentile(l, 50.0), percentile(l, 99.0));
        let text = format!(
            "{} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            thousands(rate),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        (p99, text)
    };
    let per_run = |c: &[f64]| median_f64(c.iter().zip(&counts[2]).map(|(o, s)| o / s).collect());
    let (ratio, bare_ratio) = (per_run(&counts[0]), per_run(&counts[1]));
    let (p99, text) = measured(ours);
    let (_, bare_text) = measured(bare);
    Ok(vec![
        Row::new(
            "P3",
            "GET a row by key, 16 connections".into(),
            text,
            baseline.clone(),
            Some(ratio),
            "≥ 0.70×, p99 ≤ 2 ms",
            Some(ratio >= 0.70 && p99 <= Duration::from_millis(2)),
        ),
        Row::new(
            "P3",
            "same, every row read from SQLite (`--no-row-cache`)".into(),
            bare_text,
            baseline,
            Some(bare_ratio),
            "(the read path without the cache)",
            None,
        ),
    ])
}

/// P4: from sending an append to reading it back from the read model, at
/// about 1000 appends/s.
pub fn p4(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let d = Duration::from_secs(size.pick(1, 10));
    let clients = 8;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(build_plugin("order-summary")?, plugins.join("order_summary.wasm"))?;
    let server = Server::start(rt, &refract::Config::new(dir.path().join("data"), &plugins))?;
    let base = server.base.clone();
    let (total, visible) = (std::sync::Mutex::new(Vec::new()), std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (base, total, visible) = (&base, &total, &visible);
            s.spawn(move || {
                let agent = ureq::Agent::new();
                let period = Duration::from_micros(1_000_000 * clients as u64 / 1000);
                let mut next = Instant::now();
                let mut i = 0;
                while start.elapsed() < d {
                    i += 1;
                    next += period;
                    let t0 = Instant::now();
                    let body = json!({ "expected_version": "no_stream", "events": [{ "type": "OrderPlaced", "schema_version": 2, "data": { "customer": { "id": "p4", "name": "p4" }, "items": [] } }] });
                    let Ok(r) = agent.post(&format!("{base}/streams/p4-{c}-{i}/events")).send_json(body) else { continue };
                    let Ok(v) = r.into_json::<Value>() else { continue };
                    let t1 = Instant::now();
                    let url = format!(
                        "{base}/projections/order-summary/tables/order_summaries/p4-{c}-{i}?min_position={}&wait_ms=5000",
                        v["last_position"]
                    );
                    if agent.get(&url).call().is_ok() {
                        total.lock().unwrap_or_else(|p| p.into_inner()).push(t0.elapsed());
                        visible.lock().unwrap_or_else(|p| p.into_inner()).push(t1.elapsed());
                    }
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            });
        }
    });
    let (mut total, mut visible) =
        (total.into_inner().unwrap_or_default(), visible.into_inner().unwrap_or_default());
    anyhow::ensure!(!total.is_empty(), "no append became visible");
    let achieved = total.len() as f64 / secs(start.elapsed());
    let p99 = percentile(&mut total, 99.0);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![Row::new(
        "P4",
        format!(
            "append → visible in the read model (`min_position`), {} appends/s, durable",
            thousands(achieved)
        ),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms (after the append's answer: p50 {:.1} ms, p99 {:.1} ms)",
            ms(percentile(&mut total, 50.0)),
            ms(p99),
            ms(percentile(&mut visible, 50.0)),
            ms(percentile(&mut visible, 99.0))
        ),
        "—".into(),
        None,
        "p99 ≤ 50 ms",
        Some(p99 <= Duration::from_millis(50)),
    )])
}

/// P5: loading a plugin cold and from the compile cache; instantiating.
pub fn p5(size: Size) -> anyhow::Result<Vec<Row>> {
    let runs = size.pick(1, 5);
    let wasm = build_plugin("order-summary")?;
    let (mut cold, mut cached, mut inst) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let cache = tempfile::tempdir()?;
        let engine = PluginEngine::new(SandboxLimits::default(), Some(cache.path()))?;
        let t = Instant::now();
        let plugin = load_projection(&engine, &wasm)?;
        cold.push(t.elapsed());
        // The cache entry is written in the background.
        std::thread::sleep(Duration::from_millis(300));
        let engine = PluginEngine::new(SandboxLimits::default(), Some(cache.path()))?;
        let t = Instant::now();
        load_projection(&engine, &wasm)?;
        cached.push(t.elapsed());
        let t = Instant::now();
        for _ in 0..100 {
            plugin.instantiate(None).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        inst.push(t.elapsed() / 100);
        eprintln!(
            "P5 run {}: cold {:.3} s, cached {:.4} s, instantiate {:?}",
            run + 1,
            secs(cold[run]),
            secs(cached[run]),
            inst[run]
        );
    }
    let (c, k, i) = (median(cold), median(cached), median(inst));
    Ok(vec![Row::new(
        "P5",
        "load order-summary.wasm (compile, link, describe); instantiate".into(),
        format!(
            "cold {:.0} ms · from the cache {:.1} ms · instantiate {:.0} µs",
            secs(c) * 1e3,
            secs(k) * 1e3,
            secs(i) * 1e6
        ),
        "—".into(),
        None,
        "cache ≤ 5 ms, cold ≤ 0.5 s",
        Some(k <= Duration::from_millis(5) && c <= Duration::from_millis(500)),
    )])
}

/// P5b: how replay time grows with the log, the native twin beside it.
pub fn p5b(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let sizes = size.pick([2_000u64, 20_000, 100_000], [100_000, 1_000_000, 5_000_000]);
    let wasm = build_plugin("order-summary")?;
    let engine = PluginEngine::new(SandboxLimits::default(), None)?;
    let runs = size.pick(1, 5);
    let batch = RunnerOptions::default().batch_size;
    let dir = tempfile::tempdir()?;
    // Every log first, then each repetition replays all three sizes back to
    // back, so the growth is measured within a repetition, not across
    // minutes of a machine whose speed drifts. The native twin replays the
    // two larger sizes beside the plugin (see `pair_order`): the
    // same SQL without the Wasm boundary, so its growth shows what of ours
    // belongs to the read model's own tables.
    let (times, twin): (Vec<Vec<Duration>>, Vec<Vec<Duration>>) = rt.block_on(async {
        let mut logs = Vec::new();
        for n in sizes {
            let d = dir.path().join(n.to_string());
            std::fs::create_dir_all(&d)?;
            logs.push(order_log(&d, n).await?);
        }
        let mut times = vec![Vec::new(); sizes.len()];
        let mut twin = vec![Vec::new(); sizes.len()];
        for run in 0..runs {
            for (i, (log, n)) in logs.iter().zip(sizes).enumerate() {
                for native in pair_order(run) {
                    if native && i == 0 {
                        continue;
                    }
                    let (plugin, label, into) = if native {
                        (ProjectionPlugin::native(Arc::new(OrderSummaryTwin)), "native twin", &mut twin[i])
                    } else {
                        (load_projection(&engine, &wasm)?, "wasm", &mut times[i])
                    };
                    let dest = dir.path().join(format!("p{n}-{run}-{native}"));
                    let t = replay_once(log, dest, plugin, batch).await?;
                    eprintln!("P5b run {}: {n} events, {label}: {:.3} s", run + 1, secs(t));
                    into.push(t);
                }
            }
        }
        for log in logs {
            log.close();
        }
        anyhow::Ok((times, twin))
    })?;
    // t(5M) ÷ t(1M), per repetition.
    let growth = paired_ratio(&times[1], &times[2]);
    let twin_growth = paired_ratio(&twin[1], &twin[2]);
    let times: Vec<Duration> = times.into_iter().map(median).collect();
    let twin: Vec<Duration> = twin.into_iter().skip(1).map(median).collect();
    let factor = sizes[2] as f64 / sizes[1] as f64;
    let (mid, large) = (thousands(sizes[1] as f64), thousands(sizes[2] as f64));
    let cells: Vec<String> = sizes
        .iter()
        .zip(&times)
        .map(|(n, t)| format!("{}: {:.2} s", thousands(*n as f64), secs(*t)))
        .collect();
    Ok(vec![Row::new(
        "P5b",
        format!("replay time by log size, median of {runs}"),
        cells.join(" · "),
        format!(
            "linear: {factor:.0}× from {mid} to {large}; native twin, same SQL: {mid}: {:.2} s · {large}: {:.2} s, \
             growth {twin_growth:.2}×",
            secs(twin[0]),
            secs(twin[1])
        ),
        Some(growth),
        "largest within 1.1× of linear (5M ≤ 5.5× 1M)",
        Some(growth <= factor * 1.1),
    )])
}

/// `order-summary.wasm` renamed to `order-summNNN` (same length, so the
/// component stays valid), to load many copies side by side.
fn renamed(bytes: &[u8], i: usize) -> Vec<u8> {
    let (from, to) = (b"order-summary", format!("order-summ{i:03}"));
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(p) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + p..at + p + from.len()].copy_from_slice(to.as_bytes());
        at += p + from.len();
    }
    out
}

/// In a child process: start a host with `n` projections on a small log,
/// wait until all are live, and print the process's RSS in KiB.
pub fn rss_child(n: usize, cache: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(build_plugin("order-summary")?)?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for i in 0..n {
        std::fs::write(plugins.join(format!("p{i}.wasm")), renamed(&bytes, i))?;
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    // Share the compile cache between children: compile once, measure memory.
    let _ = std::fs::remove_dir_all(data.join("cache"));
    std::os::unix::fs::symlink(cache, data.join("cache"))?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut config = refract::Config::new(&data, &plugins);
    config.log.synchronous = Synchronous::Off;
    config.watch = false;
    let _runtime = rt.enter();
    let app = rt.block_on(refract::App::start(&config))?;
    rt.block_on(write_orders(&app.log, 1000))?;
    let head = app.log.head();
    anyhow::ensure!(
        app.projections.all().len() == n,
        "{} of {n} projections loaded",
        app.projections.all().len()
    );
    for p in app.projections.all() {
        rt.block_on(async { while p.wait_for(head, Duration::from_secs(60)).await < head {} });
    }
    std::thread::sleep(Duration::from_secs(1));
    println!("{}", crate::sys::rss_kib());
    app.shutdown();
    Ok(())
}

/// P6: resident memory of an idle host by number of projections.
pub fn p6(size: Size) -> anyhow::Result<Vec<Row>> {
    let counts = size.pick(vec![0usize, 1, 5], vec![0, 1, 10, 50]);
    let cache = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut rss = Vec::new();
    for &n in &counts {
        let out = std::process::Command::new(&exe)
            .args(["rss-child", "--projections", &n.to_string(), "--cache"])
            .arg(cache.path())
            .stderr(std::process::Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "the measuring child failed");
        let kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        eprintln!("P6: {n} projections: {} MiB", kib / 1024);
        rss.push(kib);
    }
    let mib = |k: u64| k as f64 / 1024.0;
    let cells: Vec<String> =
        counts.iter().zip(&rss).map(|(n, k)| format!("{n}: {:.0} MiB", mib(*k))).collect();
    let (last_n, last) = (counts[counts.len() - 1], rss[rss.len() - 1]);
    let per = mib(last.saturating_sub(rss[0])) / last_n as f64;
    Ok(vec![Row::new(
        "P6",
        "RSS of an idle host by loaded projections (caught up on 1 000 events)".into(),
        format!("{} → {per:.1} MiB per projection", cells.join(" · ")),
        "—".into(),
        None,
        "≤ 10 MiB per idle projection",
        Some(per <= 10.0),
    )])
}

/// Sends `total` PlaceOrder commands to `handler` on `clients`
/// connections, each command to a stream of its own; the wall time.
fn drive(base: &str, handler: &str, clients: usize, total: usize, tag: &str) -> anyhow::Result<Duration> {
    let requests = load::posts(clients, total.div_ceil(clients), |c, i| {
        let body = json!({
            "type": "PlaceOrder",
            "stream_id": format!("{tag}-{c}-{i}"),
            "data": { "customer": "bench", "items": [{ "product_id": "p", "quantity": 1, "price": 1.0 }] }
        });
        (format!("/commands/{handler}"), body)
    });
    Ok(load::send_all(base, requests)?.elapsed)
}

/// P7: commands over HTTP through `orders.wasm` against its native twin.
pub fn p7(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    // Commands per repetition for 1 and 32 clients: about a second each on
    // this machine (32 clients over 2000 commands took 0.2–0.4 s, where a
    // neighbour's burst moves the figure most).
    let counts = size.pick([64, 64], [2000, 8000]);
    let runs = size.pick(1, 5);
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(build_plugin("orders")?, plugins.join("orders.wasm"))?;
    let server = Server::start(rt, &refract::Config::new(dir.path().join("data"), &plugins))?;
    server.app.handlers.add(HandlerPlugin::native(Arc::new(OrdersTwin))).map_err(anyhow::Error::msg)?;
    // Per client count: the plugin's times, then the twin's.
    let mut times: Vec<[Vec<Duration>; 2]> = vec![Default::default(), Default::default()];
    for run in 0..runs {
        for (c, clients) in [1, 32].into_iter().enumerate() {
            for native in pair_order(run) {
                let handler = if native { "orders-native" } else { "orders" };
                let t =
                    drive(&server.base, handler, clients, counts[c], &format!("r{run}-{handler}-{clients}"))?;
                eprintln!("P7 run {}: {handler}, {clients} client(s): {:.3} s", run + 1, secs(t));
                times[c][usize::from(native)].push(t);
            }
        }
    }
    let row = |clients: usize, n: usize, [w, nat]: &[Vec<Duration>; 2]| {
        let ratio = paired_ratio(w, nat);
        let (w, nat) = (rate(n as u64, median(w.clone())), rate(n as u64, median(nat.clone())));
        Row::new(
            "P7",
            format!(
                "commands over HTTP (PlaceOrder, durable), {clients} client(s), {} per repetition",
                thousands(n as f64)
            ),
            format!("{} commands/s", thousands(w)),
            format!("native twin of the decision logic: {} commands/s", thousands(nat)),
            Some(ratio),
            "report the ratio",
            None,
        )
    };
    Ok(vec![row(1, counts[0], &times[0]), row(32, counts[1], &times[1])])
}

/// Time from a changed `.wasm` landing in the plugins directory to the new
/// version serving, on a log of `n` events.
pub fn reload(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let n = size.pick(10_000, 100_000);
    let runs = size.pick(1, 5);
    let v1 = build_plugin("order-summary")?;
    let v2 = build_plugin("order-summary-v2")?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(&v1, plugins.join("order_summary.wasm"))?;
    let mut config = refract::Config::new(dir.path().join("data"), &plugins);
    config.log.synchronous = Synchronous::Off;
    let server = Server::start(rt, &config)?;
    let app = &server.app;
    rt.block_on(write_orders(&app.log, n))?;
    let head = app.log.head();
    let p = app.projections.get("order-summary").context("order-summary did not load")?;
    rt.block_on(async { while p.wait_for(head, Duration::from_secs(600)).await < head {} });
    let mut times = Vec::new();
    for run in 0..runs {
        let (next, version) = if run % 2 == 0 { (&v2, "2.0.0") } else { (&v1, env!("CARGO_PKG_VERSION")) };
        let tmp = plugins.join(".order_summary.wasm.tmp");
        std::fs::copy(next, &tmp)?;
        let start = Instant::now();
        std::fs::rename(&tmp, plugins.join("order_summary.wasm"))?;
        loop {
            let s = p.status();
            if s.version == version && s.rebuild.is_none() && p.checkpoint() >= head {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "the new version never served");
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(start.elapsed());
        eprintln!("reload run {}: {:.3} s", run + 1, secs(times[run]));
    }
    Ok(vec![Row::new(
        "R",
        format!("hot reload: changed .wasm → new version serving, {} events", thousands(n as f64)),
        format!(
            "{:.2} s (includes the {} ms debounce)",
            secs(median(times)),
            refract::reload::DEBOUNCE.as_millis()
        ),
        "—".into(),
        None,
        "—",
        None,
    )])
}
