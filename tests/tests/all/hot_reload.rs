//! Plugins dropped into, changed in and removed from the plugins directory
//! of a running server take effect without a restart; a new projection
//! version is built blue/green with no error window for readers; a broken
//! file never displaces the version serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{NO_WORLD, ORDER_SUMMARY, ORDER_SUMMARY_V2, ORDERS, Server, order_events};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_new_projection_version_cuts_over_while_readers_read() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    let orders = 150;
    for i in 0..orders {
        c.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", i % 3));
    }
    let before = c.wait_projection("order-summary", WAIT, |s| s["status"] == "live" && s["lag"] == 0);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut reads, mut with_channel) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = c.get("/projections/order-summary/tables/order_summaries?limit=1000");
                assert_eq!(status, 200, "a read failed during the cut-over: {body}");
                let rows = body["rows"].as_array().unwrap();
                assert!(
                    rows.len() >= orders as usize,
                    "a read saw a partial table during the cut-over: {}",
                    rows.len()
                );
                let channels = rows.iter().filter(|r| r.get("channel").is_some()).count();
                assert!(channels == 0 || channels == rows.len(), "a read mixed versions");
                reads += 1;
                with_channel += usize::from(channels > 0);
            }
            (reads, with_channel)
        })
    };

    // A plain, non-atomic copy over the serving file, as a person would.
    std::fs::copy(ORDER_SUMMARY_V2, server.plugins_dir().join("order_summary.wasm")).unwrap();
    let after =
        c.wait_projection("order-summary", WAIT, |s| s["version"] == "2.0.0" && s["status"] == "live");
    // Events appended after the cut-over reach the new version.
    let r = c.append("order-new", json!("no_stream"), &order_events("bob", 0));
    let (_, row) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/order-new?min_position={}",
        r["last_position"]
    ));
    assert_eq!(row["row"]["channel"], "web");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (reads, with_channel) = reader.join().expect("the reader never saw an error");
    assert!(reads > 3, "the reader ran ({reads} reads)");
    assert!(with_channel > 0, "the reader saw the new version after the cut-over");
    assert_ne!(before["hash"], after["hash"]);
    assert!(after["rebuild"].is_null(), "{after}");
    let rows = c.query("order-summary", "SELECT count(*), sum(channel = 'web') FROM order_summaries");
    assert_eq!(rows, vec![json!([orders + 1, orders + 1])], "every row has the new column");
    // The old build's file is gone; one database remains.
    let dir = server.data_dir().join("projections/order-summary");
    let dbs = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "db"))
        .count();
    assert_eq!(dbs, 1, "old build removed from {}", dir.display());
}

fn invalid_entry(c: &crate::support::Client, file: &str) -> Option<Value> {
    let (_, body) = c.get("/projections");
    body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["file"].as_str().is_some_and(|f| f.ends_with(file)) && p["status"] == "invalid")
        .cloned()
}

