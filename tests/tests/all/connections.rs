//! Connections that would hold the server's resources without using them:
//! clients that never finish their headers, idle keep-alive connections,
//! clients that never read their answers, more connections than the server
//! serves at once.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{ORDER_SUMMARY, Server};

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: refract\r\n\r\n";

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.strip_prefix("http://").unwrap();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one answer to [`REQUEST`] (its body is small JSON).
fn read_answer(s: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = vec![0; 4096];
    let mut got = String::new();
    while !(got.contains("\r\n\r\n") && got.trim_end().ends_with('}')) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    Ok(got)
}

/// Waits for the server to close `s`.
fn wait_closed(s: &mut TcpStream) {
    let start = Instant::now();
    let mut buf = [0; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("still open after {:?}: {e}", start.elapsed()),
    }
}

/// Stops `server` on a thread of its own and fails unless it has stopped
/// within 10 s (`when` says what it had open).
fn assert_stops(server: Server, when: &str) {
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(server.stop());
        done.send(()).unwrap();
    });
    if stopped.recv_timeout(Duration::from_secs(10)).is_err() {
        panic!("the server has not stopped after 10 s {when}");
    }
}

#[test]
fn a_connection_slow_with_its_headers_or_idle_too_long_is_closed() {
    let server = Server::start_with(&[], |cfg| cfg.http.client_timeout = Duration::from_millis(300));
    // Half a request head, then nothing.
    let mut slow = connect(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: refract\r\n").unwrap();
    // A kept-alive connection, idle after its answer.
    let mut idle = connect(&server);
    idle.write_all(REQUEST).unwrap();
    assert!(read_answer(&mut idle).unwrap().starts_with("HTTP/1.1 200"));
    // A client that sends its requests in time is served meanwhile.
    let mut busy = connect(&server);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        busy.write_all(REQUEST).unwrap();
        assert!(read_answer(&mut busy).unwrap().starts_with("HTTP/1.1 200"));
    }
    // Both are closed (a connection left open fails the read after 10 s).
    wait_closed(&mut slow);
    wait_closed(&mut idle);
    assert_eq!(server.client().get("/healthz").0, 200);
}

#[test]
fn a_read_waiting_for_its_position_outlasts_the_client_timeout() {
    let server =
        Server::start_with(&[ORDER_SUMMARY], |cfg| cfg.http.client_timeout = Duration::from_millis(300));
    let c = server.client();
    // The client timeout bounds the wait on the client, never the server's
    // own wait for a read model to catch up.
    let start = Instant::now();
    let (status, body) =
        c.get("/projections/order-summary/tables/order_summaries?min_position=5&wait_ms=1000");
    assert_eq!(status, 504, "{body}");
    assert!(start.elapsed() >= Duration::from_millis(1000), "answered after {:?}", start.elapsed());
}

#[test]
fn a_body_that_stops_arriving_is_answered_408_and_writes_nothing() {
    let server = Server::start_with(&[], |cfg| cfg.http.client_timeout = Duration::from_millis(300));
    let mut s = connect(&server);
    let body = br#"{"events": [{"type": "Created", "data": {}}]}"#;
    let head = format!(
        "POST /streams/s/events HTTP/1.1\r\nHost: refract\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..10]).unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--client-timeout-secs"), "{answer}");
    wait_closed(&mut s);
    let c = server.client();
    assert_eq!(c.get("/streams/s").0, 404, "nothing appended");
    // The same append sent in time is written.
    assert_eq!(c.post_raw("/streams/s/events", body).0, 201);
}

