//! The outbox: the log's events published to a NATS JetStream stream, in
//! log order, exactly once — even across a crash of the publisher, and
//! beyond the stream's dedupe window.
//!
//! The JetStream stream is kept one-to-one with what the publisher sent:
//! each message says which log and which position it carries (headers
//! `Refract-Log`, `Refract-Position`), and is published with
//! `Nats-Expected-Last-Sequence` set to the sequence of the message before
//! it. A publisher that starts (or restarts after a crash) reads the
//! stream's last message to know where it left off; a publish that would
//! duplicate one the stream already holds is refused by the server (the
//! expected sequence no longer matches) instead of stored twice. The
//! stream itself is the publisher's durable checkpoint. Each message also
//! carries `Nats-Msg-Id` (`<log id>:<position>`), so consumers can
//! deduplicate too.
//!
//! With several nodes on one log, exactly one publishes: the publisher
//! holds a lease through the log's backend, renewed while it runs; the
//! others wait. Even two holders at once (a lease that expired under a
//! stalled holder) cannot publish an event twice: the expected sequence
//! lets only one of them append. The broker down: the publisher retries
//! with backoff; appends never wait for it.

mod subject;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use futures_util::FutureExt;
use serde::Serialize;

pub use subject::Template;

use crate::log::{EventLog, RecordedEvent};
use crate::metrics::Metrics;

/// Where and what the outbox publishes.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The NATS server: `nats://HOST:4222`.
    pub url: String,
    /// The JetStream stream (created if missing, capturing the template's
    /// subjects).
    pub stream: String,
    /// Each event's subject: `{stream_id}`, `{type}` and `{position}` are
    /// replaced (by tokens safe in a subject).
    pub subject: Template,
    /// Only events of these types (all when `None`).
    pub types: Option<Vec<String>>,
    /// Publishes awaiting their acknowledgement at once.
    pub in_flight: usize,
    /// How long the publishing lease lasts unless renewed (every third of
    /// it): how long the other nodes wait to take over from a node that
    /// died while publishing.
    pub lease: Duration,
}

impl PublishOptions {
    /// Defaults for the broker at `url`: stream `REFRACT`, subjects
    /// `refract.{stream_id}.{type}`, every event.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "REFRACT".into(),
            subject: Template::parse("refract.{stream_id}.{type}")
                .unwrap_or_else(|_| Template::fixed("refract")),
            types: None,
            in_flight: 512,
            lease: Duration::from_secs(10),
        }
    }
}

/// What `GET /publishers` shows of a publisher.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublisherStatus {
    /// The JetStream stream it publishes to.
    pub stream: String,
    /// The NATS server.
    pub url: String,
    /// The subject template.
    pub subject: String,
    /// `starting`, `standby` (another node holds the lease), `publishing`
    /// (caught up, or catching up), `unavailable` (the broker cannot be
    /// reached; retrying).
    pub state: &'static str,
    /// The last log position the stream holds (of the types published).
    pub position: u64,
    /// The log's head, as this node knows it.
    pub head: u64,
    /// Events of the log not published yet (all types).
    pub lag: u64,
    /// Events published by this node since it started.
    pub published: u64,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

