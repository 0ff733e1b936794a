//! What a client appended is what it reads back, byte for byte: key order,
//! whitespace, numbers of any precision or size, escapes and deep nesting,
//! on every read path (a stream, the global log, a command's answer); and a
//! projection reading such numbers computes with the exact values sent.

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::support::{ORDER_SUMMARY, ORDERS, Server, TALLY};

/// Documents whose exact text must survive the log.
const DOCUMENTS: &[&str] = &[
    r#"{"z":1,"price":9.600000000000001,"a":{"y":2,"b":0.1}}"#,
    r#"{ "spaced" :  [ 1 , 2 ] ,"tab":	true }"#,
    r#"{"above_2_53":9007199254740993,"i64_max":9223372036854775807,"u64_max":18446744073709551615,"i64_min":-9223372036854775808}"#,
    r#"{"huge":123456789012345678901234567890,"tiny":1e-320,"exp":1E+2,"neg_zero":-0.0,"trailing":1.50}"#,
    r#"{"escaped":"\u00e9\ud83d\ude00\n\"q\"\\","raw":"é😀","slash":"a\/b"}"#,
    r#""just a string""#,
    "12.340",
    "null",
    r#"[{"b":1,"a":2},{"a":2,"b":1}]"#,
];

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow)]
    metadata: &'a RawValue,
    position: u64,
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    events: Vec<Event<'a>>,
}

fn get_text(base: &str, path: &str) -> String {
    let r = ureq::get(&format!("{base}{path}")).call().unwrap();
    assert_eq!(r.status(), 200);
    r.into_string().unwrap()
}

