//! A refract server for one test, and an HTTP client for it; the test's
//! log in SQLite or in a PostgreSQL database of its own.

pub mod nats;
pub mod postgres;

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use refract::{App, Config};
use serde_json::{Value, json};

/// The component built from `plugins/order-summary`.
pub const ORDER_SUMMARY: &str = env!("REFRACT_PLUGIN_ORDER_SUMMARY");
/// The component built from `plugins/customer-stats`.
pub const CUSTOMER_STATS: &str = env!("REFRACT_PLUGIN_CUSTOMER_STATS");
/// The command handler built from `plugins/orders`.
pub const ORDERS: &str = env!("REFRACT_PLUGIN_ORDERS");
/// The command handler built from `plugins/inventory`.
pub const INVENTORY: &str = env!("REFRACT_PLUGIN_INVENTORY");
/// The reactor built from `plugins/fulfilment`.
pub const FULFILMENT: &str = env!("REFRACT_PLUGIN_FULFILMENT");
/// A command handler that traps, loops or returns malformed events.
pub const BAD_HANDLER: &str = env!("REFRACT_PLUGIN_BAD_HANDLER");
/// Version 2 of order-summary: one more column, tolerant of shipments
/// without a carrier.
pub const ORDER_SUMMARY_V2: &str = env!("REFRACT_PLUGIN_ORDER_SUMMARY_V2");
/// The upcaster of `OrderPlaced` from version 1 to 2 (`plugins/order-placed-v2`).
pub const ORDER_PLACED_V2: &str = env!("REFRACT_PLUGIN_ORDER_PLACED_V2");
/// The same upcaster in TypeScript (`tests/plugins/order-placed-v2-ts`).
pub const ORDER_PLACED_V2_TS: &str = env!("REFRACT_PLUGIN_ORDER_PLACED_V2_TS");
/// The same upcaster in Python (`tests/plugins/order-placed-v2-py`).
pub const ORDER_PLACED_V2_PY: &str = env!("REFRACT_PLUGIN_ORDER_PLACED_V2_PY");
/// A reactor in TypeScript shipping paid orders (`tests/plugins/shipper-ts`).
pub const SHIPPER_TS: &str = env!("REFRACT_PLUGIN_SHIPPER_TS");
/// The same reactor in Python (`tests/plugins/shipper-py`).
pub const SHIPPER_PY: &str = env!("REFRACT_PLUGIN_SHIPPER_PY");
/// Every upcaster of `OrderPlaced` from version 1 (one at a time loads).
pub const ORDER_PLACED_V1_UPCASTERS: [&str; 3] = [ORDER_PLACED_V2, ORDER_PLACED_V2_TS, ORDER_PLACED_V2_PY];
/// The example plugins that read `OrderPlaced` at version 2: a plugins
/// directory with one of them and no upcaster of version 1 gets the Rust
/// one.
pub const READ_ORDER_PLACED_V2: [&str; 7] =
    [ORDER_SUMMARY, CUSTOMER_STATS, ORDERS, ORDER_SUMMARY_V2, ORDER_SUMMARY_TS, ORDER_SUMMARY_PY, ORDERS_PY];
/// An `OrderPlaced` v1 upcaster that traps or loops on chosen customers.
pub const BAD_UPCASTER: &str = env!("REFRACT_PLUGIN_BAD_UPCASTER");
/// A component that implements no refract world.
pub const NO_WORLD: &str = env!("REFRACT_PLUGIN_NO_WORLD");
/// A projection whose `apply` never returns.
pub const LOOPER: &str = env!("REFRACT_PLUGIN_LOOPER");
/// A projection with one attack on the host per event type.
pub const HOSTILE: &str = env!("REFRACT_PLUGIN_HOSTILE");
/// A projection that tries to escape its database.
pub const ESCAPER: &str = env!("REFRACT_PLUGIN_ESCAPER");
/// A projection that queues its writes (`Db::write`) and fails on purpose.
pub const TALLY: &str = env!("REFRACT_PLUGIN_TALLY");
/// `order-summary` in TypeScript (`plugins/order-summary-ts`).
pub const ORDER_SUMMARY_TS: &str = env!("REFRACT_PLUGIN_ORDER_SUMMARY_TS");
/// `order-summary` in Python (`plugins/order-summary-py`).
pub const ORDER_SUMMARY_PY: &str = env!("REFRACT_PLUGIN_ORDER_SUMMARY_PY");
/// The `orders` handler in Python (`plugins/orders-py`).
pub const ORDERS_PY: &str = env!("REFRACT_PLUGIN_ORDERS_PY");
/// A TypeScript projection built with componentize-js's defaults, which
/// import `wasi:http` (`tests/plugins/http-js`).
pub const HTTP_JS: &str = env!("REFRACT_PLUGIN_HTTP_JS");

