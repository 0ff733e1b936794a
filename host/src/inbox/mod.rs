//! The inbox: messages of a NATS JetStream stream, taken through a durable
//! consumer, each turned into a command or an event exactly once.
//!
//! A message's id (its `Nats-Msg-Id`, else `<stream>:<sequence>`) becomes
//! the idempotency key of what it produces, recorded in the log in the same
//! transaction as the events; only then is the message acknowledged. A
//! redelivery — the acknowledgement lost, a crash between the commit and
//! it — finds the key and produces nothing new. A message that cannot
//! succeed (not JSON, an unknown command type, a command the handler
//! rejects) goes to the ingest's dead letters at once; one that keeps
//! failing for a passing reason (the log unavailable) is redelivered with
//! backoff and goes there after `max_deliver` deliveries.

mod dead_letters;

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use dead_letters::{DeadLetter, DeadLetters};

use crate::App;
use crate::command::{self, CommandError, CommandRequest, Handlers};
use crate::log::{AppendError, EventLog, ExpectedVersion, Idempotency, NewEvent};

/// What an ingest's messages become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Commands to this handler (the message is a command:
    /// `{"type", "stream_id", "data", "metadata"?}`).
    Command(String),
    /// Events appended to this stream (the message is an event:
    /// `{"type", "data", "metadata"?}`).
    Stream(String),
}

/// One ingest: where its messages come from and what they become.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Its name (dead letters and status are filed under it); defaults to
    /// the consumer's.
    pub name: String,
    /// The NATS server.
    pub url: String,
    /// The JetStream stream to consume (it must exist).
    pub stream: String,
    /// The durable consumer (created if missing).
    pub consumer: String,
    /// What the messages become.
    pub target: Target,
    /// Deliveries of a message that keeps failing before it is
    /// dead-lettered.
    pub max_deliver: u32,
    /// How long the broker waits for a delivered message's
    /// acknowledgement before it delivers it again (a node that died with
    /// it unacknowledged).
    pub ack_wait: Duration,
}

impl IngestOptions {
    /// Parses `key=value,…`: `stream`, `consumer`, `target`
    /// (`command:HANDLER` or `stream:ID`), and optionally `name`, `url`
    /// (default `default_url`) and `max_deliver` (default 5).
    pub fn parse(spec: &str, default_url: &str) -> Result<IngestOptions, String> {
        let (mut name, mut url, mut stream, mut consumer, mut target, mut max_deliver) =
            (None, default_url.to_owned(), None, None, None, 5);
        let mut ack_wait = Duration::from_secs(30);
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("expected key=value, got {pair:?}"))?;
            match k {
                "name" => name = Some(v.to_owned()),
                "url" => url = v.to_owned(),
                "stream" => stream = Some(v.to_owned()),
                "consumer" => consumer = Some(v.to_owned()),
                "target" => {
                    target = Some(match v.split_once(':') {
                        Some(("command", h)) if !h.is_empty() => Target::Command(h.to_owned()),
                        Some(("stream", s)) if !s.is_empty() => Target::Stream(s.to_owned()),
                        _ => return Err(format!("target must be command:HANDLER or stream:ID, got {v:?}")),
                    })
                }
                "ack_wait_ms" => {
                    let ms = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 100)
                        .ok_or("ack_wait_ms must be a whole number, at least 100")?;
                    ack_wait = Duration::from_millis(ms)
                }
                "max_deliver" => {
                    max_deliver = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or("max_deliver must be a whole number, at least 1")?
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?}; use stream, consumer, target, name, url, max_deliver, ack_wait_ms"
                    ));
                }
            }
        }
        let stream = stream.ok_or("stream= is missing")?;
        let consumer = consumer.ok_or("consumer= is missing")?;
        let target = target.ok_or("target= is missing")?;
        Ok(IngestOptions {
            name: name.unwrap_or_else(|| consumer.clone()),
            url,
            stream,
            consumer,
            target,
            max_deliver,
            ack_wait,
        })
    }
}

