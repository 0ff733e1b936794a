//! `GET /subscribe`: a thousand subscribers each get every event in order;
//! `Last-Event-ID` resumes with no gap and no repeat; the filters; the
//! `caught-up` mark and the heartbeat with the head; a subscriber that
//! stops reading is let go with `fell-behind` while appends go on at full
//! rate; a bounded number of subscribers.

use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Server;

/// One server-sent event (or comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
    pub comment: Option<String>,
}

/// A subscription read frame by frame.
pub struct Sse {
    reader: Box<dyn BufRead + Send>,
}

impl Sse {
    /// Opens `GET {base}{path}`, with `Last-Event-ID` if given; panics
    /// unless 200.
    pub fn open(base: &str, path: &str, last_event_id: Option<u64>) -> Sse {
        match Self::try_open(base, path, last_event_id) {
            Ok(s) => s,
            Err((status, body)) => panic!("subscribe {path}: {status} {body}"),
        }
    }

    pub fn try_open(base: &str, path: &str, last_event_id: Option<u64>) -> Result<Sse, (u16, String)> {
        let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(60)).build();
        let mut req = agent.get(&format!("{base}{path}"));
        if let Some(id) = last_event_id {
            req = req.set("Last-Event-ID", &id.to_string());
        }
        match req.call() {
            Ok(r) => {
                assert_eq!(r.header("content-type"), Some("text/event-stream"));
                Ok(Sse { reader: Box::new(std::io::BufReader::new(r.into_reader())) })
            }
            Err(ureq::Error::Status(s, r)) => Err((s, r.into_string().unwrap_or_default())),
            Err(e) => panic!("{e}"),
        }
    }

    /// The next frame; `None` when the stream ends.
    pub fn next(&mut self) -> Option<Frame> {
        let mut f = Frame::default();
        let mut data = Vec::new();
        let mut seen = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if seen {
                    f.data = data.join("\n");
                    return Some(f);
                }
                continue;
            }
            seen = true;
            if let Some(c) = line.strip_prefix(':') {
                f.comment = Some(c.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("id: ") {
                f.id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                f.event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v.to_owned());
            }
        }
    }

    /// The next frame that is an event (not a comment).
    pub fn next_event(&mut self) -> Option<Frame> {
        loop {
            let f = self.next()?;
            if f.comment.is_none() {
                return Some(f);
            }
        }
    }
}

fn append_n(c: &crate::support::Client, stream: &str, n: usize, ty: &str) -> u64 {
    let events: Vec<(&str, Value)> = (0..n).map(|i| (ty, json!({ "i": i }))).collect();
    c.append(stream, json!("any"), &events)["last_position"].as_u64().unwrap()
}

