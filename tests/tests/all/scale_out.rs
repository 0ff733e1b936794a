//! Several refract nodes on one PostgreSQL log: racing writers spread over
//! the nodes meet one version check, positions stay gapless, every node's
//! read models equal each other's and a fresh rebuild; nodes starting
//! together create the schema once; a node can start from another's
//! read-model snapshot; an SQLite log moves into PostgreSQL as it is.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::postgres::TestDb;
use crate::support::{
    BIN, CUSTOMER_STATS, Client, Home, ORDER_SUMMARY, ORDERS, Server, order_events, whole_log,
};

const WAIT: Duration = Duration::from_secs(60);

/// `n` nodes on the database `db`, each with its own data directory.
fn nodes(db: &Arc<TestDb>, n: usize, plugins: &[&str]) -> Vec<Server> {
    (0..n)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            crate::support::plugins_dir(dir.path(), plugins);
            Server::start_in(Home { dir, db: Some(db.clone()) }, |_| {})
        })
        .collect()
}

/// Every row of a projection's tables, as a node serves them once it has
/// applied `head`.
fn read_model(c: &Client, head: u64) -> Value {
    let (status, body) = c.post(
        "/projections/order-summary/query",
        &json!({ "sql": "SELECT * FROM order_summaries ORDER BY order_id", "min_position": head, "wait_ms": 30000 }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, stats) = c.post(
        "/projections/customer-stats/query",
        &json!({ "sql": "SELECT * FROM customer_stats ORDER BY customer", "min_position": head, "wait_ms": 30000 }),
    );
    assert_eq!(status, 200, "{stats}");
    json!({ "orders": body["rows"], "customers": stats["rows"] })
}

fn assert_verifies(c: &Client) {
    for name in ["order-summary", "customer-stats"] {
        let (status, report) = c.post(&format!("/projections/{name}/verify"), &json!({}));
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["consistent"], true, "{report}");
    }
}

#[test]
fn racers_on_three_nodes_meet_one_version_check() {
    let db = TestDb::create();
    let nodes = nodes(&db, 3, &[ORDERS, ORDER_SUMMARY]);
    let clients: Vec<Client> = nodes.iter().map(Server::client).collect();
    // 32 appends of a new stream, spread over the nodes: exactly one wins.
    let racers: Vec<_> = (0..32)
        .map(|i| {
            let c = clients[i % 3].clone();
            std::thread::spawn(move || c.try_append("race-1", json!("no_stream"), &order_events("ada", 0)).0)
        })
        .collect();
    let mut statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 31, "{statuses:?}");
    // Commands on one order from every node: each goes through, deciding
    // again when another node got there first.
    assert_eq!(clients[0].command("orders", "PlaceOrder", "order-9", json!({ "customer": "bob" })).0, 200);
    let senders: Vec<_> = (0..12)
        .map(|i| {
            let c = clients[i % 3].clone();
            std::thread::spawn(move || {
                c.command(
                    "orders",
                    "AddItem",
                    "order-9",
                    json!({ "product_id": format!("p-{i}"), "quantity": 1, "price": 1.0 }),
                )
            })
        })
        .collect();
    for s in senders {
        let (status, body) = s.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (_, stream) = clients[2].get("/streams/order-9?limit=100");
    assert_eq!(stream["events"].as_array().unwrap().len(), 13);
}

#[test]
fn writers_on_three_nodes_keep_positions_gapless_and_read_models_equal() {
    let db = TestDb::create();
    let nodes = nodes(&db, 3, &[ORDER_SUMMARY, CUSTOMER_STATS]);
    let clients: Vec<Client> = nodes.iter().map(Server::client).collect();
    let writers: Vec<_> = (0..48)
        .map(|w| {
            let c = clients[w % 3].clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for i in 0..8 {
                    let r = c.append(
                        &format!("order-{w}-{i}"),
                        json!("no_stream"),
                        &order_events(&format!("c{}", w % 7), (i % 3) as u32),
                    );
                    last = r["last_position"].as_u64().unwrap();
                }
                last
            })
        })
        .collect();
    let head = writers.into_iter().map(|t| t.join().unwrap()).max().unwrap();
    let log = whole_log(&clients[1]);
    let positions: Vec<u64> = log.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>(), "positions are 1 to the head, once each, in order");
    let mut versions = std::collections::HashMap::<String, u64>::new();
    for e in &log {
        let v = versions.entry(e["stream_id"].as_str().unwrap().to_owned()).or_default();
        *v += 1;
        assert_eq!(e["stream_version"], *v, "{e}");
    }
    let models: Vec<Value> = clients.iter().map(|c| read_model(c, head)).collect();
    assert_eq!(models[0], models[1]);
    assert_eq!(models[0], models[2]);
    assert_eq!(models[0]["orders"].as_array().unwrap().len(), 48 * 8);
    for c in &clients {
        assert_verifies(c);
    }
}

