//! Exactly-once under `kill -9`: a server killed while projections replay
//! (between commits of single batches, and inside transactions spanning
//! many batches) resumes from its checkpoints, and its read models equal a
//! fresh replay of the same log, row for row — nothing lost, nothing
//! applied twice.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    BIN, CUSTOMER_STATS, Client, ORDER_PLACED_V2, ORDER_SUMMARY, free_port, order_events, plugins_dir,
    wait_healthy,
};

/// The real binary running as a child process.
pub struct Child9 {
    pub child: Child,
    pub client: Client,
}

/// Starts the real binary on a free port and waits for `/healthz`.
fn spawn(data: &Path, plugins: &Path, batch_size: u32) -> Child9 {
    spawn_with(data, plugins, batch_size, "normal")
}

/// Like [`spawn`], with the event log's `--sync` mode.
pub fn spawn_with(data: &Path, plugins: &Path, batch_size: u32, sync: &str) -> Child9 {
    spawn_args(data, plugins, batch_size, sync, &[])
}

/// Like [`spawn_with`], with more arguments for `serve`.
pub fn spawn_args(data: &Path, plugins: &Path, batch_size: u32, sync: &str, more: &[&str]) -> Child9 {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--sync", sync, "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .arg("--plugins")
        .arg(plugins)
        .args(["--batch-size", &batch_size.to_string()])
        .args(more)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the refract binary starts");
    let client = Client { base: format!("http://127.0.0.1:{port}") };
    wait_healthy(&client.base, Duration::from_secs(30));
    Child9 { child, client }
}

impl Child9 {
    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dump(c: &Client) -> (Vec<Value>, Vec<Value>) {
    (
        c.query("order-summary", "SELECT * FROM order_summaries ORDER BY order_id"),
        c.query("customer-stats", "SELECT * FROM customer_stats ORDER BY customer"),
    )
}

fn caught_up(c: &Client, head: u64) {
    for p in ["order-summary", "customer-stats"] {
        c.wait_projection(p, Duration::from_secs(60), |s| s["position"] == head);
    }
}

#[test]
fn kill_nine_mid_replay_loses_nothing_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let no_plugins = dir.path().join("none");
    std::fs::create_dir_all(&no_plugins).unwrap();

    // 1. Write the log with no projections loaded.
    let writer = spawn(&data, &no_plugins, 500);
    let orders = 600;
    let mut head = 0;
    for i in 0..orders {
        let customer = format!("c{}", i % 37);
        let r =
            writer.client.append(&format!("order-{i}"), json!("no_stream"), &order_events(&customer, i % 4));
        head = r["last_position"].as_u64().unwrap();
    }
    writer.kill9();

