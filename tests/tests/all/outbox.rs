//! The outbox: every event of the log reaches the JetStream stream exactly
//! once and in log order — across `kill -9` of the publishing process,
//! across a broker stopped under load (appends never fail meanwhile), with
//! several nodes of which exactly one publishes; a stream holding another
//! log's events is refused; types and subjects as configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash_recovery::spawn_args;
use crate::support::nats::{Js, Nats};
use crate::support::postgres::TestDb;
use crate::support::{Client, Home, Server, call, events_json, order_events, whole_log};

const WAIT: Duration = Duration::from_secs(60);

fn header(h: &async_nats::HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.as_str().to_owned())
}

/// Waits until the stream holds the log's last event, then checks that it
/// holds every event of the log once, in order, as the log has it.
fn assert_stream_is_the_log(js: &Js, stream: &str, c: &Client) {
    let log = whole_log(c);
    let head = log.len() as u64;
    let deadline = Instant::now() + WAIT;
    loop {
        let msgs = js.messages(stream);
        let last = msgs
            .last()
            .and_then(|(_, h, _)| header(h, "Refract-Position"))
            .and_then(|p| p.parse::<u64>().ok());
        if last == Some(head) {
            break;
        }
        assert!(Instant::now() < deadline, "the stream reached {last:?} of {head}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let msgs = js.messages(stream);
    assert_eq!(msgs.len() as u64, head, "one message per event");
    let log_id = header(&msgs[0].1, "Refract-Log").unwrap();
    for ((seq, h, payload), e) in msgs.iter().zip(&log) {
        let p = e["position"].as_u64().unwrap();
        assert_eq!(*seq, p, "the stream's sequence is the log's position");
        assert_eq!(header(h, "Refract-Position"), Some(p.to_string()));
        let id = h.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned());
        assert_eq!(id, Some(format!("{log_id}:{p}")));
        let sent: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(&sent, e, "the message is the event");
    }
}

/// Appends until `stop`, each a new stream; the appends' statuses.
fn appender(base: String, tag: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
        let mut statuses = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let body = json!({ "expected_version": "no_stream", "events": events_json(&order_events("ada", n % 3)) });
            match call(&agent, "POST", &format!("{base}/streams/{tag}-{n}/events"), Some(&body)) {
                Some((s, _)) => statuses.push(s),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        statuses
    })
}

#[test]
fn every_event_reaches_the_stream_once_across_kill_9_of_the_publisher() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let plugins = crate::support::plugins_dir(dir.path(), &[]);
    let spawn = || {
        spawn_args(
            &dir.path().join("data"),
            &plugins,
            100,
            "normal",
            &["--publish", &nats.url(), "--publish-stream", "OUT"],
        )
    };
    let mut node = spawn();
    for round in 0..8 {
        let stop = Arc::new(AtomicBool::new(false));
        let load = appender(node.client.base.clone(), format!("r{round}"), stop.clone());
        std::thread::sleep(Duration::from_millis(250 + 60 * round));
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        let statuses = load.join().unwrap();
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
        node = spawn();
    }
    let js = Js::connect(&nats.url());
    assert_stream_is_the_log(&js, "OUT", &node.client);
}

