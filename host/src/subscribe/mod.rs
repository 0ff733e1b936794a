//! Catch-up subscriptions (`GET /subscribe`, server-sent events): a
//! subscriber gets the log's history after a position, then every new
//! event as it commits, in position order, filtered by type and stream.
//!
//! One task per host, the [`Tail`], reads each new event once and
//! broadcasts it, already encoded as an SSE frame, to every live
//! subscriber. A subscriber catches up from the log on its own, then takes
//! the broadcast; when it falls behind the broadcast (its buffer of the
//! broadcast overflows) it goes back to reading the log. Its frames go to
//! its connection through a bounded buffer: a client that does not read
//! them fills it, is sent a last `fell-behind` event saying where to
//! resume, and is let go — appends and other subscribers never wait for
//! it.

mod frame;

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use bytes::BytesMut;
use tokio::sync::{Semaphore, broadcast, mpsc};

pub use frame::{Filter, caught_up_frame, event_frame, fell_behind_frame, head_comment};

use crate::log::EventLog;

/// Events the tail keeps for subscribers that are slow to take them; one
/// that falls further behind reads the log instead.
const TAIL_CAPACITY: usize = 4096;

/// Events read from the log per page, catching up.
const PAGE: u64 = 500;

/// Subscriptions' settings.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeOptions {
    /// Subscribers at once; one more is answered 503.
    pub max_subscribers: usize,
    /// Frames a subscriber's connection may hold unread before it is let go
    /// with `fell-behind`.
    pub buffer: usize,
    /// How often a subscriber is sent a comment with the head, so a
    /// filtered one can move its checkpoint while nothing matches.
    pub heartbeat: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self { max_subscribers: 1000, buffer: 1024, heartbeat: Duration::from_secs(15) }
    }
}

/// An event as the tail broadcasts it.
#[derive(Debug)]
pub struct Broadcast {
    pub position: u64,
    pub stream_id: String,
    pub event_type: String,
    /// The event's SSE frame.
    pub frame: Bytes,
}

/// The host's subscriptions: the tail and the bound on subscribers.
pub struct Subscriptions {
    log: EventLog,
    sender: broadcast::Sender<Arc<Broadcast>>,
    slots: Arc<Semaphore>,
    options: SubscribeOptions,
}

impl Subscriptions {
    /// Starts the tail of `log`. Must be called inside a tokio runtime.
    pub fn start(log: EventLog, options: SubscribeOptions) -> Arc<Self> {
        let (sender, _) = broadcast::channel(TAIL_CAPACITY);
        let subs = Arc::new(Self {
            log: log.clone(),
            sender: sender.clone(),
            slots: Arc::new(Semaphore::new(options.max_subscribers)),
            options,
        });
        tokio::spawn(tail(log, sender));
        subs
    }

    /// The settings.
    pub fn options(&self) -> SubscribeOptions {
        self.options
    }

    /// Subscribers connected now.
    pub fn count(&self) -> usize {
        self.options.max_subscribers - self.slots.available_permits()
    }

    /// Starts a subscription after `after`, or `None` when every slot is
    /// taken. Frames arrive on the returned receiver; when it ends, the
    /// last frame (if any) is in the returned slot.
    pub fn subscribe(self: &Arc<Self>, after: u64, filter: Filter) -> Option<Subscription> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Queue { tx, queued: Arc::default(), bound: self.options.buffer.max(1) };
        let queued = queue.queued.clone();
        let last = Arc::new(std::sync::Mutex::new(None));
        let live = self.sender.subscribe();
        let this = self.clone();
        let slot = last.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(frame) = feed(&this, after, &filter, live, &queue).await {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame);
            }
        });
        Some(Subscription { chunks: rx, queued, last })
    }
}

/// Most bytes of waiting chunks sent to a client together.
const COALESCE_BYTES: usize = 64 * 1024;

/// Most events the feed gathers into one chunk from the broadcast.
const GATHER: usize = 64;

