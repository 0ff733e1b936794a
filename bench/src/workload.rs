//! Data and plumbing shared by the scenarios: the order workload, plugin
//! builds, an in-process server, statistics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use refract::log::{EventLog, ExpectedVersion, NewEvent};
use serde_json::json;
use serde_json::value::RawValue;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the plugin crate `package` for wasm32-wasip2 (release).
pub fn build_plugin(package: &str) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let build = refract_plugin_build::Build {
        manifest_path: root.join("Cargo.toml"),
        packages: vec![package.into()],
        // The same directory as the tests' plugin builds: one build serves both.
        target_dir: root.join("target/wasm-plugins"),
        capture: false,
    };
    let mut paths = build.run()?;
    paths.pop().context("no artifact")
}

pub fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("serde_json produces valid JSON")
}

/// The events of order `o`: one `OrderPlaced`, eight `ItemAdded`, one
/// `OrderPaid`.
pub fn order(o: u64) -> Vec<NewEvent> {
    let mut events = vec![NewEvent {
        event_type: "OrderPlaced".into(),
        data: raw(
            json!({ "customer": { "id": format!("c{}", o % 1000), "name": format!("Customer {}", o % 1000) }, "items": [{ "product_id": "p", "quantity": 1, "price": 9.5 }] }),
        ),
        metadata: None,
        schema_version: Some(2),
    }];
    for i in 0..8 {
        events.push(NewEvent {
            event_type: "ItemAdded".into(),
            data: raw(json!({ "product_id": format!("p{i}"), "quantity": 2, "price": 1.25 })),
            metadata: None,
            schema_version: None,
        });
    }
    events.push(NewEvent {
        event_type: "OrderPaid".into(),
        data: raw(json!({ "payment_method": "card" })),
        metadata: None,
        schema_version: None,
    });
    events
}

/// The events of order `o` with its `OrderPlaced` at version 1 (the
/// customer one string), as written before version 2.
pub fn order_v1(o: u64) -> Vec<NewEvent> {
    let mut events = order(o);
    events[0].data = raw(
        json!({ "customer": format!("c{}", o % 1000), "items": [{ "product_id": "p", "quantity": 1, "price": 9.5 }] }),
    );
    events[0].schema_version = Some(1);
    events
}

/// Writes `n` events of order traffic (10 per order, `n / 10` orders).
pub async fn write_orders(log: &EventLog, n: u64) -> anyhow::Result<()> {
    write_orders_with(log, n, order).await
}

/// [`write_orders`] with the orders `order_of` makes.
pub async fn write_orders_with(
    log: &EventLog,
    n: u64,
    order_of: fn(u64) -> Vec<NewEvent>,
) -> anyhow::Result<()> {
    let mut written = 0;
    let mut o = 0;
    while written < n {
        let mut events = order_of(o);
        events.truncate((n - written).min(10) as usize);
        written += events.len() as u64;
        log.append(&format!("order-{o}"), ExpectedVersion::NoStream, events).await?;
        o += 1;
    }
    Ok(())
}

/// A refract server on a loopback port, in this process.
pub struct Server {
    pub app: Arc<refract::App>,
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn start(rt: &tokio::runtime::Runtime, config: &refract::Config) -> anyhow::Result<Server> {
        rt.block_on(async {
            let app = refract::App::start(config).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(app.clone().serve(listener, async {
                let _ = stopped.await;
            }));
            Ok(Server { app, base, stop: Some(stop) })
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.app.shutdown();
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// How fast `ours` ran against `base`, repetition by repetition (each
/// pair measured back to back): the median of `base[i] / ours[i]`, so a
/// drift of the machine's speed across the run cancels out.
pub fn paired_ratio(ours: &[Duration], base: &[Duration]) -> f64 {
    median_f64(ours.iter().zip(base).map(|(o, b)| b.as_secs_f64() / o.as_secs_f64()).collect())
}

/// The median of ratios (or any numbers), as [`median`] is of durations.
pub fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `p`-th percentile (0–100) of `v`.
pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i.min(v.len() - 1)]
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
