//! Loading and running plugins in the sandbox.
//!
//! One [`wasmtime::Engine`] per process. A plugin file is compiled once into
//! a [`ProjectionPlugin`] (checked against its world and described); each
//! runner instantiates it into its own store, with an empty WASI context, a
//! memory cap and a time budget per call.

mod batch;
#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings;
mod deferred;
mod engine;
pub mod guard;
mod handler;
mod output;
mod packed;
mod projection;
mod state;
mod upcaster;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder};

pub use batch::{Batch, EventRef};
pub use bindings::exports::refract::plugin::decider::{
    Command, Decision, Description as HandlerDescription, NewEvent, Refusal, Rejection, Snapshot,
};
pub use bindings::exports::refract::plugin::projector::{ApplyError, Description};
pub use bindings::refract::plugin::sql::{QueuedWrites, SqlError};
pub use bindings::refract::plugin::types::{Event, EventVersion, Value};
pub use deferred::{Failure, WriteQueue};
pub use handler::{HandlerPlugin, NativeHandler};
pub use projection::{CommandOut, Kind, NativeProjection, ProjectionInstance, ProjectionPlugin};
pub use state::{PluginState, SqlSession};
pub use upcaster::{UpcastError, UpcasterDescription, UpcasterPlugin};

use bindings::exports::refract::plugin::{decider, projector, reactor, upcast};

/// The name of the export that makes a component a projection.
pub const PROJECTION_EXPORT: &str = "refract:plugin/projector@0.1.0";
/// The name of the export that makes a component a command handler.
pub const HANDLER_EXPORT: &str = "refract:plugin/decider@0.1.0";
/// The name of the export that makes a component a reactor.
pub const REACTOR_EXPORT: &str = "refract:plugin/reactor@0.1.0";
/// The name of the export that makes a component an upcaster.
pub const UPCAST_EXPORT: &str = "refract:plugin/upcast@0.1.0";

/// Resource bounds of every plugin call.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Wall-clock budget of one call (`describe`, `apply`).
    pub call_timeout: Duration,
    /// Largest linear memory a plugin may grow to, in bytes.
    pub memory_bytes: usize,
    /// Plugin instances alive at once, from a pool allocated up front; 0
    /// allocates each instance on its own, without a bound. A quarter of
    /// the pool (at least one) is kept for commands, which wait for a free
    /// instance; the rest serves projections, one instance each while
    /// running (two while a new version rebuilds beside the old, one more
    /// while it loads or verifies).
    pub max_instances: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self { call_timeout: Duration::from_secs(10), memory_bytes: 256 << 20, max_instances: 1000 }
    }
}

impl SandboxLimits {
    /// Instances of the pool kept for commands.
    fn command_instances(&self) -> u32 {
        (self.max_instances / 4).max(1)
    }
}

/// How many pooled instances are in use, by kind (see
/// [`SandboxLimits::max_instances`]).
struct Slots {
    /// One permit per instance commands may use at once.
    commands: Arc<tokio::sync::Semaphore>,
    /// Projection instances alive.
    projections: std::sync::atomic::AtomicU32,
    /// The most projection instances alive at once.
    max_projections: u32,
    /// The pool's size.
    total: u32,
}

/// A pooled instance held by a projection; given back when dropped.
pub(super) struct ProjectionSlot(Arc<Slots>);

impl Drop for ProjectionSlot {
    fn drop(&mut self) {
        self.0.projections.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Why a plugin file could not be loaded. The file is reported `invalid`
/// with this reason; other plugins are unaffected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component (build plugins for wasm32-wasip2): {0}")]
    NotComponent(String),
    /// The component does not implement a plugin world.
    #[error(
        "wrong world: expected a component exporting `{PROJECTION_EXPORT}` (world projection), \
         `{HANDLER_EXPORT}` (world command-handler), `{REACTOR_EXPORT}` (world process-manager) or \
         `{UPCAST_EXPORT}` (world upcaster), got \
         exports [{}]",
        got.join(", ")
    )]
    WrongWorld { got: Vec<String> },
    /// The component imports something the sandbox does not provide.
    #[error("cannot link: {0}")]
    Link(String),
    /// `describe` trapped or timed out.
    #[error("describe failed: {0}")]
    Describe(String),
    /// `describe` returned something unusable.
    #[error("invalid description: {0}")]
    InvalidDescription(String),
}

