//! The scenarios of events leaving refract: P10 (one event delivered to
//! 1 000 live subscribers over SSE) and P11 (the outbox against a raw
//! `async-nats` publisher sending the same messages; append → stored in
//! JetStream). P11 runs against the NATS server at `REFRACT_BENCH_NATS`
//! (default `nats://127.0.0.1:4222`, JetStream enabled), on streams of its
//! own, deleted afterwards.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use futures_util::StreamExt;
use refract::log::{EventLog, ExpectedVersion, LogOptions, NewEvent, RecordedEvent};
use refract::metrics::{LogMetrics, Metrics};
use refract::outbox::{PublishOptions, Publisher, Template};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::Row;
use crate::scenarios::{Size, pair_order, rate, thousands};
use crate::workload::{Server, median, paired_ratio, percentile, raw, secs, write_orders};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One small event, as P10 and P11's live traffic append it.
fn ping(i: u64) -> Vec<NewEvent> {
    vec![NewEvent {
        event_type: "Pinged".into(),
        data: raw(serde_json::json!({ "i": i })),
        metadata: None,
        schema_version: None,
    }]
}

/// Appends one event every `1 / per_second` for `d` on `log` (each append
/// awaited before the next); the time each position's append began.
async fn paced_appends(
    log: &EventLog,
    per_second: u64,
    d: Duration,
) -> anyhow::Result<HashMap<u64, Instant>> {
    let mut began = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < d {
        tick.tick().await;
        let t0 = Instant::now();
        let r = log.append(&format!("ping-{i}"), ExpectedVersion::NoStream, ping(i)).await?;
        began.insert(r.last_position, t0);
        i += 1;
    }
    Ok(began)
}

/// What one SSE subscriber saw: each event's position and when its frame
/// arrived, and whether the server let it go.
struct Seen {
    frames: Vec<(u64, Instant)>,
    fell_behind: bool,
}

/// Subscribes to `/subscribe` from the start of the log and records every
/// frame's `id:` until position `last`, or until `stop`.
async fn subscriber(
    addr: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Sender<()>,
    mut last: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Seen> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /subscribe?after=0 HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut seen = Seen { frames: Vec::with_capacity(16 * 1024), fell_behind: false };
    let mut headers = true;
    // The id of the frame being read; an event's frame counts once its
    // `event:` line says it is not `caught-up` or `fell-behind`.
    let mut id_line = None;
    loop {
        let done = *last.borrow();
        if done > 0 && seen.frames.last().is_some_and(|f| f.0 >= done) {
            return Ok(seen);
        }
        let n = tokio::select! {
            n = s.read(&mut buf) => n?,
            _ = last.changed() => continue,
        };
        if n == 0 {
            return Ok(seen);
        }
        let now = Instant::now();
        pending.extend_from_slice(&buf[..n]);
        if headers {
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            anyhow::ensure!(pending.starts_with(b"HTTP/1.1 200"), "subscribe answered {:?}", &pending[..12]);
            pending.drain(..end + 4);
            headers = false;
            let _ = ready.send(()).await;
        }
        // Whole lines only; the rest waits for the next read.
        let Some(cut) = pending.iter().rposition(|b| *b == b'\n') else { continue };
        for line in pending[..cut].split(|b| *b == b'\n') {
            if let Some(id) = line.strip_prefix(b"id: ") {
                let id = std::str::from_utf8(id).ok().and_then(|t| t.trim().parse().ok());
                id_line = Some(id.context("an id line that is not a number")?);
            } else if let Some(kind) = line.strip_prefix(b"event: ") {
                match (kind, id_line.take()) {
                    (b"fell-behind", _) => seen.fell_behind = true,
                    (b"caught-up", _) | (_, None) => {}
                    (_, Some(id)) => seen.frames.push((id, now)),
                }
            }
        }
        pending.drain(..=cut);
    }
}

