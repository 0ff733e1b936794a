//! refract benchmarks. `cargo run --release -p refract-bench -- replay`
//! measures how fast a projection replays the log from position 1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use refract::db::Synchronous;
use refract::log::{EventLog, ExpectedVersion, LogOptions, NewEvent};
use refract::metrics::Metrics;
use refract::plugin::{Plugin, PluginEngine, SandboxLimits};
use refract::projection::{ProjectionOptions, Projections, RunnerOptions};
use serde_json::json;
use serde_json::value::RawValue;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Replay N events of order traffic through `order-summary.wasm`.
    Replay {
        /// Events in the log.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Events per batch (one `apply` call and one transaction each).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Time from a changed `.wasm` landing in the plugins directory to the
    /// new version serving (blue/green rebuild included), for a log of N
    /// events.
    Reload {
        /// Events in the log; 0 and this number are measured.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Loading 10 plugins at a restart: cold (empty compile cache) against
    /// warm (cache filled by the previous start).
    Restart {
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Commands per second over HTTP through `orders.wasm`, each on its own
    /// stream, with 1 and with 32 concurrent clients (durable appends).
    Commands {
        /// Commands per client count and repetition.
        #[arg(long, default_value_t = 2000)]
        commands: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.scenario {
        Scenario::Replay { events, batch_size, runs } => rt.block_on(replay(events, batch_size, runs)),
        Scenario::Commands { commands: n, runs } => commands(&rt, n, runs),
        Scenario::Reload { events, runs } => {
            for n in [0, events] {
                rt.block_on(reload(n, runs))?;
            }
            Ok(())
        }
        Scenario::Restart { runs } => restart(runs),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the example plugin `package` for wasm32-wasip2.
fn build_plugin(package: &str) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let build = refract_plugin_build::Build {
        manifest_path: root.join("Cargo.toml"),
        packages: vec![package.into()],
        target_dir: root.join("target/refract-plugins"),
        capture: false,
    };
    let mut paths = build.run()?;
    paths.pop().context("no artifact")
}

/// Runs `clients` threads that together send `total` PlaceOrder commands,
/// each to a stream of its own; returns the wall time.
fn drive(base: &str, clients: usize, total: usize, run: usize) -> anyhow::Result<Duration> {
    let per_client = total.div_ceil(clients);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (base, barrier) = (base.to_owned(), barrier.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = ureq::AgentBuilder::new().build();
                barrier.wait();
                for i in 0..per_client {
                    let body = json!({
                        "type": "PlaceOrder",
                        "stream_id": format!("r{run}-c{clients}-{c}-{i}"),
                        "data": { "customer": "bench", "items": [{ "product_id": "p", "quantity": 1, "price": 1.0 }] }
                    });
                    agent.post(&format!("{base}/commands/orders")).send_json(body)?;
                }
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    Ok(start.elapsed())
}

fn commands(rt: &tokio::runtime::Runtime, n: usize, runs: usize) -> anyhow::Result<()> {
    let wasm = build_plugin("orders")?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(&wasm, plugins.join("orders.wasm"))?;
    let config = refract::Config::new(dir.path().join("data"), &plugins);
    let (base, stop) = rt.block_on(async {
        let app = refract::App::start(&config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        anyhow::Ok((base, stop))
    })?;
    let mut results: Vec<(usize, Vec<Duration>)> = vec![(1, Vec::new()), (32, Vec::new())];
    // Interleave the two client counts so drift hits both alike.
    for run in 0..runs {
        for (clients, times) in &mut results {
            let t = drive(&base, *clients, n, run)?;
            eprintln!("run {}: {clients} client(s): {n} commands in {:.3} s", run + 1, t.as_secs_f64());
            times.push(t);
        }
    }
    let _ = stop.send(());
    let rate = |times: &mut Vec<Duration>| {
        times.sort();
        n as f64 / times[times.len() / 2].as_secs_f64()
    };
    let one = rate(&mut results[0].1);
    let many = rate(&mut results[1].1);
    println!("| commands over HTTP (PlaceOrder, durable) | 1 client | {one:.0} commands/s |");
    println!(
        "| commands over HTTP (PlaceOrder, durable) | 32 clients | {many:.0} commands/s ({:.1}x one client) |",
        many / one
    );
    Ok(())
}

fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("serde_json produces valid JSON")
}

/// Writes `n` events of order traffic: per order one `OrderPlaced`, eight
/// `ItemAdded` and one `OrderPaid`.
async fn write_orders(log: &EventLog, n: u64) -> anyhow::Result<()> {
    let orders = n.div_ceil(10);
    let mut written = 0;
    for o in 0..orders {
        let mut events = vec![NewEvent {
            event_type: "OrderPlaced".into(),
            data: raw(
                json!({ "customer": format!("c{}", o % 1000), "items": [{ "product_id": "p", "quantity": 1, "price": 9.5 }] }),
            ),
            metadata: None,
        }];
        for i in 0..8 {
            events.push(NewEvent {
                event_type: "ItemAdded".into(),
                data: raw(json!({ "product_id": format!("p{i}"), "quantity": 2, "price": 1.25 })),
                metadata: None,
            });
        }
        events.push(NewEvent {
            event_type: "OrderPaid".into(),
            data: raw(json!({ "payment_method": "card" })),
            metadata: None,
        });
        events.truncate((n - written).min(10) as usize);
        written += events.len() as u64;
        log.append(&format!("order-{o}"), ExpectedVersion::NoStream, events).await?;
    }
    Ok(())
}

async fn replay(n: u64, batch_size: usize, runs: usize) -> anyhow::Result<()> {
    let wasm = build_plugin("order-summary")?;
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("events.db");
    let log =
        EventLog::open(&log_path, LogOptions { synchronous: Synchronous::Off, ..LogOptions::default() })?;
    write_orders(&log, n).await?;
    let head = log.head();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(&wasm, plugins.join("order_summary.wasm"))?;
    let engine = PluginEngine::new(SandboxLimits::default(), None)?;
    let mut times = Vec::new();
    for run in 0..runs {
        let projections = Projections::new(
            log.clone(),
            ProjectionOptions {
                dir: dir.path().join(format!("projections-{run}")),
                log_path: log_path.clone(),
                runner: RunnerOptions { batch_size, ..RunnerOptions::default() },
                default_policy: Default::default(),
                policies: Default::default(),
                drop_removed: false,
            },
            Metrics::new(),
        )?;
        let start = Instant::now();
        let Ok(Plugin::Projection(plugin)) = engine.load(&plugins.join("order_summary.wasm")) else {
            anyhow::bail!("order_summary.wasm is not a loadable projection");
        };
        projections.load(plugin, false).map_err(anyhow::Error::msg)?;
        let loaded = Instant::now();
        let p = projections.get("order-summary").context("order-summary did not load")?;
        while p.wait_for(head, Duration::from_secs(600)).await < head {}
        let elapsed = loaded.elapsed();
        projections.shutdown();
        times.push(elapsed);
        eprintln!(
            "run {}: load {:.3} s, replay of {head} events {:.3} s",
            run + 1,
            (loaded - start).as_secs_f64(),
            elapsed.as_secs_f64()
        );
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "| replay through order-summary.wasm | {head} events | batch {batch_size} | median of {runs}: {:.3} s | {:.0} events/s |",
        median.as_secs_f64(),
        head as f64 / median.as_secs_f64()
    );
    log.close();
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn reload(n: u64, runs: usize) -> anyhow::Result<()> {
    let v1 = build_plugin("order-summary")?;
    let v2 = build_plugin("order-summary-v2")?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(&v1, plugins.join("order_summary.wasm"))?;
    let mut config = refract::Config::new(dir.path().join("data"), &plugins);
    config.log.synchronous = Synchronous::Off;
    let app = refract::App::start(&config)?;
    write_orders(&app.log, n).await?;
    let head = app.log.head();
    let p = app.projections.get("order-summary").context("order-summary did not load")?;
    while p.wait_for(head, Duration::from_secs(600)).await < head {}
    let mut times = Vec::new();
    for run in 0..runs {
        // Alternate the versions so every run is a real change.
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
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = start.elapsed();
        eprintln!("run {}: {head} events: new version serving after {:.3} s", run + 1, t.as_secs_f64());
        times.push(t);
    }
    app.shutdown();
    println!(
        "| changed .wasm → new version serving | {head} events | median of {runs}: {:.3} s (includes the {} ms debounce) |",
        median(times).as_secs_f64(),
        refract::reload::DEBOUNCE.as_millis()
    );
    Ok(())
}

/// Appends a custom section so each copy has distinct bytes (and so its own
/// compile-cache entry) with the same behaviour.
fn variant(bytes: &[u8], i: u8) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(&[0x00, 0x07, 0x04, b'b', b'e', b'n', b'c', b'h', b'0' + i]);
    v
}

fn restart(runs: usize) -> anyhow::Result<()> {
    let wasm = std::fs::read(build_plugin("order-summary")?)?;
    let files: Vec<Vec<u8>> = (0..10).map(|i| variant(&wasm, i)).collect();
    let load_all = |cache: &Path| -> anyhow::Result<Duration> {
        let start = Instant::now();
        let engine = PluginEngine::new(SandboxLimits::default(), Some(cache))?;
        for (i, bytes) in files.iter().enumerate() {
            engine.load_bytes(Path::new(&format!("p{i}.wasm")), bytes)?;
        }
        Ok(start.elapsed())
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let cache = tempfile::tempdir()?;
        let c = load_all(cache.path())?;
        // The cache is written in the background; give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        let w = load_all(cache.path())?;
        eprintln!("run {}: cold {:.3} s, warm {:.3} s", run + 1, c.as_secs_f64(), w.as_secs_f64());
        cold.push(c);
        warm.push(w);
    }
    let (c, w) = (median(cold), median(warm));
    println!(
        "| loading 10 plugins at restart | cold cache {:.3} s ({:.1} ms each) | warm cache {:.3} s ({:.1} ms each) | {:.1}x faster |",
        c.as_secs_f64(),
        c.as_secs_f64() * 100.0,
        w.as_secs_f64(),
        w.as_secs_f64() * 100.0,
        c.as_secs_f64() / w.as_secs_f64()
    );
    Ok(())
}
