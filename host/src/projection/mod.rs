//! Projections: each plugin's read model in its own SQLite file, fed from
//! the log by its own runner thread.
//!
//! One slow or failing projection never blocks appends (separate files,
//! separate locks) nor other projections (separate threads). A new version
//! of a projection is built blue/green: a second runner builds a new file
//! from position 1 while the current one keeps answering queries, and the
//! two are swapped once the new one has caught up with the log.

mod dispatch;
pub mod history;
mod layout;
mod row_cache;
mod runner;
mod sql;
mod status;
mod store;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use dispatch::{CommandStats, RefusedCommand};
pub use row_cache::RowCache;
pub use runner::{ErrorPolicy, RunnerOptions};
pub use status::{DeadLetter, Failure, Rebuild, State, Status};
pub use store::MetaInfo;
pub use verify::{Report as VerifyReport, TableReport};

use crate::command::Handlers;
use crate::db::ReadPool;
use crate::log::EventLog;
use crate::metrics::{Metrics, ProjectionMetrics};
use crate::plugin::guard::{Policy, SqlGuard};
use crate::plugin::{Kind, ProjectionPlugin};

/// Operator requests to a runner. Counters change once per request, so a
/// runner acts on each exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Control {
    paused: bool,
    resume: u64,
    skip: u64,
    retry_dead_letters: u64,
}

/// State shared between a runner thread and everything that reads it.
pub(crate) struct Shared {
    status: Mutex<Status>,
    /// This build's checkpoint.
    checkpoint: watch::Sender<u64>,
    /// The projection's public checkpoint, which readers wait on; set only
    /// while this build is the one serving.
    public: RwLock<Option<Arc<watch::Sender<u64>>>>,
    control: watch::Sender<Control>,
    metrics: ProjectionMetrics,
    /// Nudges a reactor's dispatcher after a commit.
    commands: tokio::sync::Notify,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last checkpoint committed (and published) by this build.
    fn committed(&self) -> u64 {
        *self.checkpoint.borrow()
    }

    fn publish(&self, checkpoint: u64) {
        self.checkpoint.send_replace(checkpoint);
        if let Some(p) = &*self.public.read().unwrap_or_else(|p| p.into_inner()) {
            p.send_if_modified(|c| {
                let newer = checkpoint > *c;
                *c = (*c).max(checkpoint);
                newer
            });
        }
    }
}

