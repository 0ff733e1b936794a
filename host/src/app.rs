//! Wiring: open the log, load the plugins, start the runners, serve HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::command::Handlers;
use crate::evolution::{Contracts, SnapshotStore, Upcasters};
use crate::http::{self, HttpOptions};
use crate::inbox::{Ingest, IngestOptions};
use crate::log::{EventLog, LogLocation, LogOptions};
use crate::metrics::Metrics;
use crate::outbox::{PublishOptions, Publisher};
use crate::plugin::{PluginEngine, SandboxLimits};
use crate::projection::{ErrorPolicy, ProjectionOptions, Projections, RunnerOptions};
use crate::reload::{self, InvalidPlugin, PluginFiles};
use crate::subscribe::{SubscribeOptions, Subscriptions};

/// Everything configurable about a refract host.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `projections/`, the compile cache and (unless the log is in
    /// PostgreSQL) `events.db`.
    pub data_dir: PathBuf,
    /// The log in PostgreSQL (`postgres://USER@HOST:PORT/DB`); `None`: the
    /// SQLite file `events.db` in the data directory.
    pub log_url: Option<String>,
    /// Read-model snapshots to start projections from (`refract snapshot`):
    /// a projection with no read model yet starts from its snapshot's
    /// checkpoint instead of position 1.
    pub snapshots: Vec<(String, PathBuf)>,
    /// Where `.wasm` plugins are loaded from.
    pub plugins_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Event log durability and limits.
    pub log: LogOptions,
    /// Time and memory bounds of plugin calls.
    pub sandbox: SandboxLimits,
    /// The `refract` binary that compiles large components in a process of
    /// its own (see `PluginEngine::with_compiler`); `None` compiles them
    /// in-process.
    pub compiler: Option<PathBuf>,
    /// Projection batching and retries.
    pub runner: RunnerOptions,
    /// HTTP limits.
    pub http: HttpOptions,
    /// Subscriptions (`GET /subscribe`).
    pub subscribe: SubscribeOptions,
    /// Publish the log to NATS JetStream (the outbox).
    pub publish: Option<PublishOptions>,
    /// Take messages of NATS JetStream streams in (the inbox).
    pub ingests: Vec<IngestOptions>,
    /// Watch the plugins directory and hot-reload changes.
    pub watch: bool,
    /// Error policy of projections not named in `policies`.
    pub default_policy: ErrorPolicy,
    /// Error policy per projection name.
    pub policies: BTreeMap<String, ErrorPolicy>,
    /// Reactors that pause when one of their commands is refused (the
    /// others record it and go on).
    pub pause_on_refused: BTreeSet<String>,
    /// Delete a projection's databases when its plugin file is removed.
    pub drop_removed: bool,
    /// Serve on a non-loopback address without a token (not recommended).
    pub allow_open: bool,
    /// Keep a command handler's state for a stream each time it folded at
    /// least this many events (`DATA/snapshots`); 0: no snapshots.
    pub snapshot_every: u64,
}

impl Config {
    /// Defaults for a data directory and a plugins directory.
    pub fn new(data_dir: impl Into<PathBuf>, plugins_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            log_url: None,
            snapshots: Vec::new(),
            plugins_dir: plugins_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            log: LogOptions::default(),
            sandbox: SandboxLimits::default(),
            compiler: None,
            runner: RunnerOptions::default(),
            http: HttpOptions::default(),
            subscribe: SubscribeOptions::default(),
            publish: None,
            ingests: Vec::new(),
            watch: true,
            default_policy: ErrorPolicy::Pause,
            policies: BTreeMap::new(),
            pause_on_refused: BTreeSet::new(),
            drop_removed: false,
            allow_open: false,
            snapshot_every: 100,
        }
    }
}

