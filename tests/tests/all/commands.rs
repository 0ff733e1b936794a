//! The write side through command handlers: decisions in the sandbox,
//! rejections with codes, conflict retries, idempotency, read-your-writes
//! into the read models, and handlers that misbehave.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BAD_HANDLER, ORDER_SUMMARY, ORDERS, Server};

fn item(q: i64) -> Value {
    json!({ "product_id": "p-1", "quantity": q, "price": 2.5 })
}

fn an_order_lifecycle_by_commands_reads_back_from_the_summary() {
    let server = Server::start(&[ORDERS, ORDER_SUMMARY]);
    let c = server.client();
    let (status, body) = c.get("/handlers");
    assert_eq!(status, 200);
    assert_eq!(body["handlers"][0]["name"], "orders");
    assert_eq!(
        body["handlers"][0]["command_types"],
        json!(["PlaceOrder", "AddItem", "PayOrder", "ShipOrder", "CancelOrder"])
    );

    let steps = [
        ("PlaceOrder", json!({ "customer": "ada", "items": [item(1)] }), "OrderPlaced"),
        ("AddItem", item(2), "ItemAdded"),
        ("PayOrder", json!({ "payment_method": "card" }), "OrderPaid"),
        ("ShipOrder", json!({ "carrier": "dhl" }), "OrderShipped"),
    ];
    let mut last = Value::Null;
    for (i, (command, data, event)) in steps.into_iter().enumerate() {
        let (status, body) = c.command("orders", command, "order-7", data);
        assert_eq!(status, 200, "{command}: {body}");
        assert_eq!(body["stream_version"], i as u64 + 1);
        assert_eq!(body["events"][0]["type"], event);
        assert_eq!(body["first_position"], body["last_position"]);
        let meta = &body["events"][0]["metadata"];
        assert_eq!(meta["command_id"], body["command_id"]);
        assert_eq!(meta["causation_id"], body["command_id"]);
        assert_eq!(meta["correlation_id"], body["command_id"]);
        last = body["last_position"].clone();
    }
    let (status, body) =
        c.get(&format!("/projections/order-summary/tables/order_summaries/order-7?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["status"], "shipped");
    assert_eq!(body["row"]["item_count"], 3);
    assert_eq!(body["row"]["total"], 7.5);

    // A client-given correlation id is carried on.
    let (status, body) = c.post(
        "/commands/orders",
        &json!({ "type": "PlaceOrder", "stream_id": "order-8", "data": { "customer": "bob" },
                 "metadata": { "correlation_id": "checkout-1", "user": "u1" } }),
    );
    assert_eq!(status, 200, "{body}");
    let meta = &body["events"][0]["metadata"];
    assert_eq!(meta["correlation_id"], "checkout-1");
    assert_eq!(meta["user"], "u1");
}

fn rejections_and_bad_commands_get_their_status_and_code_and_append_nothing() {
    let server = Server::start(&[ORDERS]);
    let c = server.client();
    let ok = |command: &str, stream: &str, data: Value| {
        let (status, body) = c.command("orders", command, stream, data);
        assert_eq!(status, 200, "{command}: {body}");
    };
    ok("PlaceOrder", "paid", json!({ "customer": "ada", "items": [item(1)] }));
    ok("PayOrder", "paid", json!({ "payment_method": "card" }));
    ok("PlaceOrder", "cancelled", json!({ "customer": "ada", "items": [item(1)] }));
    ok("CancelOrder", "cancelled", json!({}));
    ok("PlaceOrder", "empty", json!({ "customer": "ada" }));
    ok("PlaceOrder", "shipped", json!({ "customer": "ada", "items": [item(1)] }));
    ok("PayOrder", "shipped", json!({ "payment_method": "card" }));
    ok("ShipOrder", "shipped", json!({ "carrier": "ups" }));
    let (_, before) = c.get("/healthz");

    let cases = [
        ("PayOrder", "paid", json!({ "payment_method": "card" }), "already_paid"),
        ("PayOrder", "cancelled", json!({ "payment_method": "card" }), "order_cancelled"),
        ("PayOrder", "empty", json!({ "payment_method": "card" }), "order_empty"),
        ("ShipOrder", "empty", json!({ "carrier": "ups" }), "not_paid"),
        ("CancelOrder", "shipped", json!({}), "already_shipped"),
        ("PlaceOrder", "paid", json!({ "customer": "bob" }), "order_exists"),
        ("AddItem", "nowhere", item(1), "no_order"),
        ("AddItem", "paid", item(1), "order_not_open"),
        ("AddItem", "empty", item(0), "invalid_quantity"),
        ("PayOrder", "empty", json!({ "wrong": 1 }), "invalid_command"),
    ];
    for (command, stream, data, code) in cases {
        let (status, body) = c.command("orders", command, stream, data);
        assert_eq!(status, 422, "{command} on {stream}: {body}");
        assert_eq!(body["code"], code, "{command} on {stream}: {body}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    let (status, body) = c.command("nobody", "PlaceOrder", "x", json!({}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = c.command("orders", "Teleport", "x", json!({}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("PlaceOrder"), "{body}");
    let (status, body) = c.post("/commands/orders", &json!({ "type": "PlaceOrder" }));
    assert_eq!(status, 400, "{body}");
    let (status, body) = c.command("orders", "PlaceOrder", "", json!({ "customer": "ada" }));
    assert_eq!(status, 422, "{body}");

    let (_, after) = c.get("/healthz");
    assert_eq!(before["head"], after["head"], "rejected commands appended nothing");
}

fn sixteen_concurrent_commands_on_one_order_all_succeed_through_retries() {
    let server = Server::start(&[ORDERS, ORDER_SUMMARY]);
    let c = server.client();
    let (status, _) = c.command("orders", "PlaceOrder", "busy", json!({ "customer": "ada" }));
    assert_eq!(status, 200);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (c, barrier) = (c.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.command("orders", "AddItem", "busy", item(1))
            })
        })
        .collect();
    let mut last = 0;
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
        last = last.max(body["last_position"].as_u64().unwrap());
    }
    let (_, body) = c.get("/streams/busy");
    assert_eq!(body["events"].as_array().unwrap().len(), 17);
    let (status, body) =
        c.get(&format!("/projections/order-summary/tables/order_summaries/busy?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["item_count"], 16);
}

fn a_replayed_idempotency_key_returns_the_original_outcome_once() {
    let server = Server::start(&[ORDERS]);
    let c = server.client();
    let send = || {
        c.post(
            "/commands/orders",
            &json!({ "type": "PlaceOrder", "stream_id": "idem", "data": { "customer": "ada", "items": [item(1)] },
                     "idempotency_key": "place-idem-1" }),
        )
    };
    let (status, first) = send();
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["duplicate"], false);
    for _ in 0..5 {
        let (status, again) = send();
        assert_eq!(status, 200, "a replay is not a rejection: {again}");
        assert_eq!(again["duplicate"], true);
        for field in ["command_id", "stream_version", "first_position", "last_position", "events"] {
            assert_eq!(again[field], first[field], "{field}");
        }
    }
    let (_, body) = c.get("/streams/idem");
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "one set of events");
    // The same key on another handler's scope, or a new key, is a new command.
    let (status, body) = c.post(
        "/commands/orders",
        &json!({ "type": "AddItem", "stream_id": "idem", "data": item(1), "idempotency_key": "add-1" }),
    );
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(false)));
}