#[test]
fn nodes_starting_together_on_a_new_database_create_the_schema_once() {
    let db = TestDb::create();
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                crate::support::plugins_dir(dir.path(), &[]);
                Server::start_in(Home { dir, db: Some(db) }, |_| {})
            })
        })
        .collect();
    let nodes: Vec<Server> = starting.into_iter().map(|t| t.join().expect("every node starts")).collect();
    let r = nodes[3].client().append("s", json!("no_stream"), &[("E", json!(1))]);
    assert_eq!(r["last_position"], 1);
    let row = db
        .client()
        .query_one(
            "SELECT count(*), count(DISTINCT version), max(version) FROM refract.schema_migrations",
            &[],
        )
        .unwrap();
    let (recorded, distinct, newest): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    assert!(newest >= 2, "every migration ran: {newest}");
    assert_eq!((recorded, distinct), (newest as i64, newest as i64), "each migration recorded once");
}

#[test]
fn a_node_started_from_a_snapshot_equals_one_that_replayed() {
    let db = TestDb::create();
    let first = nodes(&db, 1, &[ORDER_SUMMARY, CUSTOMER_STATS]).pop().unwrap();
    let a = first.client();
    let mut head = 0;
    for i in 0..40 {
        head = a.append(
            &format!("order-{i}"),
            json!("no_stream"),
            &order_events(["ada", "bob", "cy"][i % 3], 2),
        )["last_position"]
            .as_u64()
            .unwrap();
    }
    a.wait_projection("order-summary", WAIT, |s| s["position"] == head);
    // The CLI writes the snapshot.
    let file = first.dir.path().join("order-summary.snapshot");
    let out = std::process::Command::new(BIN)
        .args(["snapshot", "order-summary", "--url", &first.base, "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("at position {head}")), "{out:?}");
    // More events after the snapshot.
    for i in 40..50 {
        head = a.append(&format!("order-{i}"), json!("no_stream"), &order_events("dee", 1))["last_position"]
            .as_u64()
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    crate::support::plugins_dir(dir.path(), &[ORDER_SUMMARY, CUSTOMER_STATS]);
    let snapshot = file.clone();
    let second = Server::start_in(Home { dir, db: Some(db.clone()) }, move |cfg| {
        cfg.snapshots = vec![("order-summary".into(), snapshot)];
    });
    let b = second.client();
    let s = b.wait_projection("order-summary", WAIT, |s| s["position"] == head && s["status"] == "live");
    // It applied only what came after the snapshot.
    assert_eq!(s["events_applied"], 10 * 3, "{s}");
    b.wait_projection("customer-stats", WAIT, |s| s["position"] == head);
    assert_eq!(read_model(&b, head), read_model(&a, head));
    assert_verifies(&b);
    // A snapshot of another projection is refused with the reason.
    let dir = tempfile::tempdir().unwrap();
    let mut config = refract::Config::new(dir.path().join("data"), dir.path().join("plugins"));
    config.log_url = Some(db.url());
    config.snapshots = vec![("customer-stats".into(), file)];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let refused = rt.block_on(refract::App::start(&config)).err().expect("a mismatched snapshot is refused");
    assert!(format!("{refused:#}").contains("is a snapshot of projection \"order-summary\""), "{refused:#}");
}

#[test]
fn copy_log_moves_an_sqlite_log_into_postgres_as_it_is() {
    // An SQLite log with appends and commands (idempotency keys).
    let server = Server::start(&[ORDERS, ORDER_SUMMARY]);
    let c = server.client();
    let odd = r#"{"events":[{"type":"Odd","data":{"z":1,"price":9.600000000000001,"a":{"y":2}},"metadata":{"k":18446744073709551615}}]}"#;
    let sent = ureq::post(&format!("{}/streams/odd-1/events", server.base))
        .set("content-type", "application/json")
        .send_string(odd)
        .unwrap();
    assert_eq!(sent.status(), 201);
    for i in 0..20 {
        c.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", 1));
    }
    let keyed = json!({ "type": "PlaceOrder", "stream_id": "order-k", "data": { "customer": "bob" }, "idempotency_key": "once" });
    let (status, first) = c.post("/commands/orders", &keyed);
    assert_eq!(status, 200, "{first}");
    let before = c.get_text("/events?limit=1000").1;
    let home = server.stop();
    let db = TestDb::create();
    let copy = |from: &std::path::Path| {
        std::process::Command::new(BIN)
            .args(["copy-log", "--to", &db.url(), "--from"])
            .arg(from)
            .output()
            .unwrap()
    };
    let out = copy(&home.path().join("data"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("copied 62 events (positions 1 to 62) and 1 idempotency keys"),
        "{out:?}"
    );
    // A second copy into the now non-empty log is refused.
    let again = copy(&home.path().join("data"));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{again:?}");

    let dir = tempfile::tempdir().unwrap();
    crate::support::plugins_dir(dir.path(), &[ORDERS, ORDER_SUMMARY]);
    let moved = Server::start_in(Home { dir, db: Some(db.clone()) }, |_| {});
    let m = moved.client();
    assert_eq!(m.get_text("/events?limit=1000").1, before, "the same events, byte for byte");
    let (status, again) = m.post("/commands/orders", &keyed);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true, "the idempotency key came along: {again}");
    assert_eq!(again["command_id"], first["command_id"]);
    let next = m.append("order-new", json!("no_stream"), &[("E", json!(1))]);
    assert_eq!(next["last_position"], 63, "the head came along");
    let (_, row) = m.get("/projections/order-summary/tables/order_summaries/order-k?min_position=63");
    assert_eq!(row["row"]["customer"], "bob");
    // Missing source: a clear error.
    let missing = copy(std::path::Path::new("/nonexistent"));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no event log at"), "{missing:?}");
}

#[test]
fn a_projection_replays_a_long_postgres_log_across_streamed_queries() {
    // More events than one streamed query reads (50 000), some of types the
    // projection does not want, so its reads continue across queries and
    // across filtered positions.
    let db = TestDb::create();
    let server = nodes(&db, 1, &[ORDER_SUMMARY]).pop().unwrap();
    let c = server.client();
    c.post("/projections/order-summary/pause", &json!({}));
    let mut head = 0;
    for o in 0..120 {
        let mut events = vec![
            json!({ "type": "OrderPlaced", "data": { "customer": format!("c{}", o % 5), "items": [] } }),
        ];
        for i in 0..499 {
            let (ty, data) = if i % 10 == 9 {
                ("Noise", json!({ "i": i }))
            } else {
                ("ItemAdded", json!({ "product_id": "p", "quantity": 1, "price": 0.5 }))
            };
            events.push(json!({ "type": ty, "data": data }));
        }
        let (status, r) = c.post(&format!("/streams/order-{o}/events"), &json!({ "events": events }));
        assert_eq!(status, 201, "{r}");
        head = r["last_position"].as_u64().unwrap();
    }
    assert_eq!(head, 60_000);
    c.post("/projections/order-summary/resume", &json!({}));
    c.wait_projection("order-summary", WAIT, |s| s["position"] == head && s["status"] == "live");
    let totals =
        c.query("order-summary", "SELECT count(*), sum(item_count), sum(total) FROM order_summaries");
    assert_eq!(totals, vec![json!([120, 120 * 450, 120.0 * 450.0 * 0.5])]);
    let (status, report) = c.post("/projections/order-summary/verify", &json!({}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["consistent"], true, "{report}");
}