/// Where a test's event log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// `events.db` in the server's data directory.
    Sqlite,
    /// A PostgreSQL database of the test's own on the shared server.
    Postgres,
}

thread_local! {
    static LOG: Cell<LogKind> = const { Cell::new(LogKind::Sqlite) };
}

/// Runs `test` with every server it starts on a `log` of that kind.
pub fn with_log(log: LogKind, test: impl FnOnce()) {
    LOG.with(|l| l.set(log));
    test();
}

/// The kind of log the running test's servers use.
pub fn log_kind() -> LogKind {
    LOG.with(Cell::get)
}

/// Runs the test function `$name` twice, on the SQLite log and on the
/// PostgreSQL log, as the tests `$name::sqlite` and `$name::postgres`. The
/// function starts its servers with [`Server::start`] and friends, which
/// pick the log.
#[macro_export]
macro_rules! on_both_logs {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    $crate::support::with_log($crate::support::LogKind::Sqlite, super::$name)
                }

                #[test]
                fn postgres() {
                    $crate::support::with_log($crate::support::LogKind::Postgres, super::$name)
                }
            }
        )+
    };
}

/// A short random suffix for names that must not collide between runs.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    format!("{:08x}", h.finish() as u32)
}

/// A server's home: its data and plugins directory, and its PostgreSQL
/// database when the log is there. What [`Server::stop`] hands back to
/// start the server again on the same data.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub db: Option<Arc<postgres::TestDb>>,
}

impl Home {
    /// A home in `dir`, with a new database if the test runs on
    /// PostgreSQL.
    pub fn new(dir: tempfile::TempDir) -> Home {
        let db = (log_kind() == LogKind::Postgres).then(postgres::TestDb::create);
        Home { dir, db }
    }
}

impl From<tempfile::TempDir> for Home {
    fn from(dir: tempfile::TempDir) -> Home {
        Home::new(dir)
    }
}

impl std::ops::Deref for Home {
    type Target = tempfile::TempDir;
    fn deref(&self) -> &tempfile::TempDir {
        &self.dir
    }
}

/// Copies `plugins` into a fresh plugins directory under `dir`, with the
/// `OrderPlaced` upcaster when one of them reads version 2 (as the
/// examples are deployed).
pub fn plugins_dir(dir: &Path, plugins: &[&str]) -> PathBuf {
    let p = dir.join("plugins");
    std::fs::create_dir_all(&p).unwrap();
    let mut plugins = plugins.to_vec();
    if plugins.iter().any(|p| READ_ORDER_PLACED_V2.contains(p))
        && !plugins.iter().any(|p| ORDER_PLACED_V1_UPCASTERS.contains(p))
    {
        plugins.push(ORDER_PLACED_V2);
    }
    for src in plugins {
        let src = Path::new(src);
        std::fs::copy(src, p.join(src.file_name().unwrap())).unwrap();
    }
    p
}

/// A server running in this process on its own runtime and port.
pub struct Server {
    pub base: String,
    pub dir: tempfile::TempDir,
    /// The test's PostgreSQL database, when the log is there.
    pub db: Option<Arc<postgres::TestDb>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts a server with `plugins` and default settings.
    pub fn start(plugins: &[&str]) -> Server {
        Self::start_with(plugins, |_| {})
    }

    /// Starts a server with `plugins`, after `tune` adjusts the config.
    pub fn start_with(plugins: &[&str], tune: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        plugins_dir(dir.path(), plugins);
        Self::start_in(dir, tune)
    }

    /// Starts a server on the data and plugins already in `home` (as left
    /// by [`Server::stop`], or a new directory).
    pub fn start_in(home: impl Into<Home>, tune: impl FnOnce(&mut Config)) -> Server {
        let Home { dir, db } = home.into();
        let mut config = Config::new(dir.path().join("data"), dir.path().join("plugins"));
        config.log.synchronous = refract::db::Synchronous::Normal;
        config.log_url = db.as_ref().map(|d| d.url());
        config.runner.backoff = Duration::from_millis(10);
        // Large components compile in a child process, as `refract serve`
        // has them.
        config.compiler = Some(BIN.into());
        tune(&mut config);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let app = App::start(&config).await.expect("server starts");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr: SocketAddr = listener.local_addr().unwrap();
                ready_tx.send(addr).unwrap();
                app.clone()
                    .serve(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
                app.shutdown();
            });
        });
        let addr = ready_rx.recv().expect("server thread reports its address");
        Server { base: format!("http://{addr}"), dir, db, stop: Some(stop), thread: Some(thread) }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The plugins directory the server watches.
    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    pub fn client(&self) -> Client {
        Client { base: self.base.clone() }
    }
}