/// Connects `subscribers` SSE clients to `addr` on a runtime of their own
/// (so the server's threads serve them as they would remote clients),
/// runs `traffic` once all are connected — it returns when each position
/// began — and collects every frame's latency, checking that each client
/// received positions 1 to the last, in order.
fn fan_out<F>(addr: std::net::SocketAddr, subscribers: usize, traffic: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnOnce() -> anyhow::Result<HashMap<u64, Instant>>,
{
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-subscribers")
        .enable_all()
        .build()?;
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(subscribers);
    let (last_tx, last_rx) = tokio::sync::watch::channel(0u64);
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| clients.spawn(subscriber(addr, ready_tx.clone(), last_rx.clone())))
        .collect();
    drop(ready_tx);
    clients.block_on(async {
        for _ in 0..subscribers {
            tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .context("the subscribers did not all connect")?;
        }
        anyhow::Ok(())
    })?;
    let began = traffic()?;
    let head = began.keys().copied().max().unwrap_or(0);
    last_tx.send_replace(head);
    let mut latencies = Vec::with_capacity(subscribers * began.len());
    let mut cut_off = 0;
    clients.block_on(async {
        for t in tasks {
            let seen = tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .context("a subscriber never received the last event")???;
            if seen.fell_behind {
                cut_off += 1;
                continue;
            }
            let positions: Vec<u64> = seen.frames.iter().map(|f| f.0).collect();
            anyhow::ensure!(
                positions == (1..=head).collect::<Vec<_>>(),
                "a subscriber received {} frames, not 1..={head} in order",
                positions.len()
            );
            latencies.extend(seen.frames.iter().map(|(p, at)| at.saturating_duration_since(began[p])));
        }
        anyhow::Ok(())
    })?;
    anyhow::ensure!(cut_off == 0, "{cut_off} subscribers fell behind and were let go");
    Ok(latencies)
}

/// The baseline of P10: the least a server can do to fan events out — a
/// tokio TCP listener that answers any request with an event-stream
/// header, then writes each frame (the same bytes refract sends) to every
/// connection as a broadcast hands it over; no log, no HTTP framing.
async fn bare_fan_out(
    listener: tokio::net::TcpListener,
    frames: tokio::sync::broadcast::Sender<bytes::Bytes>,
) -> anyhow::Result<()> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let mut rx = frames.subscribe();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "the client left");
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n").await?;
            while let Ok(frame) = rx.recv().await {
                socket.write_all(&frame).await?;
            }
            anyhow::Ok(())
        });
    }
}

/// P10: 1 000 SSE subscribers while 1 000 events/s are appended: from the
/// start of an append to its frame's arrival at each subscriber; beside
/// it, the same clients on a bare fan-out of the same frames.
pub fn p10(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let subscribers = size.pick(100, 1000);
    let d = Duration::from_secs(size.pick(2, 10));
    let per_second = 1000;
    let dir = tempfile::tempdir()?;
    let mut config = refract::Config::new(dir.path().join("data"), dir.path().join("plugins"));
    config.watch = false;
    config.subscribe.max_subscribers = subscribers + 16;
    config.http.max_connections = subscribers + 64;
    let server = Server::start(rt, &config)?;
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse()?;
    let log = server.app.log.clone();
    let mut ours = fan_out(addr, subscribers, || rt.block_on(paced_appends(&log, per_second, d)))?;
    let appended = log.head();
    drop(server);

    let (frames, _) = tokio::sync::broadcast::channel::<bytes::Bytes>(4096);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let bare = rt.spawn(bare_fan_out(listener, frames.clone()));
    let mut base = fan_out(addr, subscribers, || {
        rt.block_on(async {
            let mut began = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let start = Instant::now();
            let mut position = 0;
            while start.elapsed() < d {
                tick.tick().await;
                position += 1;
                began.insert(position, Instant::now());
                let e = RecordedEvent {
                    position,
                    stream_id: format!("ping-{position}"),
                    stream_version: 1,
                    event_type: "Pinged".into(),
                    data: raw(serde_json::json!({ "i": position })),
                    metadata: raw(serde_json::json!({})),
                    recorded_at: 0,
                    schema_version: 1,
                };
                let _ = frames.send(refract::subscribe::event_frame(&e));
            }
            Ok(began)
        })
    })?;
    bare.abort();
    let (p99, base_p99) = (percentile(&mut ours, 99.0), percentile(&mut base, 99.0));
    Ok(vec![Row::new(
        "P10",
        format!(
            "{subscribers} SSE subscribers (`GET /subscribe`), {} appends/s for {} s: append → frame at each subscriber",
            thousands(appended as f64 / secs(d)),
            d.as_secs()
        ),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} frames delivered, every one in order",
            ms(percentile(&mut ours, 50.0)),
            ms(p99),
            ms(percentile(&mut ours, 100.0)),
            thousands(ours.len() as f64)
        ),
        format!(
            "bare tokio fan-out of the same frames to the same clients (no log, no HTTP): p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&mut base, 50.0)),
            ms(base_p99)
        ),
        None,
        "p99 ≤ 50 ms",
        Some(p99 <= Duration::from_millis(50)),
    )])
}

