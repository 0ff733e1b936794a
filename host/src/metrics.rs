//! Prometheus metrics (OpenMetrics text at `GET /metrics`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabel {
    projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    handler: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReactorCommandLabel {
    reactor: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpcastLabel {
    upcaster: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    method: &'static str,
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    method: &'static str,
    route: Route,
}

/// The methods that are label values by name; any other is `other`. A
/// client may send any token as a method, and every label value is a
/// series kept for the life of the process.
const METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];

/// The label value of an HTTP method: its name if it is one of
/// [`METHODS`], else `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS.iter().find(|m| **m == method.as_str()).copied().unwrap_or("other")
}

/// The label value of a request's route: the pattern it matched
/// (`/streams/{stream_id}/events`, one of the router's, so few), or
/// `unmatched`. It shares axum's string instead of copying it.
#[derive(Clone, Debug)]
pub struct Route(Option<axum::extract::MatchedPath>);

impl Route {
    /// The route of a request that matched `path`, or none.
    pub fn new(path: Option<axum::extract::MatchedPath>) -> Self {
        Self(path)
    }

    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", axum::extract::MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl prometheus_client::encoding::EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>) -> std::fmt::Result {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 0.1 ms .. ~3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of the host; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    applied: Family<ProjectionLabel, Counter>,
    batches: Family<ProjectionLabel, Counter>,
    commits: Family<ProjectionLabel, Counter>,
    failures: Family<ProjectionLabel, Counter>,
    dead_lettered: Family<ProjectionLabel, Counter>,
    batch_seconds: Histograms<ProjectionLabel>,
    position: Family<ProjectionLabel, Gauge>,
    lag: Family<ProjectionLabel, Gauge>,
    dead_letters: Family<ProjectionLabel, Gauge>,
    head: Gauge,
    log: LogMetrics,
    appends: Family<OutcomeLabel, Counter>,
    plugin_loads: Family<OutcomeLabel, Counter>,
    publisher_position: Family<StreamLabel, Gauge>,
    publisher_lag: Family<StreamLabel, Gauge>,
    commands: Family<CommandLabel, Counter>,
    reactor_commands: Family<ReactorCommandLabel, Counter>,
    requests: Family<RequestLabel, Counter>,
    request_seconds: Histograms<RouteLabel>,
    upcasts: Family<UpcastLabel, Counter>,
    snapshots: Family<OutcomeLabel, Counter>,
}

/// The metrics of one projection build, held by its runner.
#[derive(Clone)]
pub struct ProjectionMetrics {
    /// Events applied.
    pub applied: Counter,
    /// Batches committed.
    pub batches: Counter,
    /// Transactions committed: one per batch, or one for many batches of
    /// a backlog.
    pub commits: Counter,
    /// Failed batch attempts.
    pub failures: Counter,
    /// Events moved to the dead letters.
    pub dead_lettered: Counter,
    batch_seconds: Histogram,
    name: String,
    reactor_commands: Family<ReactorCommandLabel, Counter>,
}

impl ProjectionMetrics {
    /// Counts a command a reactor sent, by outcome (`sent`, `duplicate`,
    /// `refused`).
    pub fn reactor_command(&self, outcome: &'static str) {
        let l = ReactorCommandLabel { reactor: self.name.clone(), outcome };
        self.reactor_commands.get_or_create(&l).inc();
    }

    /// Records a batch of `events` that took `took` to apply and commit
    /// in a transaction of its own.
    pub fn observe_batch(&self, took: Duration, events: u64) {
        self.observe_apply(took);
        self.observe_commit(1, events);
    }

