//! Following the head of the shared log: a connection that `LISTEN`s for
//! the notification every commit sends (the new head as its payload), and a
//! poller that reads the head every [`PostgresOptions::poll`]. A lost
//! notification (the listener's connection dropped, a pooler that does not
//! forward them) delays a reader by at most one poll; it never loses an
//! event, since readers read by position from the log itself. The poller
//! also tells whether PostgreSQL is reachable (`/healthz`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::{HealthState, PostgresOptions, connect, sql, unavailable};

/// Raises `head` to `position` (it never goes back).
fn advance(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|h| {
        let moved = position > *h;
        *h = (*h).max(position);
        moved
    });
}

pub(super) async fn run(
    config: tokio_postgres::Config,
    options: PostgresOptions,
    head: watch::Sender<u64>,
    health: Arc<HealthState>,
    shutdown: watch::Receiver<bool>,
) {
    let poller = poll(config.clone(), options, head.clone(), health, shutdown.clone());
    if options.notify {
        tokio::join!(poller, listen(config, options, head, shutdown));
    } else {
        poller.await;
    }
}

/// Reads the head every `options.poll` on a connection of its own.
async fn poll(
    config: tokio_postgres::Config,
    options: PostgresOptions,
    head: watch::Sender<u64>,
    health: Arc<HealthState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = None;
    let mut tick = tokio::time::interval(options.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if client.is_none() {
            match connect(&config, &options).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    health.poller(Some(unavailable(&e)));
                    continue;
                }
            }
        }
        let Some((c, _)) = &client else { continue };
        match tokio::time::timeout(options.timeout, c.query_one(sql::HEAD, &[])).await {
            Ok(Ok(row)) => {
                advance(&head, row.get::<_, i64>(0).max(0) as u64);
                health.poller(None);
            }
            Ok(Err(e)) => {
                health.poller(Some(unavailable(&e)));
                if let Some((_, task)) = client.take() {
                    task.abort();
                }
            }
            Err(_) => {
                health.poller(Some(unavailable(&format_args!("no answer within {:?}", options.timeout))));
                if let Some((_, task)) = client.take() {
                    task.abort();
                }
            }
        }
    }
}

/// `LISTEN`s for commits; reconnects, with backoff, whenever the
/// connection is lost.
async fn listen(
    config: tokio_postgres::Config,
    options: PostgresOptions,
    head: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            r = listen_once(&config, &options, &head) => r,
            _ = shutdown.changed() => return,
        };
        match outcome {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::debug!(error = %e, "PostgreSQL listener lost; polling covers the gap"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One listening connection, for as long as it lasts.
async fn listen_once(
    config: &tokio_postgres::Config,
    options: &PostgresOptions,
    head: &watch::Sender<u64>,
) -> Result<(), String> {
    let connected =
        tokio::time::timeout(options.connect_timeout, config.connect(tokio_postgres::NoTls)).await;
    let (client, mut connection) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".into()),
    };
    let (tx, mut notifications) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == sql::CHANNEL => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            }
        }
    });
    let listening = tokio::time::timeout(options.timeout, client.batch_execute(sql::LISTEN)).await;
    if !matches!(listening, Ok(Ok(()))) {
        driver.abort();
        return Err("cannot LISTEN".into());
    }
    // Commits made before the LISTEN took effect: read the head once.
    if let Ok(Ok(row)) = tokio::time::timeout(options.timeout, client.query_one(sql::HEAD, &[])).await {
        advance(head, row.get::<_, i64>(0).max(0) as u64);
    }
    while let Some(payload) = notifications.recv().await {
        if let Ok(position) = payload.parse::<u64>() {
            advance(head, position);
        }
    }
    match driver.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    }
}