fn post_text(base: &str, path: &str, body: &str) -> (u16, String) {
    match ureq::post(&format!("{base}{path}")).set("content-type", "application/json").send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

/// A deeply nested document, as deep as the log accepts.
fn deep() -> String {
    let depth = refract::log::MAX_JSON_DEPTH;
    format!("{}{}{}", r#"{"d":"#.repeat(depth - 1), "[1.0e0]", "}".repeat(depth - 1))
}

fn data_and_metadata_read_back_as_the_bytes_appended() {
    let server = Server::start(&[TALLY]);
    let base = &server.base;
    let deep = deep();
    let mut documents: Vec<&str> = DOCUMENTS.to_vec();
    documents.push(&deep);
    let metadata = r#"{"zeta":1, "alpha":0.30000000000000004,"n":18446744073709551615}"#;
    let events: Vec<String> =
        documents.iter().map(|d| format!(r#"{{"type":"Echo","data":{d},"metadata":{metadata}}}"#)).collect();
    let body = format!(r#"{{"expected_version":"no_stream","events":[{}]}}"#, events.join(","));
    let (status, text) = post_text(base, "/streams/fid-1/events", &body);
    assert_eq!(status, 201, "{text}");

    for path in ["/streams/fid-1?limit=100", "/events?limit=100", "/events?types=Echo"] {
        let text = get_text(base, path);
        let page: Page = serde_json::from_str(&text).unwrap();
        assert_eq!(page.events.len(), documents.len(), "{path}");
        for (e, sent) in page.events.iter().zip(&documents) {
            assert_eq!(e.data.get(), *sent, "{path}: data of event {}", e.position);
            assert_eq!(e.metadata.get(), metadata, "{path}: metadata of event {}", e.position);
        }
    }
    // A plugin's `event` records hold the same text.
    let c = server.client();
    let (status, body) = c.post(
        "/projections/tally/query",
        &json!({ "sql": "SELECT data, metadata FROM echoes ORDER BY position", "min_position": documents.len() }),
    );
    assert_eq!(status, 200, "{body}");
    let echoed: Vec<(String, String)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()))
        .collect();
    let sent: Vec<(String, String)> =
        documents.iter().map(|d| (d.to_string(), metadata.to_owned())).collect();
    assert_eq!(echoed, sent);
}

fn metadata_null_or_left_out_reads_back_as_an_empty_object() {
    let server = Server::start(&[]);
    let base = &server.base;
    let body = r#"{"events":[{"type":"T","data":1,"metadata":null},{"type":"T","data":2}]}"#;
    let (status, text) = post_text(base, "/streams/s/events", body);
    assert_eq!(status, 201, "{text}");
    let text = get_text(base, "/streams/s");
    let page: Page = serde_json::from_str(&text).unwrap();
    assert_eq!(page.events.iter().map(|e| e.metadata.get()).collect::<Vec<_>>(), ["{}", "{}"]);
    // Anything else that is not an object is refused, and nothing written.
    for bad in ["[]", "1", r#""m""#, "true"] {
        let body = format!(r#"{{"events":[{{"type":"T","data":1,"metadata":{bad}}}]}}"#);
        let (status, text) = post_text(base, "/streams/s/events", &body);
        assert_eq!(status, 422, "metadata {bad}: {text}");
    }
    let text = get_text(base, "/streams/s");
    assert_eq!(serde_json::from_str::<Page>(&text).unwrap().events.len(), 2);
}

fn a_commands_metadata_reaches_its_events_as_sent() {
    let server = Server::start(&[ORDERS]);
    let base = &server.base;
    let body = r#"{"type":"PlaceOrder","stream_id":"order-1","data":{"customer":"ada"},
        "metadata":{"z":1,"price":9.600000000000001,"correlation_id":{"b":1,"a":2},"big":18446744073709551615}}"#;
    let (status, text) = post_text(base, "/commands/orders", body);
    assert_eq!(status, 200, "{text}");
    let answer: Page = serde_json::from_str(&text).unwrap();
    let text = get_text(base, "/streams/order-1");
    let read: Page = serde_json::from_str(&text).unwrap();
    for m in [answer.events[0].metadata.get(), read.events[0].metadata.get()] {
        assert!(
            m.starts_with(r#"{"z":1,"price":9.600000000000001,"big":18446744073709551615,"command_id":"#),
            "{m}"
        );
        assert!(m.contains(r#""correlation_id":{"b":1,"a":2},"causation_id":"#), "{m}");
    }
}

fn a_rust_projection_totals_prices_of_seventeen_digits_exactly() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    // Decimal texts that serde_json without `float_roundtrip` reads as the
    // neighbouring double.
    let prices = [
        "9.600000000000001",
        "0.30000000000000004",
        "1.0000000000000002",
        "123.45678901234568",
        "2.2250738585072014e-308",
    ];
    let items: Vec<String> = prices
        .iter()
        .enumerate()
        .map(|(i, p)| format!(r#"{{"product_id":"p-{i}","quantity":{},"price":{p}}}"#, i + 1))
        .collect();
    let body = format!(
        r#"{{"events":[{{"type":"OrderPlaced","data":{{"customer":"ada","items":[{}]}}}},
            {{"type":"ItemAdded","data":{{"product_id":"x","quantity":3,"price":9.600000000000001}}}}]}}"#,
        items.join(",")
    );
    let (status, text) = post_text(&server.base, "/streams/order-1/events", &body);
    assert_eq!(status, 201, "{text}");
    // The same arithmetic on the exact doubles.
    let placed: f64 =
        prices.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p.parse::<f64>().unwrap()).sum();
    let expected = placed + 3.0 * 9.600000000000001;
    let (_, row) = c.get("/projections/order-summary/tables/order_summaries/order-1?min_position=2");
    assert_eq!(row["row"]["total"].as_f64(), Some(expected), "{row}");
    assert_eq!(row["row"]["item_count"], json!(1 + 2 + 3 + 4 + 5 + 3));
}

crate::on_both_logs!(
    data_and_metadata_read_back_as_the_bytes_appended,
    metadata_null_or_left_out_reads_back_as_an_empty_object,
    a_commands_metadata_reaches_its_events_as_sent,
    a_rust_projection_totals_prices_of_seventeen_digits_exactly,
);
