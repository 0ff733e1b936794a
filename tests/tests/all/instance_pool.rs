//! The pool of plugin instances (`--max-instances`): commands beyond their
//! share wait for a free instance instead of failing, a projection that
//! finds no instance left says so and how to fix it, and without a pool
//! everything runs as before.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{CUSTOMER_STATS, ORDER_SUMMARY, ORDERS, Server};

/// Sends `n` `PlaceOrder` commands at once, to streams of their own, and
/// returns each answer's last position.
fn place_orders_at_once(server: &Server, n: usize) -> Vec<u64> {
    let c = server.client();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (c, barrier) = (c.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.command("orders", "PlaceOrder", &format!("order-{i}"), json!({ "customer": "ada" }))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200, "{body}");
            body["last_position"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn commands_beyond_their_share_of_a_small_pool_wait_and_all_succeed() {
    // Four instances: one for commands, three for projections.
    let server = Server::start_with(&[ORDERS, ORDER_SUMMARY], |cfg| cfg.sandbox.max_instances = 4);
    let last = place_orders_at_once(&server, 24).into_iter().max().unwrap();
    let c = server.client();
    let (status, body) =
        c.get(&format!("/projections/order-summary/tables/order_summaries/order-23?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.query("order-summary", "SELECT order_id FROM order_summaries").len(), 24);
    assert_eq!(c.projection("order-summary")["status"], "live");
}

#[test]
fn a_projection_without_a_free_instance_says_to_raise_the_pool() {
    // Two instances: one for commands, one for projections — enough for
    // one of the two.
    let server =
        Server::start_with(&[ORDER_SUMMARY, CUSTOMER_STATS, ORDERS], |cfg| cfg.sandbox.max_instances = 2);
    let c = server.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (live, refused) = loop {
        let (status, body) = c.get("/projections");
        assert_eq!(status, 200, "{body}");
        let all = body["projections"].as_array().unwrap().clone();
        let live: Vec<&Value> = all.iter().filter(|p| p["status"] == "live").collect();
        let refused: Vec<&Value> =
            all.iter().filter(|p| p.to_string().contains("raise --max-instances")).collect();
        if live.len() + refused.len() == 2 {
            break (live.len(), refused.len());
        }
        assert!(std::time::Instant::now() < deadline, "neither live nor refused: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((live, refused), (1, 1));
    // Commands still have their instance.
    let (status, body) = c.command("orders", "PlaceOrder", "order-1", json!({ "customer": "ada" }));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn without_a_pool_commands_and_projections_run_as_before() {
    let server = Server::start_with(&[ORDERS, ORDER_SUMMARY], |cfg| cfg.sandbox.max_instances = 0);
    let last = place_orders_at_once(&server, 8).into_iter().max().unwrap();
    let (status, body) = server
        .client()
        .get(&format!("/projections/order-summary/tables/order_summaries/order-7?min_position={last}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["customer"], "ada");
}
