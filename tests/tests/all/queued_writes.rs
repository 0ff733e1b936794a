//! Statements a projection queues (`sql.write`) run in order, are read
//! back by the projection's own queries, and fail the batch at the event
//! that queued them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, TALLY};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn queued_writes_are_read_back_and_a_failing_one_stops_at_its_event() {
    let server = Server::start_with(&[], |cfg| cfg.runner.max_attempts = 2);
    let c = server.client();
    let mut last = json!(null);
    for (stream, kind) in [
        ("a", "Enter"),
        ("b", "Enter"),
        ("n", "Count"),
        ("c", "Enter"),
        ("n", "Count"),
        ("a", "Enter"),
        ("d", "Enter"),
    ] {
        last = c.append(stream, json!("any"), &[(kind, json!({}))]);
    }
    assert_eq!(last["last_position"], 7);
    // Loaded after the appends, the projection replays them in one batch:
    // the failure at position 6 comes after writes and queries of the
    // same batch.
    std::fs::copy(TALLY, server.plugins_dir().join("tally.wasm")).unwrap();
    let deadline = Instant::now() + WAIT;
    while c.get("/projections/tally").0 != 200 {
        assert!(Instant::now() < deadline, "tally never loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = c.wait_projection("tally", WAIT, |s| s["status"] == "failed");
    assert_eq!(s["error"]["position"], 6, "the duplicate key's event: {s}");
    let message = s["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("SQL failed") && message.contains("UNIQUE constraint failed: entries.key"),
        "{s}"
    );
    assert_eq!(s["position"], 5, "everything before the failing event is applied: {s}");
    // Each count saw the writes queued before it in the same batch.
    assert_eq!(
        c.query("tally", "SELECT position, keys FROM counts ORDER BY position"),
        [json!([3, 2]), json!([5, 3])]
    );
    assert_eq!(
        c.query("tally", "SELECT key FROM entries ORDER BY key"),
        [json!(["a"]), json!(["b"]), json!(["c"])]
    );
}

#[test]
fn queued_writes_are_guarded_like_any_statement() {
    for (kind, reason) in
        [("Sneak", "table refract_meta belongs to the host"), ("Vacuum", "VACUUM is not allowed")]
    {
        let server = Server::start_with(&[TALLY], |cfg| cfg.runner.max_attempts = 1);
        let c = server.client();
        c.append("a", json!("no_stream"), &[("Enter", json!({}))]);
        c.append("x", json!("no_stream"), &[(kind, json!({}))]);
        let s = c.wait_projection("tally", WAIT, |s| s["status"] == "failed");
        assert_eq!(s["error"]["position"], 2, "{kind}: {s}");
        let message = s["error"]["message"].as_str().unwrap();
        assert!(message.contains("refused") && message.contains(reason), "{kind}: {s}");
        assert_eq!(c.query("tally", "SELECT key FROM entries"), [json!(["a"])], "{kind}");
    }
}

#[test]
fn one_statement_per_call_still_runs_in_order_with_the_packed_ones() {
    // `sql.write`, what plugins built before `write-queued` send, beside
    // the SDK's packed statements in one batch.
    let server = Server::start(&[TALLY]);
    let c = server.client();
    for (stream, kind) in [("a", "Enter"), ("b", "Single"), ("c", "Enter"), ("n", "Count"), ("d", "Single")] {
        c.append(stream, json!("any"), &[(kind, json!({}))]);
    }
    c.wait_projection("tally", WAIT, |s| s["position"] == 5);
    assert_eq!(c.query("tally", "SELECT position, keys FROM counts"), [json!([4, 3])]);
    assert_eq!(
        c.query("tally", "SELECT key FROM entries ORDER BY key"),
        [json!(["a"]), json!(["b"]), json!(["c"]), json!(["d"])]
    );
}

#[test]
fn a_malformed_packed_statement_fails_its_event_and_nothing_after_it() {
    let server = Server::start_with(&[TALLY], |cfg| cfg.runner.max_attempts = 1);
    let c = server.client();
    c.append("a", json!("no_stream"), &[("Enter", json!({}))]);
    c.append("g", json!("no_stream"), &[("Garble", json!({}))]);
    let s = c.wait_projection("tally", WAIT, |s| s["status"] == "failed");
    assert_eq!(s["error"]["position"], 2, "{s}");
    let message = s["error"]["message"].as_str().unwrap();
    assert!(message.contains("malformed queued writes: unknown parameter tag 9"), "{s}");
    assert_eq!(c.query("tally", "SELECT key FROM entries"), [json!(["a"])]);
}
