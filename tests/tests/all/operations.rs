//! Operating projections: poison events under each error policy, skip,
//! dead letters re-driven by a fixed version, pause across restarts, manual
//! rebuilds, and Prometheus metrics.

use std::time::Duration;

use serde_json::json;

use crate::support::{CUSTOMER_STATS, ORDER_SUMMARY, ORDER_SUMMARY_V2, Server, order_events};

const WAIT: Duration = Duration::from_secs(60);

/// Appends an order, a shipment the projection cannot read (no carrier),
/// and another order; returns the poison event's position and the head.
fn append_poison(c: &crate::support::Client) -> (u64, u64) {
    c.append("order-1", json!("no_stream"), &order_events("ada", 0));
    let poison = c.append("order-1", json!("exists"), &[("OrderShipped", json!({}))]);
    let last = c.append("order-2", json!("no_stream"), &order_events("bob", 0));
    (poison["last_position"].as_u64().unwrap(), last["last_position"].as_u64().unwrap())
}

fn a_poison_event_stops_only_its_projection_until_skipped() {
    let server = Server::start_with(&[ORDER_SUMMARY, CUSTOMER_STATS], |cfg| cfg.runner.max_attempts = 2);
    let c = server.client();
    let (poison, head) = append_poison(&c);
    let s = c.wait_projection("order-summary", WAIT, |s| s["status"] == "failed");
    assert_eq!(s["error"]["position"], poison, "{s}");
    assert_eq!(s["position"], poison - 1, "stopped right before the poison event");
    assert!(s["error"]["message"].as_str().unwrap().contains("carrier"), "{s}");
    // The other projection read the same log and is not affected.
    c.wait_projection("customer-stats", WAIT, |s| s["status"] == "live" && s["position"] == head);

    let (status, body) = c.post("/projections/order-summary/skip", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["skipped"], poison);
    let s = c.wait_projection("order-summary", WAIT, |s| s["status"] == "live" && s["position"] == head);
    assert_eq!(s["dead_letters"], 1);
    let (_, body) = c.get("/projections/order-summary/dead-letters");
    assert_eq!(body["dead_letters"][0]["position"], poison);
    assert_eq!(body["dead_letters"][0]["type"], "OrderShipped");
    // Skipping again has nothing to skip.
    let (status, _) = c.post("/projections/order-summary/skip", &json!({}));
    assert_eq!(status, 409);
}

fn with_the_dead_letter_policy_it_never_stops_and_a_fixed_version_redrives() {
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.runner.max_attempts = 2;
        cfg.policies.insert("order-summary".into(), refract::projection::ErrorPolicy::DeadLetter);
    });
    let c = server.client();
    let (poison, head) = append_poison(&c);
    let s = c.wait_projection("order-summary", WAIT, |s| s["position"] == head && s["status"] == "live");
    assert_eq!(s["dead_letters"], 1, "{s}");
    assert_eq!(s["policy"], "dead-letter");
    let (_, body) = c.get("/projections/order-summary/dead-letters");
    assert_eq!(body["dead_letters"][0]["position"], poison);
    let (_, row) = c.get("/projections/order-summary/tables/order_summaries/order-1");
    assert_eq!(row["row"]["status"], "paid");

    // Retrying with the same plugin fails again and keeps the dead letter.
    let (status, _) = c.post("/projections/order-summary/dead-letters/retry", &json!({}));
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.projection("order-summary")["dead_letters"], 1);

    // A fixed version rebuilds from position 1, which applies the event.
    std::fs::copy(ORDER_SUMMARY_V2, server.plugins_dir().join("order_summary.wasm")).unwrap();
    let s = c.wait_projection("order-summary", WAIT, |s| s["version"] == "2.0.0" && s["status"] == "live");
    assert_eq!(s["dead_letters"], 0, "{s}");
    let (_, row) = c.get("/projections/order-summary/tables/order_summaries/order-1");
    assert_eq!(row["row"]["status"], "shipped");
}