/// A subscriber's frames, and the frame that ends them.
pub struct Subscription {
    chunks: mpsc::UnboundedReceiver<(Bytes, usize)>,
    /// Frames queued and not yet taken (see [`Queue`]).
    queued: Arc<AtomicUsize>,
    /// Set when the feed ends on purpose (`fell-behind`), read once the
    /// frames before it are taken.
    last: Arc<std::sync::Mutex<Option<Bytes>>>,
}

impl Subscription {
    /// The frames to send next, as one chunk: everything already waiting
    /// (up to 64 KiB), so a subscriber served late costs one write, not
    /// one per event. After the last frame, `None`.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        let Some((first, n)) = self.chunks.recv().await else {
            return self.last.lock().unwrap_or_else(|p| p.into_inner()).take();
        };
        self.queued.fetch_sub(n, Ordering::AcqRel);
        let Ok((next, n)) = self.chunks.try_recv() else { return Some(first) };
        self.queued.fetch_sub(n, Ordering::AcqRel);
        let mut chunk = BytesMut::with_capacity(4 * (first.len() + next.len()));
        chunk.extend_from_slice(&first);
        chunk.extend_from_slice(&next);
        while chunk.len() < COALESCE_BYTES
            && let Ok((more, n)) = self.chunks.try_recv()
        {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            chunk.extend_from_slice(&more);
        }
        Some(chunk.freeze())
    }
}

/// The feed's side of a subscriber's queue: chunks of frames, with a count
/// of the frames waiting in it, bounded by `--subscriber-buffer`.
struct Queue {
    tx: mpsc::UnboundedSender<(Bytes, usize)>,
    queued: Arc<AtomicUsize>,
    bound: usize,
}