/// One build of a projection: a database file and the runner feeding it.
struct Generation {
    shared: Arc<Shared>,
    /// The plugin feeding it; `None` for a build kept serving after its
    /// plugin was replaced.
    plugin: Option<Arc<ProjectionPlugin>>,
    readers: ReadPool,
    /// Rows read by key from this build, valid for its current checkpoint.
    rows: Arc<RowCache>,
    db_path: PathBuf,
    shutdown: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// A reactor's dispatcher, while this build is the serving one.
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Generation {
    /// Starts sending a reactor's commands; only the serving build does.
    fn dispatch(
        &self,
        log: &EventLog,
        handlers: &Arc<Handlers>,
        pause_on_refused: bool,
    ) -> std::io::Result<()> {
        let Some(plugin) = self.plugin.as_ref().filter(|p| p.kind() == Kind::Reactor) else { return Ok(()) };
        let mut slot = self.dispatcher.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() || *self.shutdown.borrow() {
            return Ok(());
        }
        let d = dispatch::Dispatcher {
            name: plugin.description.name.clone(),
            db_path: self.db_path.clone(),
            log: log.clone(),
            handlers: handlers.clone(),
            shared: self.shared.clone(),
            pause_on_refused,
            shutdown: self.shutdown.subscribe(),
            rt: tokio::runtime::Handle::current(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("refract-dispatch-{}", plugin.description.name))
            .spawn(move || d.run())?;
        *slot = Some(thread);
        Ok(())
    }

    /// Stops the runner and the dispatcher, leaving the file serving
    /// queries.
    fn halt(&self) {
        self.shutdown.send_replace(true);
        self.shared.commands.notify_one();
        for t in [&self.thread, &self.dispatcher] {
            if let Some(t) = t.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = t.join();
            }
        }
    }

    /// Stops the build and deletes its files once the last read that took
    /// it is done (see [`ReadPool::retire`]).
    fn retire(&self) {
        self.stop();
        self.readers.retire();
    }

    fn stop(&self) {
        // Read-only connections close first, so the writer's close removes
        // the WAL (see `ReadPool::clear`).
        self.readers.clear();
        self.halt();
    }
}

/// The serving build of a projection, for one read (see [`Projection::serving`]).
pub struct Serving {
    /// Read-only connections to its database.
    pub readers: ReadPool,
    /// Its checkpoint when the read began.
    pub checkpoint: u64,
    /// Rows read by key, valid while `checkpoint` is current.
    pub rows: Arc<RowCache>,
}

/// A loaded projection.
pub struct Projection {
    name: String,
    current: RwLock<Arc<Generation>>,
    builds: Mutex<Builds>,
    /// Held by a cut-over from the moment it takes its build out of
    /// [`Builds::shadow`] until that build serves: cut-overs happen one at
    /// a time, in the order their builds started.
    switch: tokio::sync::Mutex<()>,
    /// The checkpoint of whichever build is serving.
    checkpoint: Arc<watch::Sender<u64>>,
}

/// The builds of a projection beside the serving one.
#[derive(Default)]
struct Builds {
    /// The build under way: the newest rebuild. A new version of the
    /// plugin replaces it; a rebuild request for the same version joins it.
    shadow: Option<Arc<Generation>>,
    /// A build that has caught up and is becoming the serving one; nothing
    /// but its own cut-over touches it.
    switching: Option<Arc<Generation>>,
}

/// What a rebuild request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildStart {
    /// A new build was started (one under way for other plugin bytes, or
    /// one that had failed, was abandoned).
    Started {
        /// The new build's file name.
        build: String,
    },
    /// A build of the same plugin bytes was already under way; the request
    /// joined it.
    AlreadyRunning {
        /// That build's file name.
        build: String,
    },
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Why an operation on a projection was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// `skip` on a projection that is not stopped at an event.
    #[error("projection {0} is not stopped at an event; nothing to skip")]
    NothingToSkip(String),
    /// Reading its bookkeeping failed.
    #[error("{0}")]
    Storage(String),
}

/// Why a projection could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The serving build's plugin was replaced by a new version that is
    /// still building: there is no plugin to rebuild the serving one with.
    #[error(
        "projection {0} is serving a build whose plugin was replaced; verify it once the new build has taken over"
    )]
    PluginReplaced(String),
    /// The scratch rebuild or the comparison failed.
    #[error("{0}")]
    Failed(String),
}

impl Projection {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn current(&self) -> Arc<Generation> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn builds(&self) -> std::sync::MutexGuard<'_, Builds> {
        self.builds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The build under way beside the serving one, if any: the one being
    /// switched in, else the newest rebuild.
    fn shadow(&self) -> Option<Arc<Generation>> {
        let b = self.builds();
        b.switching.clone().or_else(|| b.shadow.clone())
    }

    /// A snapshot of its status; while a new build is under way, `status`
    /// is `rebuilding` and `rebuild` tells its progress.
    pub fn status(&self) -> Status {
        let mut s = self.current().shared.status();
        if let Some(shadow) = self.shadow() {
            let b = shadow.shared.status();
            s.rebuild = Some(Rebuild {
                status: b.status,
                version: b.version,
                hash: b.hash,
                position: b.position,
                error: b.error,
            });
            if s.status != State::Paused {
                s.status = State::Rebuilding;
            }
        }
        s
    }

    /// The plugin of the newest build: the one rebuilding beside the
    /// serving one, else the serving one's.
    pub fn plugin(&self) -> Option<Arc<ProjectionPlugin>> {
        self.shadow().and_then(|g| g.plugin.clone()).or_else(|| self.current().plugin.clone())
    }

