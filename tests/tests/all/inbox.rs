//! The inbox: JetStream messages taken in exactly once. The same message
//! delivered three times makes one command; a node killed between a
//! message's commit and its acknowledgement produces nothing twice when it
//! comes back; messages that cannot succeed go to the dead letters (at once
//! when they never will, after `max_deliver` deliveries when the failure
//! may pass); events into a stream, once each.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash_recovery::spawn_args;
use crate::support::nats::{Js, Nats};
use crate::support::{Client, ORDER_SUMMARY, ORDERS, Server, whole_log};

const WAIT: Duration = Duration::from_secs(60);

/// A stream `IN` capturing `in.>`, with a short dedupe window so a test can
/// send the same message id again as a redelivery would.
fn inbound(js: &Js) {
    js.rt.block_on(async {
        js.js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "IN".into(),
                subjects: vec!["in.>".into()],
                duplicate_window: Duration::from_millis(100),
                ..Default::default()
            })
            .await
            .unwrap();
    });
}

fn send(js: &Js, id: &str, body: &Value) {
    send_text(js, id, body.to_string());
}

fn send_text(js: &Js, id: &str, body: String) {
    js.rt.block_on(async {
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, id);
        js.js.publish_with_headers("in.orders", h, body.into()).await.unwrap().await.unwrap();
    });
}

fn send_raw(js: &Js, bytes: &'static [u8]) {
    js.rt.block_on(async {
        js.js.publish("in.orders", bytes.into()).await.unwrap().await.unwrap();
    });
}

fn ingest(c: &Client) -> Value {
    c.get("/ingests").1["ingests"][0].clone()
}

fn wait_ingest(c: &Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let i = ingest(c);
        if pred(&i) {
            return i;
        }
        assert!(Instant::now() < deadline, "{what}: {i}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_ingest(nats: &Nats, spec: &str) -> Server {
    let spec = format!("{spec},url={}", nats.url());
    Server::start_with(&[ORDERS, ORDER_SUMMARY], move |cfg| {
        cfg.ingests.push(refract::inbox::IngestOptions::parse(&spec, "").unwrap());
    })
}

#[test]
fn a_message_delivered_three_times_makes_one_command() {
    let nats = Nats::start();
    let js = Js::connect(&nats.url());
    inbound(&js);
    let server = with_ingest(&nats, "stream=IN,consumer=orders-in,target=command:orders");
    let c = server.client();
    let place = json!({ "type": "PlaceOrder", "stream_id": "order-1", "data": { "customer": "ada" } });
    for _ in 0..3 {
        send(&js, "m-1", &place);
        std::thread::sleep(Duration::from_millis(250));
    }
    let i = wait_ingest(&c, "three deliveries taken", |i| i["produced"] == 1 && i["duplicates"] == 2);
    assert_eq!(i["state"], "consuming", "{i}");
    let log = whole_log(&c);
    assert_eq!(log.len(), 1, "one event: {log:?}");
    assert_eq!(log[0]["type"], "OrderPlaced");
    let (_, row) = c.get("/projections/order-summary/tables/order_summaries/order-1?min_position=1");
    assert_eq!(row["row"]["customer"], "ada");
}

#[test]
fn a_node_killed_between_commit_and_ack_produces_nothing_twice() {
    let nats = Nats::start();
    let js = Js::connect(&nats.url());
    inbound(&js);
    let messages = 300;
    for m in 0..messages {
        let body =
            json!({ "type": "PlaceOrder", "stream_id": format!("order-{m}"), "data": { "customer": "ada" } });
        send(&js, &format!("m-{m}"), &body);
    }
    let dir = tempfile::tempdir().unwrap();
    let plugins = crate::support::plugins_dir(dir.path(), &[ORDERS]);
    let spec =
        format!("stream=IN,consumer=orders-in,target=command:orders,ack_wait_ms=500,url={}", nats.url());
    let spawn = || spawn_args(&dir.path().join("data"), &plugins, 100, "normal", &["--ingest", &spec]);
    let mut node = spawn();
    // Killed again and again while it takes the messages in.
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(150 + 40 * round));
        node.kill9();
        node = spawn();
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let log = whole_log(&node.client);
        if log.len() >= messages {
            break;
        }
        assert!(Instant::now() < deadline, "{} of {messages} messages taken", log.len());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Redeliveries of what was taken before a kill still come: let them.
    std::thread::sleep(Duration::from_millis(1500));
    let log = whole_log(&node.client);
    assert_eq!(log.len(), messages, "one event per message, none twice");
    let mut streams: Vec<&str> = log.iter().map(|e| e["stream_id"].as_str().unwrap()).collect();
    streams.sort();
    streams.dedup();
    assert_eq!(streams.len(), messages);
}