/// What `GET /ingests` shows of an ingest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestStatus {
    pub name: String,
    pub stream: String,
    pub consumer: String,
    /// `command:HANDLER` or `stream:ID`.
    pub target: String,
    /// `starting`, `consuming`, `unavailable` (retrying).
    pub state: &'static str,
    /// Messages that produced something.
    pub produced: u64,
    /// Redeliveries of messages already taken: nothing new produced.
    pub duplicates: u64,
    /// Messages moved to the dead letters.
    pub dead_letters: u64,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

/// A running ingest.
pub struct Ingest {
    status: Mutex<IngestStatus>,
    /// Its dead letters.
    pub dead: Arc<DeadLetters>,
}

/// Why a message did not go through.
enum Failure {
    /// It never will: dead-letter it now.
    Permanent(String),
    /// It may later: redeliver, with backoff, up to `max_deliver`.
    Passing(String),
}

impl Ingest {
    /// Starts consuming as `options` say, into `app`'s log (and its
    /// handlers), filing dead letters in the database at `dead_letters`.
    /// Must be called inside a tokio runtime.
    pub fn start(options: IngestOptions, app: Weak<App>, dead_letters: &Path) -> Result<Arc<Ingest>, String> {
        let dead = Arc::new(
            DeadLetters::open(dead_letters)
                .map_err(|e| format!("cannot open {}: {e}", dead_letters.display()))?,
        );
        let count = dead.count(&options.name).unwrap_or(0);
        let target = match &options.target {
            Target::Command(h) => format!("command:{h}"),
            Target::Stream(s) => format!("stream:{s}"),
        };
        let ingest = Arc::new(Ingest {
            status: Mutex::new(IngestStatus {
                name: options.name.clone(),
                stream: options.stream.clone(),
                consumer: options.consumer.clone(),
                target,
                state: "starting",
                produced: 0,
                duplicates: 0,
                dead_letters: count,
                error: None,
            }),
            dead,
        });
        let i = ingest.clone();
        tokio::spawn(async move { i.run(options, app).await });
        Ok(ingest)
    }

    /// A snapshot of its status.
    pub fn status(&self) -> IngestStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut IngestStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    async fn run(self: Arc<Self>, options: IngestOptions, app: Weak<App>) {
        let mut failures = 0u32;
        loop {
            // The host is gone: so is the ingest.
            let Some(host) = app.upgrade() else { return };
            let e = self.consume(&options, &host.log, &host.handlers).await;
            drop(host);
            failures += 1;
            if failures == 1 {
                tracing::warn!(ingest = %options.name, error = %e, "ingest failing; retrying with backoff");
            }
            self.update(|s| {
                s.state = "unavailable";
                s.error = Some(e);
            });
            tokio::time::sleep(
                Duration::from_millis(100).saturating_mul(1 << failures.min(5)).min(Duration::from_secs(5)),
            )
            .await;
        }
    }