impl Server {
    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Shuts the server down cleanly and hands back its home.
    pub fn stop(mut self) -> Home {
        self.halt();
        let dir = tempfile::tempdir().unwrap();
        Home { dir: std::mem::replace(&mut self.dir, dir), db: self.db.take() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A blocking HTTP client that returns every status as a value.
#[derive(Clone)]
pub struct Client {
    pub base: String,
}

/// Status and JSON body of a response.
pub type Reply = (u16, Value);

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
    (status, body)
}

impl Client {
    pub fn get(&self, path: &str) -> Reply {
        reply(ureq::get(&format!("{}{path}", self.base)).call())
    }

    /// A GET whose body is text, not JSON.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{path}", self.base)).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
            Err(e) => panic!("transport error: {e}"),
        }
    }

    /// `GET /metrics`: its text, checked to be OpenMetrics (comment lines
    /// are HELP, TYPE or the final EOF), and its samples by name with labels.
    pub fn metrics(&self) -> (String, std::collections::HashMap<String, f64>) {
        let (status, text) = self.get_text("/metrics");
        assert_eq!(status, 200, "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        let mut samples = std::collections::HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF",
                    "bad comment line: {line}"
                );
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in: {line}"));
            samples.insert(name.to_owned(), value);
        }
        (text, samples)
    }

    /// A POST whose answer is text, JSON or not.
    pub fn post_text(&self, path: &str, body: &Value) -> (u16, String) {
        match ureq::post(&format!("{}{path}", self.base)).send_json(body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
            Err(e) => panic!("transport error: {e}"),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        reply(ureq::post(&format!("{}{path}", self.base)).send_json(body))
    }

    /// Posts raw bytes as JSON.
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        reply(
            ureq::post(&format!("{}{path}", self.base))
                .set("content-type", "application/json")
                .send_bytes(body),
        )
    }

    /// Appends `events` (`(type, data)`) to `stream`; panics unless 201.
    pub fn append(&self, stream: &str, expected: Value, events: &[(&str, Value)]) -> Value {
        let (status, body) = self.try_append(stream, expected, events);
        assert_eq!(status, 201, "append to {stream}: {body}");
        body
    }

    pub fn try_append(&self, stream: &str, expected: Value, events: &[(&str, Value)]) -> Reply {
        let events = events_json(events);
        self.post(
            &format!("/streams/{stream}/events"),
            &json!({ "expected_version": expected, "events": events }),
        )
    }

    /// Sends a command to `handler`.
    pub fn command(&self, handler: &str, command_type: &str, stream: &str, data: Value) -> Reply {
        self.post(
            &format!("/commands/{handler}"),
            &json!({ "type": command_type, "stream_id": stream, "data": data }),
        )
    }

    /// The status of projection `name`.
    pub fn projection(&self, name: &str) -> Value {
        let (status, body) = self.get(&format!("/projections/{name}"));
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `name` satisfies `pred`, or panics with its last status.
    pub fn wait_projection(&self, name: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.projection(name);
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "projection {name} never got there; last status: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rows of a read-only query, as arrays.
    pub fn query(&self, projection: &str, sql: &str) -> Vec<Value> {
        let (status, body) = self
            .post(&format!("/projections/{projection}/query"), &json!({ "sql": sql, "max_rows": 10_000 }));
        assert_eq!(status, 200, "{sql}: {body}");
        assert_eq!(body["truncated"], false);
        body["rows"].as_array().unwrap().clone()
    }
}

/// `(type, data)` pairs as the events of an append body.
pub fn events_json(events: &[(&str, Value)]) -> Vec<Value> {
    events.iter().map(|(t, d)| json!({ "type": t, "data": d })).collect()
}

/// The events of a small order lifecycle.
pub fn order_events(customer: &str, items: u32) -> Vec<(&'static str, Value)> {
    let mut v = vec![(
        "OrderPlaced",
        json!({ "customer": customer, "items": [{ "product_id": "p-1", "quantity": 1, "price": 10.0 }] }),
    )];
    for i in 0..items {
        v.push(("ItemAdded", json!({ "product_id": format!("p-{}", i + 2), "quantity": 2, "price": 2.5 })));
    }
    v.push(("OrderPaid", json!({ "payment_method": "card" })));
    v
}

/// The refract binary, for tests that run it as a child process.
pub const BIN: &str = env!("CARGO_BIN_EXE_refract-under-test");

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until the server at `base` answers `/healthz`.
pub fn wait_healthy(base: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "server at {base} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `None` when the server could not be reached (killed mid-request).
pub fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let req = agent.request(method, url);
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(_)) => return None,
    };
    let status = resp.status();
    let body = resp.into_json().unwrap_or(Value::Null);
    Some((status, body))
}

/// Every event of the log, in order.
pub fn whole_log(c: &Client) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let (status, body) = c.get(&format!("/events?after={}&limit=1000", all.len()));
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page.iter().cloned());
    }
}
