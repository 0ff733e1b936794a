//! The HTTP load generator: keep-alive HTTP/1.1 connections driven from one
//! thread by a single-threaded Tokio runtime (hyper's client). The load
//! shares the two cores with the server it measures, so it must cost little:
//! one thread instead of one per connection means the client's side no
//! longer wakes a thread for every answer, and requests are built before the
//! clock starts.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One request: a path with its query, and a JSON body to POST (or none, to
/// GET).
pub struct Request {
    pub path: String,
    pub body: Option<Bytes>,
}

impl Request {
    pub fn post(path: String, body: &serde_json::Value) -> Request {
        Request { path, body: Some(Bytes::from(body.to_string())) }
    }
}

/// For [`send_all`]: `connections` lists of `per_connection` POSTs each,
/// `make(connection, i)` giving the path and JSON body of each.
pub fn posts(
    connections: usize,
    per_connection: usize,
    make: impl Fn(usize, usize) -> (String, serde_json::Value),
) -> Vec<Vec<Request>> {
    (0..connections)
        .map(|c| {
            (0..per_connection)
                .map(|i| {
                    let (path, body) = make(c, i);
                    Request::post(path, &body)
                })
                .collect()
        })
        .collect()
}

/// `http://host:port` → `host:port`.
fn authority(base: &str) -> anyhow::Result<String> {
    let a = base.strip_prefix("http://").with_context(|| format!("not an http:// address: {base}"))?;
    Ok(a.trim_end_matches('/').to_owned())
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer; an error unless it is a
/// success.
async fn send(sender: &mut SendRequest<Full<Bytes>>, authority: &str, r: &Request) -> anyhow::Result<()> {
    sender.ready().await?;
    let builder = hyper::Request::builder().uri(r.path.as_str()).header(hyper::header::HOST, authority);
    let req = match &r.body {
        Some(b) => builder
            .method(hyper::Method::POST)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(b.clone()))?,
        None => builder.body(Full::new(Bytes::new()))?,
    };
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{} {}: {status} {}",
        if r.body.is_some() { "POST" } else { "GET" },
        r.path,
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// Opens `count` connections to `base`, then runs `f` with them (and the
/// address, for the `Host` header) on a single-threaded runtime of its own,
/// on a thread of its own (the caller may be inside another runtime).
fn with_connections<T, F, Fut>(base: &str, count: usize, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(String, Vec<SendRequest<Full<Bytes>>>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + 'static,
{
    let authority = authority(base)?;
    std::thread::Builder::new()
        .name("refract-load".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            tokio::task::LocalSet::new().block_on(&rt, async move {
                let mut senders = Vec::with_capacity(count);
                for _ in 0..count {
                    senders.push(connect(&authority).await?);
                }
                f(authority, senders).await
            })
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
}

/// What [`send_all`] measured.
pub struct Sent {
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// CPU milliseconds each of the process's threads used meanwhile, by
    /// name, busiest first (the load generator is `refract-load`).
    pub cpu_ms: Vec<(String, u64)>,
}

/// Sends every connection's requests in order on a connection of its own,
/// all connections at once; the wall time from the first request to the
/// last answer (connections are opened before the clock starts), and the
/// CPU time of every thread meanwhile.
pub fn send_all(base: &str, per_connection: Vec<Vec<Request>>) -> anyhow::Result<Sent> {
    with_connections(base, per_connection.len(), move |authority, senders| async move {
        let ticks = crate::sys::thread_ticks();
        let start = Instant::now();
        let tasks: Vec<_> = senders
            .into_iter()
            .zip(per_connection)
            .map(|(mut sender, requests)| {
                let authority = authority.clone();
                tokio::task::spawn_local(async move {
                    for r in &requests {
                        send(&mut sender, &authority, r).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let elapsed = start.elapsed();
        Ok(Sent { elapsed, cpu_ms: crate::sys::thread_ms(&ticks, &crate::sys::thread_ticks()) })
    })
}

/// GETs `path_of(i)` on `connections` connections for `d`, each with its
/// own run of `i`; the latency of every answered request.
pub fn get_for(
    base: &str,
    connections: usize,
    d: Duration,
    path_of: impl Fn(usize) -> String + Clone + Send + 'static,
) -> anyhow::Result<Vec<Duration>> {
    with_connections(base, connections, move |authority, senders| async move {
        let end = Instant::now() + d;
        let tasks: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(c, mut sender)| {
                let (authority, path_of) = (authority.clone(), path_of.clone());
                tokio::task::spawn_local(async move {
                    let mut lats = Vec::new();
                    let mut i = c * 7919;
                    while Instant::now() < end {
                        i += 1;
                        let r = Request { path: path_of(i), body: None };
                        let t = Instant::now();
                        send(&mut sender, &authority, &r).await?;
                        lats.push(t.elapsed());
                    }
                    anyhow::Ok(lats)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        Ok(all)
    })
}
