//! With a token, appends, commands and administration need
//! `Authorization: Bearer …`; reads are open unless protected; a server on
//! a non-loopback address refuses to start without a token.

use serde_json::json;

use crate::support::{BIN, ORDER_SUMMARY, ORDERS, Server};

const TOKEN: &str = "s3cret-token";

fn call(method: &str, url: &str, token: Option<&str>, body: Option<serde_json::Value>) -> u16 {
    let mut req = ureq::request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match result {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, r)) => {
            if code == 401 {
                let body: serde_json::Value = r.into_json().unwrap();
                assert!(body["error"].as_str().unwrap().contains("bearer token"), "{body}");
            }
            code
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn writes_commands_and_admin_need_the_token_reads_are_configurable() {
    let server = Server::start_with(&[ORDER_SUMMARY, ORDERS], |cfg| {
        cfg.http.token = refract::http::Token::new(TOKEN);
    });
    let base = &server.base;
    let append = json!({ "events": [{ "type": "OrderPlaced", "data": { "customer": "ada" } }] });
    let url = format!("{base}/streams/order-1/events");
    assert_eq!(call("POST", &url, None, Some(append.clone())), 401);
    assert_eq!(call("POST", &url, Some("wrong"), Some(append.clone())), 401);
    assert_eq!(call("POST", &url, Some(&TOKEN[..TOKEN.len() - 1]), Some(append.clone())), 401);
    assert_eq!(call("POST", &url, Some(TOKEN), Some(append)), 201);
    let command = json!({ "type": "PlaceOrder", "stream_id": "order-2", "data": { "customer": "bob" } });
    assert_eq!(call("POST", &format!("{base}/commands/orders"), None, Some(command.clone())), 401);
    assert_eq!(call("POST", &format!("{base}/commands/orders"), Some(TOKEN), Some(command)), 200);
    for admin in ["pause", "resume", "rebuild", "dead-letters/retry"] {
        assert_eq!(
            call("POST", &format!("{base}/projections/order-summary/{admin}"), None, None),
            401,
            "{admin}"
        );
    }
    assert_eq!(call("GET", &format!("{base}/projections/order-summary/dead-letters"), None, None), 401);
    assert_eq!(call("POST", &format!("{base}/projections/order-summary/pause"), Some(TOKEN), None), 200);
    // Reads stay open by default; health is always open.
    assert_eq!(call("GET", &format!("{base}/events"), None, None), 200);
    assert_eq!(call("GET", &format!("{base}/projections/order-summary"), None, None), 200);
    assert_eq!(call("GET", &format!("{base}/healthz"), None, None), 200);
    // Nothing was written by the refused requests.
    let (_, body) = server.client().get("/events");
    assert_eq!(body["events"].as_array().unwrap().len(), 2);

    let protected = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.http.token = refract::http::Token::new(TOKEN);
        cfg.http.protect_reads = true;
    });
    let base = &protected.base;
    assert_eq!(call("GET", &format!("{base}/events"), None, None), 401);
    assert_eq!(call("GET", &format!("{base}/projections"), None, None), 401);
    assert_eq!(
        call(
            "POST",
            &format!("{base}/projections/order-summary/query"),
            None,
            Some(json!({ "sql": "SELECT 1" }))
        ),
        401
    );
    assert_eq!(call("GET", &format!("{base}/events"), Some(TOKEN), None), 200);
    assert_eq!(call("GET", &format!("{base}/healthz"), None, None), 200);
}

#[test]
fn a_public_address_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--no-watch"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--plugins")
        .arg(dir.path().join("plugins"))
        .env_remove("REFRACT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0 without a token"), "{err}");
    assert!(!dir.path().join("data/events.db").exists(), "nothing was created");
}