fn nats_url() -> String {
    std::env::var("REFRACT_BENCH_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn jetstream() -> anyhow::Result<jetstream::Context> {
    let url = nats_url();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url.as_str())
        .await
        .with_context(|| {
            format!("NATS is not reachable at {url}: P11 needs it with JetStream (set REFRACT_BENCH_NATS)")
        })?;
    Ok(jetstream::ContextBuilder::new().timeout(Duration::from_secs(10)).max_ack_inflight(512).build(client))
}

/// The message the outbox sends for `e`, built the same way.
struct Message {
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
}

fn message(template: &Template, log_id: &str, e: &RecordedEvent, last_seq: u64) -> Message {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("{log_id}:{}", e.position).as_str());
    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, last_seq.to_string().as_str());
    headers.insert("Refract-Log", log_id);
    headers.insert("Refract-Position", e.position.to_string().as_str());
    headers.insert("Refract-Stream", e.stream_id.as_str());
    headers.insert("Refract-Type", e.event_type.as_str());
    Message {
        subject: template.render(e),
        headers,
        payload: serde_json::to_vec(e).unwrap_or_default().into(),
    }
}

/// A stream of the run's own capturing `prefix.>`.
async fn fresh_stream(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
) -> anyhow::Result<jetstream::stream::Stream> {
    let _ = js.delete_stream(name).await;
    Ok(js
        .create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{prefix}.>")],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?)
}

/// The raw publisher: the same messages, 512 awaiting their
/// acknowledgement at a time (a sliding window), one connection.
async fn raw_publish(js: &jetstream::Context, messages: Vec<Message>) -> anyhow::Result<()> {
    let mut acks = VecDeque::with_capacity(512);
    for m in messages {
        if acks.len() == 512 {
            let ack: jetstream::context::PublishAckFuture = acks.pop_front().context("an ack")?;
            ack.await?;
        }
        acks.push_back(js.publish_with_headers(m.subject, m.headers, m.payload).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// The outbox's options for stream `name`, subjects under `prefix`.
fn publish_options(name: &str, prefix: &str) -> anyhow::Result<PublishOptions> {
    let mut options = PublishOptions::new(nats_url());
    options.stream = name.into();
    options.subject =
        Template::parse(&format!("{prefix}.{{stream_id}}.{{type}}")).map_err(anyhow::Error::msg)?;
    Ok(options)
}

/// Waits until `publisher` holds position `head`.
async fn published(publisher: &Publisher, head: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = publisher.status();
        if s.position >= head {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the outbox stalled at {} of {head}: {:?}",
            s.position,
            s.error
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// P11: the outbox publishing a log of `n` events against a raw
/// `async-nats` publisher sending the same messages; then append → stored
/// in JetStream at 1 000 appends/s.
pub fn p11(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let n = size.pick(5_000, 100_000);
    let runs = size.pick(1, 3);
    let dir = tempfile::tempdir()?;
    let (mut ours_t, mut raw_t) = (Vec::new(), Vec::new());
    let tag = std::process::id();
    rt.block_on(async {
        let log =
            EventLog::open(&dir.path().join("events.db"), LogOptions::default(), LogMetrics::default())?;
        write_orders(&log, n).await?;
        let js = jetstream().await?;
        let mut events = Vec::with_capacity(n as usize);
        while (events.len() as u64) < n {
            events.extend(log.read_all(events.len() as u64, 10_000, None).await?);
        }
        for run in 0..runs {
            for ours in pair_order(run) {
                let name = format!("P11_{tag}_{run}_{}", if ours { "outbox" } else { "raw" });
                let prefix = format!("p11x{tag}x{run}x{}", u8::from(ours));
                fresh_stream(&js, &name, &prefix).await?;
                let t = if ours {
                    let start = Instant::now();
                    let publisher = Publisher::start(
                        log.clone(),
                        publish_options(&name, &prefix)?,
                        "bench".into(),
                        Metrics::new(),
                    );
                    published(&publisher, n).await?;
                    let t = start.elapsed();
                    publisher.stop();
                    t
                } else {
                    let template = Template::parse(&format!("{prefix}.{{stream_id}}.{{type}}"))
                        .map_err(anyhow::Error::msg)?;
                    let start = Instant::now();
                    let messages: Vec<Message> = events
                        .iter()
                        .enumerate()
                        .map(|(i, e)| message(&template, log.id(), e, i as u64))
                        .collect();
                    raw_publish(&js, messages).await?;
                    start.elapsed()
                };
                let info = js.get_stream(&name).await?.info().await?.state.messages;
                anyhow::ensure!(info == n, "stream {name} holds {info} messages, not {n}");
                js.delete_stream(&name).await?;
                eprintln!(
                    "P11 run {}: {} {:.3} s",
                    run + 1,
                    if ours { "outbox" } else { "raw async-nats" },
                    secs(t)
                );
                if ours { ours_t.push(t) } else { raw_t.push(t) }
            }
        }
        log.close();
        anyhow::Ok(())
    })?;
    let ratio = paired_ratio(&ours_t, &raw_t);
    let mut rows = vec![Row::new(
        "P11",
        format!(
            "outbox: publish a log of {} events to JetStream (headers, expected last sequence, acks)",
            thousands(n as f64)
        ),
        format!("{} events/s", thousands(rate(n, median(ours_t)))),
        format!(
            "raw async-nats publisher, the same messages, 512 acks in flight: {} messages/s",
            thousands(rate(n, median(raw_t)))
        ),
        Some(ratio),
        "≥ 0.80×",
        Some(ratio >= 0.80),
    )];
    rows.push(p11_latency(rt, size)?);
    Ok(rows)
}

/// P11, latency: appends at 1 000/s while the outbox publishes them; from
/// the start of an append to the message's delivery from the stream.
fn p11_latency(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Row> {
    let d = Duration::from_secs(size.pick(2, 10));
    let dir = tempfile::tempdir()?;
    let tag = std::process::id();
    let (name, prefix) = (format!("P11_{tag}_live"), format!("p11x{tag}xlive"));
    let (latencies, appended) = rt.block_on(async {
        let log =
            EventLog::open(&dir.path().join("events.db"), LogOptions::default(), LogMetrics::default())?;
        let js = jetstream().await?;
        let stream = fresh_stream(&js, &name, &prefix).await?;
        let publisher =
            Publisher::start(log.clone(), publish_options(&name, &prefix)?, "bench".into(), Metrics::new());
        let arrived: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
        let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await?;
        let mut messages = consumer.messages().await?;
        let reader = {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                while let Some(m) = messages.next().await {
                    let m = m?;
                    let at = Instant::now();
                    let position = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Refract-Position"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .context("a message without Refract-Position")?;
                    arrived.lock().unwrap_or_else(|p| p.into_inner()).push((position, at));
                }
                anyhow::Ok(())
            })
        };
        let began = paced_appends(&log, 1000, d).await?;
        published(&publisher, log.head()).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while arrived.lock().unwrap_or_else(|p| p.into_inner()).len() < began.len() {
            anyhow::ensure!(Instant::now() < deadline, "the consumer never received every message");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reader.abort();
        publisher.stop();
        log.close();
        js.delete_stream(&name).await?;
        let arrived = std::mem::take(&mut *arrived.lock().unwrap_or_else(|p| p.into_inner()));
        let positions: Vec<u64> = arrived.iter().map(|a| a.0).collect();
        anyhow::ensure!(
            positions == (1..=began.len() as u64).collect::<Vec<_>>(),
            "the stream does not hold the log once, in order"
        );
        let latencies: Vec<Duration> =
            arrived.iter().map(|(p, at)| at.saturating_duration_since(began[p])).collect();
        anyhow::Ok((latencies, began.len()))
    })?;
    let mut latencies = latencies;
    Ok(Row::new(
        "P11",
        format!(
            "outbox, {} appends/s for {} s: append → delivered from the JetStream stream",
            thousands(appended as f64 / secs(d)),
            d.as_secs()
        ),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&mut latencies, 50.0)),
            ms(percentile(&mut latencies, 99.0))
        ),
        "—".into(),
        None,
        "(reported)",
        None,
    ))
}