#[test]
fn poison_messages_go_to_the_dead_letters_with_the_reason() {
    let nats = Nats::start();
    let js = Js::connect(&nats.url());
    inbound(&js);
    let server = with_ingest(&nats, "stream=IN,consumer=orders-in,target=command:orders,max_deliver=3");
    let c = server.client();
    send_raw(&js, b"not json");
    // Rejected by the handler: paying an order that does not exist.
    send(
        &js,
        "pay-1",
        &json!({ "type": "PayOrder", "stream_id": "order-9", "data": { "payment_method": "card" } }),
    );
    send(
        &js,
        "ok-1",
        &json!({ "type": "PlaceOrder", "stream_id": "order-1", "data": { "customer": "ada" } }),
    );
    let i =
        wait_ingest(&c, "two dead letters and one command", |i| i["dead_letters"] == 2 && i["produced"] == 1);
    assert_eq!(i["duplicates"], 0);
    let (status, body) = c.get("/ingests/orders-in/dead-letters");
    assert_eq!(status, 200, "{body}");
    let dead = body["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[0]["reason"].as_str().unwrap().contains("not a command"), "{body}");
    assert_eq!(dead[0]["payload"], "not json");
    assert_eq!(dead[0]["deliveries"], 1, "never retried: it never will succeed");
    assert!(dead[1]["reason"].as_str().unwrap().contains("rejected by orders"), "{body}");
    assert_eq!(dead[1]["message_id"], "pay-1");
    assert_eq!(c.get("/ingests/nope/dead-letters").0, 404);

    // A failure that may pass (the handler not loaded) is retried, then
    // dead-lettered after max_deliver deliveries.
    let server = with_ingest(&nats, "stream=IN,consumer=missing-in,target=command:nope,max_deliver=3");
    let c = server.client();
    let i = wait_ingest(&c, "every message dead-lettered", |i| i["dead_letters"] == 3);
    assert_eq!(i["produced"], 0, "{i}");
    let (_, body) = c.get("/ingests/missing-in/dead-letters");
    let retried =
        body["dead_letters"].as_array().unwrap().iter().find(|d| d["message_id"] == "ok-1").unwrap().clone();
    assert_eq!(retried["deliveries"], 3, "{retried}");
    assert!(retried["reason"].as_str().unwrap().contains("no command handler named \"nope\""), "{retried}");
}

#[test]
fn events_into_a_stream_once_each() {
    let nats = Nats::start();
    let js = Js::connect(&nats.url());
    inbound(&js);
    let server = with_ingest(&nats, "stream=IN,consumer=events-in,target=stream:inbound");
    let c = server.client();
    let first = r#"{"type": "Shipped", "data": {"n":1.50}, "metadata": {"from": "wms"}}"#;
    send_text(&js, "e-1", first.into());
    send(&js, "e-2", &json!({ "type": "Shipped", "data": { "n": 2 } }));
    std::thread::sleep(Duration::from_millis(250));
    send_text(&js, "e-1", first.into());
    wait_ingest(&c, "two events and a duplicate", |i| i["produced"] == 2 && i["duplicates"] == 1);
    let (_, stream) = c.get("/streams/inbound");
    let events = stream["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(c.get_text("/streams/inbound").1.matches(r#""data":{"n":1.50}"#).count(), 1, "the bytes sent");
    assert_eq!(events[0]["metadata"]["from"], "wms");
}
