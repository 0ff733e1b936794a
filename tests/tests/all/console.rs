//! The console (`GET /ui`) in a real browser: Debian's headless Chromium
//! driven through chromedriver (WebDriver, with fantoccini). Each page is
//! used as an operator would — projections and their lag, a projection's
//! rows, SQL, dead letters, rebuild and verify, the log and its live tail,
//! a command sent from the form, the plugins — and saved as a screenshot
//! under `target/console-screenshots/`. Event data is shown as text; the
//! token gates write actions.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{
    CUSTOMER_STATS, ORDER_SUMMARY, ORDER_SUMMARY_V2, ORDERS, Server, free_port, order_events,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(60);

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: the console's tests need Debian's chromium and chromium-driver \
             (apt install chromium chromium-driver; .ci/run installs them)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver { child, port, profile: tempfile::tempdir().unwrap() }
}

async fn browser(d: &Driver) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", d.profile.path().display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a browser session")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Where screenshots go: `target/console-screenshots/`.
fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(b: &Browser, name: &str) {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a real picture of {name}");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// Opens `hash` of the console and waits for the page to be drawn.
async fn open(b: &Browser, base: &str, hash: &str) {
    b.goto(&format!("{base}/ui{hash}")).await.unwrap();
    // A hash change on the same document does not reload it.
    b.execute("if (location.hash !== arguments[0]) location.hash = arguments[0];", vec![json!(hash)])
        .await
        .unwrap();
    wait_js(b, "return document.querySelector('main[data-ready]') !== null", &format!("page {hash}")).await;
}

/// Waits until `script` returns true.
async fn wait_js(b: &Browser, script: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if b.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`, or "" while there is none.
async fn text(b: &Browser, css: &str) -> String {
    match b.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_text(b: &Browser, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = text(b, css).await;
        if pred(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "never: {what} (last text of {css}: {t:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(b: &Browser, css: &str) {
    b.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn type_into(b: &Browser, css: &str, value: &str) {
    let e = b.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

#[test]
fn an_operator_works_every_page_in_a_real_browser() {
    let d = driver();
    let server = Server::start_with(&[ORDER_SUMMARY, CUSTOMER_STATS, ORDERS], |cfg| {
        cfg.policies.insert("order-summary".into(), refract::projection::ErrorPolicy::DeadLetter);
        cfg.runner.max_attempts = 2;
        // One event per batch and a commit each: a rebuild long enough to watch.
        cfg.runner.batch_size = 1;
        cfg.runner.catch_up_commit = Duration::ZERO;
    });
    let c = server.client();
    let base = server.base.clone();
    runtime().block_on(async {
        let b = browser(&d).await;

        // Projections: both example projections; lag rises while one is
        // paused and falls to 0 once it runs.
        open(&b, &base, "#/projections").await;
        wait_text(&b, "tr[data-name='customer-stats'] td[data-k='status']", "customer-stats live", |t| t == "live").await;
        assert_eq!(c.post("/projections/order-summary/pause", &json!({})).0, 200);
        let mut head = 0;
        for i in 0..30 {
            head = c.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", 3))["last_position"]
                .as_u64()
                .unwrap();
        }
        wait_text(&b, "tr[data-name='order-summary'] td[data-k='lag']", "a lag", |t| t == head.to_string()).await;
        wait_text(&b, "tr[data-name='order-summary'] td[data-k='status']", "paused", |t| t == "paused").await;
        assert_eq!(c.post("/projections/order-summary/resume", &json!({})).0, 200);
        wait_text(&b, "tr[data-name='order-summary'] td[data-k='lag']", "lag back to 0", |t| t == "0").await;
        wait_text(&b, "tr[data-name='order-summary'] td[data-k='position']", "the head", |t| t == head.to_string())
            .await;
        wait_js(&b, "return document.querySelectorAll('#charts canvas').length >= 2", "a chart per projection").await;
        wait_js(&b, "return /\\d+ s shown/.test(document.querySelector('[data-chart=\"order-summary\"] .legend').textContent)", "samples charted").await;
        screenshot(&b, "projections").await;

        // A poison event: dead-lettered, shown with its event and error;
        // retrying with the same plugin keeps it.
        let poison =
            c.append("order-3", json!("exists"), &[("OrderShipped", json!({}))])["last_position"].as_u64().unwrap();
        open(&b, &base, "#/projection/order-summary").await;
        let dead = format!(".dead-letter[data-position='{poison}']");
        let shown = wait_text(&b, &dead, "the dead letter", |t| !t.is_empty()).await;
        assert!(shown.contains("OrderShipped") && shown.contains("carrier"), "{shown}");
        click(&b, "#retry").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!text(&b, &dead).await.is_empty(), "the same plugin fails it again");

        // The SQL console.
        type_into(&b, "#sql", "SELECT count(*) AS orders, sum(item_count) AS items FROM order_summaries").await;
        click(&b, "#sql-run").await;
        let result = wait_text(&b, "#sql-result", "an answer", |t| t.contains("row(s)")).await;
        assert!(result.contains("30") && result.contains("1 row(s)"), "{result}");

        // Rows with a filter.
        type_into(&b, "#filters input[data-column='order_id']", "order-7").await;
        click(&b, "#rows-load").await;
        let rows = wait_text(&b, "#rows", "the row", |t| t.contains("order-7")).await;
        assert!(rows.contains("1 row(s)"), "{rows}");

        // Verify, then a rebuild with its progress, ending live (over a
        // few thousand more events, a commit each).
        for _ in 0..3 {
            let items: Vec<(&str, Value)> =
                (0..1000).map(|_| ("ItemAdded", json!({ "product_id": "f", "quantity": 1, "price": 0.5 }))).collect();
            c.append("order-0", json!("any"), &items);
        }
        click(&b, "#verify").await;
        let v = wait_text(&b, "#verify-result", "verify's answer", |t| t.contains("consistent")).await;
        assert!(v.contains("consistent with a fresh rebuild"), "{v}");
        click(&b, "#rebuild").await;
        click(&b, "#confirm-yes").await;
        wait_js(&b, "return document.querySelector('#progress') !== null", "the rebuild's progress bar").await;
        let progress: Value = b.execute("return document.querySelector('#progress').max", vec![]).await.unwrap();
        assert!(progress.as_f64().unwrap() >= poison as f64, "{progress}");
        screenshot(&b, "projection-rebuilding").await;
        wait_js(
            &b,
            "return document.querySelector('#progress') === null && document.querySelector('#status-value').textContent === 'live'",
            "the rebuild ends live",
        )
        .await;

        // A fixed version: its build applies the event, no dead letter left.
        std::fs::copy(ORDER_SUMMARY_V2, server.plugins_dir().join("order_summary.wasm")).unwrap();
        wait_text(&b, "#no-dead-letters", "the dead letters cleared", |t| t == "No dead letters.").await;
        wait_text(&b, "#status-value", "live", |t| t == "live").await;
        screenshot(&b, "projection").await;

        // A command from the form, then its row in the summary.
        open(&b, &base, "#/handlers").await;
        b.execute(
            "const s = document.querySelector('#cmd-type'); s.value = 'PlaceOrder'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await
        .unwrap();
        type_into(&b, "#cmd-stream", "ui-order").await;
        type_into(&b, "#cmd-data", r#"{"customer": {"id": "grace", "name": "Grace Hopper"}, "items": [{"product_id": "p", "quantity": 4, "price": 2.5}]}"#).await;
        click(&b, "#cmd-send").await;
        let ok = wait_text(&b, "#cmd-result", "the command's events", |t| t.contains("accepted")).await;
        assert!(ok.contains("OrderPlaced") && ok.contains("Grace Hopper"), "{ok}");
        click(&b, "#cmd-send").await;
        wait_text(&b, "#cmd-result", "the rejection", |t| t.contains("rejected: order_exists")).await;
        screenshot(&b, "handlers").await;
        open(&b, &base, "#/projection/order-summary").await;
        type_into(&b, "#filters input[data-column='order_id']", "ui-order").await;
        click(&b, "#rows-load").await;
        let row = wait_text(&b, "#rows", "the command's row", |t| t.contains("ui-order")).await;
        assert!(row.contains("grace") && row.contains("10"), "{row}");

        // The log: pages, an event's data, the live tail.
        open(&b, &base, "#/events").await;
        wait_text(&b, "#events tbody", "events", |t| t.contains("OrderPlaced")).await;
        click(&b, "#events tr[data-position='1']").await;
        let detail = wait_text(&b, "#event-detail", "the event", |t| t.contains("data")).await;
        assert!(detail.contains("\"customer\": \"ada\""), "pretty-printed: {detail}");
        click(&b, "#tail-start").await;
        wait_text(&b, "#tail-state", "following", |t| t.starts_with("following")).await;
        c.append("tailed", json!("any"), &[("Tailed", json!({ "n": 1 }))]);
        wait_text(&b, "#tail tbody", "the new event", |t| t.contains("Tailed")).await;
        screenshot(&b, "events").await;

        // Plugins.
        open(&b, &base, "#/plugins").await;
        let plugins = wait_text(&b, "#plugins", "plugins", |t| t.contains("order-placed-v2")).await;
        for name in ["order-summary", "customer-stats", "orders", "upcaster OrderPlaced v1 → v2"] {
            assert!(plugins.contains(name), "{name}: {plugins}");
        }
        screenshot(&b, "plugins").await;
        b.close().await.unwrap();
    });
}

#[test]
fn event_data_is_shown_as_text_and_nothing_runs_or_leaves() {
    let d = driver();
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.policies.insert("order-summary".into(), refract::projection::ErrorPolicy::DeadLetter);
        cfg.runner.max_attempts = 1;
    });
    let c = server.client();
    let script = "<script>window.__xss = 'script'</script>";
    let image = "<img src=\"https://example.invalid/x.png\" onerror=\"window.__xss = 'img'\">";
    // As the pretty-printed JSON shows it (quotes escaped).
    let image_json = serde_json::to_string(image).unwrap();
    let image_json = &image_json[1..image_json.len() - 1];
    let bold = "<b>bold</b>";
    let stream = "order-x";
    // An order whose data carries both (at version 2, as the projection
    // reads it), an event whose type is markup, and a poison event that
    // carries it too (its dead letter shows its data and its error).
    let placed = json!({ "events": [{
        "type": "OrderPlaced",
        "schema_version": 2,
        "data": { "customer": { "id": script, "name": image }, "items": [], "note": "</pre><svg onload=\"window.__xss='svg'\">" },
    }, { "type": bold, "data": { "html": bold } }] });
    assert_eq!(c.post(&format!("/streams/{stream}/events"), &placed).0, 201);
    let poison = c.append(stream, json!("exists"), &[("OrderShipped", json!({ "carrier": 5, "x": image }))])
        ["last_position"]
        .as_u64()
        .unwrap();
    let base = server.base.clone();
    runtime().block_on(async {
        let b = browser(&d).await;
        open(&b, &base, "#/events").await;
        click(&b, "#events tr[data-position='1']").await;
        let data = wait_text(&b, "#event-detail .event-data", "the data", |t| t.contains("customer")).await;
        assert!(data.contains(script) && data.contains(image_json), "{data}");
        let listed = text(&b, "#events tbody").await;
        assert!(listed.contains(bold), "{listed}");
        click(&b, "#tail-start").await;
        wait_text(&b, "#tail-state", "following", |t| t.starts_with("following")).await;
        c.append(stream, json!("any"), &[("Note", json!({ "html": image }))]);
        wait_text(&b, "#tail tbody", "the tailed event", |t| t.contains("Note")).await;
        open(&b, &base, "#/projection/order-summary").await;
        let dead = wait_text(&b, &format!(".dead-letter[data-position='{poison}']"), "the dead letter", |t| !t.is_empty()).await;
        assert!(dead.contains(image_json), "{dead}");
        type_into(&b, "#sql", "SELECT customer FROM order_summaries").await;
        click(&b, "#sql-run").await;
        let rows = wait_text(&b, "#sql-result", "the row", |t| t.contains("1 row(s)")).await;
        assert!(rows.contains(script), "{rows}");
        open(&b, &base, "#/plugins").await;
        screenshot(&b, "xss-plugins").await;

        let ran = b.execute("return window.__xss === undefined ? null : window.__xss", vec![]).await.unwrap();
        assert_eq!(ran, Value::Null, "a payload ran");
        let elements = b
            .execute("return document.querySelectorAll('main script, main img, main svg, main b').length", vec![])
            .await
            .unwrap();
        assert_eq!(elements, json!(0), "markup from the data became elements");
        let elsewhere = b
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(elsewhere, json!([]), "requests left for other origins");
        b.close().await.unwrap();
    });
}

/// Gives the console `token` and waits for the page to be drawn with it.
async fn use_token(b: &Browser, token: &str) {
    type_into(b, "#token", token).await;
    click(b, "#token-use").await;
    wait_js(
        b,
        "return document.querySelector('main[data-ready]') && !document.querySelector('#pause').disabled",
        "write actions enabled",
    )
    .await;
}

#[test]
fn write_actions_need_the_token_and_refusals_are_shown() {
    let d = driver();
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.http.token = refract::http::Token::new("s3cret-token")
    });
    let base = server.base.clone();
    runtime().block_on(async {
        let b = browser(&d).await;
        open(&b, &base, "#/projection/order-summary").await;
        let note = wait_text(&b, "#auth-note", "the note", |t| !t.is_empty()).await;
        assert!(note.contains("need the token"), "{note}");
        let disabled = b.execute("return document.querySelector('#pause').disabled", vec![]).await.unwrap();
        assert_eq!(disabled, json!(true));
        screenshot(&b, "token-needed").await;

        // A wrong token: the action goes out and its 401 is shown.
        use_token(&b, "wrong").await;
        click(&b, "#pause").await;
        click(&b, "#confirm-yes").await;
        let refused = wait_text(&b, "#flash", "the refusal", |t| !t.is_empty()).await;
        assert!(refused.contains("401") && refused.contains("token"), "{refused}");
        assert_eq!(server.client().projection("order-summary")["status"], "live");

        // The right one: it works, and the token stays with the tab only.
        click(&b, "#token-forget").await;
        use_token(&b, "s3cret-token").await;
        click(&b, "#pause").await;
        click(&b, "#confirm-yes").await;
        wait_text(&b, "#status-value", "paused", |t| t == "paused").await;
        let stored = b
            .execute(
                "return [sessionStorage.getItem('refract-token'), localStorage.length, document.cookie]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(stored, json!(["s3cret-token", 0, ""]));
        b.close().await.unwrap();
    });
}
