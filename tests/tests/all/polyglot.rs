//! Plugins in TypeScript and Python, built from `plugins/` by the SDKs of
//! `guest-sdk/`: the same 200 000 order events through the Rust,
//! TypeScript and Python `order-summary` give identical rows (prices with
//! 17 significant digits included), and bad data stops all three at the
//! same event; the `OrderPlaced` v1 → v2 upcaster in each of the three
//! languages gives the same rows; reactors in TypeScript and Python ship
//! each paid order once; the Python `orders` handler decides as the Rust
//! one does; a
//! plugin's stderr is its failure's reason; a component importing
//! `wasi:http` loads; and the SDKs' own tests pass natively.

use std::path::{Path, PathBuf};
use std::time::Duration;

use refract_plugin_build::{Lang, Sdks};
use serde_json::{Value, json};

use crate::support::{
    Client, HTTP_JS, Home, ORDER_PLACED_V1_UPCASTERS, ORDER_SUMMARY, ORDER_SUMMARY_PY, ORDER_SUMMARY_TS,
    ORDERS, ORDERS_PY, SHIPPER_PY, SHIPPER_TS, Server, plugins_dir,
};

const WAIT: Duration = Duration::from_secs(300);
const SUMMARIES: [&str; 3] = ["order-summary", "order-summary-ts", "order-summary-py"];

