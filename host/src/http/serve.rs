//! The server's connections: accepted up to a limit, each closed when its
//! client keeps the server waiting too long (for a request's headers, for
//! the next piece of its body, or idle between requests), all closed
//! gracefully at shutdown.
//!
//! `axum::serve` gives hyper no timer, so hyper's header timeout never
//! fires there and it accepts connections without bound: a client that
//! opens connections and sends nothing would hold a task and a file
//! descriptor each for as long as it likes, and take the descriptors the
//! log and the read models need.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower_http::timeout::RequestBodyTimeout;

/// One connection of the router behind the body timeout.
type Connection = hyper::server::conn::http1::Connection<
    TokioIo<tokio::net::TcpStream>,
    TowerToHyperService<RequestBodyTimeout<Router>>,
>;

/// How often, at most, a full set of connections is reported.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` within `options`' connection limits
/// (`max_connections`, `client_timeout`) until `shutdown` resolves, then
/// stops accepting, lets every connection finish the request it is in,
/// and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: &super::HttpOptions,
    shutdown: impl Future<Output = ()>,
) {
    let max_connections = options.max_connections.max(1);
    // hyper adds the timeout to the clock: past a day is a mistake, and
    // far past it would overflow.
    let client_timeout = options.client_timeout.min(Duration::from_secs(86_400));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(client_timeout);
    // A body that stops arriving fails its read, and the request with it
    // (408, see `extract`).
    let service = TowerToHyperService::new(RequestBodyTimeout::new(router, client_timeout));
    let slots = Arc::new(Semaphore::new(max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut warned: Option<Instant> = None;
    loop {
        if slots.available_permits() == 0 && warned.is_none_or(|t| t.elapsed() >= FULL_WARNING_EVERY) {
            warned = Some(Instant::now());
            tracing::warn!(
                max_connections,
                "every connection slot is taken; new connections wait until one closes"
            );
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let conn = http.serve_connection(TokioIo::new(stream), service.clone());
        connections.spawn(connection(conn, closing_rx.clone(), slot));
    }
    drop(listener);
    closing.send_replace(true);
    while connections.join_next().await.is_some() {}
}

/// Serves `conn` to its end, or until `closing`, then lets it finish the
/// request it is in; `_slot` is given back with it.
async fn connection(
    conn: Connection,
    mut closing: watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let mut conn = pin!(conn);
    // `wait_for`'s guard is not `Send`: it is dropped before the shutdown.
    let closed = tokio::select! {
        done = conn.as_mut() => Some(done),
        _ = closing.wait_for(|closing| *closing) => None,
    };
    let done = match closed {
        Some(done) => done,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = done {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// Errors of `accept` that concern one connection are skipped; any other
/// (out of file descriptors, say) is reported, and accepting pauses a
/// moment instead of spinning on it.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
