//! P12: event evolution. A command on a long stream with handler
//! snapshots against the same command folding the whole history; and a
//! replay whose `OrderPlaced` events go through an upcaster against the
//! same replay of a log already at version 2, and through the same
//! upcaster in TypeScript and Python.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use refract::command::{self, CommandRequest, Handlers};
use refract::evolution::{Contracts, SnapshotStore, Upcasters};
use refract::log::{EventLog, ExpectedVersion, LogOptions, NewEvent};
use refract::metrics::{LogMetrics, Metrics};
use refract::plugin::{Plugin, PluginEngine, SandboxLimits};
use refract::projection::RunnerOptions;
use serde_json::json;

use crate::polyglot::build_polyglot_in;
use crate::report::Row;
use crate::scenarios::{Size, load_projection, rate, replay_once, thousands};
use crate::workload::{build_plugin, median, order, order_v1, raw, write_orders_with};
use refract_plugin_build::Lang;

/// An SQLite log in `dir`, written without fsync.
fn scratch_log(dir: &Path) -> anyhow::Result<EventLog> {
    Ok(EventLog::open(
        &dir.join("events.db"),
        LogOptions { synchronous: refract::db::Synchronous::Off, ..LogOptions::default() },
        LogMetrics::default(),
    )?)
}

/// A log whose stream `long` holds one `OrderPlaced` and `n - 1`
/// `ItemAdded`.
async fn long_stream(dir: &Path, n: u64) -> anyhow::Result<EventLog> {
    let log = scratch_log(dir)?;
    let mut first = order(0);
    first.truncate(1);
    log.append("long", ExpectedVersion::NoStream, first).await?;
    let mut written = 1;
    while written < n {
        let k = (n - written).min(5_000);
        let events = (0..k)
            .map(|i| NewEvent {
                event_type: "ItemAdded".into(),
                data: raw(
                    json!({ "product_id": format!("p{}", (written + i) % 97), "quantity": 1, "price": 1.25 }),
                ),
                metadata: None,
                schema_version: None,
            })
            .collect();
        log.append("long", ExpectedVersion::Any, events).await?;
        written += k;
    }
    Ok(log)
}

/// The median latency of `commands` `AddItem` commands on stream `long`,
/// after one unmeasured (which makes the first snapshot, if any).
async fn command_latency(log: &EventLog, handlers: &Handlers, commands: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for i in 0..=commands {
        let req = CommandRequest {
            command_type: "AddItem".into(),
            stream_id: "long".into(),
            data: raw(json!({ "product_id": format!("q{i}"), "quantity": 1, "price": 2.0 })),
            metadata: None,
            idempotency_key: None,
        };
        let start = Instant::now();
        command::execute(log, handlers, "orders", req).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if i > 0 {
            times.push(start.elapsed());
        }
    }
    Ok(median(times))
}

fn handlers(
    engine: &PluginEngine,
    wasm: &Path,
    snapshots: Option<SnapshotStore>,
) -> anyhow::Result<Handlers> {
    let handlers = Handlers::new(Arc::new(Contracts::default()), snapshots, Metrics::new());
    match engine.load(wasm)? {
        Plugin::Handler(h) => handlers.add(h).map_err(anyhow::Error::msg)?,
        _ => anyhow::bail!("{} is not a command handler", wasm.display()),
    }
    Ok(handlers)
}

