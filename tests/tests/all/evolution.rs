//! Event evolution and long streams: schema contracts refuse bad appends
//! with the failing field's path; `schema check` finds what a stricter
//! schema would refuse; old and new versions of `OrderPlaced` mixed in one
//! log give the read models of an all-new log; a failing upcaster is
//! contained and named; a new upcaster rebuilds its readers; handler
//! snapshots never change a decision and a damaged one falls back.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::on_both_logs;
use crate::support::{
    BAD_UPCASTER, BIN, CUSTOMER_STATS, Client, ORDER_PLACED_V2, ORDER_SUMMARY, ORDERS, Server, plugins_dir,
};

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/schemas");

/// Copies the example schemas into `dir`.
fn install_schemas(dir: &Path) {
    for e in std::fs::read_dir(SCHEMAS).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

fn v2(id: &str) -> Value {
    json!({ "customer": { "id": id, "name": format!("Customer {id}") }, "items": [{ "product_id": "p", "quantity": 2, "price": 1.5 }] })
}

fn v1(id: &str) -> Value {
    json!({ "customer": id, "items": [{ "product_id": "p", "quantity": 2, "price": 1.5 }] })
}

fn append_versioned(s: &Client, stream: &str, version: u32, event_type: &str, data: Value) -> (u16, Value) {
    s.post(
        &format!("/streams/{stream}/events"),
        &json!({ "events": [{ "type": event_type, "data": data, "schema_version": version }] }),
    )
}

fn schemas_refuse_bad_appends_with_the_path_and_upcast_reads_show_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path(), &[ORDER_SUMMARY]);
    install_schemas(&plugins);
    let s = Server::start_in(dir, |_| {});
    let c = s.client();
    let (status, body) = c.get("/schemas");
    assert_eq!(status, 200);
    assert_eq!(body["schemas"].as_array().unwrap().len(), 2, "{body}");

    // Without a version: the newest (2), whose customer is an object.
    let bad = json!({ "customer": { "id": "ada" }, "items": [] });
    let (status, body) = c.try_append("o-1", json!("any"), &[("ItemAdded", json!({})), ("OrderPlaced", bad)]);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["path"], "/events/1/data/customer", "{body}");
    assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
    let (status, body) = c.try_append("o-1", json!("any"), &[("OrderPlaced", json!({ "customer": "ada" }))]);
    assert_eq!((status, body["path"].as_str()), (422, Some("/events/0/data/customer")), "{body}");
    let (status, body) = append_versioned(&c, "o-1", 7, "OrderPlaced", v2("ada"));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no schema version 7"), "{body}");
    let (_, log) = c.get("/events");
    assert_eq!(log["head"], 0, "nothing of a refused append is written: {log}");

    // Version 1, stated, against its own schema; types without a schema
    // pass at version 1.
    assert_eq!(append_versioned(&c, "o-1", 1, "OrderPlaced", v1("ada")).0, 201);
    c.append("o-2", json!("any"), &[("OrderPlaced", v2("bob")), ("Unregistered", json!([1, "x"]))]);
    let (_, log) = c.get("/events");
    let versions: Vec<u64> =
        log["events"].as_array().unwrap().iter().map(|e| e["schema_version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 1], "{log}");
    assert_eq!(log["events"][0]["data"]["customer"], "ada", "stored bytes are kept: {log}");
    let (status, up) = c.get("/events?upcast=true");
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["events"][0]["schema_version"], 2);
    assert_eq!(up["events"][0]["data"]["customer"], json!({ "id": "ada", "name": "ada" }));
    assert_eq!(up["events"][1]["data"], log["events"][1]["data"]);
    let (_, stream) = c.get("/streams/o-1?upcast=true");
    assert_eq!(stream["events"][0]["schema_version"], 2, "{stream}");

    // The projection reads both at version 2.
    s.client().wait_projection("order-summary", Duration::from_secs(30), |p| {
        p["position"] == 3 && p["status"] == "live"
    });
    let rows = c.query("order-summary", "SELECT order_id, customer FROM order_summaries ORDER BY order_id");
    assert_eq!(rows, vec![json!(["o-1", "ada"]), json!(["o-2", "bob"])]);
    let (_, metrics) = c.metrics();
    assert!(
        metrics
            .get("refract_upcasts_total{upcaster=\"order-placed-v2\",outcome=\"ok\"}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0,
        "{metrics:?}"
    );

    // Each event goes as far as the upcasters reach from its own version:
    // a type at versions 1 and 61311 with no upcaster reads as stored.
    for (version, data) in [(1, json!({ "n": 1 })), (61311, json!({ "n": 2 }))] {
        assert_eq!(append_versioned(&c, "mixed", version, "Unregistered", data).0, 201);
    }
    let (status, stream) = c.get("/streams/mixed?upcast=true");
    assert_eq!(status, 200, "{stream}");
    let read: Vec<Value> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["schema_version"], e["data"]["n"]]))
        .collect();
    assert_eq!(read, [json!([1, 1]), json!([61311, 2])], "{stream}");
}