/// A server with `plugins` whose code cache is shared by the tests of
/// this file: each large component is compiled once per test run.
fn server(plugins: &[&str], tune: impl FnOnce(&mut refract::Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    plugins_dir(dir.path(), plugins);
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("polyglot-cache");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(&shared, dir.path().join("data/cache")).unwrap();
    Server::start_in(Home::new(dir), tune)
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prices whose shortest text has up to 17 significant digits: where a
/// parser that is not exact picks the neighbouring double.
const PRICES: [f64; 10] = [
    9.600000000000001,
    0.30000000000000004,
    1.0000000000000002,
    19.99,
    0.1,
    2.675,
    1e-7,
    123456.789,
    5.0,
    4.35,
];

fn line(rng: &mut Rng) -> Value {
    json!({
        "product_id": format!("p-{}", rng.below(50)),
        "quantity": 1 + rng.below(5),
        "price": PRICES[rng.below(PRICES.len() as u64) as usize],
    })
}

/// Appends about `total` order events: orders of 2 to 200 events each
/// (placed, items added, then paid and shipped or cancelled, or left
/// open), one append per order. Returns the head.
fn append_orders(c: &Client, total: u64, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let (mut appended, mut head, mut order) = (0, 0, 0);
    while appended < total {
        let mut events: Vec<(&str, Value)> = Vec::new();
        let items: Vec<Value> = (0..rng.below(4)).map(|_| line(&mut rng)).collect();
        let customer = ["ada", "bob", "cy", "dée", "eve"][rng.below(5) as usize];
        events.push(("OrderPlaced", json!({ "customer": customer, "items": items })));
        for _ in 0..rng.below(196) {
            events.push(("ItemAdded", line(&mut rng)));
        }
        match rng.below(3) {
            0 => {
                events.push(("OrderPaid", json!({ "payment_method": "card" })));
                events.push(("OrderShipped", json!({ "carrier": "dhl" })));
            }
            1 => events.push(("OrderCancelled", json!({ "reason": "changed mind" }))),
            _ => {}
        }
        let n = events.len().min((total - appended) as usize);
        events.truncate(n.max(1));
        let r = c.append(&format!("order-{order}"), json!("no_stream"), &events);
        head = r["last_position"].as_u64().unwrap();
        appended += events.len() as u64;
        order += 1;
    }
    head
}

/// Every row of a projection's `order_summaries`, by order id: order id,
/// customer, item count, total, status, last updated position.
fn rows(c: &Client, projection: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let sql = format!(
            "SELECT order_id, customer, item_count, total, status, last_updated_position FROM order_summaries \
             ORDER BY order_id LIMIT 2000 OFFSET {}",
            out.len()
        );
        let page = c.query(projection, &sql);
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[test]
fn the_same_orders_give_identical_rows_in_rust_typescript_and_python() {
    let server = server(&[ORDER_SUMMARY, ORDER_SUMMARY_TS, ORDER_SUMMARY_PY], |cfg| {
        cfg.runner.max_attempts = 2;
    });
    let c = server.client();
    let head = append_orders(&c, 200_000, 0x5eed_1234);
    assert!(head >= 200_000, "{head}");
    for p in SUMMARIES {
        c.wait_projection(p, WAIT, |s| s["position"] == head && s["status"] == "live");
    }
    let rust = rows(&c, "order-summary");
    assert!(rust.len() > 1000, "{} orders", rust.len());
    // Prices with 17 significant digits were read exactly: some total is
    // not what a sum of rounded prices gives.
    assert!(
        rust.iter().any(|r| r[3].as_f64().is_some_and(|t| t.to_string().len() >= 17)),
        "{:?}",
        &rust[..3]
    );
    for p in ["order-summary-ts", "order-summary-py"] {
        let other = rows(&c, p);
        assert_eq!(other.len(), rust.len(), "{p}: rows");
        for (a, b) in rust.iter().zip(&other) {
            // Compared as JSON values: numbers exactly, as doubles.
            assert_eq!(a, b, "{p} differs from order-summary");
        }
    }

    // Bad data: every one stops at the same event, saying why.
    let bad = c.append("order-bad", json!("no_stream"), &[("OrderPlaced", json!({ "items": [] }))]);
    let at = bad["last_position"].as_u64().unwrap();
    for p in SUMMARIES {
        let s = c.wait_projection(p, WAIT, |s| s["status"] == "failed");
        assert_eq!(s["error"]["position"], at, "{p}: {s}");
        assert_eq!(s["position"], at - 1, "{p}: {s}");
        let message = s["error"]["message"].as_str().unwrap();
        assert!(message.contains("customer"), "{p}: {message}");
    }
}

/// Appends `orders` orders, each placed at version 1 (`customer` a string)
/// or 2 (`{id, name}`) in turn, with items and sometimes a payment.
/// Returns the head.
fn append_mixed_orders(c: &Client, orders: u64, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut head = 0;
    for order in 0..orders {
        let items: Vec<Value> = (0..rng.below(4)).map(|_| line(&mut rng)).collect();
        let customer = ["ada", "bob", "cy", "dée", "eve \"e\""][rng.below(5) as usize];
        let (version, customer) = match order % 2 {
            0 => (1, json!(customer)),
            _ => (2, json!({ "id": customer, "name": customer })),
        };
        let mut events = vec![json!({
            "type": "OrderPlaced",
            "data": { "customer": customer, "items": items },
            "schema_version": version,
        })];
        for _ in 0..rng.below(6) {
            events.push(json!({ "type": "ItemAdded", "data": line(&mut rng) }));
        }
        if rng.below(2) == 0 {
            events.push(json!({ "type": "OrderPaid", "data": { "payment_method": "card" } }));
        }
        let (status, r) = c.post(
            &format!("/streams/order-{order}/events"),
            &json!({ "expected_version": "no_stream", "events": events }),
        );
        assert_eq!(status, 201, "{r}");
        head = r["last_position"].as_u64().unwrap();
    }
    head
}

#[test]
fn the_order_placed_upcaster_gives_the_same_rows_in_rust_typescript_and_python() {
    let mut results: Vec<(String, Vec<Value>)> = Vec::new();
    for upcaster in ORDER_PLACED_V1_UPCASTERS {
        let server = server(&[ORDER_SUMMARY, upcaster], |cfg| {
            cfg.runner.max_attempts = 2;
        });
        let c = server.client();
        let (_, loaded) = c.get("/upcasters");
        let name = loaded["upcasters"][0]["name"].as_str().unwrap_or_else(|| panic!("{loaded}")).to_owned();
        let head = append_mixed_orders(&c, 600, 0x0bad_cafe);
        c.wait_projection("order-summary", WAIT, |s| s["position"] == head && s["status"] == "live");
        let rows = rows(&c, "order-summary");
        assert_eq!(rows.len(), 600, "{name}");
        // Data at version 1 the upcaster cannot rewrite stops the projection
        // at that event, naming the upcaster and why.
        let (status, bad) = c.post(
            "/streams/order-bad/events",
            &json!({ "events": [{ "type": "OrderPlaced", "data": { "customer": { "id": "x" } }, "schema_version": 1 }] }),
        );
        assert_eq!(status, 201, "{bad}");
        let at = bad["last_position"].as_u64().unwrap();
        let s = c.wait_projection("order-summary", WAIT, |s| s["status"] == "failed");
        assert_eq!(
            (s["error"]["position"].as_u64(), s["position"].as_u64()),
            (Some(at), Some(head)),
            "{name}: {s}"
        );
        let message = s["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("upcaster {name} (OrderPlaced v1 → v2) failed")), "{message}");
        assert!(message.contains("expected a string (version 1)"), "{name}: {message}");
        results.push((name, rows));
    }
    let (rust, rest) = results.split_first().unwrap();
    assert_eq!(rust.0, "order-placed-v2");
    // Version 1 customers were rewritten by each: their rows are in too.
    assert!(rust.1.iter().any(|r| r[1] == "dée"), "{:?}", &rust.1[..3]);
    for (name, rows) in rest {
        assert_eq!(rows, &rust.1, "{name} gives other rows than {}", rust.0);
    }
}

#[test]
fn reactors_in_typescript_and_python_ship_each_paid_order_once() {
    for (reactor, name, carrier) in
        [(SHIPPER_TS, "shipper-ts", "ts-post"), (SHIPPER_PY, "shipper-py", "py-post")]
    {
        let server = server(&[ORDERS, reactor], |_| {});
        let c = server.client();
        let item = json!({ "product_id": "p-1", "quantity": 2, "price": 2.5 });
        for i in 0..6 {
            let stream = format!("order-{i}");
            for (command, data) in [
                ("PlaceOrder", json!({ "customer": "ada" })),
                ("AddItem", item.clone()),
                ("PayOrder", json!({ "payment_method": "card" })),
            ] {
                let (status, body) = c.command("orders", command, &stream, data);
                assert_eq!(status, 200, "{name}: {command} {stream}: {body}");
            }
        }
        // Each paid order is shipped by the reactor's command, once.
        let head = 6 * 4;
        let s = c.wait_projection(name, WAIT, |s| s["position"] == head && s["commands"]["pending"] == 0);
        assert_eq!(
            s["commands"],
            json!({ "pending": 0, "sent": 6, "duplicates": 0, "refused": 0 }),
            "{name}: {s}"
        );
        for i in 0..6 {
            let (_, stream) = c.get(&format!("/streams/order-{i}"));
            let events = stream["events"].as_array().unwrap();
            let shipped: Vec<&Value> = events.iter().filter(|e| e["type"] == "OrderShipped").collect();
            assert_eq!(shipped.len(), 1, "{name}: order-{i}: {stream}");
            assert_eq!(shipped[0]["data"]["carrier"], carrier, "{name}: {stream}");
        }
        let remembered = c.query(name, "SELECT count(*) FROM shipped");
        assert_eq!(remembered, vec![json!([6])], "{name}");
        // Paid again (appended as is): the reactor remembers the order and
        // sends nothing more.
        let again = c.append("order-0", json!("any"), &[("OrderPaid", json!({ "payment_method": "card" }))]);
        let at = again["last_position"].as_u64().unwrap();
        let s = c.wait_projection(name, WAIT, |s| s["position"] == at && s["commands"]["pending"] == 0);
        assert_eq!(s["commands"]["sent"], 6, "{name}: {s}");
    }
}

/// Status and body of a command, with the events' types and data or the
/// rejection's code: what a client of either handler sees.
fn outcome(c: &Client, handler: &str, stream: &str, command: &str, data: &Value) -> Value {
    let (status, body) = c.command(handler, command, stream, data.clone());
    let events: Vec<Value> = body["events"]
        .as_array()
        .map(|es| es.iter().map(|e| json!([e["type"], e["data"], e["stream_version"]])).collect())
        .unwrap_or_default();
    json!({ "status": status, "code": body["code"], "events": events })
}

#[test]
fn the_python_orders_handler_decides_as_the_rust_one_does() {
    let server = server(&[ORDERS, ORDERS_PY], |_| {});
    let c = server.client();
    let item = |q: i64, price: f64| json!({ "product_id": "p-1", "quantity": q, "price": price });
    let script: Vec<(&str, Value)> = vec![
        ("PayOrder", json!({ "payment_method": "card" })),
        ("PlaceOrder", json!({ "customer": " ", "items": [] })),
        ("PlaceOrder", json!({ "customer": "ada", "items": [item(1, 9.600000000000001)] })),
        ("PlaceOrder", json!({ "customer": "ada", "items": [] })),
        ("AddItem", item(0, 1.0)),
        ("AddItem", item(2, -1.0)),
        ("AddItem", item(3, 0.30000000000000004)),
        ("ShipOrder", json!({ "carrier": "dhl" })),
        ("PayOrder", json!({ "payment_method": "card" })),
        ("PayOrder", json!({ "payment_method": "card" })),
        ("AddItem", item(1, 1.0)),
        ("ShipOrder", json!({ "carrier": "dhl" })),
        ("CancelOrder", json!({})),
        ("ShipOrder", json!({ "carrier": "dhl" })),
    ];
    let mut rejections = 0;
    for (i, (command, data)) in script.iter().enumerate() {
        let rust = outcome(&c, "orders", "order-rs", command, data);
        let python = outcome(&c, "orders-py", "order-py", command, data);
        assert_eq!(rust, python, "step {i}: {command} {data}");
        rejections += usize::from(rust["status"] == 422);
    }
    assert!(rejections >= 8, "the script exercises the rules: {rejections} rejections");
    // Both streams hold the same bytes.
    let stream = |s: &str| -> Vec<Value> {
        let (status, body) = c.get(&format!("/streams/{s}"));
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().iter().map(|e| json!([e["type"], e["data"]])).collect()
    };
    assert_eq!(stream("order-rs"), stream("order-py"));
}

#[test]
fn a_plugins_stderr_is_the_reason_its_call_failed() {
    let server = server(&[ORDERS_PY], |_| {});
    let c = server.client();
    // An event the handler's `evolve` cannot read: a Python KeyError,
    // uncaught, traps the component after printing its traceback.
    c.append(
        "order-9",
        json!("no_stream"),
        &[
            ("OrderPlaced", json!({ "customer": "ada", "items": [] })),
            ("ItemAdded", json!({ "product_id": "p" })),
        ],
    );
    let (status, body) = c.command("orders-py", "PayOrder", "order-9", json!({ "payment_method": "card" }));
    assert_eq!(status, 500, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("stderr"), "{error}");
    assert!(error.contains("Traceback"), "{error}");
    assert!(error.contains("KeyError") && error.contains("quantity"), "{error}");
    // The handler still serves the next command.
    let (status, body) = c.command("orders-py", "PlaceOrder", "order-10", json!({ "customer": "bob" }));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_component_that_imports_wasi_http_loads_and_runs() {
    let server = server(&[HTTP_JS], |cfg| {
        cfg.runner.max_attempts = 2;
    });
    let c = server.client();
    let r = c.append("s", json!("no_stream"), &[("Shout", json!({ "word": "hi" })), ("Seen", json!({}))]);
    let head = r["last_position"].as_u64().unwrap();
    c.wait_projection("http-js", WAIT, |s| s["position"] == head);
    let seen = c.query("http-js", "SELECT position, type FROM seen ORDER BY position");
    assert_eq!(seen, vec![json!([1, "Shout"]), json!([2, "Seen"])]);
    // A JavaScript exception names its event.
    c.append("s", json!("any"), &[("Throw", json!({}))]);
    let s = c.wait_projection("http-js", WAIT, |s| s["status"] == "failed");
    assert_eq!(s["error"]["position"], 3, "{s}");
    assert!(s["error"]["message"].as_str().unwrap().contains("event 3 (Throw): asked to throw at 3"), "{s}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_sdks_and_the_example_plugins_pass_their_own_tests() {
    let sdks = Sdks::locate();
    let suites = [
        (Lang::TypeScript, root().join("guest-sdk/js/test"), "# pass 7"),
        (Lang::TypeScript, root().join("plugins/order-summary-ts"), "# pass 3"),
        (Lang::TypeScript, root().join("tests/plugins/order-placed-v2-ts"), "# pass 2"),
        (Lang::TypeScript, root().join("tests/plugins/shipper-ts"), "# pass 1"),
        (Lang::Python, root().join("guest-sdk/python"), "Ran 8 tests"),
        (Lang::Python, root().join("plugins/order-summary-py"), "OK"),
        (Lang::Python, root().join("plugins/orders-py"), "OK"),
        (Lang::Python, root().join("tests/plugins/order-placed-v2-py"), "Ran 2 tests"),
        (Lang::Python, root().join("tests/plugins/shipper-py"), "Ran 1 test"),
    ];
    // The SDK's declarations of the host's interfaces are what wit/ gives.
    let out = std::process::Command::new("node")
        .arg(root().join("guest-sdk/js/bin/wit-types.mjs"))
        .arg("--check")
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("matches wit/"), "{text}");
    for (lang, dir, passed) in suites {
        let out = sdks.test(lang, &dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(out.contains(passed), "{}: {out}", dir.display());
        assert!(!out.contains("# fail 1") && !out.contains("FAILED"), "{}: {out}", dir.display());
    }
}