    // 2. Replay with tiny batches and kill -9 it mid-way, several times.
    // Each run starts with an empty plugins directory and the plugins are
    // dropped in once it serves (hot reload), so the replay is surely under
    // way, resuming from the last checkpoint, when the kill comes. Runs
    // alternate between a commit per batch and transactions spanning the
    // batches of 20 ms (the kill then lands inside one, its batches
    // uncommitted).
    let plugins = dir.path().join("plugins");
    let mut mid_replay_kills = 0;
    let mut last_seen = 0;
    for run in 0..8 {
        let _ = std::fs::remove_dir_all(&plugins);
        std::fs::create_dir_all(&plugins).unwrap();
        let span = if run % 2 == 0 { "0" } else { "20" };
        let server = spawn_args(&data, &plugins, 3, "normal", &["--catch-up-commit-ms", span]);
        for src in [ORDER_PLACED_V2, ORDER_SUMMARY, CUSTOMER_STATS] {
            let name = Path::new(src).file_name().unwrap();
            let tmp = plugins.join(format!(".{}", name.to_string_lossy()));
            std::fs::copy(src, &tmp).unwrap();
            std::fs::rename(&tmp, plugins.join(name)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut killed_mid_replay = false;
        loop {
            let (status, s) = server.client.get("/projections/customer-stats");
            if status == 404 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let pos = s["position"].as_u64().unwrap();
            if pos > last_seen && pos < head {
                last_seen = pos;
                killed_mid_replay = true;
                break;
            }
            if pos == head || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill9();
        if !killed_mid_replay {
            break;
        }
        mid_replay_kills += 1;
        if mid_replay_kills == 4 {
            break;
        }
    }
    // Runs 0 and 1 both caught it: one kill in each commit mode.
    assert!(
        mid_replay_kills >= 2,
        "caught a projection mid-replay {mid_replay_kills} times (head {head}); want one per commit mode"
    );

    // 3. Restart with the plugins in place and let it finish.
    let plugins = plugins_dir(&dir.path().join("final"), &[ORDER_SUMMARY, CUSTOMER_STATS]);
    let server = spawn(&data, &plugins, 3);
    caught_up(&server.client, head);
    let recovered = dump(&server.client);
    let (_, events) = server.client.get("/healthz");
    assert_eq!(events["head"], head, "every acknowledged append survived");
    drop(server);

    // 4. A fresh replay of a copy of the same log.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fresh.path().join("data")).unwrap();
    std::fs::copy(data.join("events.db"), fresh.path().join("data/events.db")).unwrap();
    for suffix in ["-wal", "-shm"] {
        let src = data.join(format!("events.db{suffix}"));
        if src.exists() {
            std::fs::copy(&src, fresh.path().join(format!("data/events.db{suffix}"))).unwrap();
        }
    }
    let server = spawn(&fresh.path().join("data"), &plugins, 500);
    caught_up(&server.client, head);
    let replayed = dump(&server.client);

    assert_eq!(recovered.0.len(), orders as usize);
    assert_eq!(recovered.0, replayed.0, "order_summaries differ from a fresh replay");
    assert_eq!(
        recovered.1, replayed.1,
        "customer_stats differ from a fresh replay (an event applied twice?)"
    );
    let orders_counted: i64 = recovered.1.iter().map(|r| r[1].as_i64().unwrap()).sum();
    assert_eq!(orders_counted, orders as i64);
    eprintln!("survived {mid_replay_kills} kill -9 during replay of {head} events");
}

/// Bytes of the WAL a durable log writes when it opens: a 32-byte header
/// and 16 384 frames of a 4 KiB page and its 24-byte header.
const RESERVED_WAL: u64 = 32 + 16_384 * (4096 + 24);

#[test]
fn a_durable_log_writes_its_wal_ahead_and_recovers_it_after_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let no_plugins = dir.path().join("none");
    std::fs::create_dir_all(&no_plugins).unwrap();
    let wal_len = |data: &Path| std::fs::metadata(data.join("events.db-wal")).unwrap().len();

    // --no-wal-reserve: the WAL holds only what was written.
    let plain = dir.path().join("plain");
    let server = spawn_args(&plain, &no_plugins, 500, "full", &["--no-wal-reserve"]);
    server.client.append("s", json!("no_stream"), &order_events("ada", 1));
    assert!(wal_len(&plain) < RESERVED_WAL / 10, "{} bytes", wal_len(&plain));
    server.kill9();

    // By default, the whole WAL from the start; appends overwrite it in place.
    let data = dir.path().join("data");
    let server = spawn_args(&data, &no_plugins, 500, "full", &[]);
    assert_eq!(wal_len(&data), RESERVED_WAL);
    let mut acknowledged = Vec::new();
    for i in 0..300 {
        let r = server.client.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", 1));
        acknowledged.push(r["last_position"].as_u64().unwrap());
    }
    assert_eq!(wal_len(&data), RESERVED_WAL);
    // Killed: the WAL stays behind, its committed frames followed by zeros,
    // and the restart recovers every acknowledged append from it.
    server.kill9();
    assert_eq!(wal_len(&data), RESERVED_WAL);
    let server = spawn_args(&data, &no_plugins, 500, "full", &[]);
    let (_, health) = server.client.get("/healthz");
    assert_eq!(health["head"].as_u64(), acknowledged.last().copied());
    for (i, last) in acknowledged.iter().enumerate() {
        let (status, stream) = server.client.get(&format!("/streams/order-{i}"));
        assert_eq!(status, 200, "order-{i}: {stream}");
        let events = stream["events"].as_array().unwrap();
        assert_eq!(events.last().unwrap()["position"].as_u64(), Some(*last), "order-{i}");
    }
    let r = server.client.append("order-0", json!(3), &[("OrderShipped", json!({"carrier": "dhl"}))]);
    assert_eq!(r["first_position"].as_u64(), Some(acknowledged.last().unwrap() + 1));
}