#[test]
fn a_thousand_subscribers_each_get_every_event_in_order() {
    let server = Server::start(&[]);
    let c = server.client();
    // Some history first.
    append_n(&c, "h", 50, "Old");
    let subscribers = 1000;
    let ready = Arc::new(Barrier::new(subscribers + 1));
    let done = Arc::new(AtomicUsize::new(0));
    let total = 250u64;
    let threads: Vec<_> = (0..subscribers)
        .map(|_| {
            let (base, ready, done) = (server.base.clone(), ready.clone(), done.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mut sub = Sse::open(&base, "/subscribe", None);
                    let mut expected = 1;
                    loop {
                        let f = sub.next_event().expect("the stream goes on");
                        if f.event == "caught-up" {
                            assert_eq!(f.id, Some(50));
                            break;
                        }
                        assert_eq!(f.id, Some(expected));
                        expected += 1;
                    }
                    ready.wait();
                    while expected <= total {
                        let f = sub.next_event().expect("the stream goes on");
                        assert_eq!(f.id, Some(expected), "in order, none missing");
                        let e: Value = serde_json::from_str(&f.data).unwrap();
                        assert_eq!(e["position"], expected);
                        expected += 1;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap()
        })
        .collect();
    ready.wait();
    // Live events, from several writers at once.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    append_n(&c, &format!("live-{w}"), 10, "New");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for t in threads {
        t.join().expect("a subscriber failed");
    }
    assert_eq!(done.load(Ordering::Relaxed), subscribers);
}

#[test]
fn last_event_id_resumes_with_no_gap_and_no_repeat() {
    let server = Server::start(&[]);
    let c = server.client();
    append_n(&c, "s", 30, "E");
    let mut sub = Sse::open(&server.base, "/subscribe", None);
    for p in 1..=12 {
        assert_eq!(sub.next_event().unwrap().id, Some(p));
    }
    drop(sub);
    append_n(&c, "s", 5, "E");
    // What an EventSource sends when it reconnects.
    let mut sub = Sse::open(&server.base, "/subscribe?after=3", Some(12));
    for p in 13..=35 {
        assert_eq!(sub.next_event().unwrap().id, Some(p));
    }
    let caught_up = sub.next_event().unwrap();
    assert_eq!((caught_up.event.as_str(), caught_up.id), ("caught-up", Some(35)));
    // `after` alone, too.
    let mut sub = Sse::open(&server.base, "/subscribe?after=33", None);
    assert_eq!(sub.next_event().unwrap().id, Some(34));
}

#[test]
fn filters_caught_up_and_heartbeats_with_the_head() {
    let server = Server::start_with(&[], |cfg| cfg.subscribe.heartbeat = Duration::from_millis(200));
    let c = server.client();
    c.append("order-1", json!("any"), &[("Placed", json!({})), ("Paid", json!({}))]);
    c.append("cart-1", json!("any"), &[("Placed", json!({}))]);
    c.append("order-2", json!("any"), &[("Placed", json!({ "note": "a\nb" }))]);
    let ids = |path: &str| {
        let mut sub = Sse::open(&server.base, path, None);
        let mut ids = Vec::new();
        loop {
            let f = sub.next_event().unwrap();
            if f.event == "caught-up" {
                assert_eq!(f.data, r#"{"position":4}"#);
                return ids;
            }
            ids.push(f.id.unwrap());
        }
    };
    assert_eq!(ids("/subscribe"), [1, 2, 3, 4]);
    assert_eq!(ids("/subscribe?types=Placed"), [1, 3, 4]);
    assert_eq!(ids("/subscribe?stream=order-1"), [1, 2]);
    assert_eq!(ids("/subscribe?stream_prefix=order-&types=Placed,Other"), [1, 4]);
    // The event as JSON, its data as appended.
    let mut sub = Sse::open(&server.base, "/subscribe?after=3", None);
    let f = sub.next_event().unwrap();
    assert_eq!(f.event, "Placed");
    let e: Value = serde_json::from_str(&f.data).unwrap();
    assert_eq!((e["stream_id"].as_str(), e["data"]["note"].as_str()), (Some("order-2"), Some("a\nb")));
    // A filtered subscriber hears the head move while nothing matches.
    let mut sub = Sse::open(&server.base, "/subscribe?types=Nothing", None);
    assert_eq!(sub.next().unwrap().event, "caught-up");
    c.append("x", json!("any"), &[("Other", json!({}))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = sub.next().unwrap();
        if f.comment.as_deref() == Some("head 5") {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat with the head");
    }
    // Bad filters.
    for (path, needle) in [
        ("/subscribe?types=", "at least one"),
        ("/subscribe?stream=", "must not be empty"),
        ("/subscribe?after=x", "after"),
    ] {
        let (status, body) = c.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{path}: {body}");
    }
}

#[test]
fn a_subscriber_that_stops_reading_is_let_go_and_appends_keep_their_pace() {
    // 128 frames of 8 KiB: room for a reader slowed down by a busy machine,
    // far less than the 8 MB appended below past what the sockets hold.
    let server = Server::start_with(&[], |cfg| cfg.subscribe.buffer = 128);
    let c = server.client();
    // One that reads, one that never does.
    let mut reader = Sse::open(&server.base, "/subscribe", None);
    let mut stalled = Sse::open(&server.base, "/subscribe", None);
    assert_eq!(reader.next_event().unwrap().event, "caught-up");
    assert_eq!(stalled.next_event().unwrap().event, "caught-up");
    let big = "x".repeat(8 << 10);
    let started = Instant::now();
    let mut last = 0;
    let reading = std::thread::spawn(move || {
        let mut got = 0u64;
        while got < 1000 {
            let f = reader.next_event().unwrap_or_else(|| panic!("the reader's stream ended after {got}"));
            assert_eq!(f.event, "Big", "the reading subscriber after {got}: {f:?}");
            got = f.id.unwrap();
        }
        got
    });
    for i in 0..100 {
        let events: Vec<(&str, Value)> = (0..10).map(|_| ("Big", json!({ "pad": big }))).collect();
        last = c.append(&format!("b-{i}"), json!("any"), &events)["last_position"].as_u64().unwrap();
    }
    let took = started.elapsed();
    assert_eq!(last, 1000);
    assert_eq!(reading.join().unwrap(), 1000, "the reading subscriber got everything");
    assert!(took < Duration::from_secs(30), "appends waited for a subscriber: {took:?}");
    // The stalled one: whatever was buffered, then where to resume.
    let mut seen = Vec::new();
    let end = loop {
        match stalled.next_event() {
            Some(f) if f.event == "fell-behind" => break f,
            Some(f) => seen.push(f.id.unwrap()),
            None => panic!("the stream ended without fell-behind"),
        }
    };
    let resume: Value = serde_json::from_str(&end.data).unwrap();
    let resume = resume["resume_after"].as_u64().unwrap();
    assert_eq!(end.id, Some(resume));
    assert!(resume < 1000, "{resume}");
    assert_eq!(seen, (1..=resume).collect::<Vec<_>>(), "everything before the resume point, in order");
    assert!(stalled.next().is_none(), "then the stream ends");
    // Resuming from there gives the rest.
    let mut again = Sse::open(&server.base, "/subscribe", Some(resume));
    assert_eq!(again.next_event().unwrap().id, Some(resume + 1));
}

#[test]
fn subscribers_past_the_limit_are_answered_503() {
    let server = Server::start_with(&[], |cfg| {
        cfg.subscribe.max_subscribers = 2;
        // The server notices a client has gone when it next writes to it.
        cfg.subscribe.heartbeat = Duration::from_millis(200);
    });
    let (a, b) = (Sse::open(&server.base, "/subscribe", None), Sse::open(&server.base, "/subscribe", None));
    let (status, body) = Sse::try_open(&server.base, "/subscribe", None).err().expect("a third is refused");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-subscribers"), "{body}");
    drop(a);
    // A slot is free once the server notices the client has gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Sse::try_open(&server.base, "/subscribe", None) {
            Ok(_) => break,
            Err((503, _)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{e:?}"),
        }
    }
    drop(b);
}
