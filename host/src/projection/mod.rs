//! Projections: each plugin's read model in its own SQLite file, fed from
//! the log by its own runner thread.
//!
//! One slow or failing projection never blocks appends (separate files,
//! separate locks) nor other projections (separate threads).

mod runner;
mod sql;
mod status;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use runner::RunnerOptions;
pub use status::{Failure, State, Status};

use crate::db::ReadPool;
use crate::log::EventLog;
use crate::plugin::ProjectionPlugin;
use crate::plugin::guard::{Policy, SqlGuard};

/// State shared between a runner thread and its readers.
pub(crate) struct Shared {
    status: Mutex<Status>,
    checkpoint: watch::Sender<u64>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// A loaded projection.
pub struct Projection {
    name: String,
    shared: Arc<Shared>,
    readers: ReadPool,
    shutdown: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Projection {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of its status.
    pub fn status(&self) -> Status {
        self.shared.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last log position whose effects are committed in its database.
    pub fn checkpoint(&self) -> u64 {
        *self.shared.checkpoint.borrow()
    }

    /// Waits until the checkpoint reaches `min` or `timeout` passes; returns
    /// the checkpoint reached.
    pub async fn wait_for(&self, min: u64, timeout: Duration) -> u64 {
        let mut rx = self.shared.checkpoint.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= min)).await;
        *rx.borrow()
    }

    /// Read-only connections to its database (SELECT only, no ATTACH).
    pub fn readers(&self) -> &ReadPool {
        &self.readers
    }

    fn stop(&self) {
        self.shutdown.send_replace(true);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Where projections live and how they run.
#[derive(Debug, Clone)]
pub struct ProjectionOptions {
    /// Directory of the projection databases (`DATA/projections`).
    pub dir: PathBuf,
    /// The event log's file, read by every runner.
    pub log_path: PathBuf,
    /// Batching and retries.
    pub runner: RunnerOptions,
}

/// Every loaded projection, by name.
pub struct Projections {
    loaded: RwLock<BTreeMap<String, Arc<Projection>>>,
    log: EventLog,
    options: ProjectionOptions,
}

impl Projections {
    /// An empty set of projections over `log`.
    pub fn new(log: EventLog, options: ProjectionOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        Ok(Self { loaded: RwLock::new(BTreeMap::new()), log, options })
    }

    /// Starts `plugin`'s runner. Fails if a projection of the same name is
    /// already loaded. Must be called inside a tokio runtime.
    pub fn add(&self, plugin: ProjectionPlugin) -> Result<(), String> {
        let name = plugin.description.name.clone();
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = loaded.get(&name) {
            return Err(format!(
                "a projection named {name:?} is already loaded from {}; projection names must be unique",
                existing.status().file
            ));
        }
        tracing::info!(
            projection = %name,
            version = %plugin.description.version,
            file = %plugin.path.display(),
            "loaded projection"
        );
        let projection = self.start(plugin).map_err(|e| format!("cannot start: {e}"))?;
        loaded.insert(name, projection);
        Ok(())
    }

    fn start(&self, plugin: ProjectionPlugin) -> anyhow::Result<Arc<Projection>> {
        let d = &plugin.description;
        let db_path = self.options.dir.join(format!("{}.db", d.name));
        let status = Status {
            name: d.name.clone(),
            version: d.version.clone(),
            hash: plugin.hash.clone(),
            file: plugin.path.display().to_string(),
            status: State::Starting,
            position: 0,
            events_applied: 0,
            error: None,
        };
        let shared = Arc::new(Shared { status: Mutex::new(status), checkpoint: watch::channel(0).0 });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let runner = runner::Runner {
            shared: shared.clone(),
            plugin: Arc::new(plugin),
            db_path: db_path.clone(),
            log_path: self.options.log_path.clone(),
            head: self.log.subscribe(),
            shutdown: shutdown_rx,
            options: self.options.runner,
            rt: tokio::runtime::Handle::current(),
        };
        let name = runner.plugin.description.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("refract-projection-{name}"))
            .spawn(move || runner.run())?;
        Ok(Arc::new(Projection {
            name,
            shared,
            readers: ReadPool::new(db_path, 8, |c| SqlGuard::install(c, Policy::ReadOnly).map(|_| ())),
            shutdown,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The projection called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Projection>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every loaded projection, by name.
    pub fn all(&self) -> Vec<Arc<Projection>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Stops every runner (each finishes or rolls back its current batch).
    pub fn shutdown(&self) {
        for p in self.all() {
            p.stop();
        }
    }
}
