//! Every bad request gets a clear JSON error with the right status, and
//! nothing is written.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ORDER_SUMMARY, Server};

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

fn bad_reads_get_clear_errors() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &crate::support::order_events("ada", 0));
    c.wait_projection("order-summary", Duration::from_secs(30), |s| s["position"] == r["last_position"]);
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("unknown stream", "/streams/nope", 404, "does not exist"),
        ("bad limit", "/streams/order-1?limit=abc", 400, "limit"),
        ("zero limit", "/events?limit=0", 400, "limit"),
        ("limit past the page size", "/streams/order-1?limit=1001", 400, "between 1 and 1000"),
        ("zero dead letters", "/projections/order-summary/dead-letters?limit=0", 400, "between 1 and 1000"),
        ("empty type filter", "/events?types=", 400, "at least one event type"),
        ("type filter of commas", "/events?types=,,", 400, "at least one event type"),
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
        (
            "wrong parameter count",
            json!({ "sql": "SELECT ?", "params": [] }),
            400,
            "1 parameter(s) and params has 0",
        ),
        (
            "too many parameters",
            json!({ "sql": "SELECT 1", "params": [1] }),
            400,
            "0 parameter(s) and params has 1",
        ),
        (
            "integer past i64",
            json!({ "sql": "SELECT ?", "params": [18446744073709551615u64] }),
            400,
            "SQLite's integers",
        ),
        ("missing sql", json!({ "params": [] }), 400, "sql"),
        (
            "runaway query",
            json!({ "sql": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n" }),
            504,
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
    assert_eq!(reply["truncated_by"], "max_rows");
}

/// Reads a response whole; its status and length.
fn fetch_len(req: ureq::Request, body: &Value) -> (u16, usize, Value) {
    let r = match req.send_json(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = r.status();
    let text = r.into_string().unwrap();
    (status, text.len(), serde_json::from_str(&text).unwrap())
}

#[test]
fn answers_are_bounded_in_bytes_and_their_encoding_in_time() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let url = format!("{}/projections/order-summary/query", server.base);
    // Three rows of 50 MB blobs (100 MB each as hex): cut at the default
    // 16 MiB, before a row is encoded, and fast.
    let started = std::time::Instant::now();
    let (status, len, reply) = fetch_len(
        ureq::post(&url),
        &json!({ "sql": "SELECT zeroblob(50000000) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)" }),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["truncated"].clone(), reply["truncated_by"].clone()),
        (json!(true), json!("max_bytes"))
    );
    assert_eq!(reply["rows"], json!([]));
    assert!(len < 1024, "{len} bytes");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // Rows that fit are kept, up to the bound the request asks for.
    let (status, len, reply) = fetch_len(
        ureq::post(&url),
        &json!({ "sql": "SELECT zeroblob(1000) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)", "max_bytes": 4200 }),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["rows"].as_array().unwrap().len(), 2);
    assert_eq!(reply["truncated_by"], "max_bytes");
    assert!(len < 4400, "{len}");
}

#[test]
fn pages_of_rows_end_at_the_byte_bound_and_a_slow_encoding_times_out() {
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.http.max_answer_bytes = 2000;
        cfg.http.query_timeout = Duration::from_millis(300);
    });
    let c = server.client();
    let mut last = json!(0);
    for i in 0..10 {
        let customer = format!("{}{i}", "c".repeat(300));
        last =
            c.append(&format!("order-{i}"), json!("no_stream"), &crate::support::order_events(&customer, 0))
                ["last_position"]
                .clone();
    }
    let (status, page) =
        c.get(&format!("/projections/order-summary/tables/order_summaries?min_position={last}"));
    assert_eq!(status, 200, "{page}");
    let n = page["rows"].as_array().unwrap().len();
    assert!((1..10).contains(&n), "{n} rows in a page of 2000 bytes");
    assert_eq!(page["next_offset"], n, "the next page starts after the rows this one holds");
    let (_, rest) = c.get(&format!("/projections/order-summary/tables/order_summaries?offset={n}"));
    assert!(!rest["rows"].as_array().unwrap().is_empty());

    // One row larger than an answer may be.
    let big = "x".repeat(3000);
    let r = c.append("order-big", json!("no_stream"), &crate::support::order_events(&big, 0));
    let (status, reply) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/order-big?min_position={}",
        r["last_position"]
    ));
    assert_eq!(status, 422, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("larger than an answer may be"), "{reply}");

    // Rows SQLite makes at once but that take long to encode: the time
    // limit covers encoding too (the bytes bound is far).
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.http.max_answer_bytes = 1 << 30;
        cfg.http.query_timeout = Duration::from_millis(100);
    });
    let (status, reply) = server.client().post(
        "/projections/order-summary/query",
        &json!({ "sql": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 100000) SELECT zeroblob(100000) FROM n", "max_rows": 10000 }),
    );
    assert_eq!(status, 504, "{reply}");
    assert_eq!(reply["reason"], "query_timeout");
}