/// A failed call into a plugin (as opposed to a domain error it returned).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The call ran past its time budget and was interrupted.
    #[error("timed out after {0:?} (the plugin's time budget per call)")]
    Timeout(Duration),
    /// The plugin trapped (panic, out-of-bounds access, memory limit, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// No instance could be created: every pooled one is in use.
    #[error("no free plugin instance: {0}")]
    NoInstance(String),
}

/// A loaded plugin of either kind.
pub enum Plugin {
    /// A projection (world `projection`).
    Projection(ProjectionPlugin),
    /// A command handler (world `command-handler`).
    Handler(HandlerPlugin),
    /// An upcaster (world `upcaster`).
    Upcaster(UpcasterPlugin),
}

/// The process-wide engine, linkers and limits.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    projection_linker: Arc<Linker<PluginState>>,
    handler_linker: Arc<Linker<PluginState>>,
    limits: SandboxLimits,
    /// With a pool: what of it is in use.
    slots: Option<Arc<Slots>>,
    /// Where compiled code is cached, and the `refract` binary that
    /// compiles large components into that cache in a process of its own.
    cache_dir: Option<PathBuf>,
    compiler: Option<PathBuf>,
}

/// Components at least this large are compiled in a child process (see
/// [`PluginEngine::with_compiler`]): TypeScript and Python plugins carry
/// their language's runtime, 12-18 MiB of it.
const CHILD_COMPILE_BYTES: usize = 4 << 20;

/// What a server's compiling child is given (see
/// [`PluginEngine::with_compiler`]): `compile --cache DIR --memory-bytes N
/// --max-instances N FILE`, the arguments of `refract compile`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CompileArgs {
    /// The server's code cache.
    #[arg(long)]
    pub cache: PathBuf,
    /// The server's memory cap per plugin, which its compiled code assumes.
    #[arg(long)]
    pub memory_bytes: usize,
    /// The server's instance pool.
    #[arg(long)]
    pub max_instances: u32,
    /// The component.
    pub file: PathBuf,
}

impl CompileArgs {
    /// Compiles the component into the cache with the engine of a server
    /// with these limits.
    pub fn run(&self) -> anyhow::Result<()> {
        let limits = SandboxLimits {
            memory_bytes: self.memory_bytes,
            max_instances: self.max_instances,
            ..Default::default()
        };
        let engine = engine::new_engine(Some(&self.cache), &limits)?;
        Component::from_file(&engine, &self.file)
            .map_err(|e| anyhow::anyhow!("while compiling {}: {e:#}", self.file.display()))?;
        Ok(())
    }
}

