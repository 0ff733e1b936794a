//! Wiring: open the log, load the plugins, start the runners, serve HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::command::Handlers;
use crate::http::{self, HttpOptions};
use crate::log::{EventLog, LogOptions};
use crate::plugin::{PluginEngine, SandboxLimits};
use crate::projection::{ProjectionOptions, Projections, RunnerOptions};
use crate::reload::{self, InvalidPlugin};

/// Everything configurable about a refract host.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `events.db` and `projections/`.
    pub data_dir: PathBuf,
    /// Where `.wasm` plugins are loaded from.
    pub plugins_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Event log durability and limits.
    pub log: LogOptions,
    /// Time and memory bounds of plugin calls.
    pub sandbox: SandboxLimits,
    /// Projection batching and retries.
    pub runner: RunnerOptions,
    /// HTTP limits.
    pub http: HttpOptions,
}

impl Config {
    /// Defaults for a data directory and a plugins directory.
    pub fn new(data_dir: impl Into<PathBuf>, plugins_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            plugins_dir: plugins_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            log: LogOptions::default(),
            sandbox: SandboxLimits::default(),
            runner: RunnerOptions::default(),
            http: HttpOptions::default(),
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
    /// The loaded command handlers.
    pub handlers: Handlers,
    /// Plugin files that failed to load, with the reason.
    pub invalid: std::sync::RwLock<Vec<InvalidPlugin>>,
    /// HTTP limits.
    pub http: HttpOptions,
    /// The engine plugins are compiled and run with.
    pub engine: PluginEngine,
}

impl App {
    /// Opens the data directory, loads every plugin and starts the
    /// projection runners. Must be called inside a tokio runtime.
    pub fn start(config: &Config) -> anyhow::Result<Arc<App>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("while creating the data directory {}", config.data_dir.display()))?;
        let log_path = config.data_dir.join("events.db");
        let log = EventLog::open(&log_path, config.log.clone())
            .with_context(|| format!("while opening the event log {}", log_path.display()))?;
        let engine = PluginEngine::new(config.sandbox).context("while creating the wasm engine")?;
        let projections = Projections::new(
            log.clone(),
            ProjectionOptions { dir: config.data_dir.join("projections"), log_path, runner: config.runner },
        )
        .context("while preparing the projections directory")?;
        let handlers = Handlers::default();
        let mut invalid = Vec::new();
        if config.plugins_dir.is_dir() {
            let files = reload::wasm_files(&config.plugins_dir).with_context(|| {
                format!("while reading the plugins directory {}", config.plugins_dir.display())
            })?;
            for file in files {
                if let Err(bad) = reload::load_file(&engine, &projections, &handlers, &file) {
                    invalid.push(bad);
                }
            }
        } else {
            tracing::warn!(dir = %config.plugins_dir.display(), "plugins directory does not exist; no plugins loaded");
        }
        Ok(Arc::new(App {
            log,
            projections,
            handlers,
            invalid: std::sync::RwLock::new(invalid),
            http: config.http.clone(),
            engine,
        }))
    }

    /// The plugin files that failed to load.
    pub fn invalid_plugins(&self) -> Vec<InvalidPlugin> {
        self.invalid.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves the HTTP API on `listener` until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "refract listening");
        axum::serve(listener, http::router(self.clone()))
            .with_graceful_shutdown(shutdown)
            .await
            .context("while serving HTTP")
    }

    /// Stops the runners and the log writer; pending work is finished or
    /// rolled back, never half-written.
    pub fn shutdown(&self) {
        self.projections.shutdown();
        self.log.close();
    }
}