    /// The last log position whose effects are committed in the serving
    /// database.
    pub fn checkpoint(&self) -> u64 {
        *self.checkpoint.borrow()
    }

    /// Waits until the checkpoint reaches `min` or `timeout` passes; returns
    /// the checkpoint reached.
    pub async fn wait_for(&self, min: u64, timeout: Duration) -> u64 {
        let mut rx = self.checkpoint.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= min)).await;
        *rx.borrow()
    }

    /// Read-only connections to the serving database (SELECT only).
    pub fn readers(&self) -> ReadPool {
        self.current().readers.clone()
    }

    /// What a read of the serving build needs: its connections, its own
    /// checkpoint (which moves exactly when its tables change) and its cache
    /// of rows read by key.
    pub fn serving(&self) -> Serving {
        let g = self.current();
        Serving {
            readers: g.readers.clone(),
            checkpoint: *g.shared.checkpoint.borrow(),
            rows: g.rows.clone(),
        }
    }

    fn control(&self, f: impl FnOnce(&mut Control)) {
        self.current().shared.control.send_modify(f);
    }

    /// Stops applying events until [`Projection::resume`]; survives restarts.
    pub fn pause(&self) {
        self.control(|c| c.paused = true);
    }

    /// Continues after a pause, or retries the event a failed projection
    /// stopped at.
    pub fn resume(&self) {
        self.control(|c| {
            c.paused = false;
            c.resume += 1;
        });
    }

    /// Moves the event a failed projection stopped at into its dead
    /// letters, and continues.
    pub fn skip(&self) -> Result<u64, OpError> {
        let s = self.current().shared.status();
        match (s.status, s.error.and_then(|e| e.position)) {
            (State::Failed, Some(position)) => {
                self.control(|c| c.skip += 1);
                Ok(position)
            }
            _ => Err(OpError::NothingToSkip(self.name.clone())),
        }
    }

    /// Applies every dead letter again (each on its own, in position order).
    pub fn retry_dead_letters(&self) {
        self.control(|c| c.retry_dead_letters += 1);
    }

    /// A consistent copy of the serving database (`VACUUM INTO` a file in
    /// `dir`): its tables, its checkpoint and the hash of the plugin that
    /// built it, for a new node to start from. The file is unlinked once
    /// open: dropping the handle frees it.
    pub fn snapshot(&self, dir: &Path) -> Result<(std::fs::File, store::MetaInfo), OpError> {
        let storage = |e: &dyn std::fmt::Display| OpError::Storage(e.to_string());
        // Held until the copy is made: a cut-over meanwhile keeps the file.
        let current = self.current();
        std::fs::create_dir_all(dir).map_err(|e| storage(&e))?;
        let path = layout::new_file(dir, &self.name).map_err(|e| storage(&e))?;
        std::fs::remove_file(&path).map_err(|e| storage(&e))?;
        let copied = (|| -> Result<(std::fs::File, store::MetaInfo), OpError> {
            let conn = rusqlite::Connection::open_with_flags(
                &current.db_path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| storage(&e))?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(|e| storage(&e))?;
            conn.execute("VACUUM INTO ?1", [path.display().to_string()]).map_err(|e| storage(&e))?;
            drop(conn);
            let meta = store::read_meta(&path).map_err(|e| storage(&e))?;
            let file = std::fs::File::open(&path).map_err(|e| storage(&e))?;
            Ok((file, meta))
        })();
        let _ = store::remove(&path);
        copied
    }

    /// A reactor's refused commands (in the serving database), oldest
    /// first.
    pub fn refused_commands(&self, limit: u64) -> Result<Vec<RefusedCommand>, OpError> {
        let rows = self.readers().with(|c| dispatch::list_refused(c, limit));
        rows.and_then(|r| r).map_err(|e| OpError::Storage(e.to_string()))
    }

    /// Dead letters of the serving database, oldest first.
    pub fn dead_letters(&self, limit: u64) -> Result<Vec<DeadLetter>, OpError> {
        let pool = self.readers();
        let rows = pool.with(|c| -> rusqlite::Result<Vec<DeadLetter>> {
            let mut stmt = c.prepare_cached(sql::LIST_DEAD_LETTERS)?;
            let rows = stmt.query_map([limit], |r| {
                Ok(DeadLetter {
                    position: r.get(0)?,
                    stream_id: r.get(1)?,
                    stream_version: r.get(2)?,
                    event_type: r.get(3)?,
                    error: r.get(4)?,
                    plugin_hash: r.get(5)?,
                    attempts: r.get(6)?,
                    recorded_at: r.get(7)?,
                })
            })?;
            rows.collect()
        });
        rows.and_then(|r| r).map_err(|e| OpError::Storage(e.to_string()))
    }

    fn stop(&self) {
        let (shadow, switching) = {
            let mut b = self.builds();
            (b.shadow.take(), b.switching.clone())
        };
        // A rebuild that never caught up is of no use to anyone: its file
        // goes. One being switched in is complete and may serve after a
        // restart, so it is only stopped.
        if let Some(s) = shadow {
            s.retire();
        }
        if let Some(s) = switching {
            s.stop();
        }
        self.current().stop();
    }
}

