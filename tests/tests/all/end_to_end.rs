//! The product slice a new user relies on: append events over HTTP, read
//! the read models by key, by filter and by SQL, with read-your-writes.

use std::time::Duration;

use serde_json::json;

use crate::support::{CUSTOMER_STATS, ORDER_SUMMARY, Server, order_events};

fn append_then_read_order_summaries_by_key_filter_and_sql() {
    let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    let c = server.client();

    let mut last = 0;
    for i in 0..5 {
        let customer = if i % 2 == 0 { "ada" } else { "bob" };
        let r = c.append(&format!("order-{i}"), json!("no_stream"), &order_events(customer, i));
        assert_eq!(r["stream_version"], i as u64 + 2);
        last = r["last_position"].as_u64().unwrap();
    }
    let shipped = c.append("order-0", json!(2), &[("OrderShipped", json!({ "carrier": "dhl" }))]);
    assert_eq!(shipped["first_position"], last + 1);
    let last = shipped["last_position"].as_u64().unwrap();

    // Read-your-writes: the row reflects the append we just made.
    let (status, body) =
        c.get(&format!("/projections/order-summary/tables/order_summaries/order-0?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    let row = &body["row"];
    assert_eq!(row["customer"], "ada");
    assert_eq!(row["status"], "shipped");
    assert_eq!(row["item_count"], 1);
    assert_eq!(row["total"], 10.0);
    assert_eq!(row["last_updated_position"], last);
    assert!(body["position"].as_u64().unwrap() >= last);

    let (status, body) = c.get("/projections/order-summary/tables/order_summaries/order-4");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["item_count"], 9, "1 placed + 4 added x 2");
    assert_eq!(body["row"]["total"], 30.0);

    // By filter, with pagination and ordering.
    let (status, body) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries?customer=ada&status=paid&order_by=order_id&order=desc&min_position={last}"
    ));
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> =
        body["rows"].as_array().unwrap().iter().map(|r| r["order_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["order-4", "order-2"]);

    let (_, page1) = c.get("/projections/order-summary/tables/order_summaries?limit=2");
    assert_eq!(page1["rows"].as_array().unwrap().len(), 2);
    assert_eq!(page1["next_offset"], 2);
    let (_, page3) = c.get("/projections/order-summary/tables/order_summaries?limit=2&offset=4");
    assert_eq!(page3["rows"].as_array().unwrap().len(), 1);
    assert_eq!(page3["next_offset"], serde_json::Value::Null);

    // Read-only SQL with parameters.
    let (status, body) = c.post(
        "/projections/order-summary/query",
        &json!({ "sql": "SELECT customer, count(*) AS n FROM order_summaries WHERE total > ? GROUP BY customer ORDER BY customer", "params": [5] }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], json!(["customer", "n"]));
    assert_eq!(body["rows"], json!([["ada", 3], ["bob", 2]]));

    // A write through /query is refused and changes nothing.
    for sql in [
        "DELETE FROM order_summaries",
        "UPDATE order_summaries SET status = 'x'",
        "DROP TABLE order_summaries",
    ] {
        let (status, body) = c.post("/projections/order-summary/query", &json!({ "sql": sql }));
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body["error"].as_str().unwrap().contains("read-only"), "{body}");
    }
    assert_eq!(c.query("order-summary", "SELECT count(*) FROM order_summaries"), vec![json!([5])]);

    // The second projection built its own read model from the same events.
    let (status, body) =
        c.get(&format!("/projections/customer-stats/tables/customer_stats/ada?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["orders"], 3);
    assert_eq!(body["row"]["paid_orders"], 3);

    // Status: both live, caught up.
    let (status, body) = c.get("/projections");
    assert_eq!(status, 200);
    let list = body["projections"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for p in list {
        assert_eq!(p["status"], "live", "{p}");
        assert_eq!(p["lag"], 0, "{p}");
        assert_eq!(p["head"], last);
    }
}

fn streams_and_the_global_log_read_back_in_order() {
    let server = Server::start(&[]);
    let c = server.client();
    c.append("a", json!("no_stream"), &[("A1", json!({ "n": 1 })), ("A2", json!([1, 2]))]);
    c.append("b", json!("any"), &[("B1", json!("text"))]);
    c.append("a", json!("exists"), &[("A3", json!(null))]);

    let (status, body) = c.get("/streams/a?from_version=2");
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "A2");
    assert_eq!(events[0]["data"], json!([1, 2]));
    assert_eq!(events[1]["stream_version"], 3);
    assert_eq!(events[1]["position"], 4);

    let (_, body) = c.get("/events?after=1&limit=2");
    let positions: Vec<u64> =
        body["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [2, 3]);
    assert_eq!(body["next_after"], 3);

    let (_, body) = c.get("/events?types=B1,A3");
    let types: Vec<&str> =
        body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["B1", "A3"]);

    let (status, body) = c.get("/healthz");
    assert_eq!((status, body["head"].as_u64()), (200, Some(4)));
}

fn restart_resumes_from_the_checkpoint_without_reapplying() {
    let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    let c = server.client();
    for i in 0..20 {
        c.append(&format!("o-{i}"), json!("no_stream"), &order_events("ada", 1));
    }
    c.wait_projection("customer-stats", Duration::from_secs(20), |s| s["lag"] == 0);
    let restarted = Server::start_in(server.stop(), |_| {});
    let c = restarted.client();
    let s = c.wait_projection("customer-stats", Duration::from_secs(20), |s| s["status"] == "live");
    assert_eq!(s["position"], 60);
    assert_eq!(s["events_applied"], 0, "nothing re-applied after a restart: {s}");
    assert_eq!(
        c.query("customer-stats", "SELECT orders, paid_orders FROM customer_stats"),
        vec![json!([20, 20])]
    );
    c.append("o-20", json!("no_stream"), &order_events("ada", 0));
    let (_, body) = c.get("/projections/customer-stats/tables/customer_stats/ada?min_position=62");
    assert_eq!(body["row"]["orders"], 21);
}

fn a_changed_plugin_rebuilds_its_read_model_from_position_one() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    for i in 0..3 {
        c.append(&format!("o-{i}"), json!("no_stream"), &order_events("ada", 2));
    }
    let before = c.wait_projection("order-summary", Duration::from_secs(20), |s| s["lag"] == 0);
    let rows = c.query("order-summary", "SELECT * FROM order_summaries ORDER BY order_id");
    let dir = server.stop();

    // Same logic, different bytes: a component with one more custom section.
    let path = dir.path().join("plugins").join("order_summary.wasm");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0x00, 0x07, 0x04, b'n', b'o', b't', b'e', b'v', b'2']);
    std::fs::write(&path, bytes).unwrap();

    let server = Server::start_in(dir, |_| {});
    let c = server.client();
    let after = c.wait_projection("order-summary", Duration::from_secs(20), |s| s["status"] == "live");
    assert_ne!(after["hash"], before["hash"]);
    assert_eq!(after["events_applied"], 12, "rebuilt from position 1: {after}");
    assert_eq!(c.query("order-summary", "SELECT * FROM order_summaries ORDER BY order_id"), rows);
}

/// A server that answers serves its read models' tables, even those of
/// projections created by this very start (a table created a moment later
/// would be a 404 to the first reader).
fn a_new_read_models_tables_answer_as_soon_as_the_server_does() {
    for start in 0..3 {
        let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
        let c = server.client();
        for (projection, table) in
            [("order-summary", "order_summaries"), ("customer-stats", "customer_stats")]
        {
            let (status, rows) = c.get(&format!("/projections/{projection}/tables/{table}"));
            assert_eq!(status, 200, "start {start}: {projection}: {rows}");
            assert_eq!(rows["rows"], json!([]), "start {start}: {projection}: {rows}");
        }
    }
}

crate::on_both_logs!(
    a_new_read_models_tables_answer_as_soon_as_the_server_does,
    append_then_read_order_summaries_by_key_filter_and_sql,
    streams_and_the_global_log_read_back_in_order,
    restart_resumes_from_the_checkpoint_without_reapplying,
    a_changed_plugin_rebuilds_its_read_model_from_position_one,
);