/// A running publisher.
pub struct Publisher {
    status: Mutex<PublisherStatus>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Publisher {
    /// Starts publishing `log` as `options` say, holding the lease as
    /// `holder`. Must be called inside a tokio runtime.
    pub fn start(log: EventLog, options: PublishOptions, holder: String, metrics: Metrics) -> Arc<Publisher> {
        let publisher = Arc::new(Publisher {
            status: Mutex::new(PublisherStatus {
                stream: options.stream.clone(),
                url: options.url.clone(),
                subject: options.subject.to_string(),
                state: "starting",
                position: 0,
                head: log.head(),
                lag: log.head(),
                published: 0,
                error: None,
            }),
            stop: tokio::sync::watch::channel(false).0,
        });
        let p = publisher.clone();
        tokio::spawn(async move { p.run(log, options, holder, metrics).await });
        publisher
    }

    /// Stops publishing: a publish under way is abandoned (the next
    /// publisher resumes from what the stream holds).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A snapshot of its status.
    pub fn status(&self) -> PublisherStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut PublisherStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    async fn run(self: Arc<Self>, log: EventLog, options: PublishOptions, holder: String, metrics: Metrics) {
        let lease = format!("publish:{}", options.stream);
        let mut failures = 0u32;
        let mut stop = self.stop.subscribe();
        loop {
            let outcome = tokio::select! {
                outcome = self.session(&log, &options, &lease, &holder, &metrics) => outcome,
                _ = stop.wait_for(|s| *s) => return,
            };
            let wait = match outcome {
                Session::LostLease => {
                    self.update(|s| s.state = "standby");
                    options.lease / 3
                }
                Session::Failed(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(stream = %options.stream, error = %e, "outbox publisher failing; retrying with backoff");
                    }
                    self.update(|s| {
                        s.state = "unavailable";
                        s.error = Some(e);
                    });
                    BACKOFF.saturating_mul(1 << failures.min(5)).min(MAX_BACKOFF)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One connection's worth of publishing: holds the lease, connects,
    /// finds where the stream left off, publishes until something fails.
    async fn session(
        &self,
        log: &EventLog,
        options: &PublishOptions,
        lease: &str,
        holder: &str,
        metrics: &Metrics,
    ) -> Session {
        match log.hold_lease(lease, holder, options.lease).await {
            Ok(true) => {}
            Ok(false) => return Session::LostLease,
            Err(e) => return Session::Failed(format!("cannot take the publishing lease: {e}")),
        }
        let client = match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(options.url.as_str())
            .await
        {
            Ok(c) => c,
            Err(e) => return Session::Failed(format!("cannot connect to {}: {e}", options.url)),
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(options.in_flight.max(1))
            .build(client);
        let mut stream = match js
            .get_or_create_stream(jetstream::stream::Config {
                name: options.stream.clone(),
                subjects: vec![options.subject.capture()],
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Session::Failed(format!("cannot open the JetStream stream {}: {e}", options.stream));
            }
        };
        let (mut last_seq, mut position) = match resume_point(&mut stream, log.id()).await {
            Ok(r) => r,
            Err(e) => return Session::Failed(e),
        };
        self.update(|s| {
            s.state = "publishing";
            s.position = position;
            s.error = None;
        });
        let mut head = log.subscribe();
        let mut renew = tokio::time::interval(options.lease / 3);
        renew.reset();
        // Positions of the types published are not consecutive: `scanned`
        // is how far the log has been read, `position` the last published.
        let mut scanned = position;
        loop {
            let target = *head.borrow_and_update();
            self.update(|s| {
                s.head = target;
                s.lag = target.saturating_sub(scanned);
            });
            metrics.publisher(&options.stream, scanned, target);
            if scanned >= target {
                tokio::select! {
                    r = head.changed() => if r.is_err() { return Session::Failed("the log closed".into()) },
                    _ = renew.tick() => match log.hold_lease(lease, holder, options.lease).await {
                        Ok(true) => {}
                        Ok(false) => return Session::LostLease,
                        Err(e) => return Session::Failed(format!("cannot renew the publishing lease: {e}")),
                    },
                }
                continue;
            }
            let events = match log.read_all(scanned, options.in_flight as u64, options.types.clone()).await {
                Ok(e) => e,
                Err(e) => return Session::Failed(format!("cannot read the log: {e}")),
            };
            let full = events.len() == options.in_flight;
            match publish(&js, options, log.id(), &events, last_seq).await {
                Ok(seq) => {
                    last_seq = seq;
                    if let Some(e) = events.last() {
                        position = e.position;
                    }
                    scanned = if full { position } else { target.max(position) };
                    let n = events.len() as u64;
                    self.update(|s| {
                        s.position = position;
                        s.published += n;
                        s.error = None;
                    });
                }
                // Another publisher got there (or an earlier publish of
                // ours was stored after all): read the stream again.
                Err(Publish::WrongSequence) => {
                    return Session::Failed("the stream moved under the publisher; resuming from it".into());
                }
                Err(Publish::Failed(e)) => return Session::Failed(e),
            }
            if renew.tick().now_or_never().is_some() {
                match log.hold_lease(lease, holder, options.lease).await {
                    Ok(true) => {}
                    Ok(false) => return Session::LostLease,
                    Err(e) => return Session::Failed(format!("cannot renew the publishing lease: {e}")),
                }
            }
        }
    }
}

const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

enum Session {
    /// Another node holds the lease.
    LostLease,
    /// Something failed; retry after a backoff.
    Failed(String),
}

enum Publish {
    WrongSequence,
    Failed(String),
}

/// The stream's last sequence and the last log position it holds; an error
/// if it holds another log's events.
async fn resume_point(stream: &mut jetstream::stream::Stream, log_id: &str) -> Result<(u64, u64), String> {
    let info = stream.info().await.map_err(|e| format!("cannot read the stream's state: {e}"))?;
    let last_seq = info.state.last_sequence;
    if last_seq == 0 || info.state.messages == 0 {
        return Ok((last_seq, 0));
    }
    let last = stream
        .get_raw_message(last_seq)
        .await
        .map_err(|e| format!("cannot read the stream's last message ({last_seq}): {e}"))?;
    let header = |name: &str| last.headers.get(name).map(|v| v.as_str().to_owned());
    match (header(HEADER_LOG), header(HEADER_POSITION)) {
        (Some(log), Some(position)) if log == log_id => {
            position.parse().map(|p| (last_seq, p)).map_err(|_| {
                format!("the stream's last message has a malformed {HEADER_POSITION}: {position:?}")
            })
        }
        (Some(log), _) => Err(format!(
            "the stream holds the events of another log ({log}, this one is {log_id}); publish to a stream of its own"
        )),
        _ => Err(format!(
            "the stream's last message (sequence {last_seq}) was not published by refract; publish to a stream of its own"
        )),
    }
}

const HEADER_LOG: &str = "Refract-Log";
const HEADER_POSITION: &str = "Refract-Position";

/// Publishes `events` in order after the stream's sequence `last_seq`,
/// many awaiting their acknowledgement at once, each expecting the one
/// before; returns the new last sequence.
async fn publish(
    js: &jetstream::Context,
    options: &PublishOptions,
    log_id: &str,
    events: &[RecordedEvent],
    last_seq: u64,
) -> Result<u64, Publish> {
    let mut acks = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("{log_id}:{}", e.position).as_str());
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
            (last_seq + i as u64).to_string().as_str(),
        );
        headers.insert(HEADER_LOG, log_id);
        headers.insert(HEADER_POSITION, e.position.to_string().as_str());
        headers.insert("Refract-Stream", e.stream_id.as_str());
        headers.insert("Refract-Type", e.event_type.as_str());
        let payload = serde_json::to_vec(e).unwrap_or_default();
        let subject = options.subject.render(e);
        match js.publish_with_headers(subject, headers, payload.into()).await {
            Ok(ack) => acks.push(ack),
            Err(err) => return Err(Publish::Failed(format!("cannot publish: {err}"))),
        }
    }
    let mut seq = last_seq;
    for ack in acks {
        match ack.await {
            Ok(a) => seq = a.sequence,
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => return Err(Publish::WrongSequence),
            Err(e) => return Err(Publish::Failed(format!("no acknowledgement: {e}"))),
        }
    }
    Ok(seq)
}