fn schemas_come_and_go_with_their_files() {
    let s = Server::start(&[ORDER_SUMMARY]);
    let c = s.client();
    let v1_shaped = [("OrderPlaced", v1("ada"))];
    assert_eq!(c.try_append("o-1", json!("any"), &v1_shaped).0, 201, "no schema: anything goes");
    let file = s.plugins_dir().join("OrderPlaced.v2.schema.json");
    std::fs::copy(Path::new(SCHEMAS).join("OrderPlaced.v2.schema.json"), &file).unwrap();
    let listed = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.get("/schemas").1["schemas"].as_array().unwrap().len() != n {
            assert!(std::time::Instant::now() < deadline, "the schemas never numbered {n}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    listed(1);
    let (status, body) = c.try_append("o-2", json!("any"), &v1_shaped);
    assert_eq!((status, body["path"].as_str()), (422, Some("/events/0/data/customer")), "{body}");
    // A broken schema file is reported and the registered one stays.
    std::fs::write(s.plugins_dir().join("OrderPlaced.v3.schema.json"), "{ not json").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !c.get("/projections").1["projections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "OrderPlaced.v3.schema")
    {
        assert!(std::time::Instant::now() < deadline, "the broken schema was never reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.try_append("o-2", json!("any"), &v1_shaped).0, 422);
    std::fs::remove_file(&file).unwrap();
    listed(0);
    assert_eq!(c.try_append("o-2", json!("any"), &v1_shaped).0, 201);
}

fn schema_check_finds_the_stored_events_a_stricter_schema_refuses() {
    let s = Server::start(&[ORDER_SUMMARY, ORDERS]);
    let c = s.client();
    assert_eq!(append_versioned(&c, "o-1", 1, "OrderPlaced", v1("al")).0, 201);
    assert_eq!(append_versioned(&c, "o-2", 2, "OrderPlaced", v2("barbara")).0, 201);
    assert_eq!(
        append_versioned(&c, "o-3", 2, "OrderPlaced", json!({ "customer": { "id": "cy", "name": "Cy" } })).0,
        201
    );
    // A stricter version 2: ids of at least three characters.
    let strict = tempfile::tempdir().unwrap();
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(SCHEMAS).join("OrderPlaced.v2.schema.json")).unwrap(),
    )
    .unwrap();
    schema["properties"]["customer"]["properties"]["id"]["minLength"] = json!(3);
    let file = strict.path().join("OrderPlaced.v2.schema.json");
    std::fs::write(&file, schema.to_string()).unwrap();

    let out = std::process::Command::new(BIN)
        .args(["schema", "check"])
        .arg(&file)
        .args(["--url", &s.base])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("3 stored event(s) checked, 2 refused"), "{text}");
    assert!(text.contains("position 1 (OrderPlaced v1 of o-1): at \"/customer/id\""), "{text}");
    assert!(text.contains("position 3"), "{text}");
    assert!(!text.contains("position 2 "), "{text}");
    assert!(text.contains("read by projection order-summary (declares v2)"), "{text}");
    assert!(text.contains("read by handler orders (declares v2)"), "{text}");

    // The example schema accepts everything.
    let (status, r) = c.post(
        "/schemas/check",
        &json!({ "event_type": "OrderPlaced", "version": 2, "schema": serde_json::from_str::<Value>(&std::fs::read_to_string(Path::new(SCHEMAS).join("OrderPlaced.v2.schema.json")).unwrap()).unwrap() }),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepts"].as_bool(), r["checked"].as_u64()), (Some(true), Some(3)), "{r}");
    let (status, r) = c.post(
        "/schemas/check",
        &json!({ "event_type": "OrderPlaced", "version": 2, "schema": { "type": 5 } }),
    );
    assert_eq!(status, 422, "{r}");
}

fn a_mixed_log_gives_the_read_models_of_an_all_v2_log() {
    let mixed = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    let all_v2 = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    for i in 0..60u32 {
        let stream = format!("order-{i}");
        let customer = format!("c{}", i % 7);
        if i % 2 == 0 {
            assert_eq!(append_versioned(&mixed.client(), &stream, 1, "OrderPlaced", v1(&customer)).0, 201);
        } else {
            let as_v2 = json!({ "customer": { "id": customer, "name": customer }, "items": [{ "product_id": "p", "quantity": 2, "price": 1.5 }] });
            assert_eq!(append_versioned(&mixed.client(), &stream, 2, "OrderPlaced", as_v2).0, 201);
        }
        let upcast = json!({ "customer": { "id": customer, "name": customer }, "items": [{ "product_id": "p", "quantity": 2, "price": 1.5 }] });
        assert_eq!(append_versioned(&all_v2.client(), &stream, 2, "OrderPlaced", upcast).0, 201);
        for s in [&mixed, &all_v2] {
            s.client().append(&stream, json!("any"), &[("OrderPaid", json!({ "payment_method": "card" }))]);
        }
    }
    let tables = [
        ("order-summary", "SELECT * FROM order_summaries ORDER BY order_id"),
        ("customer-stats", "SELECT * FROM customer_stats ORDER BY customer"),
    ];
    for s in [&mixed, &all_v2] {
        for (p, _) in tables {
            s.client().wait_projection(p, Duration::from_secs(60), |st| {
                st["position"] == 120 && st["status"] == "live"
            });
        }
    }
    for (p, sql) in tables {
        let (a, b) = (mixed.client().query(p, sql), all_v2.client().query(p, sql));
        assert_eq!(a.len(), if p == "order-summary" { 60 } else { 7 });
        assert_eq!(a, b, "{p}");
        let (status, v) = mixed.client().post(&format!("/projections/{p}/verify"), &json!({}));
        assert_eq!((status, &v["consistent"]), (200, &json!(true)), "{v}");
    }
}

fn a_failing_upcaster_is_contained_and_named() {
    for (customer, reason) in [
        ("trap", "trapped"),
        ("loop", "timed out"),
        // What it writes breaks the schema of version 2.
        (
            "nameless",
            r#"returned data that the OrderPlaced v2 schema refuses at "/customer": "name" is a required property"#,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // The bad upcaster instead of the example's.
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for p in [ORDER_SUMMARY, BAD_UPCASTER] {
            std::fs::copy(p, plugins.join(Path::new(p).file_name().unwrap())).unwrap();
        }
        install_schemas(&plugins);
        let s = Server::start_in(dir, |cfg| {
            cfg.sandbox.call_timeout = Duration::from_millis(500);
            cfg.runner.max_attempts = 2;
        });
        let c = s.client();
        assert_eq!(append_versioned(&c, "fine", 1, "OrderPlaced", v1("fine")).0, 201);
        assert_eq!(append_versioned(&c, "bad", 1, "OrderPlaced", v1(customer)).0, 201);
        let st =
            s.client().wait_projection("order-summary", Duration::from_secs(60), |p| p["status"] == "failed");
        let error = st["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(st["error"]["position"], 2, "{st}");
        assert!(error.contains("upcaster bad-upcaster (OrderPlaced v1 → v2) failed"), "{st}");
        assert!(error.contains(reason), "{st}");
        assert_eq!(st["position"], 1, "the event before was applied: {st}");
        // The server still answers, and reads through the upcaster say why.
        let (status, body) = c.get("/events?upcast=true");
        assert_eq!((status, &body["position"]), (422, &json!(2)), "{body}");
        let (_, metrics) = c.metrics();
        assert!(
            metrics
                .get("refract_upcasts_total{upcaster=\"bad-upcaster\",outcome=\"failed\"}")
                .copied()
                .unwrap_or(0.0)
                >= 1.0,
            "{metrics:?}"
        );
    }
}

fn a_new_upcaster_rebuilds_the_projections_that_read_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path(), &[ORDER_SUMMARY, CUSTOMER_STATS]);
    let s = Server::start_in(dir, |_| {});
    let c = s.client();
    for i in 0..5 {
        assert_eq!(append_versioned(&c, &format!("o-{i}"), 1, "OrderPlaced", v1("ada")).0, 201);
    }
    let before = s.client().wait_projection("order-summary", Duration::from_secs(30), |p| {
        p["position"] == 5 && p["status"] == "live"
    });
    // Another upcaster of the same type and version, in place of the first.
    std::fs::remove_file(plugins.join(Path::new(ORDER_PLACED_V2).file_name().unwrap())).unwrap();
    std::fs::copy(BAD_UPCASTER, plugins.join("bad-upcaster.wasm")).unwrap();
    let after = s.client().wait_projection("order-summary", Duration::from_secs(60), |p| {
        p["hash"] != before["hash"] && p["position"] == 5 && p["status"] == "live"
    });
    assert_ne!(after["hash"], before["hash"]);
    let (_, list) = c.get("/upcasters");
    assert_eq!(list["upcasters"][0]["name"], "bad-upcaster", "{list}");
    let rows = c.query("customer-stats", "SELECT customer, orders FROM customer_stats");
    assert_eq!(rows, vec![json!(["ada", 5])]);
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a command did, without what differs between two logs (ids,
/// positions, times).
fn decision(r: &(u16, Value)) -> Value {
    match r.0 {
        200 | 201 => json!({
            "status": r.0,
            "events": r.1["events"].as_array().unwrap().iter().map(|e| json!([e["type"], e["data"], e["schema_version"]])).collect::<Vec<_>>(),
            "version": r.1["stream_version"],
        }),
        _ => json!({ "status": r.0, "code": r.1["code"] }),
    }
}

fn snapshots_never_change_a_decision() {
    let plain = Server::start_with(&[ORDERS], |cfg| cfg.snapshot_every = 0);
    let snapped = Server::start_with(&[ORDERS], |cfg| cfg.snapshot_every = 3);
    for seed in [7u64, 1234, 987_654_321] {
        let mut rng = Rng(seed);
        for i in 0..150 {
            let stream = format!("s{seed}-{}", rng.next(2));
            let item = json!({ "product_id": format!("p{}", rng.next(3)), "quantity": 1 + rng.next(3), "price": 2.5 });
            // Streams grow first; payments, shipments and cancellations
            // come at the end.
            let pick = if i < 110 { rng.next(6) } else { rng.next(10) };
            let (kind, data) = match pick {
                0 => ("PlaceOrder", json!({ "customer": format!("c{i}"), "items": [item] })),
                1 => ("PlaceOrder", json!({ "customer": { "id": "x", "name": "X" } })),
                2..=5 => ("AddItem", item),
                6 => ("PayOrder", json!({ "payment_method": "card" })),
                7 => ("ShipOrder", json!({ "carrier": "dhl" })),
                8 => ("CancelOrder", json!({ "reason": "changed mind" })),
                _ => ("AddItem", json!({ "product_id": "q", "quantity": 0, "price": 1.0 })),
            };
            let a = plain.client().command("orders", kind, &stream, data.clone());
            let b = snapped.client().command("orders", kind, &stream, data);
            assert_eq!(decision(&a), decision(&b), "seed {seed}, command {i}: {kind} on {stream}");
        }
    }
    let (_, m) = snapped.client().metrics();
    let used = m.get("refract_handler_snapshots_total{outcome=\"used\"}").copied().unwrap_or(0.0);
    let saved = m.get("refract_handler_snapshots_total{outcome=\"saved\"}").copied().unwrap_or(0.0);
    assert!(used > 20.0 && saved > 5.0, "snapshots took part: {m:?}");
    let (_, m) = plain.client().metrics();
    assert!(!m.keys().any(|k| k.starts_with("refract_handler_snapshots_total")), "{m:?}");
}

fn a_truncated_snapshot_falls_back_to_the_whole_history() {
    let s = Server::start_with(&[ORDERS], |cfg| cfg.snapshot_every = 2);
    let c = s.client();
    assert_eq!(c.command("orders", "PlaceOrder", "o-1", json!({ "customer": "ada" })).0, 200);
    for _ in 0..4 {
        let r =
            c.command("orders", "AddItem", "o-1", json!({ "product_id": "p", "quantity": 1, "price": 1.0 }));
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let files: Vec<_> = walk(&s.data_dir().join("snapshots"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();
    // The decision needs the whole state: items were added, so it may be paid.
    let r = c.command("orders", "PayOrder", "o-1", json!({ "payment_method": "card" }));
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["stream_version"], 6);
    let (_, m) = c.metrics();
    assert!(
        m.get("refract_handler_snapshots_total{outcome=\"fallback\"}").copied().unwrap_or(0.0) >= 1.0,
        "{m:?}"
    );
    let r = c.command("orders", "PayOrder", "o-1", json!({ "payment_method": "card" }));
    assert_eq!((r.0, &r.1["code"]), (422, &json!("already_paid")), "{}", r.1);

    // A whole snapshot the handler cannot read (another state's shape):
    // the handler says so and the host folds the whole history.
    let (_, handlers) = c.get("/handlers");
    let build = handlers["handlers"][0]["hash"].as_str().unwrap().to_owned();
    let (_, stream) = c.get("/streams/o-1");
    let fifth = &stream["events"][4];
    let store = refract::evolution::SnapshotStore::new(s.data_dir().join("snapshots"), 2);
    let garbage = refract::evolution::Stored {
        version: 5,
        position: fifth["position"].as_u64().unwrap(),
        state: br#"{"shape":"of another version"}"#.to_vec(),
    };
    store.save("orders", &build, "o-1", &garbage).unwrap();
    let (_, before) = c.metrics();
    let r = c.command("orders", "ShipOrder", "o-1", json!({ "carrier": "dhl" }));
    assert_eq!(r.0, 200, "decided on the whole history: {}", r.1);
    let (_, after) = c.metrics();
    let fallbacks = |m: &std::collections::HashMap<String, f64>| {
        m.get("refract_handler_snapshots_total{outcome=\"fallback\"}").copied().unwrap_or(0.0)
    };
    assert_eq!(fallbacks(&after), fallbacks(&before) + 1.0, "{after:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

on_both_logs!(
    schemas_refuse_bad_appends_with_the_path_and_upcast_reads_show_the_new_version,
    a_mixed_log_gives_the_read_models_of_an_all_v2_log
);

#[test]
fn schema_files_hot_reload() {
    schemas_come_and_go_with_their_files();
}

#[test]
fn schema_check() {
    schema_check_finds_the_stored_events_a_stricter_schema_refuses();
}

#[test]
fn failing_upcasters() {
    a_failing_upcaster_is_contained_and_named();
}

#[test]
fn new_upcaster_rebuilds() {
    a_new_upcaster_rebuilds_the_projections_that_read_its_type();
}

#[test]
fn snapshot_decisions() {
    snapshots_never_change_a_decision();
}

#[test]
fn truncated_snapshot() {
    a_truncated_snapshot_falls_back_to_the_whole_history();
}
