//! Reactors (sagas): the `fulfilment` reactor between the `orders` and
//! `inventory` handlers. The happy path ships, the compensation cancels; a
//! refused command is recorded and the reactor goes on (or pauses when
//! told to); `kill -9` between a decision and its command — and at random
//! moments under load — sends each command exactly once; a reactor loaded
//! onto a log with history, or rebuilt, does not answer that history again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash_recovery::{Child9, spawn_args};
use crate::on_both_logs;
use crate::support::{
    Client, FULFILMENT, INVENTORY, LogKind, ORDER_SUMMARY, ORDERS, Server, log_kind, plugins_dir,
    postgres::TestDb, whole_log,
};

const WAIT: Duration = Duration::from_secs(60);

fn add_stock(c: &Client, product: &str, quantity: i64) {
    let (status, body) =
        c.command("inventory", "AddStock", "inventory", json!({"product_id": product, "quantity": quantity}));
    assert_eq!(status, 200, "{body}");
}

/// Places and pays `order` for `quantity` of `product`.
fn order(c: &Client, order: &str, product: &str, quantity: i64) {
    let items = json!([{"product_id": product, "quantity": quantity, "price": 4.0}]);
    let (status, body) = c.command("orders", "PlaceOrder", order, json!({"customer": "ada", "items": items}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.command("orders", "PayOrder", order, json!({"payment_method": "card"}));
    assert_eq!(status, 200, "{body}");
}

/// The types of the events of `stream`, in order.
fn types_of(log: &[Value], stream: &str) -> Vec<String> {
    log.iter().filter(|e| e["stream_id"] == stream).map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// Waits until `order` is shipped or cancelled; its events.
fn settled(c: &Client, order: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = whole_log(c);
        let types = types_of(&log, order);
        if types.iter().any(|t| t == "OrderShipped" || t == "OrderCancelled") {
            return types;
        }
        assert!(Instant::now() < deadline, "{order} never settled: {types:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fulfilment reactor's command counters.
fn commands(c: &Client) -> Value {
    c.projection("fulfilment")["commands"].clone()
}

fn the_saga_ships_what_is_in_stock_and_cancels_what_is_not() {
    let server = Server::start(&[ORDERS, INVENTORY, FULFILMENT, ORDER_SUMMARY]);
    let c = server.client();
    assert_eq!(c.projection("fulfilment")["kind"], "reactor");
    assert_eq!(c.projection("order-summary")["kind"], "projection");
    add_stock(&c, "p-1", 3);
    order(&c, "order-1", "p-1", 2);
    assert_eq!(settled(&c, "order-1"), ["OrderPlaced", "OrderPaid", "OrderShipped"]);
    // Only one unit is left: the second order is paid but cannot be
    // served, so the saga cancels it.
    order(&c, "order-2", "p-1", 2);
    assert_eq!(settled(&c, "order-2"), ["OrderPlaced", "OrderPaid", "OrderCancelled"]);

    let log = whole_log(&c);
    assert_eq!(types_of(&log, "inventory"), ["StockAdded", "StockReserved", "StockUnavailable"]);
    let cancelled = log.iter().find(|e| e["type"] == "OrderCancelled").unwrap();
    assert_eq!(cancelled["data"]["reason"], "out of stock: p-1 (wanted 2, 1 free)");
    let reserved = log.iter().find(|e| e["type"] == "StockReserved").unwrap();
    assert_eq!(
        reserved["data"],
        json!({"order_id": "order-1", "items": [{"product_id": "p-1", "quantity": 2}]})
    );

    // Each command's events name the reactor and the event it answered,
    // and carry the correlation of the process on.
    let paid = log.iter().find(|e| e["type"] == "OrderPaid" && e["stream_id"] == "order-1").unwrap();
    assert_eq!(reserved["metadata"]["reactor"], "fulfilment");
    assert_eq!(reserved["metadata"]["causation_position"], paid["position"]);
    assert_eq!(reserved["metadata"]["correlation_id"], paid["metadata"]["correlation_id"]);
    let shipped = log.iter().find(|e| e["type"] == "OrderShipped").unwrap();
    assert_eq!(shipped["metadata"]["causation_position"], reserved["position"]);
    assert_eq!(shipped["metadata"]["correlation_id"], paid["metadata"]["correlation_id"]);

    let head = log.len() as u64;
    c.wait_projection("fulfilment", WAIT, |s| s["position"] == head && s["commands"]["pending"] == 0);
    assert_eq!(commands(&c), json!({"pending": 0, "sent": 4, "duplicates": 0, "refused": 0}));
    let rows = c.query("order-summary", "SELECT order_id, status FROM order_summaries ORDER BY order_id");
    assert_eq!(rows, [json!(["order-1", "shipped"]), json!(["order-2", "cancelled"])]);
    // The reactor's own tables are queried like a projection's.
    let stages = c.query("fulfilment", "SELECT order_id, stage FROM fulfilment_orders ORDER BY order_id");
    assert_eq!(stages, [json!(["order-1", "shipped"]), json!(["order-2", "cancelled"])]);
    let (_, metrics) = c.metrics();
    assert_eq!(
        metrics.get(r#"refract_reactor_commands_total{reactor="fulfilment",outcome="sent"}"#),
        Some(&4.0)
    );
}

on_both_logs!(the_saga_ships_what_is_in_stock_and_cancels_what_is_not);

/// Reserves stock for `order` by hand, before its payment: the saga's own
/// `ReserveStock` for it is then refused (`already_decided`).
fn reserve_by_hand(c: &Client, order: &str) {
    let (status, body) = c.command(
        "inventory",
        "ReserveStock",
        "inventory",
        json!({"order_id": order, "items": [{"product_id": "p-1", "quantity": 1}]}),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_refused_command_is_recorded_and_the_reactor_goes_on() {
    let server = Server::start(&[ORDERS, INVENTORY, FULFILMENT]);
    let c = server.client();
    add_stock(&c, "p-1", 10);
    reserve_by_hand(&c, "order-1");
    order(&c, "order-1", "p-1", 1);
    let s = c.wait_projection("fulfilment", WAIT, |s| s["commands"]["refused"] == 1);
    assert_eq!(s["status"], "live");
    let (status, body) = c.get("/projections/fulfilment/refused-commands");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    let refused = &body["commands"][0];
    assert_eq!(refused["handler"], "inventory");
    assert_eq!(refused["type"], "ReserveStock");
    assert_eq!(refused["stream_id"], "inventory");
    assert_eq!(refused["code"], "already_decided");
    assert_eq!(refused["index"], 0);
    let log = whole_log(&c);
    let paid = log.iter().find(|e| e["type"] == "OrderPaid").unwrap();
    assert_eq!(refused["position"], paid["position"]);
    // The reactor went on: the next order goes through.
    order(&c, "order-2", "p-1", 1);
    assert_eq!(settled(&c, "order-2"), ["OrderPlaced", "OrderPaid", "OrderShipped"]);
    // A projection has no refused commands to list.
    let server2 = Server::start(&[ORDER_SUMMARY]);
    let (status, body) = server2.client().get("/projections/order-summary/refused-commands");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn a_reactor_told_to_pause_on_refusals_waits_for_an_operator() {
    let server = Server::start_with(&[ORDERS, INVENTORY, FULFILMENT], |c| {
        c.pause_on_refused.insert("fulfilment".into());
    });
    let c = server.client();
    add_stock(&c, "p-1", 10);
    reserve_by_hand(&c, "order-1");
    order(&c, "order-1", "p-1", 1);
    c.wait_projection("fulfilment", WAIT, |s| s["commands"]["refused"] == 1 && s["status"] == "paused");
    // Paused: the next order's payment is not answered...
    order(&c, "order-2", "p-1", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(types_of(&whole_log(&c), "order-2"), ["OrderPlaced", "OrderPaid"]);
    // ...until an operator resumes it.
    let (status, body) = c.post("/projections/fulfilment/resume", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(settled(&c, "order-2"), ["OrderPlaced", "OrderPaid", "OrderShipped"]);
}

/// The `serve` arguments that put a child's log where the test's is.
fn log_args(db: &Option<Arc<TestDb>>) -> Vec<String> {
    db.as_ref().map(|d| vec!["--log".to_owned(), d.url()]).unwrap_or_default()
}

fn spawn(data: &Path, plugins: &Path, db: &Option<Arc<TestDb>>) -> Child9 {
    let args = log_args(db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_args(data, plugins, 50, "normal", &args)
}

/// Every paid order got exactly one decision from the inventory and
/// exactly one ending; the inventory decided nothing twice. The number of
/// paid orders.
fn each_command_took_effect_once(log: &[Value]) -> usize {
    let mut paid = BTreeMap::new();
    for e in log.iter().filter(|e| e["type"] == "OrderPaid") {
        paid.insert(e["stream_id"].as_str().unwrap().to_owned(), ());
    }
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    for e in log.iter().filter(|e| e["type"] == "StockReserved" || e["type"] == "StockUnavailable") {
        *decisions.entry(e["data"]["order_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    for e in log.iter().filter(|e| e["type"] == "OrderShipped" || e["type"] == "OrderCancelled") {
        *endings.entry(e["stream_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for order in paid.keys() {
        assert_eq!(decisions.get(order), Some(&1), "inventory decisions for {order}");
        assert_eq!(endings.get(order), Some(&1), "endings of {order}");
    }
    assert_eq!(decisions.len(), paid.len(), "decisions for orders that were never paid: {decisions:?}");
    paid.len()
}

/// Waits until the reactor has caught up with the log and sent everything.
fn quiet(c: &Client) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = whole_log(c);
        let s = c.projection("fulfilment");
        if s["position"] == log.len() as u64
            && s["commands"]["pending"] == 0
            && whole_log(c).len() == log.len()
        {
            return log;
        }
        assert!(Instant::now() < deadline, "the reactor never went quiet: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The serving database of the fulfilment reactor under `data`.
fn reactor_db(data: &Path) -> rusqlite::Connection {
    let dir = data.join("projections").join("fulfilment");
    let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    rusqlite::Connection::open(dir.join(current.trim())).unwrap()
}

/// The commands waiting in the reactor's database, as rows.
fn pending_commands(data: &Path) -> Vec<Vec<rusqlite::types::Value>> {
    let conn = reactor_db(data);
    let mut stmt = conn.prepare("SELECT * FROM refract_commands ORDER BY position, idx").unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect()).unwrap().map(Result::unwrap).collect()
}

/// Puts `rows` back among the reactor's waiting commands, as if it had
/// crashed right after sending them.
fn restore_pending(data: &Path, rows: &[Vec<rusqlite::types::Value>]) {
    let conn = reactor_db(data);
    for row in rows {
        let marks = vec!["?"; row.len()].join(", ");
        conn.execute(
            &format!("INSERT INTO refract_commands VALUES ({marks})"),
            rusqlite::params_from_iter(row),
        )
        .unwrap();
    }
}

fn kill_9_between_decision_and_command_sends_each_command_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = (log_kind() == LogKind::Postgres).then(TestDb::create);
    let data = dir.path().join("data");
    // Without the inventory handler, the reactor decides its commands and
    // cannot send them: they wait in its database.
    let plugins = plugins_dir(dir.path(), &[ORDERS, FULFILMENT]);
    let server = spawn(&data, &plugins, &db);
    let c = server.client.clone();
    for i in 0..10 {
        order(&c, &format!("order-{i}"), "p-1", 1);
    }
    c.wait_projection("fulfilment", WAIT, |s| s["commands"]["pending"] == 10);
    // The stock arrives before the handler does, so the waiting commands
    // meet it whenever they are sent.
    c.append("inventory", json!("any"), &[("StockAdded", json!({"product_id": "p-1", "quantity": 5}))]);
    server.kill9();
    let decided = pending_commands(&data);
    assert_eq!(decided.len(), 10);
    std::fs::copy(INVENTORY, plugins.join("inventory.wasm")).unwrap();
    let server = spawn(&data, &plugins, &db);
    let c = server.client.clone();
    let log = quiet(&c);
    assert_eq!(each_command_took_effect_once(&log), 10);
    // The first five orders got the stock, in order; the rest were
    // cancelled.
    for i in 0..10 {
        let ending = if i < 5 { "OrderShipped" } else { "OrderCancelled" };
        assert_eq!(
            types_of(&log, &format!("order-{i}")).last().map(String::as_str),
            Some(ending),
            "order-{i}"
        );
    }

    // A crash after the commands were sent but before they were marked
    // sent: they are all sent again, and all found done already.
    server.kill9();
    restore_pending(&data, &decided);
    let server = spawn(&data, &plugins, &db);
    let c = server.client.clone();
    c.wait_projection("fulfilment", WAIT, |s| {
        s["commands"]["duplicates"] == 10 && s["commands"]["pending"] == 0
    });
    assert_eq!(quiet(&c), log, "commands sent twice took effect twice");

    // Now kill it at random moments while orders keep coming: a command
    // sent but not yet marked sent is sent again after the restart, and
    // its idempotency key makes that a duplicate.
    add_stock(&c, "p-1", 1_000);
    let mut server = Some(server);
    let stop = Arc::new(AtomicBool::new(false));
    let base = Arc::new(std::sync::Mutex::new(c.base.clone()));
    let load = {
        let (stop, base) = (stop.clone(), base.clone());
        std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let url = base.lock().unwrap().clone();
                let id = format!("load-{n}");
                let items = json!([{"product_id": "p-1", "quantity": 1, "price": 1.0}]);
                let place = json!({"type": "PlaceOrder", "stream_id": id, "data": {"customer": "bob", "items": items}});
                let pay = json!({"type": "PayOrder", "stream_id": id, "data": {"payment_method": "card"}});
                let url = format!("{url}/commands/orders");
                if crate::support::call(&agent, "POST", &url, Some(&place)).is_some() {
                    let _ = crate::support::call(&agent, "POST", &url, Some(&pay));
                }
                n += 1;
            }
        })
    };
    for round in 0..4u64 {
        std::thread::sleep(Duration::from_millis(300 + 170 * round));
        server.take().unwrap().kill9();
        let s = spawn(&data, &plugins, &db);
        *base.lock().unwrap() = s.client.base.clone();
        server = Some(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let c = server.as_ref().unwrap().client.clone();
    let log = quiet(&c);
    let paid = each_command_took_effect_once(&log);
    assert!(paid > 10, "the load paid for orders while the server was killed: {paid}");
}

on_both_logs!(kill_9_between_decision_and_command_sends_each_command_once);

#[test]
fn a_reactor_answers_only_what_no_build_of_it_has_answered() {
    let server = Server::start(&[ORDERS, INVENTORY]);
    let c = server.client();
    add_stock(&c, "p-1", 10);
    order(&c, "order-1", "p-1", 1);
    // A reactor loaded onto a log with history learns from it but does
    // not answer it: order-1 was paid before the saga existed.
    let tmp = server.plugins_dir().join(".fulfilment.tmp");
    std::fs::copy(FULFILMENT, &tmp).unwrap();
    std::fs::rename(&tmp, server.plugins_dir().join("fulfilment.wasm")).unwrap();
    let deadline = Instant::now() + WAIT;
    while c.get("/projections/fulfilment").0 != 200 {
        assert!(Instant::now() < deadline, "the reactor was never loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let head = whole_log(&c).len() as u64;
    c.wait_projection("fulfilment", WAIT, |s| s["position"] == head);
    order(&c, "order-2", "p-1", 1);
    assert_eq!(settled(&c, "order-2"), ["OrderPlaced", "OrderPaid", "OrderShipped"]);
    let before = quiet(&c);
    assert_eq!(types_of(&before, "order-1"), ["OrderPlaced", "OrderPaid"]);
    assert_eq!(types_of(&before, "inventory"), ["StockAdded", "StockReserved"]);

    // A rebuild replays everything into a new build, which takes over
    // without answering again what the old one answered.
    let (status, body) = c.post("/projections/fulfilment/rebuild", &json!({}));
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + WAIT;
    loop {
        let s = c.projection("fulfilment");
        if s["rebuild"].is_null() && s["status"] == "live" && s["commands"]["sent"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the rebuild never took over: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = quiet(&c);
    assert_eq!(after, before, "the rebuilt reactor sent commands again");
    // The new build answers what comes next.
    order(&c, "order-3", "p-1", 1);
    assert_eq!(settled(&c, "order-3"), ["OrderPlaced", "OrderPaid", "OrderShipped"]);
    let stages = c.query("fulfilment", "SELECT order_id, stage FROM fulfilment_orders ORDER BY order_id");
    assert_eq!(
        stages,
        [json!(["order-1", "reserving"]), json!(["order-2", "shipped"]), json!(["order-3", "shipped"])]
    );
}