fn a_poison_event_inside_a_catch_up_transaction_costs_only_itself() {
    // A backlog worked through in batches of 2, many to a transaction: the
    // batch with the poison event fails inside a transaction holding the
    // batches before it.
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.runner.batch_size = 2;
        cfg.runner.max_attempts = 2;
        cfg.policies.insert("order-summary".into(), refract::projection::ErrorPolicy::DeadLetter);
    });
    let c = server.client();
    let (status, _) = c.post("/projections/order-summary/pause", &json!({}));
    assert_eq!(status, 200);
    c.wait_projection("order-summary", WAIT, |s| s["status"] == "paused");
    let orders = 60;
    let mut poison = 0;
    let mut head = 0;
    for i in 0..orders {
        let r = c.append(&format!("order-{i}"), json!("no_stream"), &order_events("ada", 2));
        head = r["last_position"].as_u64().unwrap();
        if i == orders / 2 {
            let r = c.append("order-3", json!("exists"), &[("OrderShipped", json!({}))]);
            poison = r["last_position"].as_u64().unwrap();
        }
    }
    let (status, _) = c.post("/projections/order-summary/resume", &json!({}));
    assert_eq!(status, 200);

    let s = c.wait_projection("order-summary", WAIT, |s| s["status"] == "live" && s["position"] == head);
    assert_eq!(s["dead_letters"], 1, "{s}");
    assert_eq!(s["events_applied"], head - 1, "every other event applied once: {s}");
    let (_, body) = c.get("/projections/order-summary/dead-letters");
    assert_eq!(body["dead_letters"][0]["position"], poison);
    // Each order: one item placed, two added (two each) — five, once.
    let totals = c.query("order-summary", "SELECT count(*), sum(item_count) FROM order_summaries");
    assert_eq!(totals, vec![json!([orders, orders * 5])]);
    let (_, row) = c.get("/projections/order-summary/tables/order_summaries/order-3");
    assert_eq!(row["row"]["status"], "paid");

    // Transactions spanned batches: fewer commits than batches.
    let (_, text) = c.get_text("/metrics");
    let sample = |name: &str| -> u64 {
        let prefix = format!("refract_{name}_total{{projection=\"order-summary\"}} ");
        let line = text.lines().find_map(|l| l.strip_prefix(&prefix));
        line.unwrap_or_else(|| panic!("no {prefix} in /metrics")).parse().unwrap()
    };
    let (commits, batches) = (sample("projection_commits"), sample("projection_batches"));
    assert!(commits < batches, "{commits} commits for {batches} batches");
}

fn pause_survives_a_restart_and_resume_continues_from_the_checkpoint() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    let first = c.append("order-1", json!("no_stream"), &order_events("ada", 1));
    let at = first["last_position"].as_u64().unwrap();
    c.wait_projection("order-summary", WAIT, |s| s["position"] == at);
    let (status, _) = c.post("/projections/order-summary/pause", &json!({}));
    assert_eq!(status, 200);
    c.wait_projection("order-summary", WAIT, |s| s["status"] == "paused");
    c.append("order-2", json!("no_stream"), &order_events("bob", 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.projection("order-summary")["position"], at, "a paused projection applies nothing");

    let server = Server::start_in(server.stop(), |_| {});
    let c = server.client();
    let s = c.wait_projection("order-summary", WAIT, |s| s["status"] == "paused");
    assert_eq!(s["position"], at, "still paused after a restart");
    let last = c.append("order-3", json!("no_stream"), &order_events("cy", 0));
    let (status, _) = c.post("/projections/order-summary/resume", &json!({}));
    assert_eq!(status, 200);
    let s = c.wait_projection("order-summary", WAIT, |s| {
        s["status"] == "live" && s["position"] == last["last_position"]
    });
    assert_eq!(s["events_applied"], last["last_position"].as_u64().unwrap() - at);
    assert_eq!(c.query("order-summary", "SELECT count(*) FROM order_summaries"), vec![json!([3])]);
}

