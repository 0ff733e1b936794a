//! Optimistic concurrency and group commit under concurrent writers: one
//! winner per expected version, concurrent appends sharing commits, and a
//! gapless global order.

use std::collections::HashMap;

use serde_json::json;

use crate::support::Server;

fn thirty_two_writers_with_the_same_expected_version_one_wins() {
    let server = Server::start(&[]);
    let c = server.client();
    c.append("contested", json!("no_stream"), &[("Created", json!({}))]);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let c = c.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                c.try_append("contested", json!(1), &[("Claimed", json!({ "by": i }))])
            })
        })
        .collect();
    let replies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = replies.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    for (status, body) in replies.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["expected"], 1);
        assert_eq!(body["actual"], 2);
    }
    let (_, body) = c.get("/streams/contested");
    assert_eq!(body["events"].as_array().unwrap().len(), 2);
    // 33 appends, the 32 concurrent ones answered by shared commits.
    let (text, m) = c.metrics();
    assert_eq!(m["refract_log_committed_appends_total"], 33.0, "{text}");
    assert!(m["refract_log_commits_total"] < 33.0, "one commit per append: {text}");
}

fn positions_stay_gapless_across_many_concurrent_streams() {
    let server = Server::start(&[]);
    let c = server.client();
    let writers = 8;
    let appends = 40;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut total = 0;
                for a in 0..appends {
                    let n = 1 + (w + a) % 4;
                    let events: Vec<_> =
                        (0..n).map(|i| ("Tick", json!({ "w": w, "a": a, "i": i }))).collect();
                    // Every writer owns two streams and alternates, with exact
                    // expected versions, so every append must succeed.
                    let stream = format!("w{w}-s{}", a % 2);
                    c.append(&stream, json!("any"), &events);
                    total += n;
                }
                total
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();

    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let (_, body) = c.get(&format!("/events?after={after}&limit=1000"));
        let events = body["events"].as_array().unwrap().clone();
        if events.is_empty() {
            break;
        }
        after = events.last().unwrap()["position"].as_u64().unwrap();
        seen.extend(events);
    }
    assert_eq!(seen.len(), total);
    let mut versions: HashMap<String, u64> = HashMap::new();
    for (i, e) in seen.iter().enumerate() {
        assert_eq!(e["position"], i as u64 + 1, "global positions are gapless and ordered");
        let v = versions.entry(e["stream_id"].as_str().unwrap().to_owned()).or_default();
        *v += 1;
        assert_eq!(e["stream_version"], *v, "stream versions are gapless");
    }
}

crate::on_both_logs!(
    thirty_two_writers_with_the_same_expected_version_one_wins,
    positions_stay_gapless_across_many_concurrent_streams,
);