    /// Consumes until the connection or the consumer fails.
    async fn consume(&self, options: &IngestOptions, log: &EventLog, handlers: &Handlers) -> String {
        let client = match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(options.url.as_str())
            .await
        {
            Ok(c) => c,
            Err(e) => return format!("cannot connect to {}: {e}", options.url),
        };
        let js = jetstream::new(client);
        let stream = match js.get_stream(&options.stream).await {
            Ok(s) => s,
            Err(e) => return format!("cannot open the JetStream stream {}: {e}", options.stream),
        };
        let consumer = match stream
            .get_or_create_consumer(
                &options.consumer,
                pull::Config {
                    durable_name: Some(options.consumer.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(c) => c,
            Err(e) => return format!("cannot open the consumer {}: {e}", options.consumer),
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => return format!("cannot consume: {e}"),
        };
        self.update(|s| {
            s.state = "consuming";
            s.error = None;
        });
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => return format!("consuming failed: {e}"),
            };
            let (delivered, sequence) = match message.info() {
                Ok(i) => (i.delivered.max(1) as u32, i.stream_sequence),
                Err(e) => return format!("a message without JetStream metadata: {e}"),
            };
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| format!("{}:{sequence}", options.stream));
            let outcome = take(options, log, handlers, &id, &message.payload).await;
            let ack = match outcome {
                Ok(duplicate) => {
                    self.update(|s| if duplicate { s.duplicates += 1 } else { s.produced += 1 });
                    AckKind::Ack
                }
                Err(Failure::Passing(reason)) if delivered < options.max_deliver => {
                    tracing::debug!(ingest = %options.name, id, delivered, reason, "message failed; redelivering");
                    AckKind::Nak(Some(Duration::from_millis(200).saturating_mul(1 << delivered.min(5))))
                }
                Err(Failure::Passing(reason) | Failure::Permanent(reason)) => {
                    let letter = DeadLetter {
                        ingest: options.name.clone(),
                        message_id: id.clone(),
                        stream_sequence: sequence,
                        subject: message.subject.to_string(),
                        payload: String::from_utf8_lossy(&message.payload).into_owned(),
                        reason,
                        deliveries: delivered,
                        recorded_at: crate::db::unix_ms(),
                    };
                    if let Err(e) = self.dead.record(&letter) {
                        // Not filed: leave it to be redelivered.
                        tracing::error!(ingest = %options.name, error = %e, "cannot record a dead letter");
                        continue;
                    }
                    tracing::warn!(ingest = %options.name, id, reason = %letter.reason, "message dead-lettered");
                    self.update(|s| s.dead_letters += 1);
                    AckKind::Term
                }
            };
            if let Err(e) = message.ack_with(ack).await {
                // Unacknowledged, it comes again; what it produced is
                // recorded under its id, so it produces nothing twice.
                tracing::debug!(ingest = %options.name, error = %e, "acknowledgement failed");
            }
        }
        "the consumer's message stream ended".into()
    }
}

/// An event message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventMessage {
    #[serde(rename = "type")]
    event_type: String,
    data: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}

/// Turns one message into what its target says; whether it was a
/// duplicate.
async fn take(
    options: &IngestOptions,
    log: &EventLog,
    handlers: &Handlers,
    id: &str,
    payload: &[u8],
) -> Result<bool, Failure> {
    let key = format!("inbox:{}:{id}", options.name);
    match &options.target {
        Target::Command(handler) => {
            let mut req: CommandRequest = serde_json::from_slice(payload)
                .map_err(|e| Failure::Permanent(format!("not a command: {e}")))?;
            req.idempotency_key = Some(key);
            match command::execute(log, handlers, handler, req).await {
                Ok(r) => Ok(r.duplicate),
                Err(CommandError::Unavailable(e) | CommandError::Storage(e)) => Err(Failure::Passing(e)),
                Err(CommandError::Conflict { .. }) => {
                    Err(Failure::Passing("the stream kept changing".into()))
                }
                // An unknown handler may be one not loaded yet.
                Err(e @ CommandError::UnknownHandler(_)) => Err(Failure::Passing(e.to_string())),
                Err(CommandError::Rejected { code, message }) => {
                    Err(Failure::Permanent(format!("rejected by {handler}: {code}: {message}")))
                }
                Err(e) => Err(Failure::Permanent(e.to_string())),
            }
        }
        Target::Stream(stream) => {
            let e: EventMessage = serde_json::from_slice(payload)
                .map_err(|e| Failure::Permanent(format!("not an event: {e}")))?;
            let mut events = vec![NewEvent {
                event_type: e.event_type,
                data: e.data,
                metadata: e.metadata,
                schema_version: None,
            }];
            handlers.contracts.check(&mut events).map_err(|v| {
                Failure::Permanent(format!(
                    "the event's data does not follow its schema at {:?}: {}",
                    v.path, v.message
                ))
            })?;
            let idempotency =
                Idempotency { scope: format!("inbox:{}", options.name), key, command_id: id.to_owned() };
            match log.append_once(stream, ExpectedVersion::Any, events, Some(idempotency)).await {
                Ok(o) => Ok(o.duplicate_of.is_some()),
                Err(AppendError::Unavailable(e) | AppendError::Storage(e)) => Err(Failure::Passing(e)),
                Err(AppendError::Closed) => Err(Failure::Passing("the log is shutting down".into())),
                Err(e) => Err(Failure::Permanent(e.to_string())),
            }
        }
    }
}
