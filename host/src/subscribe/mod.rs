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

use axum::body::Bytes;
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
        let (tx, rx) = mpsc::channel(self.options.buffer.max(1));
        let last = Arc::new(std::sync::Mutex::new(None));
        let live = self.sender.subscribe();
        let this = self.clone();
        let slot = last.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(frame) = feed(&this, after, &filter, live, &tx).await {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame);
            }
        });
        Some(Subscription { frames: rx, last })
    }
}

/// A subscriber's frames, and the frame that ends them.
pub struct Subscription {
    pub frames: mpsc::Receiver<Bytes>,
    /// Set when the feed ends on purpose (`fell-behind`), read once the
    /// frames before it are taken.
    pub last: Arc<std::sync::Mutex<Option<Bytes>>>,
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

/// Why a feed stopped sending.
enum Stop {
    /// The client went away.
    Gone,
    /// The client does not read fast enough; resume after this position.
    FellBehind(u64),
}

/// Queues `frame` for the client without waiting; `Err` if it cannot take
/// it. `resume_after` is where a client that missed it resumes.
fn offer(tx: &mpsc::Sender<Bytes>, frame: Bytes, resume_after: u64) -> Result<(), Stop> {
    match tx.try_send(frame) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(Stop::FellBehind(resume_after)),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Gone),
    }
}

/// Feeds one subscriber until it goes or falls behind; returns the frame
/// that ends its stream, if one does.
async fn feed(
    subs: &Subscriptions,
    after: u64,
    filter: &Filter,
    mut live: broadcast::Receiver<Arc<Broadcast>>,
    tx: &mpsc::Sender<Bytes>,
) -> Option<Bytes> {
    match run(subs, after, filter, &mut live, tx).await {
        Stop::Gone => None,
        Stop::FellBehind(resume_after) => Some(fell_behind_frame(resume_after)),
    }
}

async fn run(
    subs: &Subscriptions,
    after: u64,
    filter: &Filter,
    live: &mut broadcast::Receiver<Arc<Broadcast>>,
    tx: &mpsc::Sender<Bytes>,
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
                        _ = tx.closed() => return Stop::Gone,
                    }
                }
            };
            let full = events.len() as u64 == PAGE;
            for e in &events {
                if filter.admits(&e.stream_id, &e.event_type)
                    && let Err(stop) = offer(tx, event_frame(e), e.position - 1)
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
            if let Err(stop) = offer(tx, caught_up_frame(last), last) {
                return stop;
            }
        }
        // Live, from the broadcast, until it skips past this subscriber.
        loop {
            tokio::select! {
                got = live.recv() => match got {
                    Ok(b) if b.position <= last => {}
                    Ok(b) if b.position == last + 1 => {
                        if filter.admits(&b.stream_id, &b.event_type)
                            && let Err(stop) = offer(tx, b.frame.clone(), last)
                        {
                            return stop;
                        }
                        last = b.position;
                    }
                    // Events between are missing (this subscriber lagged
                    // the broadcast): read them from the log.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Stop::Gone,
                },
                _ = heartbeat.tick() => {
                    let head = subs.log.head();
                    if let Err(stop) = offer(tx, head_comment(head), last) {
                        return stop;
                    }
                }
                _ = tx.closed() => return Stop::Gone,
            }
        }
    }
}