fn a_manual_rebuild_is_blue_green_and_yields_the_same_rows() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    for i in 0..50 {
        c.append(&format!("o-{i}"), json!("no_stream"), &order_events("ada", 2));
    }
    c.wait_projection("order-summary", WAIT, |s| s["lag"] == 0);
    let rows = c.query("order-summary", "SELECT * FROM order_summaries ORDER BY order_id");
    let (status, body) = c.post("/projections/order-summary/rebuild", &json!({}));
    assert_eq!(status, 202, "{body}");
    let s = c.wait_projection("order-summary", WAIT, |s| s["status"] == "live" && s["rebuild"].is_null());
    assert_eq!(s["events_applied"], 200, "rebuilt from position 1: {s}");
    assert_eq!(c.query("order-summary", "SELECT * FROM order_summaries ORDER BY order_id"), rows);
    let (status, _) = c.post("/projections/nope/rebuild", &json!({}));
    assert_eq!(status, 404);
}

fn metrics_are_prometheus_text_and_lag_falls_to_zero() {
    let server = Server::start(&[ORDER_SUMMARY]);
    let c = server.client();
    let r = c.append("order-1", json!("no_stream"), &order_events("ada", 3));
    c.wait_projection("order-summary", WAIT, |s| s["position"] == r["last_position"]);
    let (text, samples) = c.metrics();
    assert_eq!(samples["refract_projection_lag_events{projection=\"order-summary\"}"], 0.0);
    assert_eq!(samples["refract_projection_position{projection=\"order-summary\"}"], 5.0);
    assert_eq!(samples["refract_projection_events_applied_total{projection=\"order-summary\"}"], 5.0);
    assert_eq!(samples["refract_appends_total{outcome=\"ok\"}"], 1.0);
    // The append went through one group commit of the log's writer.
    assert_eq!(samples["refract_log_commits_total"], 1.0);
    assert_eq!(samples["refract_log_committed_appends_total"], 1.0);
    assert_eq!(samples["refract_log_commit_seconds_count"], 1.0);
    assert_eq!(samples["refract_log_failed_commits_total"], 0.0);
    assert!(samples.keys().any(|k| k.starts_with("refract_http_requests_total{method=\"POST\",route=\"/streams/{stream_id}/events\",status=\"201\"}")), "{text}");
    assert!(samples.keys().any(|k| k.starts_with("refract_projection_batch_seconds_bucket")), "{text}");
}

#[test]
fn request_metrics_keep_few_label_values_whatever_clients_send() {
    let server = Server::start(&[]);
    let c = server.client();
    // Any token is a method to HTTP, and any path a request: each distinct
    // label value would be a series kept for the life of the process.
    for i in 0..20 {
        let method = format!("X-METHOD-{i}");
        for path in ["/healthz".to_owned(), format!("/nope/{i}")] {
            let status = match ureq::request(&method, &format!("{}{path}", c.base)).call() {
                Err(ureq::Error::Status(s, _)) => s,
                other => panic!("{method} {path}: {other:?}"),
            };
            assert_eq!(status, if path == "/healthz" { 405 } else { 404 }, "{method} {path}");
        }
    }
    c.get("/healthz");
    let (text, samples) = c.metrics();
    assert!(!text.contains("X-METHOD"), "{text}");
    assert!(!text.contains("/nope/"), "{text}");
    assert_eq!(
        samples["refract_http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"}"],
        20.0
    );
    assert_eq!(
        samples["refract_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"}"],
        20.0
    );
    assert_eq!(samples["refract_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"], 1.0);
    assert_eq!(samples["refract_http_request_seconds_count{method=\"other\",route=\"unmatched\"}"], 20.0);
}

