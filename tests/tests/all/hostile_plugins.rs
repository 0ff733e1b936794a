//! Hostile plugins are contained: each is marked failed with a clear
//! reason, the host and the other projections keep serving, and nothing
//! outside the plugin's own database changes.

use std::time::Duration;

use serde_json::json;

use crate::support::{ESCAPER, HOSTILE, LOOPER, ORDER_SUMMARY, Server, order_events};

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

/// One attack of the `hostile` projection: its event type, data, and what
/// the failure reason must say.
struct Attack {
    kind: &'static str,
    data: serde_json::Value,
    reason: &'static [&'static str],
    absent: &'static [&'static str],
}

fn attacks() -> Vec<Attack> {
    let a = |kind, data, reason, absent| Attack { kind, data, reason, absent };
    vec![
        a("Spin", json!({}), &["timed out after 300ms"][..], &[][..]),
        a("Slow", json!({ "ms": 450 }), &["timed out after 300ms"], &[]),
        a("Grow", json!({}), &["trapped", "memory"], &["wasm backtrace"]),
        // Rust keeps its stack in linear memory: overflowing it faults there.
        a("Recurse", json!({}), &["trapped", "out of bounds memory access", "(in hostile::recurse"], &[]),
        a("Panic", json!({}), &["trapped", "unreachable"], &[]),
        a("LogFlood", json!({}), &["log flood: more than 10000 log messages in one call"], &[]),
        a(
            "GiantRow",
            json!({}),
            &[
                "zeroblob of 1 GB: failed: string or blob too big",
                "40 MiB parameter: failed: string or blob too big",
                "doubling in SQL: failed: string or blob too big",
            ],
            &["ESCAPED"],
        ),
        a(
            "GiantResult",
            json!({}),
            &[
                "endless rows: refused: the query returns more than 100000 rows",
                "huge rows: refused: the query returns more than 64 MiB",
            ],
            &["ESCAPED"],
        ),
        a(
            "WasiProbe",
            json!({}),
            &[
                "read /etc/passwd: denied",
                "read events.db: denied",
                "list /: denied",
                "write a file: denied",
                "environment: denied: empty",
                "tcp connect 127.0.0.1:80: denied",
                "tcp listen: denied",
                "udp bind: denied",
                "dns lookup: denied",
                "http request to 127.0.0.1:9: denied: ErrorCode::HttpRequestDenied",
                "wall clock: 0 s since the epoch",
                "random hash seed: ",
            ],
            &["ESCAPED"],
        ),
    ]
}

#[test]
fn every_hostile_plugin_is_contained_and_the_rest_keeps_serving() {
    for attack in attacks() {
        // The time attacks get a tight budget; the others a generous one, so
        // they fail for their own reason.
        let budget = if attack.reason[0].starts_with("timed out") { 300 } else { 10_000 };
        let server = Server::start_with(&[HOSTILE, ORDER_SUMMARY], |cfg| {
            cfg.sandbox.call_timeout = Duration::from_millis(budget);
            cfg.sandbox.memory_bytes = 128 << 20;
            cfg.runner.max_attempts = 1;
        });
        let c = server.client();
        let what = attack.kind;
        c.append("order-1", json!("no_stream"), &order_events("ada", 1));
        c.append("attack", json!("no_stream"), &[(attack.kind, attack.data.clone())]);

        let s = c.wait_projection("hostile", Duration::from_secs(60), |s| s["status"] == "failed");
        let reason = s["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no reason: {s}"));
        for needle in attack.reason {
            assert!(reason.contains(needle), "{what}: {needle:?} not in the reason:\n{reason}");
        }
        for needle in attack.absent {
            assert!(!reason.contains(needle), "{what}: {needle:?} in the reason:\n{reason}");
        }
        assert_eq!(s["error"]["position"], 4, "{what}: {s}");
        // Its own database kept nothing of the failed batch.
        assert!(s["position"].as_u64().unwrap() < 4, "{what}: {s}");
        let (status, rows) = c.post(
            "/projections/hostile/query",
            &json!({ "sql": "SELECT count(*), coalesce(max(length(payload)), 0) FROM seen WHERE position > 3" }),
        );
        assert_eq!((status, &rows["rows"]), (200, &json!([[0, 0]])), "{what}: {rows}");

        // The host and the other projection keep serving, and take new events.
        let r = c.append("order-2", json!("no_stream"), &order_events("bob", 0));
        let (status, body) = c.get(&format!(
            "/projections/order-summary/tables/order_summaries/order-2?min_position={}",
            r["last_position"]
        ));
        assert_eq!((status, body["row"]["status"].as_str()), (200, Some("paid")), "{what}: {body}");
        let (_, events) = c.get("/events");
        assert_eq!(events["head"], 6, "{what}: only the appended events are in the log");
        // No file appeared outside the projections' own directories.
        let mut names: Vec<String> = std::fs::read_dir(server.data_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.retain(|n| !n.starts_with("events.db"));
        assert_eq!(names, ["cache", "projections"], "{what}");
    }
}

#[test]
fn plugins_see_a_frozen_clock_and_the_same_random_numbers_on_every_run() {
    let probe = || {
        let server = Server::start_with(&[HOSTILE], |_| {});
        let c = server.client();
        c.append("attack", json!("no_stream"), &[("WasiProbe", json!({}))]);
        let s = c.wait_projection("hostile", Duration::from_secs(60), |s| s["status"] == "failed");
        s["error"]["message"].as_str().unwrap().to_owned()
    };
    let (a, b) = (probe(), probe());
    assert!(a.contains("wall clock: 0 s since the epoch"), "{a}");
    assert_eq!(a, b, "two runs of the same plugin on the same log saw different values");
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
