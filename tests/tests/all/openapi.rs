//! `GET /openapi.json` describes the API the server serves: every route it
//! documents answers (no "no route", no 405), the operations that need the
//! token say so, and the statuses any request can meet are listed. The
//! fuzzing run of `.ci/fuzz-api` checks every answer against it.

use serde_json::{Value, json};

use crate::support::{CUSTOMER_STATS, ORDER_SUMMARY, ORDERS, Server};

const METHODS: [&str; 2] = ["get", "post"];

fn document(c: &crate::support::Client) -> Value {
    let (status, doc) = c.get("/openapi.json");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    doc
}

/// Each documented operation: path, method, the operation.
fn operations(doc: &Value) -> Vec<(String, &'static str, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((path.clone(), m, op.clone()));
            }
        }
    }
    out
}

/// Status and first frame of a `text/event-stream` answer (or the whole
/// body of any other answer).
fn first_frame(c: &crate::support::Client, path: &str) -> (u16, String) {
    use std::io::BufRead;
    let agent = ureq::AgentBuilder::new().timeout_read(std::time::Duration::from_secs(30)).build();
    match agent.get(&format!("{}{path}", c.base)).call() {
        Ok(r) if r.header("content-type") == Some("text/event-stream") => {
            let status = r.status();
            let mut reader = std::io::BufReader::new(r.into_reader());
            let mut frame = String::new();
            while reader.read_line(&mut frame).unwrap() > 1 && !frame.ends_with("\n\n") {}
            (status, frame)
        }
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn every_documented_operation_is_served() {
    let server = Server::start(&[ORDER_SUMMARY, CUSTOMER_STATS, ORDERS]);
    let c = server.client();
    let doc = document(&c);
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "{} operations", ops.len());
    let mut ids = std::collections::BTreeSet::new();
    for (path, method, op) in &ops {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        for status in ["200", "201", "202"] {
            if let Some(r) = op["responses"].get(status) {
                assert!(r["description"].is_string(), "{method} {path} {status}");
            }
        }
        assert!(
            op["responses"].get("431").is_some(),
            "{method} {path} lists the statuses every request can meet"
        );
        // The route exists: whatever it answers, it is not the router's
        // "no route" nor a 405.
        let url = path.replace(['{', '}'], "");
        let streams = op["responses"]["200"]["content"].get("text/event-stream").is_some();
        let (got, text) = match *method {
            // A live stream never ends: its status and first frame are enough.
            "get" if streams => first_frame(&c, &url),
            "get" => c.get_text(&url),
            _ => c.post_text(&url, &json!({})),
        };
        assert_ne!(got, 405, "{method} {path}: {text}");
        assert!(!text.contains("\"no route for"), "{method} {path} is documented but not served: {text}");
    }
    // Without a token nothing asks for one.
    assert!(ops.iter().all(|(_, _, op)| op.get("security").is_none()));
    // Links name their target by `operationId`, as OpenAPI spells it.
    let links = &doc["paths"]["/streams/{stream_id}/events"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["append_read_stream"]["operationId"], "read_stream", "{links}");
}

#[test]
fn with_a_token_the_document_says_which_operations_need_it() {
    let server = Server::start_with(&[ORDER_SUMMARY], |cfg| {
        cfg.http.token = refract::http::Token::new("t0k");
    });
    let doc = document(&server.client());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, method, op) in operations(&doc) {
        let writes = method == "post" && path != "/projections/{name}/query"
            || path.ends_with("/dead-letters")
            || path.ends_with("/refused-commands")
            || path.ends_with("/snapshot");
        assert_eq!(op.get("security").is_some(), writes, "{method} {path}");
        assert_eq!(op["responses"].get("401").is_some(), writes, "{method} {path}");
    }
}