/// Where projections live and how they run.
#[derive(Debug, Clone)]
pub struct ProjectionOptions {
    /// Directory of the projection databases (`DATA/projections`).
    pub dir: PathBuf,
    /// Batching and retries.
    pub runner: RunnerOptions,
    /// Error policy of projections not named in `policies`.
    pub default_policy: ErrorPolicy,
    /// Error policy per projection name.
    pub policies: BTreeMap<String, ErrorPolicy>,
    /// Reactors that pause when one of their commands is refused.
    pub pause_on_refused: std::collections::BTreeSet<String>,
    /// Delete a projection's databases when its plugin is removed (by
    /// default they are kept, so putting the plugin back resumes).
    pub drop_removed: bool,
}

/// Every loaded projection, by name.
pub struct Projections {
    loaded: RwLock<BTreeMap<String, Arc<Projection>>>,
    log: EventLog,
    /// Where reactors send their commands.
    handlers: Arc<Handlers>,
    options: ProjectionOptions,
    metrics: Metrics,
}

impl Projections {
    /// An empty set of projections over `log`, whose reactors send their
    /// commands to `handlers`. What an earlier run left behind is removed
    /// first: builds that never took over, with their WAL and
    /// shared-memory files, and `verify`'s scratch databases.
    pub fn new(
        log: EventLog,
        handlers: Arc<Handlers>,
        options: ProjectionOptions,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        sweep(&options.dir);
        Ok(Self { loaded: RwLock::new(BTreeMap::new()), log, handlers, options, metrics })
    }

    /// Starts `plugin`. A projection of the same name already loaded is
    /// rebuilt blue/green with it (`replace`); otherwise the serving
    /// database is resumed from its checkpoint, or — if it was built by
    /// other plugin bytes — kept serving while a new one is built. Must be
    /// called inside a tokio runtime.
    pub fn load(&self, plugin: ProjectionPlugin, replace: bool) -> Result<(), String> {
        let name = plugin.description.name.clone();
        let existing = self.get(&name);
        match existing {
            Some(p) if replace => {
                tracing::info!(projection = %name, file = %plugin.path.display(), "new version: rebuilding blue/green");
                self.rebuild_with(&p, Arc::new(plugin), true)
                    .map(|_| ())
                    .map_err(|e| format!("cannot start the rebuild: {e}"))
            }
            Some(p) => Err(format!(
                "a projection named {name:?} is already loaded from {}; projection names must be unique",
                p.status().file
            )),
            None => {
                let (version, file) = (&plugin.description.version, plugin.path.display());
                match plugin.kind() {
                    Kind::Projection => {
                        tracing::info!(projection = %name, %version, %file, "loaded projection")
                    }
                    Kind::Reactor => tracing::info!(reactor = %name, %version, %file, "loaded reactor"),
                }
                let p = self.open(Arc::new(plugin)).map_err(|e| format!("cannot start: {e}"))?;
                self.loaded.write().unwrap_or_else(|p| p.into_inner()).insert(name, p);
                Ok(())
            }
        }
    }