/// The database serving `name`, as `CURRENT` names it.
fn serving_db(server: &Server, name: &str) -> std::path::PathBuf {
    let dir = server.data_dir().join("projections").join(name);
    dir.join(std::fs::read_to_string(dir.join("CURRENT")).unwrap().trim())
}

fn verify_cli(server: &Server, name: &str) -> (bool, String) {
    let out = std::process::Command::new(crate::support::BIN)
        .args(["verify", name, "--url", &server.base])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn verify_finds_a_tampered_row_and_passes_a_healthy_read_model() {
    let server = Server::start_with(&[ORDER_SUMMARY, CUSTOMER_STATS], |cfg| {
        cfg.runner.max_attempts = 1;
        cfg.policies.insert("order-summary".into(), refract::projection::ErrorPolicy::DeadLetter);
    });
    let c = server.client();
    // A poison event the dead-letter policy skips: verify leaves it out too.
    let (_, head) = append_poison(&c);
    for name in ["order-summary", "customer-stats"] {
        c.wait_projection(name, WAIT, |s| s["position"] == head);
        let (status, r) = c.post(&format!("/projections/{name}/verify"), &json!({}));
        assert_eq!(status, 200, "{r}");
        assert_eq!((r["consistent"].as_bool(), r["position"].as_u64()), (Some(true), Some(head)), "{r}");
    }
    let (_, r) = c.post("/projections/order-summary/verify", &json!({}));
    assert_eq!(r["dead_letters"], 1, "{r}");
    assert_eq!(r["tables"][0]["table"], "order_summaries");
    assert_eq!(r["tables"][0]["live_rows"], 2);
    let (ok, out) = verify_cli(&server, "order-summary");
    assert!(ok && out.contains("consistent with a fresh rebuild"), "{out}");

    // Someone edits the read model behind the host's back.
    let db = rusqlite::Connection::open(serving_db(&server, "order-summary")).unwrap();
    db.execute("UPDATE order_summaries SET status = 'tampered' WHERE order_id = 'order-2'", []).unwrap();
    db.execute("DELETE FROM order_summaries WHERE order_id = 'order-1'", []).unwrap();
    drop(db);
    let (status, r) = c.post("/projections/order-summary/verify", &json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["consistent"], false, "{r}");
    let t = &r["tables"][0];
    assert_eq!((t["live_rows"].as_u64(), t["rebuilt_rows"].as_u64()), (Some(1), Some(2)), "{r}");
    assert_eq!((t["only_live"].as_u64(), t["only_rebuilt"].as_u64()), (Some(1), Some(2)), "{r}");
    assert!(t["only_live_sample"].to_string().contains("tampered"), "{r}");
    assert!(t["only_rebuilt_sample"].to_string().contains("order-1"), "{r}");
    let (ok, out) = verify_cli(&server, "order-summary");
    assert!(!ok && out.contains("DIFFERS from a fresh rebuild") && out.contains("tampered"), "{out}");
    // The other projection is untouched, and unknown names are 404.
    let (_, r) = c.post("/projections/customer-stats/verify", &json!({}));
    assert_eq!(r["consistent"], true, "{r}");
    let (status, _) = c.post("/projections/nope/verify", &json!({}));
    assert_eq!(status, 404);
    // Nothing of the scratch builds is left behind.
    let scratch = server.data_dir().join("projections/.verify");
    assert_eq!(std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0), 0);
}

crate::on_both_logs!(
    a_poison_event_stops_only_its_projection_until_skipped,
    with_the_dead_letter_policy_it_never_stops_and_a_fixed_version_redrives,
    a_poison_event_inside_a_catch_up_transaction_costs_only_itself,
    pause_survives_a_restart_and_resume_continues_from_the_checkpoint,
    a_manual_rebuild_is_blue_green_and_yields_the_same_rows,
    metrics_are_prometheus_text_and_lag_falls_to_zero,
    verify_finds_a_tampered_row_and_passes_a_healthy_read_model,
);