/// A running host: the log, the projections and their runners, the
/// command handlers.
pub struct App {
    /// The event log.
    pub log: EventLog,
    /// The loaded projections.
    pub projections: Projections,
    /// The loaded command handlers, the schema contracts and the handler
    /// snapshots.
    pub handlers: Arc<Handlers>,
    /// The loaded upcasters.
    pub upcasters: Arc<Upcasters>,
    /// Each projection's recent progress, for the console.
    pub history: crate::projection::history::History,
    /// Which plugin file provides what; the files that failed to load.
    pub files: PluginFiles,
    /// HTTP limits.
    pub http: HttpOptions,
    /// The engine plugins are compiled and run with.
    pub engine: PluginEngine,
    /// Every metric.
    pub metrics: Metrics,
    /// Live subscriptions to the log.
    pub subscriptions: Arc<Subscriptions>,
    /// The outbox's publisher, if the log is published.
    pub publisher: Option<Arc<Publisher>>,
    /// The inbox's ingests.
    pub ingests: Mutex<Vec<Arc<Ingest>>>,
    /// This node's identity among the nodes of a shared log (a lease's
    /// holder), new at each start.
    pub node_id: String,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl App {
    /// Where the log is, for this configuration.
    pub fn log_location(config: &Config) -> LogLocation {
        match &config.log_url {
            Some(url) => LogLocation::Postgres(url.clone()),
            None => LogLocation::Sqlite(config.data_dir.join("events.db")),
        }
    }

    /// Opens the data directory and the log, loads every plugin and starts
    /// the projection runners. Must be called on a multi-threaded tokio
    /// runtime.
    pub async fn start(config: &Config) -> anyhow::Result<Arc<App>> {
        if !config.listen.ip().is_loopback() && config.http.token.is_none() && !config.allow_open {
            anyhow::bail!(
                "refusing to listen on {} without a token: anyone who can reach it could write events; \
                 set --token (or REFRACT_TOKEN), or pass --insecure-no-token to serve without access control",
                config.listen
            );
        }
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("while creating the data directory {}", config.data_dir.display()))?;
        let location = Self::log_location(config);
        let metrics = Metrics::new();
        let log = EventLog::open_at(&location, config.log.clone(), metrics.log())
            .await
            .with_context(|| format!("while opening the event log {location}"))?;
        tracing::info!(log = %location, backend = log.backend(), head = log.head(), "event log open");
        let engine = PluginEngine::new(config.sandbox, Some(&config.data_dir.join("cache")))
            .context("while creating the wasm engine")?
            .with_compiler(config.compiler.clone());
        let snapshots = (config.snapshot_every > 0)
            .then(|| SnapshotStore::new(config.data_dir.join("snapshots"), config.snapshot_every));
        let handlers = Arc::new(Handlers::new(Arc::new(Contracts::default()), snapshots, metrics.clone()));
        let projections = Projections::new(
            log.clone(),
            handlers.clone(),
            ProjectionOptions {
                dir: config.data_dir.join("projections"),
                runner: config.runner,
                default_policy: config.default_policy,
                policies: config.policies.clone(),
                pause_on_refused: config.pause_on_refused.clone(),
                drop_removed: config.drop_removed,
            },
            metrics.clone(),
        )
        .context("while preparing the projections directory")?;
        for (name, file) in &config.snapshots {
            projections
                .install_snapshot(name, file)
                .with_context(|| format!("while installing the snapshot {} of {name}", file.display()))?;
        }
        let subscriptions = Subscriptions::start(log.clone(), config.subscribe);
        let node_id = uuid::Uuid::new_v4().to_string();
        let publisher = config
            .publish
            .clone()
            .map(|p| Publisher::start(log.clone(), p, node_id.clone(), metrics.clone()));
        let upcasters = Arc::new(Upcasters::new(handlers.contracts.clone()));
        let app = Arc::new(App {
            log,
            projections,
            handlers,
            upcasters,
            history: Default::default(),
            files: PluginFiles::default(),
            http: config.http.clone(),
            engine,
            metrics,
            subscriptions,
            publisher,
            ingests: Mutex::new(Vec::new()),
            node_id,
            watcher: Mutex::new(None),
        });
        let dir = &config.plugins_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("while creating the plugins directory {}", dir.display()))?;
        // Plugins run synchronously (describe, migrations); WASI calls
        // must not meet the runtime's own thread.
        tokio::task::block_in_place(|| reload::load_dir(&app, dir))
            .with_context(|| format!("while reading the plugins directory {}", dir.display()))?;
        for options in &config.ingests {
            let ingest =
                Ingest::start(options.clone(), Arc::downgrade(&app), &config.data_dir.join("inbox.db"))
                    .map_err(|e| anyhow::anyhow!("ingest {}: {e}", options.name))?;
            app.ingests.lock().unwrap_or_else(|p| p.into_inner()).push(ingest);
        }
        let weak = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::projection::history::INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { return };
                http::projections::sample(&app).await;
            }
        });
        if config.watch {
            match reload::watch(app.clone(), dir.clone()) {
                Ok(w) => *app.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the plugins directory; hot reload is off")
                }
            }
        }
        Ok(app)
    }

    /// The plugin files that failed to load.
    pub fn invalid_plugins(&self) -> Vec<InvalidPlugin> {
        self.files.invalid()
    }

    /// Serves the HTTP API on `listener` until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "refract listening");
        http::serve::serve(listener, http::router(self.clone()), &self.http, shutdown).await;
        Ok(())
    }

    /// Stops the runners and the log writer; pending work is finished or
    /// rolled back, never half-written.
    pub fn shutdown(&self) {
        self.watcher.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(p) = &self.publisher {
            p.stop();
        }
        self.projections.shutdown();
        self.log.close();
    }
}
