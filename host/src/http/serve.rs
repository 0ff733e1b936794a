//! The server's connections: accepted up to a limit, each closed when its
//! client keeps the server waiting too long (for a request's headers, for
//! the next piece of its body, idle between requests, or not reading the
//! answers), all closed gracefully at shutdown.
//!
//! `axum::serve` gives hyper no timer, so hyper's header timeout never
//! fires there and it accepts connections without bound: a client that
//! opens connections and sends nothing would hold a task and a file
//! descriptor each for as long as it likes, and take the descriptors the
//! log and the read models need.

use std::future::Future;
use std::io::IoSlice;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower_http::timeout::RequestBodyTimeout;

/// One connection of the router behind the body timeout.
type Connection = hyper::server::conn::http1::Connection<
    TokioIo<WriteTimeout<TcpStream>>,
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
        let stream = WriteTimeout::new(stream, client_timeout);
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

/// A stream whose writes fail once the peer has taken nothing for
/// `timeout`: a client that sends requests and never reads the answers
/// fills the socket's buffers, and the connection's task would wait on
/// its write for ever, holding its slot (with `--max-connections` of them,
/// no one else is served). Writes that go through cost nothing more; the
/// timer is armed only while a write waits.
pub(super) struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed at the first write that had to wait, disarmed by the next one
    /// that goes through; allocated the first time a write waits.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl<S> WriteTimeout<S> {
    pub(super) fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, timeout, stalled: None, armed: false }
    }

    /// `poll` is the inner stream's answer to a write: passed on when
    /// ready, and when pending turned into a `TimedOut` error once the
    /// writes have waited `timeout` in a row.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        let timeout = self.timeout;
        let was_armed = std::mem::replace(&mut self.armed, true);
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !was_armed {
            sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client read nothing of its answers for longer than the server waits (--client-timeout-secs)",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn writes_fail_once_the_peer_takes_nothing_for_the_timeout() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut ours = WriteTimeout::new(ours, TIMEOUT);
        ours.write_all(&[1; 64]).await.unwrap();
        let start = Instant::now();
        let e = ours.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= TIMEOUT, "failed after {:?}", start.elapsed());
        // What was written before is all there.
        let mut got = [0; 64];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1; 64]);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_taking_is_waited_for() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut ours = WriteTimeout::new(ours, TIMEOUT);
        // Drained 16 bytes at a time, every 40 ms: each wait is shorter
        // than the timeout, all of them together far longer.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(40)).await;
                match theirs.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let start = Instant::now();
        ours.write_all(&[7; 512]).await.unwrap();
        ours.shutdown().await.unwrap();
        drop(ours);
        assert!(start.elapsed() > 3 * TIMEOUT, "took {:?}", start.elapsed());
        assert_eq!(reader.await.unwrap(), vec![7; 512]);
    }
}