fn wait_invalid(c: &crate::support::Client, file: &str, needle: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(p) = invalid_entry(c, file)
            && p["error"].as_str().unwrap().contains(needle)
        {
            return p;
        }
        assert!(std::time::Instant::now() < deadline, "{file} never reported {needle:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broken_file_leaves_the_old_version_serving() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    c.append("order-1", json!("no_stream"), &order_events("ada", 1));
    let serving = c.wait_projection("order-summary", WAIT, |s| s["lag"] == 0);
    let target = server.plugins_dir().join("order_summary.wasm");
    let good = std::fs::read(ORDER_SUMMARY).unwrap();

    std::fs::write(&target, &good[..good.len() / 3]).unwrap();
    wait_invalid(&c, "order_summary.wasm", "not a valid WebAssembly component");
    std::fs::write(&target, std::fs::read(NO_WORLD).unwrap()).unwrap();
    let p = wait_invalid(&c, "order_summary.wasm", "wrong world");
    assert!(p["error"].as_str().unwrap().contains("refract:plugin/projector"), "{p}");

    // Through all of it the old version served, unchanged.
    let s = c.projection("order-summary");
    assert_eq!((&s["hash"], &s["status"]), (&serving["hash"], &json!("live")));
    let (status, body) = c.get("/projections/order-summary/tables/order_summaries/order-1");
    assert_eq!(status, 200, "{body}");
    let r = c.append("order-2", json!("no_stream"), &order_events("bob", 0));
    let (status, _) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/order-2?min_position={}",
        r["last_position"]
    ));
    assert_eq!(status, 200);

    // Putting the good file back clears the report.
    std::fs::write(&target, &good).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while invalid_entry(&c, "order_summary.wasm").is_some() {
        assert!(std::time::Instant::now() < deadline, "the invalid report never cleared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn plugins_come_and_go_with_their_files() {
    let server = Server::start(&[]);
    let c = server.client();
    let deadline = std::time::Instant::now() + WAIT;
    std::fs::copy(ORDERS, server.plugins_dir().join("orders.wasm")).unwrap();
    std::fs::copy(ORDER_SUMMARY, server.plugins_dir().join("order_summary.wasm")).unwrap();
    let first_hash = loop {
        let (_, body) = c.get("/handlers");
        if let Some(h) = body["handlers"].as_array().unwrap().first() {
            break h["hash"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "the handler never loaded");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, body) = c.command("orders", "PlaceOrder", "o-1", json!({ "customer": "ada" }));
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/o-1?min_position={}&wait_ms=20000",
        body["last_position"]
    ));
    assert_eq!(status, 200, "{body}");

    // A new handler version replaces the old one at once.
    let mut bytes = std::fs::read(ORDERS).unwrap();
    bytes.extend_from_slice(&[0x00, 0x07, 0x04, b'n', b'o', b't', b'e', b'v', b'2']);
    std::fs::write(server.plugins_dir().join("orders.wasm"), bytes).unwrap();
    loop {
        let (_, body) = c.get("/handlers");
        if body["handlers"][0]["hash"] != first_hash {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new handler version never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Removing a file unloads its plugin and keeps its read database.
    std::fs::remove_file(server.plugins_dir().join("order_summary.wasm")).unwrap();
    loop {
        let (status, _) = c.get("/projections/order-summary");
        if status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the projection was never unloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.data_dir().join("projections/order-summary/CURRENT").is_file());
}

#[test]
fn with_drop_removed_a_removed_projection_takes_its_data_along() {
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| cfg.drop_removed = true);
    let c = server.client();
    c.append("order-1", json!("no_stream"), &order_events("ada", 0));
    c.wait_projection("order-summary", WAIT, |s| s["lag"] == 0);
    let dir = server.data_dir().join("projections/order-summary");
    assert!(dir.is_dir());
    std::fs::remove_file(server.plugins_dir().join("order_summary.wasm")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while c.get("/projections/order-summary").0 != 404 || dir.exists() {
        assert!(std::time::Instant::now() < deadline, "the projection or its data stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_row_read_by_key_follows_every_change_and_the_new_build() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &order_events("ada", 0));
    let mut version = r["stream_version"].as_u64().unwrap();
    let row_at = |min: &Value| {
        let (status, body) =
            c.get(&format!("/projections/order-summary/tables/order_summaries/order-1?min_position={min}"));
        assert_eq!(status, 200, "{body}");
        assert!(body["position"].as_u64().unwrap() >= min.as_u64().unwrap(), "{body}");
        body["row"].clone()
    };
    // Read repeatedly (served from memory after the first read), then
    // change the row: each read after a change sees the change.
    for n in 1..=10 {
        let last = json!(r["last_position"].as_u64().unwrap() + n - 1);
        assert_eq!(row_at(&last)["item_count"], n, "a read served a row older than its checkpoint");
        assert_eq!(row_at(&last)["item_count"], n);
        let added = c.append(
            "order-1",
            json!(version),
            &[("ItemAdded", json!({ "product_id": "p", "quantity": 1, "price": 1.0 }))],
        );
        version = added["stream_version"].as_u64().unwrap();
    }
    let caught_up = c.wait_projection("order-summary", WAIT, |s| s["lag"] == 0);
    assert_eq!(row_at(&caught_up["position"])["item_count"], 11);
    assert!(row_at(&caught_up["position"]).get("channel").is_none());

    // A new build with a new column: the same row, unchanged in the log, is
    // read from the new build, not from what the old one served.
    std::fs::copy(ORDER_SUMMARY_V2, server.plugins_dir().join("order_summary.wasm")).unwrap();
    let after =
        c.wait_projection("order-summary", WAIT, |s| s["version"] == "2.0.0" && s["status"] == "live");
    let row = row_at(&after["position"]);
    assert_eq!(row["channel"], "web", "{row}");
    assert_eq!(row["item_count"], 11);
}

/// `refract_plugin_loads_total` by outcome.
fn loads(c: &crate::support::Client) -> [u64; 3] {
    let (_, samples) = c.metrics();
    ["loaded", "unchanged", "failed"].map(|o| {
        samples.get(&format!("refract_plugin_loads_total{{outcome=\"{o}\"}}")).copied().unwrap_or(0.0) as u64
    })
}

/// Waits for the watcher's debounce and a load to be done, then asserts
/// that nothing loads again for several seconds.
fn assert_quiet(c: &crate::support::Client) {
    std::thread::sleep(refract::reload::DEBOUNCE * 3);
    let before = loads(c);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(loads(c), before, "the plugin was loaded again although its file did not change");
}

#[test]
fn the_watcher_goes_quiet_after_a_plugin_is_replaced() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    c.wait_projection("order-summary", WAIT, |s| s["status"] == "live");
    // Present at start (the projection and the upcaster it reads
    // through): each loaded once, and nothing since.
    assert_eq!(loads(&c), [2, 0, 0]);
    let file = server.plugins_dir().join("order_summary.wasm");

    // A valid new version, copied over the old one.
    std::fs::copy(ORDER_SUMMARY_V2, &file).unwrap();
    c.wait_projection("order-summary", WAIT, |s| s["version"] == "2.0.0" && s["status"] == "live");
    assert_quiet(&c);
    assert_eq!(loads(&c)[0], 3, "{:?}", loads(&c));

    // A broken one: the failure is reported once, not over and over.
    std::fs::write(&file, b"not a component").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !c.get("/projections").1["projections"].as_array().unwrap().iter().any(|p| p["status"] == "invalid")
    {
        assert!(std::time::Instant::now() < deadline, "the broken file was never reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_quiet(&c);
    assert_eq!(loads(&c)[2], 1, "{:?}", loads(&c));

    // A new file that was never there before.
    std::fs::copy(ORDERS, server.plugins_dir().join("orders.wasm")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while c.get("/handlers").1["handlers"].as_array().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the handler never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_quiet(&c);
}