impl PluginEngine {
    /// Creates the engine (caching compiled code in `cache_dir`, if given)
    /// and links each world's imports: WASI with an empty context for both;
    /// `sql` and `log` for projections, `log` only for command handlers.
    pub fn new(limits: SandboxLimits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        use bindings::refract::plugin::{log, types};
        use wasmtime::component::HasSelf;
        let engine = engine::new_engine(cache_dir, &limits)?;
        let mut projection = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut projection)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut projection)?;
        bindings::Plugins::add_to_linker::<_, HasSelf<PluginState>>(&mut projection, |s| s)?;
        let mut handler = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut handler)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut handler)?;
        types::add_to_linker::<_, HasSelf<PluginState>>(&mut handler, |s| s)?;
        log::add_to_linker::<_, HasSelf<PluginState>>(&mut handler, |s| s)?;
        Ok(Self {
            engine,
            projection_linker: Arc::new(projection),
            handler_linker: Arc::new(handler),
            limits,
            cache_dir: cache_dir.map(Path::to_path_buf),
            compiler: None,
            slots: (limits.max_instances > 0).then(|| {
                let commands = limits.command_instances();
                Arc::new(Slots {
                    commands: Arc::new(tokio::sync::Semaphore::new(commands as usize)),
                    projections: 0.into(),
                    max_projections: limits.max_instances - commands,
                    total: limits.max_instances,
                })
            }),
        })
    }

    /// Takes one of the pool's instances for a projection, or says why
    /// none is left. Without a pool there is nothing to count.
    fn projection_slot(&self) -> Result<Option<ProjectionSlot>, CallError> {
        use std::sync::atomic::Ordering;
        let Some(slots) = &self.slots else { return Ok(None) };
        let taken = slots.projections.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < slots.max_projections).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(Some(ProjectionSlot(slots.clone()))),
            Err(_) => Err(CallError::NoInstance(format!(
                "all {} instances for projections are in use (the pool has {}, a quarter kept for \
                 commands); raise --max-instances",
                slots.max_projections, slots.total
            ))),
        }
    }

    /// Waits until a command may take one of the pool's instances; hold
    /// the permit while the instance lives.
    async fn command_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        slots.commands.clone().acquire_owned().await.ok()
    }

    /// Compiles large components in a child process running `refract`
    /// (the binary at `exe`) into the code cache, and loads them from the
    /// cache: a 12-18 MiB component's compile takes hundreds of MiB on
    /// Cranelift's threads, which the server would otherwise keep. Needs a
    /// cache directory; without one, or if the child fails, the server
    /// compiles in-process.
    pub fn with_compiler(mut self, exe: Option<PathBuf>) -> Self {
        self.compiler = exe;
        self
    }

    /// Compiles `bytes` into the code cache in a child process, if this
    /// engine has a compiler and the component is large; whether it did.
    fn compile_in_child(&self, bytes: &[u8]) -> bool {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let (Some(exe), Some(cache)) = (&self.compiler, &self.cache_dir) else { return false };
        if bytes.len() < CHILD_COMPILE_BYTES {
            return false;
        }
        let file = cache.join(format!(
            "compiling-{}-{}.wasm",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let run = || -> anyhow::Result<()> {
            std::fs::create_dir_all(cache)?;
            std::fs::write(&file, bytes)?;
            let out = std::process::Command::new(exe)
                .arg("compile")
                .arg("--cache")
                .arg(cache)
                .arg("--memory-bytes")
                .arg(self.limits.memory_bytes.to_string())
                .arg("--max-instances")
                .arg(self.limits.max_instances.to_string())
                .arg(&file)
                .output()?;
            anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr).trim());
            Ok(())
        };
        let done = run();
        let _ = std::fs::remove_file(&file);
        match done {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "compiling in a child process failed; compiling here");
                false
            }
        }
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// Reads, compiles, links and describes the plugin in `path`, telling
    /// the worlds apart by what the component exports.
    pub fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        self.load_bytes(path, &bytes)
    }

    /// Like [`PluginEngine::load`], for bytes already read from `path`.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let hash = hex(&Sha256::digest(bytes));
        self.compile_in_child(bytes);
        let component =
            Component::new(&self.engine, bytes).map_err(|e| LoadError::NotComponent(format!("{e:#}")))?;
        let link = |linker: &Linker<PluginState>| {
            linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))
        };
        let path = path.to_path_buf();
        let projector = component.get_export_index(None, PROJECTION_EXPORT).is_some();
        if projector || component.get_export_index(None, REACTOR_EXPORT).is_some() {
            let pre = link(&self.projection_linker)?;
            let link_error = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
            let indices = if projector {
                projection::Exports::Projector(projector::GuestIndices::new(&pre).map_err(link_error)?)
            } else {
                projection::Exports::Reactor(reactor::GuestIndices::new(&pre).map_err(link_error)?)
            };
            let mut plugin = ProjectionPlugin {
                code: projection::Code::Wasm { engine: self.clone(), pre, indices },
                description: Description {
                    name: "(loading)".into(),
                    version: String::new(),
                    event_types: Vec::new(),
                    migrations: Vec::new(),
                    event_versions: Vec::new(),
                },
                hash,
                path,
                upcasts: None,
            };
            let described = plugin.instantiate(None).and_then(|mut i| i.describe());
            plugin.description = described.map_err(|e| LoadError::Describe(e.to_string()))?;
            validate_name(&plugin.description.name)?;
            validate_types("event type", &plugin.description.event_types)?;
            validate_versions(&plugin.description.event_versions)?;
            return Ok(Plugin::Projection(plugin));
        }
        if component.get_export_index(None, HANDLER_EXPORT).is_some() {
            let pre = link(&self.handler_linker)?;
            let indices = decider::GuestIndices::new(&pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
            let mut plugin = HandlerPlugin {
                code: handler::Code::Wasm { engine: self.clone(), pre, indices },
                description: HandlerDescription {
                    name: "(loading)".into(),
                    version: String::new(),
                    command_types: Vec::new(),
                    event_versions: Vec::new(),
                },
                hash,
                path,
                upcasts: None,
            };
            plugin.description = plugin.describe().map_err(|e| LoadError::Describe(e.to_string()))?;
            validate_name(&plugin.description.name)?;
            validate_types("command type", &plugin.description.command_types)?;
            validate_versions(&plugin.description.event_versions)?;
            return Ok(Plugin::Handler(plugin));
        }
        if component.get_export_index(None, UPCAST_EXPORT).is_some() {
            let pre = link(&self.handler_linker)?;
            let indices = upcast::GuestIndices::new(&pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
            let mut plugin = UpcasterPlugin::new(self.clone(), pre, indices, hash, path);
            plugin.description = plugin.describe().map_err(|e| LoadError::Describe(e.to_string()))?;
            validate_name(&plugin.description.name)?;
            validate_types("event type", std::slice::from_ref(&plugin.description.event_type))?;
            if !(1..crate::log::MAX_SCHEMA_VERSION).contains(&plugin.description.from_version) {
                return Err(LoadError::InvalidDescription(format!(
                    "from-version {} must be from 1 to {}",
                    plugin.description.from_version,
                    crate::log::MAX_SCHEMA_VERSION - 1
                )));
            }
            return Ok(Plugin::Upcaster(plugin));
        }
        let ty = component.component_type();
        let got = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        Err(LoadError::WrongWorld { got })
    }

    /// A store for one instance of `name`, with the memory cap and the time
    /// budget armed.
    fn store(&self, name: &str, sql: Option<SqlSession>) -> Store<PluginState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, PluginState::new(Arc::from(name), limits, sql));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(engine::ticks(self.limits.call_timeout));
        store.epoch_deadline_trap();
        store
    }
}