    /// Records the time one batch took to apply.
    pub fn observe_apply(&self, took: Duration) {
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// Records a commit of `batches` batches holding `events` events.
    pub fn observe_commit(&self, batches: u64, events: u64) {
        self.commits.inc();
        self.batches.inc_by(batches);
        self.applied.inc_by(events);
    }
}

/// The metrics of the event log's writer: its group commits.
#[derive(Clone, Debug)]
pub struct LogMetrics {
    /// Group commits: with `synchronous=FULL`, one fsync each that wrote
    /// anything (a group of conflicting appends writes nothing).
    pub commits: Counter,
    /// Appends those commits answered (a conflicting append is answered by
    /// its group's commit too, having written nothing).
    pub appends: Counter,
    /// Group commits that failed and were rolled back.
    pub failed_commits: Counter,
    commit_seconds: Histogram,
}

impl Default for LogMetrics {
    /// Metrics no registry exports (for a log opened outside the host).
    fn default() -> Self {
        Self {
            commits: Counter::default(),
            appends: Counter::default(),
            failed_commits: Counter::default(),
            commit_seconds: seconds_histogram(),
        }
    }
}

impl LogMetrics {
    /// Records a group commit of `appends` appends that took `took`
    /// (version checks, inserts, the commit and its fsync).
    pub fn observe_commit(&self, appends: usize, took: Duration) {
        self.commits.inc();
        self.appends.inc_by(appends as u64);
        self.commit_seconds.observe(took.as_secs_f64());
    }
}

/// A projection's position at scrape time.
pub struct ProjectionGauges<'a> {
    /// Name.
    pub name: &'a str,
    /// Checkpoint.
    pub position: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("refract");
        let applied = Family::default();
        let batches = Family::default();
        let commits = Family::default();
        let failures = Family::default();
        let dead_lettered = Family::default();
        let batch_seconds: Histograms<ProjectionLabel> = Family::new_with_constructor(seconds_histogram);
        let position = Family::default();
        let lag = Family::default();
        let dead_letters = Family::default();
        let head = Gauge::default();
        let log = LogMetrics::default();
        let appends = Family::default();
        let plugin_loads = Family::default();
        let publisher_position = Family::default();
        let publisher_lag = Family::default();
        let commands = Family::default();
        let reactor_commands = Family::default();
        let requests = Family::default();
        let request_seconds: Histograms<RouteLabel> = Family::new_with_constructor(seconds_histogram);
        let upcasts = Family::default();
        let snapshots = Family::default();
        r.register(
            "upcasts",
            "Events rewritten by an upcaster, by outcome: ok, failed (the events of a failed call)",
            upcasts.clone(),
        );
        r.register(
            "handler_snapshots",
            "Command-handler snapshots by outcome: used, saved, fallback (unreadable or refused: the whole history was used)",
            snapshots.clone(),
        );
        r.register("projection_events_applied", "Events applied by a projection", applied.clone());
        r.register("projection_batches", "Batches committed by a projection", batches.clone());
        r.register(
            "projection_commits",
            "Transactions committed by a projection (one spans many batches while it catches up)",
            commits.clone(),
        );
        r.register("projection_failures", "Failed batch attempts of a projection", failures.clone());
        r.register(
            "projection_dead_lettered",
            "Events a projection moved to its dead letters",
            dead_lettered.clone(),
        );
        r.register(
            "projection_batch_seconds",
            "Time to apply one batch (and commit it, unless a catch-up transaction spans it)",
            batch_seconds.clone(),
        );
        r.register("projection_position", "Last log position a projection applied", position.clone());
        r.register("projection_lag_events", "Events a projection is behind the head of the log", lag.clone());
        r.register("projection_dead_letters", "Events in a projection's dead letters", dead_letters.clone());
        r.register("log_head_position", "Position of the last event in the log", head.clone());
        r.register(
            "log_commits",
            "Group commits of the event log (with synchronous=FULL one fsync each, unless it wrote nothing)",
            log.commits.clone(),
        );
        r.register(
            "log_committed_appends",
            "Appends answered by the event log's group commits (appends per commit: the ratio to log_commits)",
            log.appends.clone(),
        );
        r.register(
            "log_commit_seconds",
            "Time of one group commit of the event log: version checks, inserts, commit and fsync",
            log.commit_seconds.clone(),
        );
        r.register(
            "log_failed_commits",
            "Group commits of the event log that failed and were rolled back",
            log.failed_commits.clone(),
        );
        r.register("appends", "Appends over HTTP by outcome", appends.clone());
        r.register(
            "plugin_loads",
            "Plugin files read to be loaded, by outcome: loaded, unchanged (same bytes as the version serving), failed",
            plugin_loads.clone(),
        );
        r.register(
            "publisher_position",
            "Last log position the outbox has read past (published, or not of the types published)",
            publisher_position.clone(),
        );
        r.register(
            "publisher_lag_events",
            "Events of the log the outbox has not published yet",
            publisher_lag.clone(),
        );
        r.register("commands", "Commands by handler and outcome", commands.clone());
        r.register(
            "reactor_commands",
            "Commands a reactor sent, by outcome: sent, duplicate (sent before a restart), refused",
            reactor_commands.clone(),
        );
        r.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        r.register(
            "http_request_seconds",
            "HTTP request latency by method and route",
            request_seconds.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: r,
                applied,
                batches,
                commits,
                failures,
                dead_lettered,
                batch_seconds,
                position,
                lag,
                dead_letters,
                head,
                log,
                appends,
                plugin_loads,
                publisher_position,
                publisher_lag,
                commands,
                reactor_commands,
                requests,
                request_seconds,
                upcasts,
                snapshots,
            }),
        }
    }

    /// The metrics of projection `name`.
    pub fn projection(&self, name: &str) -> ProjectionMetrics {
        let l = ProjectionLabel { projection: name.to_owned() };
        let i = &self.inner;
        ProjectionMetrics {
            applied: i.applied.get_or_create(&l).clone(),
            batches: i.batches.get_or_create(&l).clone(),
            commits: i.commits.get_or_create(&l).clone(),
            failures: i.failures.get_or_create(&l).clone(),
            dead_lettered: i.dead_lettered.get_or_create(&l).clone(),
            batch_seconds: i.batch_seconds.get_or_create(&l).clone(),
            name: name.to_owned(),
            reactor_commands: i.reactor_commands.clone(),
        }
    }

    /// The metrics of the event log's writer.
    pub fn log(&self) -> LogMetrics {
        self.inner.log.clone()
    }

    /// Counts an append by outcome (`ok`, `conflict`, `invalid`, `error`).
    pub fn append(&self, outcome: &'static str) {
        self.inner.appends.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts a plugin file read to be loaded, by outcome (`loaded`,
    /// `unchanged`, `failed`).
    pub fn plugin_load(&self, outcome: &'static str) {
        self.inner.plugin_loads.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Sets the outbox's position and lag for JetStream stream `stream`.
    pub fn publisher(&self, stream: &str, position: u64, head: u64) {
        let l = StreamLabel { stream: stream.to_owned() };
        self.inner.publisher_position.get_or_create(&l).set(position as i64);
        self.inner.publisher_lag.get_or_create(&l).set(head.saturating_sub(position) as i64);
    }

    /// Counts a command by handler and outcome.
    pub fn command(&self, handler: &str, outcome: &str) {
        let l = CommandLabel { handler: handler.to_owned(), outcome: outcome.to_owned() };
        self.inner.commands.get_or_create(&l).inc();
    }

    /// Counts `events` rewritten by `upcaster`, by outcome (`ok`, `failed`).
    pub fn upcast(&self, upcaster: &str, outcome: &'static str, events: u64) {
        let l = UpcastLabel { upcaster: upcaster.to_owned(), outcome };
        self.inner.upcasts.get_or_create(&l).inc_by(events);
    }

    /// Counts a command-handler snapshot by outcome (`used`, `saved`,
    /// `fallback`).
    pub fn snapshot(&self, outcome: &'static str) {
        self.inner.snapshots.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Records an HTTP request (`method` from [`method_label`]).
    pub fn request(&self, method: &'static str, route: Route, status: u16, took: Duration) {
        let i = &self.inner;
        let l = RouteLabel { method, route };
        i.request_seconds.get_or_create(&l).observe(took.as_secs_f64());
        let l = RequestLabel { method, route: l.route, status };
        i.requests.get_or_create(&l).inc();
    }

    /// The OpenMetrics text, with gauges set from `projections` and `head`.
    pub fn render(&self, head: u64, projections: &[ProjectionGauges<'_>]) -> String {
        let i = &self.inner;
        i.head.set(head as i64);
        for p in projections {
            let l = ProjectionLabel { projection: p.name.to_owned() };
            i.position.get_or_create(&l).set(p.position as i64);
            i.lag.get_or_create(&l).set(head.saturating_sub(p.position) as i64);
            i.dead_letters.get_or_create(&l).set(p.dead_letters as i64);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &i.registry).is_err() {
            out.clear();
        }
        out
    }
}