fn a_command_never_finds_what_an_earlier_command_left_in_memory() {
    // Each command leaves its data in a static and a 2 MiB heap buffer and
    // reports what the previous one left; instance slots are reused, so
    // this holds only if the host resets every page a command wrote.
    let server = Server::start(&[BAD_HANDLER]);
    let c = server.client();
    for i in 0..20 {
        let (status, body) =
            c.command("bad-handler", "Remember", &format!("tenant-{i}"), json!({ "secret": i }));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["events"][0]["data"], json!({ "previous": null }), "command {i}: {body}");
    }
}

fn a_handler_that_traps_loops_or_returns_garbage_appends_nothing() {
    let server = Server::start_with(&[BAD_HANDLER, ORDERS], |cfg| {
        cfg.sandbox.call_timeout = Duration::from_millis(300);
    });
    let c = server.client();
    for (command, data, needle) in [
        ("Trap", json!({}), "trapped"),
        ("Loop", json!({}), "timed out"),
        ("Malformed", json!({}), "event type must not be empty"),
        ("BadJson", json!({}), "event 1 (Fine) has invalid JSON data"),
        ("Flood", json!({ "count": 20_000 }), "20000 events in one append; the limit is 10000"),
    ] {
        let (status, body) = c.command("bad-handler", command, "victim", data);
        assert_eq!(status, 500, "{command}: {body}");
        assert_eq!(body["plugin"], "bad-handler", "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("bad-handler") && error.contains(needle), "{command}: {error}");
    }
    let (status, _) = c.get("/streams/victim");
    assert_eq!(status, 404, "nothing was appended");
    // The same handler and the others keep serving.
    let (status, body) = c.command("bad-handler", "Fine", "victim", json!({}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.command("orders", "PlaceOrder", "o-1", json!({ "customer": "ada" }));
    assert_eq!(status, 200, "{body}");
    // Thousands of events within the log's limits are one atomic append.
    let (status, body) = c.command("bad-handler", "Flood", "flood", json!({ "count": 5_000 }));
    assert_eq!(status, 200, "{body}");
    let (_, stream) = c.get("/streams/flood?limit=1000&from_version=4999");
    assert_eq!(stream["events"].as_array().unwrap().len(), 2, "{stream}");
    assert_eq!(stream["events"][1]["stream_version"], 5000);
}

crate::on_both_logs!(
    an_order_lifecycle_by_commands_reads_back_from_the_summary,
    rejections_and_bad_commands_get_their_status_and_code_and_append_nothing,
    sixteen_concurrent_commands_on_one_order_all_succeed_through_retries,
    a_replayed_idempotency_key_returns_the_original_outcome_once,
    a_command_never_finds_what_an_earlier_command_left_in_memory,
    a_handler_that_traps_loops_or_returns_garbage_appends_nothing,
);