/// Checks a plugin's name: it names files and routes.
fn validate_name(name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LoadError::InvalidDescription(format!(
            "name {name:?} must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

fn validate_types(what: &str, types: &[String]) -> Result<(), LoadError> {
    match types.iter().find(|t| crate::log::validate_name(what, t).is_err()) {
        Some(t) => Err(LoadError::InvalidDescription(format!("{what} {t:?} is not a valid name"))),
        None => Ok(()),
    }
}

/// Checks the event versions a plugin declares: valid types, each once,
/// versions from 1.
fn validate_versions(versions: &[EventVersion]) -> Result<(), LoadError> {
    let mut seen = std::collections::BTreeSet::new();
    for v in versions {
        crate::log::validate_name("event type", &v.event_type)
            .map_err(|e| LoadError::InvalidDescription(format!("event-versions: {e}")))?;
        if !(1..=crate::log::MAX_SCHEMA_VERSION).contains(&v.version) {
            return Err(LoadError::InvalidDescription(format!(
                "event-versions: {} version {} must be from 1 to {}",
                v.event_type,
                v.version,
                crate::log::MAX_SCHEMA_VERSION
            )));
        }
        if !seen.insert(v.event_type.as_str()) {
            return Err(LoadError::InvalidDescription(format!(
                "event-versions names {} twice",
                v.event_type
            )));
        }
    }
    Ok(())
}

/// Hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ends a call: logs what the plugin wrote and, when the call failed,
/// gives the reason with the end of the plugin's stderr.
fn finish<T>(state: &PluginState, r: wasmtime::Result<T>, timeout: Duration) -> Result<T, CallError> {
    let stderr = state.output.flush_to_log(state.name());
    r.map_err(|e| match call_error(e, timeout) {
        CallError::Trap(m) => CallError::Trap(output::with_stderr(m, &stderr)),
        other => other,
    })
}

fn call_error(e: wasmtime::Error, timeout: Duration) -> CallError {
    if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        return CallError::Timeout(timeout);
    }
    if let Some(limit) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::NoInstance(format!("{limit}; raise --max-instances"));
    }
    // The cause without the (long) backtrace, and where it happened.
    let backtrace = e.downcast_ref::<wasmtime::WasmBacktrace>();
    let backtrace_text = backtrace.map(ToString::to_string);
    let cause: Vec<String> =
        e.chain().map(ToString::to_string).filter(|c| Some(c) != backtrace_text.as_ref()).collect();
    let place = backtrace.and_then(|bt| {
        bt.frames().iter().find_map(|f| f.func_name().map(|n| format!("{:#}", rustc_demangle::demangle(n))))
    });
    let mut message = cause.join(": ");
    if let Some(f) = place {
        message.push_str(&format!(" (in {f})"));
    }
    CallError::Trap(message)
}