/// P12: commands on long streams with and without snapshots; replay
/// through one upcaster.
pub fn p12(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let orders = build_plugin("orders")?;
    let sizes: Vec<u64> = if size.quick { vec![1_000, 10_000] } else { vec![1_000, 10_000, 100_000] };
    let cache = tempfile::tempdir()?;
    let engine = PluginEngine::new(SandboxLimits::default(), Some(cache.path()))?;
    let mut with = Vec::new();
    let mut without = Vec::new();
    for &n in &sizes {
        let dir = tempfile::tempdir()?;
        let (w, wo) = rt.block_on(async {
            let log = long_stream(dir.path(), n).await?;
            let snapshots = SnapshotStore::new(dir.path().join("snapshots"), 100);
            let w = command_latency(&log, &handlers(&engine, &orders, Some(snapshots))?, 20).await?;
            let wo = command_latency(&log, &handlers(&engine, &orders, None)?, size.pick(3, 5)).await?;
            log.close();
            anyhow::Ok((w, wo))
        })?;
        eprintln!("P12 {n} events: {:.3} ms with snapshots, {:.3} ms without", ms(w), ms(wo));
        with.push(w);
        without.push(wo);
    }
    let last = sizes.len() - 1;
    let speedup = without[last].as_secs_f64() / with[last].as_secs_f64();
    let flat = with[last].as_secs_f64() / with[0].as_secs_f64();
    let cells = |v: &[Duration]| {
        sizes
            .iter()
            .zip(v)
            .map(|(n, d)| format!("{}: {:.2} ms", thousands(*n as f64), ms(*d)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut rows = vec![
        Row::new(
            "P12",
            format!(
                "a command (AddItem, orders.wasm) on a stream of {} events, median latency; snapshots every 100 events",
                thousands(sizes[last] as f64)
            ),
            format!("{:.2} ms with snapshots", ms(with[last])),
            format!("{:.2} ms folding the whole history", ms(without[last])),
            Some(speedup),
            "≥ 50×",
            Some(speedup >= 50.0),
        ),
        Row::new(
            "P12b",
            "the same command by stream length, with snapshots (without: the second column)".into(),
            cells(&with),
            cells(&without),
            Some(flat),
            "flat: longest ÷ shortest ≤ 2×",
            Some(flat <= 2.0),
        ),
    ];

    // Replay through one upcaster: the same traffic, OrderPlaced at v1
    // (upcast) against v2 (as stored); and through the same upcaster in
    // TypeScript and Python.
    let n = size.pick(20_000, 200_000);
    let runs = size.pick(1, 3);
    let summary = build_plugin("order-summary")?;
    let by_language = [
        ("Rust", build_plugin("order-placed-v2")?),
        ("TypeScript", build_polyglot_in(Lang::TypeScript, "tests/plugins", "order-placed-v2-ts")?),
        ("Python", build_polyglot_in(Lang::Python, "tests/plugins", "order-placed-v2-py")?),
    ];
    let mut registries = Vec::new();
    for (_, wasm) in &by_language {
        let upcasters = Upcasters::default();
        match engine.load(wasm)? {
            Plugin::Upcaster(u) => upcasters.add(u).map_err(anyhow::Error::msg)?,
            _ => anyhow::bail!("{} is not an upcaster", wasm.display()),
        }
        registries.push(upcasters);
    }
    let metrics = Metrics::new();
    let batch = RunnerOptions::default().batch_size;
    let (dir_v1, dir_v2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (upcast, stored) = rt.block_on(async {
        let (v1, v2) = (scratch_log(dir_v1.path())?, scratch_log(dir_v2.path())?);
        write_orders_with(&v1, n, order_v1).await?;
        write_orders_with(&v2, n, order).await?;
        let (mut upcast, mut stored) = (vec![Vec::new(); registries.len()], Vec::new());
        for run in 0..runs {
            for (i, upcasters) in registries.iter().enumerate() {
                let mut p = load_projection(&engine, &summary)?;
                p.upcasts = upcasters.plan(&p.description.event_versions, &metrics);
                let t = replay_once(&v1, dir_v1.path().join(format!("r{run}-{i}")), p, batch).await?;
                eprintln!(
                    "P12c run {}: through the {} upcaster {:.3} s",
                    run + 1,
                    by_language[i].0,
                    t.as_secs_f64()
                );
                upcast[i].push(t);
            }
            let p = load_projection(&engine, &summary)?;
            stored.push(replay_once(&v2, dir_v2.path().join(format!("r{run}")), p, batch).await?);
        }
        v1.close();
        v2.close();
        anyhow::Ok((upcast.into_iter().map(median).collect::<Vec<_>>(), median(stored)))
    })?;
    let (r_up, r_stored) = (rate(n, upcast[0]), rate(n, stored));
    let ratio = r_up / r_stored;
    rows.push(Row::new(
        "P12c",
        format!(
            "replay {} order events through order-summary, OrderPlaced (1 in 10) upcast v1 → v2 by order-placed-v2.wasm, median of {runs}",
            thousands(n as f64)
        ),
        format!("{} events/s", thousands(r_up)),
        format!("{} events/s, the log already at v2", thousands(r_stored)),
        Some(ratio),
        "≥ 0.8×",
        Some(ratio >= 0.8),
    ));
    let others: Vec<(&str, f64)> =
        by_language.iter().zip(&upcast).skip(1).map(|((lang, _), t)| (*lang, rate(n, *t))).collect();
    rows.push(Row::new(
        "P12d",
        "the same replay through the upcaster in TypeScript and in Python (tests/plugins/order-placed-v2-ts, -py)"
            .into(),
        others.iter().map(|(lang, r)| format!("{lang}: {} events/s", thousands(*r))).collect::<Vec<_>>().join(" · "),
        format!(
            "through the Rust one: {} events/s; {}",
            thousands(r_up),
            others.iter().map(|(lang, r)| format!("{lang} {:.2}×", r / r_up)).collect::<Vec<_>>().join(", ")
        ),
        None,
        "report",
        None,
    ));
    Ok(rows)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