/// Reads every event once and broadcasts it, while anyone listens.
async fn tail(log: EventLog, sender: broadcast::Sender<Arc<Broadcast>>) {
    let mut head = log.subscribe();
    let mut last = log.head();
    let mut backoff = Duration::from_millis(50);
    loop {
        let target = *head.borrow_and_update();
        if sender.receiver_count() == 0 {
            // Nobody listens: a subscriber that comes catches up from the
            // log itself.
            last = target;
        }
        while last < target && sender.receiver_count() > 0 {
            match log.read_all(last, PAGE, None).await {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    for e in events {
                        last = e.position;
                        let b = Broadcast {
                            position: e.position,
                            frame: event_frame(&e),
                            stream_id: e.stream_id,
                            event_type: e.event_type,
                        };
                        let _ = sender.send(Arc::new(b));
                    }
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the subscription tail cannot read the log; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if head.changed().await.is_err() {
            return;
        }
    }
}

/// Frames gathered from the broadcast into one chunk.
#[derive(Default)]
struct Gathered {
    one: Option<Bytes>,
    more: Option<BytesMut>,
    n: usize,
}

impl Gathered {
    fn push(&mut self, frame: Bytes) {
        self.n += 1;
        match (&mut self.one, &mut self.more) {
            (None, None) => self.one = Some(frame),
            (Some(first), None) => {
                let mut b = BytesMut::with_capacity(GATHER.min(8) * (first.len() + frame.len()));
                b.extend_from_slice(first);
                b.extend_from_slice(&frame);
                self.one = None;
                self.more = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&frame),
        }
    }

    /// The chunk and how many frames it holds, if any; empties it.
    fn take(&mut self) -> Option<(Bytes, usize)> {
        let n = std::mem::take(&mut self.n);
        match (self.one.take(), self.more.take()) {
            (Some(one), _) => Some((one, n)),
            (None, Some(b)) => Some((b.freeze(), n)),
            (None, None) => None,
        }
    }
}

/// Why a feed stopped sending.
enum Stop {
    /// The client went away.
    Gone,
    /// The client does not read fast enough; resume after this position.
    FellBehind(u64),
}

/// Queues `frames` (a chunk of `n` frames) for the client without waiting;
/// `Err` if it cannot take them. `resume_after` is where a client that
/// missed them resumes.
fn offer(q: &Queue, frames: Bytes, n: usize, resume_after: u64) -> Result<(), Stop> {
    if q.tx.is_closed() {
        return Err(Stop::Gone);
    }
    if q.queued.load(Ordering::Acquire) + n > q.bound {
        return Err(Stop::FellBehind(resume_after));
    }
    q.queued.fetch_add(n, Ordering::AcqRel);
    q.tx.send((frames, n)).map_err(|_| Stop::Gone)
}

/// Feeds one subscriber until it goes or falls behind; returns the frame
/// that ends its stream, if one does.
async fn feed(
    subs: &Subscriptions,
    after: u64,
    filter: &Filter,
    mut live: broadcast::Receiver<Arc<Broadcast>>,
    q: &Queue,
) -> Option<Bytes> {
    match run(subs, after, filter, &mut live, q).await {
        Stop::Gone => None,
        Stop::FellBehind(resume_after) => Some(fell_behind_frame(resume_after)),
    }
}

async fn run(
    subs: &Subscriptions,
    after: u64,
    filter: &Filter,
    live: &mut broadcast::Receiver<Arc<Broadcast>>,
    q: &Queue,
) -> Stop {
    // The last position this subscriber has been given or passed over.
    let mut last = after;
    let mut caught_up = false;
    let mut heartbeat = tokio::time::interval(subs.options.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let types = filter.types.clone();
    loop {
        // From the log, up to the head as it is now.
        let target = subs.log.head();
        while last < target {
            let events = match subs.log.read_all(last, PAGE, types.clone()).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!(error = %e, "a subscription cannot read the log; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                        _ = q.tx.closed() => return Stop::Gone,
                    }
                }
            };
            let full = events.len() as u64 == PAGE;
            for e in &events {
                if filter.admits(&e.stream_id, &e.event_type)
                    && let Err(stop) = offer(q, event_frame(e), 1, e.position - 1)
                {
                    return stop;
                }
                last = e.position;
            }
            // A short page (of the wanted types) covers everything up to
            // the head it was read at.
            if !full {
                last = last.max(target);
            }
        }
        if !caught_up {
            caught_up = true;
            if let Err(stop) = offer(q, caught_up_frame(last), 1, last) {
                return stop;
            }
        }
        // Live, from the broadcast, until it skips past this subscriber.
        // Events already broadcast when this one arrives go in the same
        // chunk (up to [`GATHER`]).
        let mut gathered = Gathered::default();
        'live: loop {
            let mut got = tokio::select! {
                got = live.recv() => got,
                _ = heartbeat.tick() => {
                    let head = subs.log.head();
                    if let Err(stop) = offer(q, head_comment(head), 1, last) {
                        return stop;
                    }
                    continue;
                }
                _ = q.tx.closed() => return Stop::Gone,
            };
            let resume_after = last;
            let gap = loop {
                match got {
                    Ok(b) if b.position <= last => {}
                    Ok(b) if b.position == last + 1 => {
                        if filter.admits(&b.stream_id, &b.event_type) {
                            gathered.push(b.frame.clone());
                        }
                        last = b.position;
                    }
                    // Events between are missing (this subscriber lagged
                    // the broadcast): read them from the log.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break true,
                    Err(broadcast::error::RecvError::Closed) => return Stop::Gone,
                }
                if gathered.n >= GATHER {
                    break false;
                }
                got = match live.try_recv() {
                    Ok(b) => Ok(b),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => Err(broadcast::error::RecvError::Closed),
                    Err(broadcast::error::TryRecvError::Empty) => break false,
                };
            };
            if let Some((frames, n)) = gathered.take()
                && let Err(stop) = offer(q, frames, n, resume_after)
            {
                return stop;
            }
            if gap {
                break 'live;
            }
        }
    }
}