#[test]
fn connections_past_the_limit_wait_for_a_free_slot_and_shutdown_closes_idle_ones() {
    let server = Server::start_with(&[], |cfg| cfg.http.max_connections = 2);
    let mut first = connect(&server);
    let mut second = connect(&server);
    for s in [&mut first, &mut second] {
        s.write_all(REQUEST).unwrap();
        assert!(read_answer(s).unwrap().starts_with("HTTP/1.1 200"));
    }
    // The third connects (the kernel queues it) but is not served while
    // the two others stay open.
    let mut third = connect(&server);
    third.write_all(REQUEST).unwrap();
    third.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let waiting = read_answer(&mut third).unwrap_err();
    assert!(matches!(waiting.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{waiting}");
    drop(first);
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(read_answer(&mut third).unwrap().starts_with("HTTP/1.1 200"), "served once a slot is free");

    // Stopping the server closes the idle connections and returns.
    assert_stops(server, "with idle connections open");
    wait_closed(&mut second);
    wait_closed(&mut third);
}

/// A connection that sends requests without ever reading an answer, until
/// the server stops reading them: its answers have filled the socket's
/// buffers and the server is left waiting to write.
fn stalled(server: &Server) -> TcpStream {
    let mut s = connect(server);
    s.set_nonblocking(true).unwrap();
    let burst = REQUEST.repeat(1000);
    let mut blocked = 0;
    // Full for 100 ms in a row: the server is not reading.
    while blocked < 5 {
        match s.write(&burst) {
            Ok(_) => blocked = 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            // Closed already, having waited on the client (a slow machine
            // can take that long to notice).
            Err(e)
                if blocked > 0 && matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
            {
                break;
            }
            Err(e) => panic!("closed while sending: {e}"),
        }
    }
    s
}

/// Writes to `s` until that fails: the server has closed it.
fn wait_reset(s: &mut TcpStream) {
    s.set_nonblocking(false).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let e = loop {
        if let Err(e) = s.write_all(REQUEST) {
            break e;
        }
    };
    assert!(matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe), "still open: {e}");
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed_and_does_not_hold_up_shutdown() {
    let server = Server::start_with(&[], |cfg| {
        cfg.http.client_timeout = Duration::from_millis(300);
        cfg.http.max_connections = 1;
    });
    // Once the server's wait to write passes the client timeout it closes
    // the connection, which gives the only slot to the next client.
    let mut greedy = stalled(&server);
    let mut next = connect(&server);
    next.write_all(REQUEST).unwrap();
    assert!(read_answer(&mut next).unwrap().starts_with("HTTP/1.1 200"), "served once the slot is free");
    wait_reset(&mut greedy);
    drop(next);

    // A client stalled the same way does not keep the server from stopping.
    let mut other = stalled(&server);
    assert_stops(server, "with a stalled client");
    wait_reset(&mut other);
}

#[test]
fn connection_limits_out_of_range_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases =
        [["--max-connections", "0"], ["--client-timeout-secs", "0"], ["--client-timeout-secs", "86401"]];
    for [flag, value] in cases {
        let mut child = std::process::Command::new(crate::support::BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg("--plugins")
            .arg(dir.path().join("plugins"))
            .args([flag, value])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                child.kill().unwrap();
                panic!("{flag} {value}: the server started");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(!status.success(), "{flag} {value}");
        assert!(err.contains(&format!("invalid value '{value}' for '{flag}")), "{flag} {value}: {err}");
    }
}

/// Starts `refract serve` through `sh` after `ulimit <limits>` and waits
/// until it answers; returns the process and what it logged up to then.
#[cfg(target_os = "linux")]
fn serve_with_ulimit(dir: &std::path::Path, limits: &str) -> (std::process::Child, String) {
    let port = crate::support::free_port();
    let log = dir.join(format!("serve-{port}.log"));
    let script = format!(
        r#"ulimit {limits} && exec "$0" serve --listen 127.0.0.1:{port} --data "$1" --plugins "$2" > "$3" 2>&1"#
    );
    let child = std::process::Command::new("sh")
        .args(["-c", &script, crate::support::BIN])
        .args([dir.join("data"), dir.join("plugins"), log.clone()])
        .env("NO_COLOR", "1")
        .spawn()
        .unwrap();
    crate::support::wait_healthy(&format!("http://127.0.0.1:{port}"), Duration::from_secs(20));
    (child, std::fs::read_to_string(log).unwrap())
}

/// The soft and hard limits on open files of process `pid`.
#[cfg(target_os = "linux")]
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut fields = line["Max open files".len()..].split_whitespace();
    (fields.next().unwrap().to_string(), fields.next().unwrap().to_string())
}

#[cfg(target_os = "linux")]
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_a_tight_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A low soft limit under a higher hard one is raised to the hard one.
    let (mut child, _) = serve_with_ulimit(dir.path(), "-Sn 256");
    let (soft, hard) = open_files_limits(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(soft, hard, "the soft limit raised to the hard one");
    assert_ne!(soft, "256");

    // A hard limit too low for --max-connections (1024 by default) is
    // reported, and the server still starts.
    let (mut child, output) = serve_with_ulimit(dir.path(), "-n 600");
    let (soft, hard) = open_files_limits(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!((soft.as_str(), hard.as_str()), ("600", "600"));
    assert!(output.contains("the open-file limit leaves little room beside --max-connections"), "{output}");
    assert!(output.contains("limit=600"), "{output}");
}