#[test]
fn a_broker_stopped_under_load_costs_appends_nothing_and_loses_nothing() {
    let mut nats = Nats::start();
    let url = nats.url();
    let server = Server::start_with(&[], move |cfg| {
        let mut p = refract::outbox::PublishOptions::new(url);
        p.stream = "OUT".into();
        cfg.publish = Some(p);
    });
    let c = server.client();
    let stop = Arc::new(AtomicBool::new(false));
    let load = appender(server.base.clone(), "o".into(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    nats.stop();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = c.get("/publishers");
        let p = &body["publishers"][0];
        if p["state"] == "unavailable" && p["lag"].as_u64().unwrap() > 0 {
            assert!(p["error"].is_string(), "{p}");
            break;
        }
        assert!(Instant::now() < deadline, "the publisher never reported the broker down: {p}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = c.metrics();
    assert!(metrics.get("refract_publisher_lag_events{stream=\"OUT\"}").is_some_and(|l| *l > 0.0));
    std::thread::sleep(Duration::from_millis(700));
    nats.resume();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().unwrap();
    assert!(statuses.len() > 20 && statuses.iter().all(|s| *s == 201), "appends never failed: {statuses:?}");
    let js = Js::connect(&nats.url());
    assert_stream_is_the_log(&js, "OUT", &c);
    let (_, body) = c.get("/publishers");
    assert_eq!(body["publishers"][0]["state"], "publishing");
    assert_eq!(body["publishers"][0]["lag"], 0);
}

#[test]
fn of_several_nodes_exactly_one_publishes_and_another_takes_over() {
    let nats = Nats::start();
    let db = TestDb::create();
    let node = || {
        let dir = tempfile::tempdir().unwrap();
        crate::support::plugins_dir(dir.path(), &[]);
        let url = nats.url();
        Server::start_in(Home { dir, db: Some(db.clone()) }, move |cfg| {
            let mut p = refract::outbox::PublishOptions::new(url);
            p.stream = "OUT".into();
            p.lease = Duration::from_secs(1);
            cfg.publish = Some(p);
        })
    };
    let (a, b) = (node(), node());
    let (ca, cb) = (a.client(), b.client());
    for i in 0..20 {
        [&ca, &cb][i % 2].append(&format!("s-{i}"), json!("no_stream"), &order_events("ada", 1));
    }
    let states = || {
        let s = |c: &Client| c.get("/publishers").1["publishers"][0]["state"].as_str().unwrap().to_owned();
        (s(&ca), s(&cb))
    };
    let deadline = Instant::now() + WAIT;
    while !matches!(states(), (x, y) if (x == "publishing") != (y == "publishing") && (x == "standby" || y == "standby"))
    {
        assert!(Instant::now() < deadline, "not exactly one publisher: {:?}", states());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (publishing, other) = if states().0 == "publishing" { (a, b) } else { (b, a) };
    let js = Js::connect(&nats.url());
    assert_stream_is_the_log(&js, "OUT", &other.client());
    drop(publishing);
    let c = other.client();
    for i in 20..30 {
        c.append(&format!("s-{i}"), json!("no_stream"), &order_events("bob", 0));
    }
    assert_stream_is_the_log(&js, "OUT", &c);
    assert_eq!(c.get("/publishers").1["publishers"][0]["state"], "publishing");
}

#[test]
fn a_stream_holding_another_logs_events_is_refused() {
    let nats = Nats::start();
    let js = Js::connect(&nats.url());
    js.rt.block_on(async {
        js.js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "OUT".into(),
                subjects: vec!["refract.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert("Refract-Log", "someone-else");
        h.insert("Refract-Position", "7");
        js.js.publish_with_headers("refract.x.Y", h, "{}".into()).await.unwrap().await.unwrap();
    });
    let url = nats.url();
    let server = Server::start_with(&[], move |cfg| {
        let mut p = refract::outbox::PublishOptions::new(url);
        p.stream = "OUT".into();
        cfg.publish = Some(p);
    });
    let c = server.client();
    c.append("s", json!("no_stream"), &[("E", json!(1))]);
    let deadline = Instant::now() + WAIT;
    loop {
        let p = c.get("/publishers").1["publishers"][0].clone();
        if p["error"].as_str().is_some_and(|e| e.contains("another log")) {
            assert_eq!(p["state"], "unavailable");
            break;
        }
        assert!(Instant::now() < deadline, "{p}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(js.messages("OUT").len(), 1, "nothing was added to it");
}

#[test]
fn only_the_types_asked_for_on_the_subjects_asked_for() {
    let nats = Nats::start();
    let url = nats.url();
    let server = Server::start_with(&[], move |cfg| {
        let mut p = refract::outbox::PublishOptions::new(url);
        p.stream = "PAID".into();
        p.subject = refract::outbox::Template::parse("shop.{type}.{stream_id}").unwrap();
        p.types = Some(vec!["OrderPaid".into()]);
        cfg.publish = Some(p);
    });
    let c = server.client();
    c.append("order.1", json!("no_stream"), &order_events("ada", 2));
    c.append("order-2", json!("no_stream"), &order_events("bob", 0));
    let js = Js::connect(&nats.url());
    let deadline = Instant::now() + WAIT;
    while js.rt.block_on(js.js.get_stream("PAID")).is_err() || js.messages("PAID").len() < 2 {
        assert!(Instant::now() < deadline, "the paid events were not published");
        std::thread::sleep(Duration::from_millis(50));
    }
    let msgs = js.messages("PAID");
    let positions: Vec<String> =
        msgs.iter().map(|(_, h, _)| header(h, "Refract-Position").unwrap()).collect();
    assert_eq!(positions, ["4", "6"]);
    // The subjects, the stream id's dot escaped.
    let subjects: Vec<String> = js.rt.block_on(async {
        let s = js.js.get_stream("PAID").await.unwrap();
        let mut out = Vec::new();
        for seq in 1..=2 {
            out.push(s.get_raw_message(seq).await.unwrap().subject.to_string());
        }
        out
    });
    assert_eq!(subjects, ["shop.OrderPaid.order%2E1", "shop.OrderPaid.order-2"]);
    let (_, body) = c.get("/publishers");
    assert_eq!(body["publishers"][0]["lag"], 0, "{body}");
}
