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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

pub use runner::RunnerOptions;
pub use status::{Failure, State, Status};

use crate::db::ReadPool;
use crate::log::EventLog;
use crate::plugin::guard::{Policy, SqlGuard};
use crate::plugin::{PluginEngine, ProjectionPlugin};

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

/// A plugin file that could not be loaded.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidPlugin {
    /// The file's name without `.wasm`.
    pub name: String,
    /// The file.
    pub file: String,
    /// Always `invalid`.
    pub status: &'static str,
    /// Why it could not be loaded.
    pub error: String,
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

/// Every loaded projection, by name, and the files that failed to load.
pub struct Projections {
    loaded: RwLock<BTreeMap<String, Arc<Projection>>>,
    invalid: RwLock<Vec<InvalidPlugin>>,
    engine: PluginEngine,
    log: EventLog,
    options: ProjectionOptions,
}

impl Projections {
    /// An empty set of projections over `log`.
    pub fn new(engine: PluginEngine, log: EventLog, options: ProjectionOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        Ok(Self {
            loaded: RwLock::new(BTreeMap::new()),
            invalid: RwLock::new(Vec::new()),
            engine,
            log,
            options,
        })
    }

    /// Loads every `*.wasm` projection in `dir` (in name order) and starts
    /// it. Files that fail to load are logged and listed as invalid; the
    /// others still start. Must be called inside a tokio runtime.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<()> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read the plugins directory {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            if let Err(error) = self.load(&file) {
                tracing::error!(file = %file.display(), %error, "plugin not loaded");
                let name = file.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                self.invalid.write().unwrap_or_else(|p| p.into_inner()).push(InvalidPlugin {
                    name,
                    file: file.display().to_string(),
                    status: "invalid",
                    error,
                });
            }
        }
        Ok(())
    }

    /// Loads and starts the projection in `file`.
    pub fn load(&self, file: &Path) -> Result<(), String> {
        let plugin = self.engine.load_projection(file).map_err(|e| e.to_string())?;
        let name = plugin.description.name.clone();
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = loaded.get(&name) {
            return Err(format!(
                "a projection named {name:?} is already loaded from {}; projection names must be unique",
                existing.status().file
            ));
        }
        tracing::info!(projection = %name, version = %plugin.description.version, file = %file.display(), "loaded projection");
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

    /// The plugin files that failed to load.
    pub fn invalid(&self) -> Vec<InvalidPlugin> {
        self.invalid.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops every runner (each finishes or rolls back its current batch).
    pub fn shutdown(&self) {
        for p in self.all() {
            p.stop();
        }
    }
}
