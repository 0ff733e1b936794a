//! Builds coming and going under load: thousands of rebuild and verify
//! requests, back to back and concurrent, and hot reloads, while readers
//! of every read route and appenders keep going. The process stays up, no
//! request gets a 5xx, the read models verify consistent afterwards, and
//! no build's file is left behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{CUSTOMER_STATS, ORDER_SUMMARY, ORDER_SUMMARY_V2, Server, order_events};

const WAIT: Duration = Duration::from_secs(120);
const PROJECTIONS: [&str; 2] = ["order-summary", "customer-stats"];

/// Every status seen at or above 500, by route.
#[derive(Default)]
struct ServerErrors(Mutex<BTreeMap<String, Vec<(u16, String)>>>);

impl ServerErrors {
    fn check(&self, what: &str, status: u16, body: &str) {
        if status >= 500 {
            self.0.lock().unwrap().entry(what.to_owned()).or_default().push((status, body.to_owned()));
        }
    }

    fn assert_none(&self) {
        let errors = self.0.lock().unwrap();
        assert!(errors.is_empty(), "server errors: {errors:#?}");
    }
}

/// Sends a request and records a 5xx; the body as text.
fn send(errors: &ServerErrors, what: &str, req: ureq::Request, body: Option<&Value>) -> (u16, String) {
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let (status, text) = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("{what}: the server is unreachable (did it crash?): {e}"),
    };
    errors.check(what, status, &text);
    (status, text)
}

/// The files in each projection's directory and in `verify`'s scratch
/// directory that are not the serving build's (or `CURRENT`).
fn stray_files(data: &Path) -> Vec<String> {
    let root = data.join("projections");
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        let dir = entry.path();
        if entry.file_name() == ".verify" {
            stray.extend(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path().display().to_string()));
            continue;
        }
        let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
        let current = current.trim();
        for f in std::fs::read_dir(&dir).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            let serving = name == "CURRENT"
                || name == current
                || name == format!("{current}-wal")
                || name == format!("{current}-shm");
            if !serving {
                stray.push(dir.join(name).display().to_string());
            }
        }
    }
    stray.sort();
    stray
}

