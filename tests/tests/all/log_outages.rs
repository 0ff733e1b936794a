//! The shared log's failures: a node killed with `kill -9` under load, a
//! PostgreSQL restart under load (a private cluster the test starts), a
//! node cut off from PostgreSQL by a proxy that stops forwarding, and lost
//! notifications. Every acknowledged append is in the log exactly once,
//! writes answer 503 while the log is out of reach and reads keep serving,
//! and the nodes recover alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash_recovery::spawn_args;
use crate::crash_under_load::{Acked, positions};
use crate::support::postgres::{Cluster, Proxy, TestDb};
use crate::support::{
    CUSTOMER_STATS, Client, Home, ORDER_SUMMARY, Server, call, events_json, order_events, whole_log,
};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Tally {
    acked: Vec<Acked>,
    unavailable: u64,
    unexpected: Vec<String>,
}

/// Appenders against `bases` (round robin) until `stop`: each append is a
/// new stream, so a duplicate would show as a second copy of its events.
fn appenders(
    bases: Vec<String>,
    tag: &str,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Mutex<Tally>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    (0..4)
        .map(|t| {
            let (agent, bases, stop, tally, tag) = (agent.clone(), bases.clone(), stop.clone(), tally.clone(), tag.to_owned());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let base = &bases[(t + n) % bases.len()];
                    let stream = format!("{tag}-{t}-{n}");
                    let body = json!({ "expected_version": "no_stream", "events": events_json(&order_events("ada", (n % 3) as u32)) });
                    match call(&agent, "POST", &format!("{base}/streams/{stream}/events"), Some(&body)) {
                        // The node went away mid-request: not acknowledged.
                        None => std::thread::sleep(Duration::from_millis(20)),
                        Some((201, b)) => tally.lock().unwrap().acked.push(positions(&stream, &b)),
                        Some((503, _)) => {
                            tally.lock().unwrap().unavailable += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Some((s, b)) => tally.lock().unwrap().unexpected.push(format!("{stream}: {s} {b}")),
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged append holds its positions, once; positions are
/// gapless; no stream has more events than one append gave it.
fn assert_every_ack_once(c: &Client, acked: &[Acked]) {
    let log = whole_log(c);
    let positions: Vec<u64> = log.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (1..=log.len() as u64).collect::<Vec<_>>(), "gapless, in order");
    let mut per_stream = std::collections::HashMap::<&str, u64>::new();
    for e in &log {
        *per_stream.entry(e["stream_id"].as_str().unwrap()).or_default() += 1;
    }
    for a in acked {
        for p in a.first..=a.last {
            assert_eq!(log[(p - 1) as usize]["stream_id"], a.stream.as_str(), "acknowledged position {p}");
        }
        assert_eq!(per_stream[a.stream.as_str()], a.last - a.first + 1, "{} written once", a.stream);
    }
}

fn read_models_match(a: &Client, b: &Client) {
    let head = a.get("/healthz").1["head"].as_u64().unwrap();
    let rows = |c: &Client| {
        let (status, body) = c.post(
            "/projections/order-summary/query",
            &json!({ "sql": "SELECT * FROM order_summaries ORDER BY order_id", "min_position": head, "wait_ms": 30000, "max_rows": 10000 }),
        );
        assert_eq!(status, 200, "{body}");
        body["rows"].clone()
    };
    assert_eq!(rows(a), rows(b));
    for c in [a, b] {
        let (_, report) = c.post("/projections/order-summary/verify", &json!({}));
        assert_eq!(report["consistent"], true, "{report}");
    }
}

#[test]
fn a_node_killed_under_load_loses_no_acknowledged_append() {
    let db = TestDb::create();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let spawn = |dir: &tempfile::TempDir| {
        let plugins = crate::support::plugins_dir(dir.path(), &[ORDER_SUMMARY, CUSTOMER_STATS]);
        spawn_args(&dir.path().join("data"), &plugins, 100, "full", &["--log", &db.url()])
    };
    let a = spawn(&dirs[0]);
    let mut b = spawn(&dirs[1]);
    let tally = Arc::new(Mutex::new(Tally::default()));
    for cycle in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = appenders(
            vec![a.client.base.clone(), b.client.base.clone()],
            &format!("k{cycle}"),
            &stop,
            &tally,
        );
        std::thread::sleep(Duration::from_millis(400 + 250 * cycle as u64));
        b.kill9();
        std::thread::sleep(Duration::from_millis(200));
        b = spawn(&dirs[1]);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    }
    let tally = tally.lock().unwrap();
    assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);
    assert!(tally.acked.len() > 20, "the load ran: {} acknowledged", tally.acked.len());
    assert_every_ack_once(&a.client, &tally.acked);
    read_models_match(&a.client, &b.client);
}

#[test]
fn a_postgres_restart_under_load_loses_nothing_and_nodes_recover_alone() {
    let cluster = Cluster::start();
    let db = TestDb::create_on(&cluster.conninfo(), cluster.port);
    let nodes: Vec<Server> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            crate::support::plugins_dir(dir.path(), &[ORDER_SUMMARY]);
            Server::start_in(Home { dir, db: Some(db.clone()) }, |cfg| {
                cfg.log.postgres.timeout = Duration::from_secs(2);
                cfg.log.postgres.poll = Duration::from_millis(200);
            })
        })
        .collect();
    let clients: Vec<Client> = nodes.iter().map(Server::client).collect();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = appenders(nodes.iter().map(|n| n.base.clone()).collect(), "r", &stop, &tally);
    std::thread::sleep(Duration::from_millis(700));
    cluster.crash();
    // While it is down: writes 503 (counted by the appenders), health says
    // so, reads of read models keep serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients[0].get("/healthz").0 != 503 {
        assert!(Instant::now() < deadline, "/healthz never reported the log unavailable");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, health) = clients[0].get("/healthz");
    assert_eq!((status, health["status"].as_str()), (503, Some("log_unavailable")), "{health}");
    assert_eq!(clients[1].get("/projections").0, 200);
    let (status, rows) = clients[1].get("/projections/order-summary/tables/order_summaries?limit=5");
    assert_eq!(status, 200, "{rows}");
    std::thread::sleep(Duration::from_millis(800));
    cluster.resume();
    // Back, without anyone touching the nodes.
    let deadline = Instant::now() + Duration::from_secs(20);
    for c in &clients {
        while c.get("/healthz").0 != 200 {
            assert!(Instant::now() < deadline, "a node never came back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let acked_before = tally.lock().unwrap().acked.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally.lock().unwrap().acked.len() < acked_before + 20 {
        assert!(Instant::now() < deadline, "appends did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let tally = tally.lock().unwrap();
    assert!(tally.unexpected.is_empty(), "only 201 and 503: {:?}", tally.unexpected);
    assert!(tally.unavailable > 0, "some appends met the outage");
    assert_every_ack_once(&clients[0], &tally.acked);
    read_models_match(&clients[0], &clients[1]);
    drop(nodes);
    drop(db);
}

#[test]
fn a_node_cut_off_from_postgres_refuses_writes_and_keeps_serving_reads() {
    let db = TestDb::create();
    let proxy = Proxy::to(5432);
    let dir = tempfile::tempdir().unwrap();
    crate::support::plugins_dir(dir.path(), &[ORDER_SUMMARY, crate::support::ORDERS]);
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name);
    let server = Server::start_in(Home { dir, db: Some(db.clone()) }, move |cfg| {
        cfg.log_url = Some(url);
        cfg.log.postgres.timeout = Duration::from_secs(1);
        cfg.log.postgres.connect_timeout = Duration::from_millis(500);
        cfg.log.postgres.poll = Duration::from_millis(200);
    });
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &order_events("ada", 1));
    let head = r["last_position"].as_u64().unwrap();
    c.wait_projection("order-summary", WAIT, |s| s["position"] == head);

    proxy.cut();
    let started = Instant::now();
    let (status, body) = c.try_append("order-2", json!("no_stream"), &order_events("bob", 0));
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    assert!(body["error"].as_str().unwrap().contains("PostgreSQL"), "{body}");
    let (status, body) = c.command("orders", "PlaceOrder", "order-3", json!({ "customer": "cy" }));
    assert_eq!(status, 503, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get("/healthz").0 != 503 {
        assert!(Instant::now() < deadline, "/healthz never reported the cut");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reads of read models go on, with their position.
    let (status, row) =
        c.get(&format!("/projections/order-summary/tables/order_summaries/order-1?min_position={head}"));
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["position"], head);
    let (status, list) = c.get("/projections");
    assert_eq!(status, 200, "{list}");
    assert_eq!(c.query("order-summary", "SELECT count(*) FROM order_summaries"), vec![json!([1])]);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    let appended = loop {
        let (status, body) = c.try_append("order-2", json!("no_stream"), &order_events("bob", 0));
        if status == 201 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes never came back: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, row) = c.get(&format!(
        "/projections/order-summary/tables/order_summaries/order-2?min_position={}",
        appended["last_position"]
    ));
    assert_eq!(status, 200, "{row}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get("/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "/healthz never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn projections_catch_up_by_polling_when_notifications_are_lost() {
    let db = TestDb::create();
    let node = |tune: fn(&mut refract::Config)| {
        let dir = tempfile::tempdir().unwrap();
        crate::support::plugins_dir(dir.path(), &[ORDER_SUMMARY]);
        Server::start_in(Home { dir, db: Some(db.clone()) }, tune)
    };
    let writer = node(|_| {});
    // One node never listens: it follows by polling alone.
    let polling = node(|cfg| {
        cfg.log.postgres.notify = false;
        cfg.log.postgres.poll = Duration::from_millis(100);
    });
    // One listens, and loses its listening connection again and again.
    let listening = node(|cfg| cfg.log.postgres.poll = Duration::from_millis(300));
    let mut admin = db.client();
    let (w, p, l) = (writer.client(), polling.client(), listening.client());
    for i in 0..5 {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'refract-listen' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(killed > 0, "the listeners' connections were found");
        let r = w.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", 1));
        let at = r["last_position"].as_u64().unwrap();
        for c in [&p, &l] {
            let (status, row) = c.get(&format!(
                "/projections/order-summary/tables/order_summaries/order-{i}?min_position={at}&wait_ms=10000"
            ));
            assert_eq!(status, 200, "{row}");
        }
    }
    let _: Value = p.projection("order-summary");
}
