//! Every bad request gets a clear JSON error with the right status, and
//! nothing is written.

use serde_json::{Value, json};

use crate::support::{ORDER_SUMMARY, Server};

#[test]
fn bad_appends_are_rejected_and_write_nothing() {
    let server = Server::start_with(&[], |cfg| cfg.http.max_body_bytes = 64 * 1024);
    let c = server.client();
    c.append("s", json!("no_stream"), &[("Created", json!({}))]);
    let long = "x".repeat(300);
    let big = "y".repeat(70 * 1024);
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", "/streams/s/events".into(), b"{\"events\": [".to_vec(), 400, "parse"),
        ("not an object", "/streams/s/events".into(), b"[1,2]".to_vec(), 400, "invalid type"),
        ("missing events", "/streams/s/events".into(), b"{}".to_vec(), 400, "events"),
        ("missing data", "/streams/s/events".into(), br#"{"events":[{"type":"A"}]}"#.to_vec(), 400, "data"),
        ("unknown field", "/streams/s/events".into(), br#"{"events":[],"extra":1}"#.to_vec(), 400, "extra"),
        (
            "bad expected_version",
            "/streams/s/events".into(),
            br#"{"expected_version":"maybe","events":[{"type":"A","data":1}]}"#.to_vec(),
            400,
            "expected_version",
        ),
        (
            "negative expected_version",
            "/streams/s/events".into(),
            br#"{"expected_version":-1,"events":[{"type":"A","data":1}]}"#.to_vec(),
            400,
            "expected_version",
        ),
        ("no events", "/streams/s/events".into(), br#"{"events":[]}"#.to_vec(), 422, "at least one event"),
        (
            "empty type",
            "/streams/s/events".into(),
            br#"{"events":[{"type":"","data":1}]}"#.to_vec(),
            422,
            "must not be empty",
        ),
        (
            "metadata not an object",
            "/streams/s/events".into(),
            br#"{"events":[{"type":"A","data":1,"metadata":[1]}]}"#.to_vec(),
            422,
            "metadata must be a JSON object",
        ),
        (
            "control characters in type",
            "/streams/s/events".into(),
            br#"{"events":[{"type":"A\u0000B","data":1}]}"#.to_vec(),
            422,
            "control characters",
        ),
        (
            "stream id too long",
            format!("/streams/{long}/events"),
            br#"{"events":[{"type":"A","data":1}]}"#.to_vec(),
            422,
            "limit is 256",
        ),
        (
            "invalid UTF-8",
            "/streams/s/events".into(),
            b"{\"events\":[{\"type\":\"\xff\",\"data\":1}]}".to_vec(),
            400,
            "",
        ),
        (
            "body too large",
            "/streams/s/events".into(),
            format!(r#"{{"events":[{{"type":"A","data":"{big}"}}]}}"#).into_bytes(),
            413,
            "limit",
        ),
        (
            "conflict",
            "/streams/s/events".into(),
            br#"{"expected_version":"no_stream","events":[{"type":"A","data":1}]}"#.to_vec(),
            409,
            "version 1",
        ),
        (
            "exists on a new stream",
            "/streams/new/events".into(),
            br#"{"expected_version":"exists","events":[{"type":"A","data":1}]}"#.to_vec(),
            409,
            "none",
        ),
    ];
    for (what, path, body, status, needle) in cases {
        let (got, reply) = c.post_raw(&path, &body);
        assert_eq!(got, status, "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_else(|| panic!("{what}: no error message: {reply}"));
        assert!(error.contains(needle), "{what}: {error:?} does not mention {needle:?}");
    }
    let (_, body) = c.get("/events");
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "nothing was written: {body}");
    assert_eq!(body["head"], 1);
}

#[test]
fn bad_reads_get_clear_errors() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    c.append("order-1", json!("no_stream"), &crate::support::order_events("ada", 0));
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("unknown stream", "/streams/nope", 404, "does not exist"),
        ("bad limit", "/streams/order-1?limit=abc", 400, "limit"),
        ("zero limit", "/events?limit=0", 400, "limit"),
        ("negative after", "/events?after=-4", 400, "after"),
        ("unknown parameter", "/events?bogus=1", 400, "bogus"),
        ("unknown projection", "/projections/nope", 404, "no projection"),
        ("unknown projection table", "/projections/nope/tables/t", 404, "no projection"),
        ("unknown table", "/projections/order-summary/tables/nope", 404, "no table"),
        ("host table", "/projections/order-summary/tables/refract_meta", 404, "no table"),
        ("unknown row", "/projections/order-summary/tables/order_summaries/order-404", 404, "no row"),
        ("unknown column", "/projections/order-summary/tables/order_summaries?colour=red", 400, "no column"),
        (
            "injection via column",
            "/projections/order-summary/tables/order_summaries?order_id%22%3B%20DROP%20TABLE%20x%3B--=1",
            400,
            "no column",
        ),
        (
            "injection via order_by",
            "/projections/order-summary/tables/order_summaries?order_by=total%3B%20DROP%20TABLE%20order_summaries",
            400,
            "no column",
        ),
        ("bad order", "/projections/order-summary/tables/order_summaries?order=sideways", 400, "asc or desc"),
        ("huge limit", "/projections/order-summary/tables/order_summaries?limit=100000", 400, "limit"),
        (
            "overflowing number",
            "/projections/order-summary/tables/order_summaries?limit=99999999999999999999999",
            400,
            "limit",
        ),
        (
            "not caught up",
            "/projections/order-summary/tables/order_summaries?min_position=1000&wait_ms=100",
            504,
            "behind",
        ),
        ("unknown route", "/nowhere", 404, "no route"),
    ];
    for (what, path, status, needle) in cases {
        let (got, reply) = c.get(path);
        assert_eq!(got, status, "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_else(|| panic!("{what}: no error message: {reply}"));
        assert!(error.contains(needle), "{what}: {error:?} does not mention {needle:?}");
    }
    // The injection attempts changed nothing.
    assert_eq!(c.query("order-summary", "SELECT count(*) FROM order_summaries"), vec![json!([1])]);

    let queries: Vec<(&str, Value, u16, &str)> = vec![
        ("syntax error", json!({ "sql": "SELEKT 1" }), 400, "SQL error"),
        ("two statements", json!({ "sql": "SELECT 1; SELECT 2" }), 400, "SQL error"),
        ("attach", json!({ "sql": "ATTACH 'events.db' AS e" }), 400, "read-only"),
        ("pragma write", json!({ "sql": "PRAGMA journal_mode = DELETE" }), 400, "read-only"),
        ("wrong parameter count", json!({ "sql": "SELECT ?", "params": [] }), 400, "SQL error"),
        ("missing sql", json!({ "params": [] }), 400, "sql"),
        (
            "runaway query",
            json!({ "sql": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n" }),
            400,
            "time limit",
        ),
    ];
    for (what, body, status, needle) in queries {
        let (got, reply) = c.post("/projections/order-summary/query", &body);
        assert_eq!(got, status, "{what}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{what}: {reply}");
    }
    let (status, reply) = c.post(
        "/projections/order-summary/query",
        &json!({ "sql": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 50) SELECT x FROM n", "max_rows": 10 }),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["rows"].as_array().unwrap().len(), 10);
    assert_eq!(reply["truncated"], true);
}
