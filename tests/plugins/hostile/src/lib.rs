//! A hostile projection: each event type is one attack on the host. The
//! host must contain every one — the projection is marked failed with a
//! clear reason, the host and the other projections keep serving, and
//! nothing outside this projection's own database changes.
//!
//! Attacks that probe rather than crash (SQL limits, WASI) return an error
//! whose message reports what each probe got, so the host's answer shows in
//! the projection's status; `ESCAPED` in a report means a probe got through.

use refract_sdk::{Db, Description, Error, Event, Projection, Result, SqlError, Value};

/// The projection.
pub struct Hostile;

/// The attacks, by event type.
pub const ATTACKS: &[&str] =
    &["Spin", "Slow", "Grow", "Recurse", "Panic", "LogFlood", "GiantRow", "GiantResult", "WasiProbe"];

impl Projection for Hostile {
    fn describe() -> Description {
        Description::new("hostile", "1")
            .event_types(ATTACKS.iter().copied().chain(["Fine"]))
            .migration("CREATE TABLE seen (position INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload BLOB)")
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        // Written first, so a partial batch would show if the host kept it.
        db.execute(
            "INSERT INTO seen (position, kind) VALUES (?1, ?2)",
            &[Value::Integer(event.position as i64), Value::Text(event.event_type.clone())],
        )
        .map_err(|e| Error::new(format!("{e:?}")))?;
        match event.event_type.as_str() {
            "Spin" => spin(),
            "Slow" => {
                let ms = event.data.trim_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(500);
                slow(std::time::Duration::from_millis(ms))
            }
            "Grow" => grow(),
            "Recurse" => {
                std::hint::black_box(recurse(0));
                Ok(())
            }
            "Panic" => panic!("the hostile projection panicked on purpose"),
            "LogFlood" => {
                let line = "x".repeat(8 << 10);
                for i in 0..1_000_000 {
                    refract_sdk::log::info(&format!("flood {i} {line}"));
                }
                Ok(())
            }
            "GiantRow" => Err(Error::new(giant_row(db))),
            "GiantResult" => Err(Error::new(giant_result(db))),
            "WasiProbe" => Err(Error::new(wasi_probe())),
            _ => Ok(()),
        }
    }
}

fn spin() -> Result<()> {
    let mut n: u64 = 1;
    loop {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        if n == 0 {
            return Ok(());
        }
    }
}

/// Busy for `d` by the monotonic clock: just over the budget, not forever.
fn slow(d: std::time::Duration) -> Result<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        std::hint::black_box(start.elapsed());
    }
    Ok(())
}

fn grow() -> Result<()> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xAB; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

fn outcome<T>(what: &str, r: std::result::Result<T, SqlError>) -> String {
    match r {
        Ok(_) => format!("{what}: ESCAPED"),
        Err(SqlError::Refused(m)) => format!("{what}: refused: {m}"),
        Err(SqlError::Failed(m)) => format!("{what}: failed: {m}"),
    }
}

fn giant_row(db: &Db) -> String {
    let big = "y".repeat(40 << 20);
    [
        outcome(
            "zeroblob of 1 GB",
            db.execute("UPDATE seen SET payload = zeroblob(1000000000) WHERE kind = 'GiantRow'", &[]),
        ),
        outcome(
            "40 MiB parameter",
            db.execute("UPDATE seen SET payload = ?1 WHERE kind = 'GiantRow'", &[Value::Text(big)]),
        ),
        outcome(
            "doubling in SQL",
            db.execute(
                "WITH RECURSIVE d(s, n) AS (SELECT 'z', 0 UNION ALL SELECT s || s, n + 1 FROM d WHERE n < 30)
                 UPDATE seen SET payload = (SELECT s FROM d ORDER BY n DESC LIMIT 1) WHERE kind = 'GiantRow'",
                &[],
            ),
        ),
    ]
    .join("\n")
}

fn giant_result(db: &Db) -> String {
    [
        outcome(
            "endless rows",
            db.query("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n", &[]),
        ),
        outcome(
            "huge rows",
            db.query(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100)
                 SELECT zeroblob(30000000) FROM n",
                &[],
            ),
        ),
    ]
    .join("\n")
}

fn wasi_probe() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut report = Vec::new();
    let mut probe = |what: &str, got: std::result::Result<String, String>| {
        report.push(match got {
            Ok(v) => format!("{what}: ESCAPED: {v}"),
            Err(e) => format!("{what}: denied: {e}"),
        });
    };
    let err = |e: std::io::Error| e.to_string();
    probe("read /etc/passwd", std::fs::read_to_string("/etc/passwd").map_err(err));
    probe("read events.db", std::fs::read("events.db").map(|b| format!("{} bytes", b.len())).map_err(err));
    probe("list /", std::fs::read_dir("/").map(|d| format!("{} entries", d.count())).map_err(err));
    probe("write a file", std::fs::write("loot.txt", b"x").map(|()| "written".into()).map_err(err));
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    probe("environment", if vars.is_empty() { Err("empty".into()) } else { Ok(vars.join(",")) });
    let args: Vec<String> = std::env::args().collect();
    probe("arguments", if args.is_empty() { Err("empty".into()) } else { Ok(args.join(" ")) });
    probe(
        "tcp connect 127.0.0.1:80",
        std::net::TcpStream::connect("127.0.0.1:80").map(|_| "connected".into()).map_err(err),
    );
    probe("tcp listen", std::net::TcpListener::bind("127.0.0.1:0").map(|_| "listening".into()).map_err(err));
    probe("udp bind", std::net::UdpSocket::bind("127.0.0.1:0").map(|_| "bound".into()).map_err(err));
    probe(
        "dns lookup",
        std::net::ToSocketAddrs::to_socket_addrs("localhost:80").map(|_| "resolved".into()).map_err(err),
    );
    probe("http request to 127.0.0.1:9", http_request());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    report.push(format!("wall clock: {} s since the epoch", now.as_secs()));
    let seed = std::hash::RandomState::new().build_hasher().finish();
    report.push(format!("random hash seed: {seed:016x}"));
    report.join("\n")
}

/// A GET through `wasi:http`'s outgoing handler.
#[cfg(target_family = "wasm")]
fn http_request() -> std::result::Result<String, String> {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "scheme refused".to_string())?;
    request.set_authority(Some("127.0.0.1:9")).map_err(|()| "authority refused".to_string())?;
    request.set_path_with_query(Some("/")).map_err(|()| "path refused".to_string())?;
    let response = handle(request, None).map_err(|e| format!("{e:?}"))?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(r))) => Ok(format!("status {}", r.status())),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        other => Err(format!("no response: {other:?}")),
    }
}

#[cfg(not(target_family = "wasm"))]
fn http_request() -> std::result::Result<String, String> {
    Err("not in a component".into())
}

refract_sdk::export_projection!(Hostile);