    fn open(&self, plugin: Arc<ProjectionPlugin>) -> anyhow::Result<Arc<Projection>> {
        let name = plugin.description.name.clone();
        let checkpoint = Arc::new(watch::channel(0).0);
        let serving = layout::current(&self.options.dir, &name);
        let built_by = serving.as_deref().and_then(|p| store::read_hash(p).ok().flatten());
        let mut rebuild = false;
        let fresh = || -> anyhow::Result<Arc<Generation>> {
            let path = layout::new_generation(&self.options.dir, &name, &plugin.hash)?;
            layout::set_current(&path)?;
            layout::remove_others(&path);
            // A reactor new to this log builds its state from the history
            // already there without answering it.
            self.start(&plugin, path, Some(checkpoint.clone()), self.log.head())
        };
        let current = match (serving, built_by) {
            (Some(path), Some(hash)) if hash == plugin.hash => {
                layout::remove_others(&path);
                self.start(&plugin, path, Some(checkpoint.clone()), 0)?
            }
            // Built by another version: keep serving it, frozen, while the
            // new version builds.
            (Some(path), Some(_)) => match self.frozen(&plugin, path, &checkpoint) {
                Ok(frozen) => {
                    rebuild = true;
                    frozen
                }
                Err(e) => {
                    tracing::warn!(projection = %name, error = %e, "previous read model unreadable; building a new one");
                    fresh()?
                }
            },
            // No database yet, or one whose creation never finished (a crash
            // before its bookkeeping was written): start afresh.
            _ => fresh()?,
        };
        let projection = Arc::new(Projection {
            name,
            current: RwLock::new(current),
            builds: Mutex::new(Builds::default()),
            switch: tokio::sync::Mutex::new(()),
            checkpoint,
        });
        if rebuild {
            self.rebuild_with(&projection, plugin, true)?;
        }
        let pause_on_refused = self.options.pause_on_refused.contains(&projection.name);
        projection.current().dispatch(&self.log, &self.handlers, pause_on_refused)?;
        Ok(projection)
    }

    /// A build that serves queries but applies nothing (its plugin is gone).
    fn frozen(
        &self,
        plugin: &ProjectionPlugin,
        path: PathBuf,
        checkpoint: &watch::Sender<u64>,
    ) -> anyhow::Result<Arc<Generation>> {
        let readers = read_pool(&path);
        let position = readers.with(|c| c.query_row(sql::READ_POSITION, [], |r| r.get::<_, u64>(0)))??;
        checkpoint.send_replace(position);
        let mut status = self.new_status(plugin);
        status.position = position;
        status.status = State::Stopped;
        status.version = "(previous version)".into();
        Ok(Arc::new(Generation {
            shared: Arc::new(self.new_shared(status, &plugin.description.name)),
            plugin: None,
            readers,
            rows: Arc::default(),
            db_path: path,
            shutdown: watch::channel(true).0,
            thread: Mutex::new(None),
            dispatcher: Mutex::new(None),
        }))
    }

    fn new_status(&self, plugin: &ProjectionPlugin) -> Status {
        let d = &plugin.description;
        let kind = plugin.kind();
        Status {
            name: d.name.clone(),
            kind,
            version: d.version.clone(),
            hash: plugin.hash.clone(),
            file: plugin.path.display().to_string(),
            status: State::Starting,
            policy: self.policy(&d.name),
            position: 0,
            events_applied: 0,
            events_per_second: 0.0,
            dead_letters: 0,
            error: None,
            rebuild: None,
            commands: (kind == Kind::Reactor).then(CommandStats::default),
        }
    }

    fn new_shared(&self, status: Status, name: &str) -> Shared {
        Shared {
            status: Mutex::new(status),
            checkpoint: watch::channel(0).0,
            public: RwLock::new(None),
            control: watch::channel(Control::default()).0,
            metrics: self.metrics.projection(name),
            commands: tokio::sync::Notify::new(),
        }
    }

