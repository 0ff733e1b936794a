//! Plugins that loop forever or try to leave their database are contained:
//! marked failed with the reason, while the other projections keep serving.

use std::time::Duration;

use serde_json::json;

use crate::support::{ESCAPER, LOOPER, ORDER_SUMMARY, Server, order_events};

fn hostile_server(plugins: &[&str]) -> Server {
    Server::start_with(plugins, |cfg| {
        cfg.sandbox.call_timeout = Duration::from_millis(200);
        cfg.runner.max_attempts = 2;
    })
}

#[test]
fn an_endless_loop_is_interrupted_and_the_others_keep_serving() {
    let server = hostile_server(&[LOOPER, ORDER_SUMMARY]);
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &order_events("ada", 2));
    let last = r["last_position"].as_u64().unwrap();

    let s = c.wait_projection("looper", Duration::from_secs(30), |s| s["status"] == "failed");
    let error = s["error"]["message"].as_str().unwrap();
    assert!(error.contains("timed out"), "{s}");
    assert_eq!(s["error"]["position"], 1, "{s}");
    assert_eq!(s["error"]["attempts"], 2, "{s}");
    assert_eq!(s["position"], 0);

    // The healthy projection is unaffected and still takes new events.
    let (status, body) =
        c.get(&format!("/projections/order-summary/tables/order_summaries/order-1?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["status"], "paid");
    let r = c.append("order-1", json!("exists"), &[("OrderShipped", json!({ "carrier": "ups" }))]);
    let (_, body) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/order-1?min_position={}",
        r["last_position"]
    ));
    assert_eq!(body["row"]["status"], "shipped");
}

#[test]
fn sql_escapes_are_refused_with_reasons() {
    let server = hostile_server(&[ESCAPER, ORDER_SUMMARY]);
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &order_events("ada", 0));
    let s = c.wait_projection("escaper", Duration::from_secs(30), |s| s["status"] == "failed");
    let report = s["error"]["message"].as_str().unwrap();
    assert!(!report.contains("ESCAPED"), "a statement got through:\n{report}");
    for expected in [
        "ATTACH DATABASE 'events.db' AS log => refused: ATTACH and DETACH are not allowed",
        "BEGIN => refused: transaction control is not allowed",
        "SAVEPOINT sneaky => refused: transaction control",
        "PRAGMA journal_mode = DELETE => refused: PRAGMA journal_mode is not allowed",
        "PRAGMA writable_schema = ON => refused: ",
        "VACUUM INTO 'copy.db' => refused: VACUUM is not allowed",
        "DROP TABLE refract_meta => refused: table refract_meta belongs to the host",
        "UPDATE refract_meta SET position = 0 => refused: ",
        "SELECT load_extension('evil') => refused: ",
    ] {
        assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
    }
    // Nothing escaped to disk, and the log and the other projection are intact.
    let data = server.data_dir();
    assert!(!data.join("projections/copy.db").exists() && !data.join("copy.db").exists());
    let (_, body) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/order-1?min_position={}",
        r["last_position"]
    ));
    assert_eq!(body["row"]["status"], "paid");
    let (_, body) = c.get("/events");
    assert_eq!(body["events"].as_array().unwrap().len(), 2);
}

#[test]
fn files_that_are_not_projections_are_reported_invalid_and_the_rest_load() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = crate::support::plugins_dir(dir.path(), &[ORDER_SUMMARY]);
    std::fs::write(plugins.join("garbage.wasm"), b"definitely not wasm").unwrap();
    let bytes = std::fs::read(ORDER_SUMMARY).unwrap();
    std::fs::write(plugins.join("truncated.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    // A core module (not a component) of the smallest kind.
    std::fs::write(plugins.join("core-module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let server = Server::start_in(dir, |_| {});
    let c = server.client();
    let (_, body) = c.get("/projections");
    let list = body["projections"].as_array().unwrap();
    let by_name =
        |n: &str| list.iter().find(|p| p["name"] == n).unwrap_or_else(|| panic!("{n} not listed: {body}"));
    for name in ["garbage", "truncated", "core-module"] {
        let p = by_name(name);
        assert_eq!(p["status"], "invalid", "{p}");
        assert!(p["error"].as_str().unwrap().contains("not a valid WebAssembly component"), "{p}");
    }
    let (status, p) = c.get("/projections/garbage");
    assert_eq!((status, p["status"].as_str()), (200, Some("invalid")));
    c.wait_projection("order-summary", Duration::from_secs(10), |s| s["status"] == "live");
}