/// Sends `method path` with `body` and extra `headers`; status and body
/// text (whatever the server sent).
fn raw(base: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut req = ureq::request(method, &format!("{base}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = if method == "GET" { req.call() } else { req.send_bytes(body) };
    match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {path}: transport error: {e}"),
    }
}

/// What a request is, method, path, headers, body, expected status (0: any
/// 4xx).
type Case = (&'static str, &'static str, String, Vec<(&'static str, String)>, Vec<u8>, u16);

fn every_route_answers_bad_input_with_a_json_4xx_and_writes_nothing() {
    let server = Server::start_with(&[ORDER_SUMMARY, crate::support::ORDERS], |cfg| {
        cfg.http.max_body_bytes = 64 * 1024;
    });
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &crate::support::order_events("ada", 0));
    c.wait_projection("order-summary", Duration::from_secs(30), |s| s["position"] == r["last_position"]);
    let before = c.query("order-summary", "SELECT * FROM order_summaries");
    let json_ct = || vec![("content-type", "application/json".to_owned())];
    let huge_header = || vec![("x-padding", "h".repeat(200 * 1024))];
    let append_body = br#"{"events":[{"type":"A","data":1}]}"#.to_vec();
    let big = format!(
        r#"{{"type":"PlaceOrder","stream_id":"s","data":{{"customer":"{}"}}}}"#,
        "z".repeat(70 * 1024)
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // streams
        // Stream ids are keys in the log, never paths: this one is just a name.
        ("traversal in a stream id", "POST", "/streams/..%2F..%2Fevents.db/events".into(), json_ct(), append_body.clone(), 201),
        ("NUL in a stream id", "POST", "/streams/a%00b/events".into(), json_ct(), append_body.clone(), 422),
        ("newline in a stream id", "POST", "/streams/a%0Ab/events".into(), json_ct(), append_body.clone(), 422),
        ("invalid UTF-8 in a stream id", "POST", "/streams/%FF%FE/events".into(), json_ct(), append_body.clone(), 400),
        ("no content type", "POST", "/streams/s/events".into(), vec![], append_body.clone(), 415),
        ("text content type", "POST", "/streams/s/events".into(), vec![("content-type", "text/plain".into())], append_body.clone(), 415),
        ("JSON with a charset", "POST", "/streams/s/events".into(), vec![("content-type", "application/json; charset=utf-8".into())], append_body.clone(), 201),
        ("a +json media type", "POST", "/streams/s/events".into(), vec![("content-type", "application/vnd.shop+json".into())], append_body.clone(), 201),
        ("JSON as a text subtype", "POST", "/streams/s/events".into(), vec![("content-type", "text/json".into())], append_body.clone(), 415),
        ("empty body", "POST", "/streams/s/events".into(), json_ct(), vec![], 400),
        ("truncated JSON", "POST", "/streams/s/events".into(), json_ct(), append_body[..20].to_vec(), 400),
        ("events not a list", "POST", "/streams/s/events".into(), json_ct(), br#"{"events":{"type":"A"}}"#.to_vec(), 400),
        ("type not a string", "POST", "/streams/s/events".into(), json_ct(), br#"{"events":[{"type":7,"data":1}]}"#.to_vec(), 400),
        ("overflowing expected_version", "POST", "/streams/s/events".into(), json_ct(), br#"{"expected_version":18446744073709551616,"events":[{"type":"A","data":1}]}"#.to_vec(), 400),
        ("fractional expected_version", "POST", "/streams/s/events".into(), json_ct(), br#"{"expected_version":1.5,"events":[{"type":"A","data":1}]}"#.to_vec(), 400),
        ("deeply nested data", "POST", "/streams/s/events".into(), json_ct(), format!(r#"{{"events":[{{"type":"A","data":{}1{}}}]}}"#, "[".repeat(5000), "]".repeat(5000)).into_bytes(), 422),
        ("huge header", "POST", "/streams/s/events".into(), { let mut h = json_ct(); h.extend(huge_header()); h }, append_body.clone(), 431),
        ("GET on an append route", "GET", "/streams/s/events".into(), vec![], vec![], 405),
        ("negative from_version", "GET", "/streams/order-1?from_version=-1".into(), vec![], vec![], 400),
        ("overflowing limit", "GET", "/events?limit=184467440737095516160".into(), vec![], vec![], 400),
        ("invalid UTF-8 in a query (read lossily: no such type)", "GET", "/events?types=%FF".into(), vec![], vec![], 200),
        // commands
        ("unknown handler", "POST", "/commands/nope".into(), json_ct(), br#"{"type":"PlaceOrder","stream_id":"s","data":{}}"#.to_vec(), 404),
        ("traversal in a handler name", "POST", "/commands/..%2Forders".into(), json_ct(), br#"{"type":"PlaceOrder","stream_id":"s","data":{}}"#.to_vec(), 404),
        ("command without a type", "POST", "/commands/orders".into(), json_ct(), br#"{"stream_id":"s","data":{}}"#.to_vec(), 400),
        ("command without a stream", "POST", "/commands/orders".into(), json_ct(), br#"{"type":"PlaceOrder","data":{}}"#.to_vec(), 400),
        ("unknown command type", "POST", "/commands/orders".into(), json_ct(), br#"{"type":"DropTables","stream_id":"s","data":{}}"#.to_vec(), 400),
        ("command data of the wrong shape", "POST", "/commands/orders".into(), json_ct(), br#"{"type":"PlaceOrder","stream_id":"s","data":{"customer":5}}"#.to_vec(), 422),
        ("malformed command JSON", "POST", "/commands/orders".into(), json_ct(), b"{\"type\":".to_vec(), 400),
        ("command too large", "POST", "/commands/orders".into(), json_ct(), big.into_bytes(), 413),
        ("invalid UTF-8 in a command", "POST", "/commands/orders".into(), json_ct(), b"{\"type\":\"PlaceOrder\",\"stream_id\":\"\xff\",\"data\":{}}".to_vec(), 400),
        // projections, tables, queries
        ("traversal in a projection name", "GET", "/projections/..%2F..%2Fevents/tables/events".into(), vec![], vec![], 404),
        ("traversal in a table name", "GET", "/projections/order-summary/tables/..%2F..%2Fevents.db".into(), vec![], vec![], 404),
        ("quote in a table name", "GET", "/projections/order-summary/tables/order_summaries%22%20--".into(), vec![], vec![], 404),
        ("sqlite_master as a table", "GET", "/projections/order-summary/tables/sqlite_master".into(), vec![], vec![], 404),
        ("injection through a key", "GET", "/projections/order-summary/tables/order_summaries/x'%20OR%20'1'='1".into(), vec![], vec![], 404),
        ("injection through a filter value", "GET", "/projections/order-summary/tables/order_summaries?order_id=x'%20OR%201=1--".into(), vec![], vec![], 200),
        ("injection through after", "GET", "/projections/order-summary/tables/order_summaries?after=1;DROP%20TABLE%20order_summaries".into(), vec![], vec![], 0),
        ("negative limit", "GET", "/projections/order-summary/tables/order_summaries?limit=-5".into(), vec![], vec![], 400),
        ("overflowing min_position", "GET", "/projections/order-summary/tables/order_summaries?min_position=99999999999999999999".into(), vec![], vec![], 400),
        ("negative wait_ms", "GET", "/projections/order-summary/tables/order_summaries?wait_ms=-1".into(), vec![], vec![], 400),
        ("query that writes", "POST", "/projections/order-summary/query".into(), json_ct(), br#"{"sql":"DELETE FROM order_summaries"}"#.to_vec(), 400),
        ("query with a negative max_rows", "POST", "/projections/order-summary/query".into(), json_ct(), br#"{"sql":"SELECT 1","max_rows":-1}"#.to_vec(), 400),
        ("query on an unknown projection", "POST", "/projections/nope/query".into(), json_ct(), br#"{"sql":"SELECT 1"}"#.to_vec(), 404),
        // operations
        ("pause an unknown projection", "POST", "/projections/nope/pause".into(), vec![], vec![], 404),
        ("resume through traversal", "POST", "/projections/..%2Forder-summary/resume".into(), vec![], vec![], 404),
        ("skip with nothing to skip", "POST", "/projections/order-summary/skip".into(), vec![], vec![], 409),
        ("rebuild an unknown projection", "POST", "/projections/nope/rebuild".into(), vec![], vec![], 404),
        ("verify an unknown projection", "POST", "/projections/nope/verify".into(), vec![], vec![], 404),
        ("dead letters with a bad limit", "GET", "/projections/order-summary/dead-letters?limit=x".into(), vec![], vec![], 400),
        ("retry dead letters of an unknown projection", "POST", "/projections/nope/dead-letters/retry".into(), vec![], vec![], 404),
        ("DELETE on a projection", "DELETE", "/projections/order-summary".into(), vec![], vec![], 405),
    ];
    let (mut tried, mut accepted) = (0, 0);
    for (what, method, path, headers, body, expected) in cases {
        let (status, text) = raw(&server.base, method, &path, &headers, &body);
        tried += 1;
        assert!(status < 500, "{what}: {status} {text}");
        if expected != 0 {
            assert_eq!(status, expected, "{what}: {text}");
        }
        if status == 201 {
            accepted += 1;
        }
        if status >= 400 {
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text:?}"));
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {v}");
            if what == "type not a string" {
                // The message points at the bad value.
                assert!(v["error"].as_str().is_some_and(|e| e.contains("events[0].type")), "{v}");
            }
        }
    }
    // Only the setup's events are in the log; the read model is unchanged.
    let (_, events) = c.get("/events");
    assert_eq!(
        events["head"],
        r["last_position"].as_u64().unwrap() + accepted,
        "nothing else was written: {events}"
    );
    assert_eq!(c.query("order-summary", "SELECT * FROM order_summaries"), before);
    assert_eq!(c.projection("order-summary")["status"], "live");
    eprintln!("{tried} bad requests over every route: all 4xx, nothing written");
}

mod properties {
    //! Property tests of the append and query parameter parsing, against a
    //! real server: whatever comes in, the answer is never a 5xx, a 201 is
    //! exactly the events sent, and anything else writes nothing.

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::{Value, json};

    use crate::support::{ORDER_SUMMARY, Server};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn event() -> impl Strategy<Value = Value> {
        let field_type = prop_oneof![".{0,20}".prop_map(Value::from), json_value()];
        (field_type, json_value(), prop::option::of(json_value()), any::<bool>()).prop_map(
            |(ty, data, metadata, drop_data)| {
                let mut e = json!({ "type": ty });
                if !drop_data {
                    e["data"] = data;
                }
                if let Some(m) = metadata {
                    e["metadata"] = m;
                }
                e
            },
        )
    }

    fn expected_version() -> impl Strategy<Value = Option<Value>> {
        prop::option::of(prop_oneof![
            Just(json!("any")),
            Just(json!("no_stream")),
            Just(json!("exists")),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            json_value(),
        ])
    }

    /// An append body: mostly well-formed JSON of the right shape with odd
    /// values, sometimes arbitrary bytes.
    fn append_body() -> impl Strategy<Value = (Vec<u8>, usize)> {
        prop_oneof![
            4 => (expected_version(), prop::collection::vec(event(), 0..4)).prop_map(|(v, events)| {
                let n = events.len();
                let mut b = json!({ "events": events });
                if let Some(v) = v {
                    b["expected_version"] = v;
                }
                (serde_json::to_vec(&b).unwrap(), n)
            }),
            1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| (b, 0)),
        ]
    }

    fn stream_id() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9-]{1,12}", "[ -~]{0,8}", ".{1,300}"]
    }

    #[test]
    fn appends_of_any_shape_never_fail_the_server_nor_write_partially() {
        let server = Server::start(&[]);
        let agent = ureq::Agent::new();
        let written = std::cell::Cell::new(0u64);
        let mut runner =
            TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
        runner
            .run(&(stream_id(), append_body()), |(stream, (body, n))| {
                let path: String = url_escape(&stream);
                let r = agent
                    .post(&format!("{}/streams/{path}/events", server.base))
                    .set("content-type", "application/json")
                    .send_bytes(&body);
                let (status, text) = match r {
                    Ok(r) | Err(ureq::Error::Status(_, r)) => {
                        (r.status(), r.into_string().unwrap_or_default())
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("transport: {e}"))),
                };
                prop_assert!(status < 500, "{status}: {text}");
                let v: Value = serde_json::from_str(&text).map_err(|_| TestCaseError::fail(text.clone()))?;
                if status == 201 {
                    let count =
                        v["last_position"].as_u64().unwrap() - v["first_position"].as_u64().unwrap() + 1;
                    prop_assert_eq!(count, n as u64);
                    written.set(written.get() + count);
                } else {
                    prop_assert!(v["error"].as_str().is_some(), "{status}: {v}");
                }
                Ok(())
            })
            .unwrap();
        let (_, head) = server.client().get("/healthz");
        assert_eq!(head["head"], written.get(), "the log holds exactly the acknowledged events");
    }

    fn url_escape(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn param() -> impl Strategy<Value = (String, String)> {
        let key = prop_oneof![
            Just("limit".to_owned()),
            Just("after".to_owned()),
            Just("order".to_owned()),
            Just("order_by".to_owned()),
            Just("from_version".to_owned()),
            Just("types".to_owned()),
            Just("status".to_owned()),
            Just("customer".to_owned()),
            Just("offset".to_owned()),
            Just("wait_ms".to_owned()),
            ".{0,10}",
        ];
        let value = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<u64>().prop_map(|i| i.to_string()),
            "[0-9]{15,30}",
            ".{0,20}",
            Just("asc".to_owned()),
            Just("desc".to_owned()),
            Just("total".to_owned()),
        ];
        (key, value)
    }

    #[test]
    fn query_parameters_of_any_kind_never_fail_the_server() {
        let server = Server::start(&[ORDER_SUMMARY]);
        let c = server.client();
        c.append("order-1", json!("no_stream"), &crate::support::order_events("ada", 1));
        let agent = ureq::Agent::new();
        let routes = ["/events", "/streams/order-1", "/projections/order-summary/tables/order_summaries"];
        let mut runner =
            TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
        runner
            .run(&(0..routes.len(), prop::collection::vec(param(), 0..4)), |(route, params)| {
                let query: Vec<String> =
                    params.iter().map(|(k, v)| format!("{}={}", url_escape(k), url_escape(v))).collect();
                let url = format!("{}{}?{}", server.base, routes[route], query.join("&"));
                let (status, text) = match agent.get(&url).call() {
                    Ok(r) | Err(ureq::Error::Status(_, r)) => {
                        (r.status(), r.into_string().unwrap_or_default())
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("transport: {e}"))),
                };
                prop_assert!(status < 500, "{url}: {status} {text}");
                let v: Value = serde_json::from_str(&text).map_err(|_| TestCaseError::fail(text.clone()))?;
                prop_assert!(status == 200 || v["error"].as_str().is_some(), "{url}: {status} {v}");
                Ok(())
            })
            .unwrap();
    }
}

crate::on_both_logs!(
    bad_appends_are_rejected_and_write_nothing,
    bad_reads_get_clear_errors,
    every_route_answers_bad_input_with_a_json_4xx_and_writes_nothing,
);