    fn policy(&self, name: &str) -> ErrorPolicy {
        self.options.policies.get(name).copied().unwrap_or(self.options.default_policy)
    }

    /// Starts a runner for `plugin` on the database at `path`; a reactor's
    /// new database sends commands only for events after `commands_after`.
    fn start(
        &self,
        plugin: &Arc<ProjectionPlugin>,
        path: PathBuf,
        public: Option<Arc<watch::Sender<u64>>>,
        commands_after: u64,
    ) -> anyhow::Result<Arc<Generation>> {
        let name = plugin.description.name.clone();
        let shared = Arc::new(self.new_shared(self.new_status(plugin), &name));
        *shared.public.write().unwrap_or_else(|p| p.into_inner()) = public;
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Opened here, not in the runner's thread: once this returns, the
        // build's tables exist for readers.
        let opened = store::open(&path, plugin, commands_after);
        let runner = runner::Runner {
            shared: shared.clone(),
            plugin: plugin.clone(),
            policy: self.policy(&name),
            log: self.log.clone(),
            head: self.log.subscribe(),
            control: shared.control.subscribe(),
            shutdown: shutdown_rx,
            options: self.options.runner,
            opened: Some(opened),
            rt: tokio::runtime::Handle::current(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("refract-projection-{name}"))
            .spawn(move || runner.run())?;
        Ok(Arc::new(Generation {
            shared,
            plugin: Some(plugin.clone()),
            readers: read_pool(&path),
            rows: Arc::default(),
            db_path: path,
            shutdown,
            thread: Mutex::new(Some(thread)),
            dispatcher: Mutex::new(None),
        }))
    }

    /// Builds `plugin` into a new database beside the serving one and swaps
    /// it in once caught up. A rebuild under way by the same plugin bytes
    /// (and not failed) is joined unless `restart`; any other is abandoned
    /// and its file deleted.
    fn rebuild_with(
        &self,
        p: &Arc<Projection>,
        plugin: Arc<ProjectionPlugin>,
        restart: bool,
    ) -> anyhow::Result<RebuildStart> {
        let mut builds = p.builds();
        if !restart
            && let Some(s) = &builds.shadow
            && s.plugin.as_ref().is_some_and(|sp| sp.hash == plugin.hash)
            && s.shared.status().status != State::Failed
        {
            return Ok(RebuildStart::AlreadyRunning { build: file_name(&s.db_path) });
        }
        let path = layout::new_generation(&self.options.dir, &p.name, &plugin.hash)?;
        // A reactor's new build answers only events the serving build has
        // not (the hand-over at the cut-over settles the rest).
        let shadow = match self.start(&plugin, path.clone(), None, p.checkpoint()) {
            Ok(s) => s,
            Err(e) => {
                let _ = store::remove(&path);
                return Err(e);
            }
        };
        let previous = builds.shadow.replace(shadow.clone());
        drop(builds);
        if let Some(old) = previous {
            tokio::task::spawn_blocking(move || old.retire());
        }
        let sends = Sends {
            log: self.log.clone(),
            handlers: self.handlers.clone(),
            pause_on_refused: self.options.pause_on_refused.contains(&p.name),
        };
        let p = p.clone();
        tokio::spawn(async move { cut_over(p, shadow, sends).await });
        Ok(RebuildStart::Started { build: file_name(&path) })
    }

    /// Rebuilds projection `name` from position 1 with its newest plugin,
    /// blue/green; a request while such a rebuild is under way joins it.
    /// `None` when no such projection is loaded.
    pub fn rebuild(&self, name: &str) -> anyhow::Result<Option<RebuildStart>> {
        let Some(p) = self.get(name) else { return Ok(None) };
        let plugin = p.shadow().and_then(|s| s.plugin.clone()).or_else(|| p.current().plugin.clone());
        let plugin = plugin.ok_or_else(|| anyhow::anyhow!("projection {name} has no plugin loaded"))?;
        self.rebuild_with(&p, plugin, false).map(Some)
    }

    /// Rebuilds projection `name` from the log into a scratch database and
    /// compares it, row for row, with the serving one at its checkpoint.
    /// Blocks for as long as the rebuild takes; `Ok(None)` when no such
    /// projection is loaded.
    pub fn verify(&self, name: &str) -> Result<Option<VerifyReport>, VerifyError> {
        let Some(p) = self.get(name) else { return Ok(None) };
        let current = p.current();
        let plugin = current.plugin.clone().ok_or_else(|| VerifyError::PluginReplaced(name.to_owned()))?;
        let scratch = self.options.dir.join(VERIFY_DIR);
        let batch = self.options.runner.batch_size;
        // `current` is held until the comparison is done: a cut-over
        // meanwhile leaves its file in place until then.
        verify::verify(&plugin, &current.db_path, &self.log, &scratch, batch)
            .map(Some)
            .map_err(VerifyError::Failed)
    }

    /// Makes the read-model snapshot `file` (written by `refract snapshot`,
    /// that is `GET /projections/{name}/snapshot`) the serving build of
    /// projection `name`, unless it has one already (then the snapshot is
    /// left unused, with a warning). Call it before the projection's plugin
    /// loads: a plugin of the same bytes as the snapshot's continues from
    /// its checkpoint; other bytes rebuild from position 1 as usual.
    pub fn install_snapshot(&self, name: &str, file: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let meta = store::read_meta(file)
            .with_context(|| format!("{} is not a refract read model", file.display()))?;
        anyhow::ensure!(
            meta.name == name,
            "{} is a snapshot of projection {:?}, not {name:?}",
            file.display(),
            meta.name
        );
        if let Some(serving) = layout::current(&self.options.dir, name) {
            tracing::warn!(projection = %name, serving = %serving.display(), snapshot = %file.display(),
                "the projection has a read model already; the snapshot is not used");
            return Ok(());
        }
        let path = layout::new_generation(&self.options.dir, name, &meta.hash)?;
        if let Err(e) = std::fs::copy(file, &path) {
            let _ = store::remove(&path);
            return Err(e).with_context(|| format!("cannot copy {}", file.display()));
        }
        layout::set_current(&path)?;
        tracing::info!(projection = %name, position = meta.position, hash = %meta.hash, "read model installed from a snapshot");
        Ok(())
    }

    /// Where snapshots are made before they are sent (emptied at start).
    pub fn scratch_dir(&self) -> PathBuf {
        self.options.dir.join(VERIFY_DIR)
    }

    /// Stops and forgets projection `name`; its databases stay on disk
    /// unless [`ProjectionOptions::drop_removed`] is set.
    pub fn remove(&self, name: &str) -> bool {
        let removed = self.loaded.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(p) = &removed {
            p.stop();
            if self.options.drop_removed {
                let dir = layout::dir(&self.options.dir, name);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {
                        tracing::info!(projection = %name, "projection unloaded; its databases were deleted")
                    }
                    Err(e) => {
                        tracing::warn!(projection = %name, error = %e, "projection unloaded; cannot delete its databases")
                    }
                }
            } else {
                tracing::info!(projection = %name, "projection unloaded; its database is kept");
            }
        }
        removed.is_some()
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

/// `verify`'s scratch databases, under the projections directory.
const VERIFY_DIR: &str = ".verify";

/// Removes, in every projection's directory, the files of builds other
/// than the serving one; and `verify`'s scratch files. Only at start,
/// before any build runs.
fn sweep(root: &Path) {
    layout::clear_dir(&root.join(VERIFY_DIR));
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(serving) = layout::current(root, &name) {
            layout::remove_others(&serving);
        }
    }
}

/// Idle read connections kept per projection build: enough for the readers
/// one host serves at once, so connections are reused rather than reopened.
const READ_POOL_IDLE: usize = 32;

fn read_pool(path: &Path) -> ReadPool {
    ReadPool::new(path.to_path_buf(), READ_POOL_IDLE, |c| SqlGuard::install(c, Policy::ReadOnly).map(|_| ()))
}

/// Where a reactor's serving build sends its commands.
struct Sends {
    log: EventLog,
    handlers: Arc<Handlers>,
    pause_on_refused: bool,
}

/// Waits until `shadow` has caught up with the head of the log, then makes
/// it the serving build of `p`: queries switch to it at once (reads under
/// way finish on the old file), and the old build is stopped and its file
/// deleted once the last of those reads is done.
async fn cut_over(p: Arc<Projection>, shadow: Arc<Generation>, sends: Sends) {
    let log = &sends.log;
    let mut checkpoint = shadow.shared.checkpoint.subscribe();
    let wanted = |p: &Projection| p.builds().shadow.as_ref().is_some_and(|s| Arc::ptr_eq(s, &shadow));
    loop {
        if !wanted(&p) || *shadow.shutdown.borrow() {
            return;
        }
        let status = shadow.shared.status().status;
        if status == State::Live && *checkpoint.borrow() >= log.head() {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), checkpoint.changed()).await;
    }
    let _switch = p.switch.lock().await;
    {
        // From here on only this task touches the build: a new rebuild
        // request starts another, which cuts over after this one.
        let mut builds = p.builds();
        if !builds.shadow.as_ref().is_some_and(|s| Arc::ptr_eq(s, &shadow)) || *shadow.shutdown.borrow() {
            return;
        }
        builds.shadow = None;
        builds.switching = Some(shadow.clone());
    }
    let reactor = shadow.plugin.as_ref().is_some_and(|p| p.kind() == Kind::Reactor);
    if reactor {
        // One build of a reactor sends commands at a time: the old one
        // stops (it keeps answering queries), and the new one takes over
        // what it had not sent and answers only what it had not answered.
        let (old, new) = (p.current(), shadow.db_path.clone());
        let handed = tokio::task::spawn_blocking(move || {
            old.halt();
            dispatch::hand_over(&old.db_path, &new)
        })
        .await;
        match handed {
            Ok(Ok(upto)) => {
                tracing::info!(projection = %p.name, upto, "reactor handed over to the new build")
            }
            Ok(Err(e)) => {
                tracing::error!(projection = %p.name, error = %e, "cannot hand the reactor over to the new build; it stops here (restart to retry)");
                p.builds().switching = None;
                return;
            }
            Err(e) => {
                tracing::error!(projection = %p.name, error = %e, "the reactor's hand-over panicked");
                p.builds().switching = None;
                return;
            }
        }
    }
    if let Err(e) = layout::set_current(&shadow.db_path) {
        tracing::error!(projection = %p.name, error = %e, "cannot switch to the rebuilt database; keeping the old one");
        p.builds().switching = None;
        tokio::task::spawn_blocking(move || shadow.retire());
        return;
    }
    // The old build stops publishing; the new one takes over once it holds
    // everything the old one had published, so a reader that waited for a
    // position never lands on a file without it.
    let old_build = p.current();
    *old_build.shared.public.write().unwrap_or_else(|e| e.into_inner()) = None;
    let published = p.checkpoint();
    let _ = tokio::time::timeout(Duration::from_secs(30), checkpoint.wait_for(|c| *c >= published)).await;
    *shadow.shared.public.write().unwrap_or_else(|e| e.into_inner()) = Some(p.checkpoint.clone());
    let reached = *shadow.shared.checkpoint.borrow();
    shadow.shared.publish(reached);
    let old = std::mem::replace(&mut *p.current.write().unwrap_or_else(|e| e.into_inner()), shadow.clone());
    p.builds().switching = None;
    if let Err(e) = shadow.dispatch(log, &sends.handlers, sends.pause_on_refused) {
        tracing::error!(projection = %p.name, error = %e, "cannot start sending the reactor's commands");
    }
    tracing::info!(projection = %p.name, file = %shadow.db_path.display(), "rebuild caught up; now serving");
    let _ = tokio::task::spawn_blocking(move || old.retire()).await;
}