/// Waits until both projections serve the head with no build under way,
/// and until no stray file is left.
fn settle(c: &crate::support::Client, data: &Path) {
    let head = c.get("/healthz").1["head"].as_u64().unwrap();
    for name in PROJECTIONS {
        c.wait_projection(name, WAIT, |s| {
            s["status"] == "live" && s["position"] == head && s["rebuild"].is_null()
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stray = stray_files(data);
        if stray.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "files of builds left behind: {stray:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_consistent(c: &crate::support::Client) {
    for name in PROJECTIONS {
        let (status, report) = c.post(&format!("/projections/{name}/verify"), &json!({}));
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["consistent"], true, "{report}");
    }
}

#[test]
fn back_to_back_rebuilds_never_share_a_file_or_crash_the_server() {
    let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    let c = server.client();
    for i in 0..10 {
        c.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", 0));
    }
    let errors = ServerErrors::default();
    let agent = ureq::AgentBuilder::new().build();
    let (mut started, mut joined) = (0, 0);
    // One client, one request at a time: each request either starts a
    // build or joins the one under way, and says which.
    for i in 0..3000 {
        let name = PROJECTIONS[i % 2];
        let url = format!("{}/projections/{name}/rebuild", server.base);
        let (status, text) = send(&errors, "rebuild", agent.post(&url), None);
        assert_eq!(status, 202, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        match body["started"].as_bool() {
            Some(true) => started += 1,
            Some(false) => joined += 1,
            None => panic!("a rebuild answer says whether it started a build: {body}"),
        }
        assert!(body["build"].as_str().is_some_and(|b| b.ends_with(".db")), "{body}");
    }
    errors.assert_none();
    assert!(started > 0 && joined > 0, "{started} started, {joined} joined");
    settle(&c, &server.data_dir());
    assert_consistent(&c);
    // A restart finds only the serving builds.
    let server = Server::start_in(server.stop(), |_| {});
    let c = server.client();
    settle(&c, &server.data_dir());
}

fn rebuilds_verifies_and_reloads_under_readers_and_appenders_answer_no_5xx() {
    let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    let c = server.client();
    for i in 0..20 {
        c.append(&format!("order-{i}"), json!("no_stream"), &order_events(["ada", "bob"][i % 2], 1));
    }
    let base = server.base.clone();
    let errors = Arc::new(ServerErrors::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();

    // Readers of every read route of both projections.
    for r in 0..6 {
        let (base, errors, stop, reads) = (base.clone(), errors.clone(), stop.clone(), reads.clone());
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().build();
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (what, req, body): (&str, ureq::Request, Option<Value>) = match i % 7 {
                    0 => (
                        "query",
                        agent.post(&format!("{base}/projections/customer-stats/query")),
                        Some(json!({ "sql": "SELECT count(*) FROM customer_stats" })),
                    ),
                    1 => (
                        "query",
                        agent.post(&format!("{base}/projections/order-summary/query")),
                        Some(json!({ "sql": "SELECT * FROM order_summaries LIMIT 5" })),
                    ),
                    2 => (
                        "rows",
                        agent.get(&format!(
                            "{base}/projections/order-summary/tables/order_summaries?customer=ada&limit=5"
                        )),
                        None,
                    ),
                    3 => (
                        "row",
                        agent.get(&format!(
                            "{base}/projections/order-summary/tables/order_summaries/order-{}",
                            i % 20
                        )),
                        None,
                    ),
                    4 => (
                        "row",
                        agent.get(&format!("{base}/projections/customer-stats/tables/customer_stats/ada")),
                        None,
                    ),
                    5 => ("status", agent.get(&format!("{base}/projections/order-summary")), None),
                    _ => (
                        "dead-letters",
                        agent.get(&format!("{base}/projections/customer-stats/dead-letters")),
                        None,
                    ),
                };
                let (status, text) = send(&errors, what, req, body.as_ref());
                // A table may be missing for a moment only if a plugin
                // version lacked it; these never do.
                assert!(status == 200, "{what}: {status} {text}");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // An appender.
    {
        let (base, errors, stop) = (base.clone(), errors.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().build();
            let mut i = 100;
            while !stop.load(Ordering::Relaxed) && i < 400 {
                let url = format!("{base}/streams/order-{i}/events");
                let events: Vec<Value> =
                    order_events("cy", 1).iter().map(|(t, d)| json!({ "type": t, "data": d })).collect();
                let body = json!({ "expected_version": "no_stream", "events": events });
                let (status, text) = send(&errors, "append", agent.post(&url), Some(&body));
                assert_eq!(status, 201, "{text}");
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    // Three verifiers at once, alternating projections together.
    for _ in 0..3 {
        let (base, errors, stop) = (base.clone(), errors.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().build();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 60 {
                // All three on the same projection at once.
                let name = PROJECTIONS[n % 2];
                let url = format!("{base}/projections/{name}/verify");
                let (status, text) = send(&errors, "verify", agent.post(&url), Some(&json!({})));
                assert_eq!(status, 200, "{text}");
                n += 1;
            }
        }));
    }
    // Two rebuilders, back to back.
    let rebuilders: Vec<_> = (0..2)
        .map(|r| {
            let (base, errors) = (base.clone(), errors.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                for i in 0..1000 {
                    let name = PROJECTIONS[(r + i) % 2];
                    let url = format!("{base}/projections/{name}/rebuild");
                    let (status, text) = send(&errors, "rebuild", agent.post(&url), None);
                    assert_eq!(status, 202, "{text}");
                }
            })
        })
        .collect();
    // Hot reloads of order-summary: a new version, then the old again.
    for i in 0..6 {
        let plugin = if i % 2 == 0 { ORDER_SUMMARY_V2 } else { ORDER_SUMMARY };
        let tmp = server.plugins_dir().join(".next.wasm");
        std::fs::copy(plugin, &tmp).unwrap();
        std::fs::rename(&tmp, server.plugins_dir().join("order_summary.wasm")).unwrap();
        std::thread::sleep(Duration::from_millis(700));
    }
    for r in rebuilders {
        r.join().expect("a rebuilder failed");
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a reader, appender or verifier failed");
    }
    errors.assert_none();
    assert!(reads.load(Ordering::Relaxed) > 100, "the readers ran");
    settle(&c, &server.data_dir());
    assert_consistent(&c);
}

#[test]
fn files_of_abandoned_builds_are_removed_at_start() {
    let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS]);
    let c = server.client();
    c.append("order-1", json!("no_stream"), &order_events("ada", 1));
    settle(&c, &server.data_dir());
    let dir = server.stop();
    // What a crash in the middle of builds and verifications leaves.
    let projections = dir.path().join("data/projections");
    for (file, bytes) in [
        ("order-summary/1796498991723-d8f3b1c414f9-0123456789ab.db", &b"SQLite format 3\0"[..]),
        ("order-summary/1796498991723-d8f3b1c414f9-0123456789ab.db-wal", b"x"),
        ("order-summary/1796498991723-d8f3b1c414f9-0123456789ab.db-shm", b"x"),
        ("order-summary/1700000000000-aaaaaaaaaaaa.db-wal", b"x"),
        ("customer-stats/CURRENT.tmp", b"x"),
        (".verify/order-summary-9f9f9f9f9f9f.db", b"x"),
    ] {
        std::fs::create_dir_all(projections.join(file).parent().unwrap()).unwrap();
        std::fs::write(projections.join(file), bytes).unwrap();
    }
    let server = Server::start_in(dir, |_| {});
    let c = server.client();
    assert!(stray_files(&server.data_dir()).is_empty(), "{:#?}", stray_files(&server.data_dir()));
    settle(&c, &server.data_dir());
    let (_, row) = c.get("/projections/order-summary/tables/order_summaries/order-1");
    assert_eq!(row["row"]["status"], "paid", "the serving build was kept");
}

crate::on_both_logs!(rebuilds_verifies_and_reloads_under_readers_and_appenders_answer_no_5xx,);
