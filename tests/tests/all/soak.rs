//! Soak: mixed load on the real binary for `REFRACT_SOAK_SECS` seconds
//! (default 60; RELIABILITY.md reports a 600-second run), with a hot reload
//! of order-summary a third of the way in and a rebuild of customer-stats at
//! two thirds. Zero answers other than the expected 409 and 422, zero lost
//! events, read models equal to a fresh rebuild, and memory flat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash_recovery::spawn_with;
use crate::crash_under_load::{Acked, positions};
use crate::support::{
    CUSTOMER_STATS, ORDER_SUMMARY, ORDER_SUMMARY_V2, ORDERS, call, events_json, order_events, plugins_dir,
    whole_log,
};

#[derive(Default)]
struct Tally {
    acked: Vec<Acked>,
    ok: u64,
    conflicts: u64,
    rejections: u64,
    errors: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: &str, r: Option<(u16, Value)>, stream: &str) -> Option<Value> {
        match r {
            Some((200 | 201, b)) => {
                self.ok += 1;
                if b.get("first_position").is_some_and(|p| !p.is_null()) {
                    self.acked.push(positions(stream, &b));
                }
                return Some(b);
            }
            Some((409, _)) => self.conflicts += 1,
            Some((422, _)) => self.rejections += 1,
            Some((s, b)) => self.errors.push(format!("{what}: {s} {b}")),
            None => self.errors.push(format!("{what}: no answer")),
        }
        None
    }
}

/// Resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn mixed_load_with_a_reload_and_a_rebuild_loses_nothing_and_stays_flat() {
    let secs: u64 = std::env::var("REFRACT_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = plugins_dir(dir.path(), &[ORDER_SUMMARY, CUSTOMER_STATS, ORDERS]);
    let server = spawn_with(&data, &plugins, 500, "full");
    let base = server.client.base.clone();
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();

    let mut threads = Vec::new();
    for t in 0..2 {
        let (agent, base, stop, tally) = (agent.clone(), base.clone(), stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let stream = format!("s-{t}-{n}");
                let events = events_json(&order_events(&format!("c{}", n % 17), (n % 4) as u32));
                let version = events.len();
                let url = format!("{base}/streams/{stream}/events");
                let body = json!({ "expected_version": "no_stream", "events": events });
                tally.lock().unwrap().record("append", call(&agent, "POST", &url, Some(&body)), &stream);
                if n.is_multiple_of(10) {
                    // A writer with a stale version: 409, nothing written.
                    let stale = json!({ "expected_version": version - 1, "events": [{ "type": "OrderCancelled", "data": {} }] });
                    tally.lock().unwrap().record("stale append", call(&agent, "POST", &url, Some(&stale)), &stream);
                }
            }
        }));
    }
    {
        let (agent, base, stop, tally) = (agent.clone(), base.clone(), stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let stream = format!("o-{n}");
                for (ty, data) in [
                    ("PlaceOrder", json!({ "customer": format!("k{}", n % 5) })),
                    ("AddItem", json!({ "product_id": "p-3", "quantity": 2, "price": 1.5 })),
                    ("PayOrder", json!({ "payment_method": "card" })),
                    ("AddItem", json!({ "product_id": "p-4", "quantity": 1, "price": 1.0 })), // 422
                ] {
                    let body = json!({ "type": ty, "stream_id": stream, "data": data });
                    let r = call(&agent, "POST", &format!("{base}/commands/orders"), Some(&body));
                    tally.lock().unwrap().record(ty, r, &stream);
                }
            }
        }));
    }
    {
        let (agent, base, stop, tally) = (agent.clone(), base.clone(), stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}/projections/order-summary/tables/order_summaries?limit=20&order=desc");
                tally.lock().unwrap().record("read", call(&agent, "GET", &url, None), "");
                let q = json!({ "sql": "SELECT customer, orders FROM customer_stats ORDER BY orders DESC LIMIT 5" });
                let url = format!("{base}/projections/customer-stats/query");
                tally.lock().unwrap().record("query", call(&agent, "POST", &url, Some(&q)), "");
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    let started = Instant::now();
    let total = Duration::from_secs(secs);
    std::thread::sleep(Duration::from_secs(3).min(total / 4));
    let rss_start = rss_kib(pid);
    let mut samples = vec![rss_start];
    let (mut reloaded, mut rebuilt) = (false, false);
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_millis(500));
        let elapsed = started.elapsed();
        if !reloaded && elapsed > total / 3 {
            let tmp = plugins.join(".order_summary.wasm");
            std::fs::copy(ORDER_SUMMARY_V2, &tmp).unwrap();
            std::fs::rename(&tmp, plugins.join("order_summary.wasm")).unwrap();
            reloaded = true;
        }
        if !rebuilt && elapsed > total * 2 / 3 {
            let r = call(&agent, "POST", &format!("{base}/projections/customer-stats/rebuild"), None);
            assert_eq!(r.map(|r| r.0), Some(202));
            rebuilt = true;
        }
        if samples.len() < 1 + (elapsed.as_secs() / 5) as usize {
            samples.push(rss_kib(pid));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let rss_end = rss_kib(pid);

    let c = &server.client;
    let log = whole_log(c);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["position"], i as u64 + 1, "positions have a gap");
    }
    let t = tally.lock().unwrap();
    assert!(
        t.errors.is_empty(),
        "{} unexpected answers, first: {:#?}",
        t.errors.len(),
        &t.errors[..t.errors.len().min(5)]
    );
    for a in &t.acked {
        for p in a.first..=a.last {
            assert_eq!(log[p as usize - 1]["stream_id"], a.stream.as_str(), "acknowledged {a:?} is missing");
        }
    }
    let head = log.len() as u64;
    let s = c.wait_projection("order-summary", Duration::from_secs(120), |s| s["position"] == head);
    assert_eq!(s["version"], "2.0.0", "the hot reload took over: {s}");
    for p in ["order-summary", "customer-stats"] {
        c.wait_projection(p, Duration::from_secs(120), |s| s["position"] == head && s["rebuild"].is_null());
        let (_, report) = c.post(&format!("/projections/{p}/verify"), &json!({}));
        assert_eq!(report["consistent"], true, "{p}: {report:#}");
    }
    let acked_events: u64 = t.acked.iter().map(|a| a.last - a.first + 1).sum();
    eprintln!(
        "soak {secs} s: {} requests answered 200/201, {} 409 and {} 422 as expected, 0 other; \
         {} acknowledged writes ({acked_events} events) all in a gapless log of {head}; \
         hot reload and rebuild done; RSS {} MiB at start, {} MiB at end (samples every 5 s, MiB: {:?})",
        t.ok,
        t.conflicts,
        t.rejections,
        t.acked.len(),
        rss_start / 1024,
        rss_end / 1024,
        samples.iter().map(|k| k / 1024).collect::<Vec<_>>(),
    );
    assert!(t.conflicts > 0 && t.rejections > 0, "the load exercised conflicts and rejections");
    // Flat: caches and the new build's pages may add some, a leak adds per
    // request; allow 50% + 48 MiB over the start.
    assert!(
        rss_end <= rss_start * 3 / 2 + 48 * 1024,
        "RSS grew from {} to {} MiB",
        rss_start / 1024,
        rss_end / 1024
    );
}
