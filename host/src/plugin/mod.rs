//! Loading and running plugins in the sandbox.
//!
//! One [`wasmtime::Engine`] per process. A plugin file is compiled once into
//! a [`ProjectionPlugin`] (checked against its world and described); each
//! runner instantiates it into its own store, with an empty WASI context, a
//! memory cap and a time budget per call.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings;
mod engine;
pub mod guard;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder};

pub use bindings::exports::refract::plugin::projector::{ApplyError, Description};
pub use bindings::refract::plugin::types::{Event, Value};
pub use state::{PluginState, SqlSession};

use bindings::exports::refract::plugin::projector;

/// The name of the export that makes a component a projection.
pub const PROJECTION_EXPORT: &str = "refract:plugin/projector@0.1.0";

/// Resource bounds of every plugin call.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Wall-clock budget of one call (`describe`, `apply`).
    pub call_timeout: Duration,
    /// Largest linear memory a plugin may grow to, in bytes.
    pub memory_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self { call_timeout: Duration::from_secs(10), memory_bytes: 256 << 20 }
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
    #[error("wrong world: expected a component exporting `{PROJECTION_EXPORT}`, got exports [{}]", got.join(", "))]
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
}

/// The process-wide engine, linker and limits.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    projection_linker: Arc<Linker<PluginState>>,
    limits: SandboxLimits,
}

impl PluginEngine {
    /// Creates the engine and links the projection world's imports.
    pub fn new(limits: SandboxLimits) -> anyhow::Result<Self> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Plugins::add_to_linker::<_, wasmtime::component::HasSelf<PluginState>>(&mut linker, |s| s)?;
        Ok(Self { engine, projection_linker: Arc::new(linker), limits })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// Reads, compiles, links and describes the projection in `path`.
    pub fn load_projection(&self, path: &Path) -> Result<ProjectionPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        self.projection_from_bytes(path, &bytes)
    }

    /// Compiles, links and describes a projection from its bytes.
    pub fn projection_from_bytes(&self, path: &Path, bytes: &[u8]) -> Result<ProjectionPlugin, LoadError> {
        let hash = hex(&Sha256::digest(bytes));
        let component =
            Component::new(&self.engine, bytes).map_err(|e| LoadError::NotComponent(format!("{e:#}")))?;
        if component.get_export_index(None, PROJECTION_EXPORT).is_none() {
            let ty = component.component_type();
            let got = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
            return Err(LoadError::WrongWorld { got });
        }
        let pre = self
            .projection_linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let indices = projector::GuestIndices::new(&pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let file_name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut plugin = ProjectionPlugin {
            engine: self.clone(),
            pre,
            indices,
            description: Description {
                name: file_name.clone(),
                version: String::new(),
                event_types: Vec::new(),
                migrations: Vec::new(),
            },
            hash,
            path: path.to_path_buf(),
        };
        let mut instance = plugin.instantiate(None).map_err(|e| LoadError::Describe(e.to_string()))?;
        let description = instance.describe().map_err(|e| LoadError::Describe(e.to_string()))?;
        validate_description(&description)?;
        plugin.description = description;
        Ok(plugin)
    }
}

/// Checks what a projection says about itself.
fn validate_description(d: &Description) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::InvalidDescription(m));
    let name_ok = !d.name.is_empty()
        && d.name.len() <= 64
        && d.name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && d.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return bad(format!(
            "name {:?} must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
            d.name
        ));
    }
    if let Some(t) = d.event_types.iter().find(|t| crate::log::validate_name("event type", t).is_err()) {
        return bad(format!("event type {t:?} is not a valid event type name"));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compiled, checked projection plugin: instantiate it to run it.
pub struct ProjectionPlugin {
    engine: PluginEngine,
    pre: InstancePre<PluginState>,
    indices: projector::GuestIndices,
    /// What the plugin said about itself.
    pub description: Description,
    /// SHA-256 of the component's bytes: its identity for rebuild decisions.
    pub hash: String,
    /// The file it was loaded from.
    pub path: PathBuf,
}

impl ProjectionPlugin {
    /// A fresh instance in its own store, using `sql` as its database.
    pub fn instantiate(&self, sql: Option<SqlSession>) -> Result<ProjectionInstance, CallError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.engine.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let name: Arc<str> = Arc::from(self.description.name.as_str());
        let mut store = Store::new(&self.engine.engine, PluginState::new(name, limits, sql));
        store.limiter(|s| &mut s.limits);
        let timeout = self.engine.limits.call_timeout;
        store.set_epoch_deadline(engine::ticks(timeout));
        store.epoch_deadline_trap();
        let instance = self.pre.instantiate(&mut store).map_err(|e| call_error(e, timeout))?;
        let guest = self.indices.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?;
        Ok(ProjectionInstance { store, guest, timeout })
    }
}

/// A running projection instance.
pub struct ProjectionInstance {
    store: Store<PluginState>,
    guest: projector::Guest,
    timeout: Duration,
}

impl ProjectionInstance {
    /// Calls `describe`.
    pub fn describe(&mut self) -> Result<Description, CallError> {
        self.store.set_epoch_deadline(engine::ticks(self.timeout));
        self.guest.call_describe(&mut self.store).map_err(|e| call_error(e, self.timeout))
    }

    /// Calls `apply` with one batch. The outer error is a sandbox failure
    /// (the instance must be discarded); the inner one is the plugin's own.
    pub fn apply(&mut self, events: &[Event]) -> Result<Result<(), ApplyError>, CallError> {
        self.store.set_epoch_deadline(engine::ticks(self.timeout));
        self.guest.call_apply(&mut self.store, events).map_err(|e| call_error(e, self.timeout))
    }

    /// The instance's database session.
    pub fn sql(&mut self) -> Option<&mut SqlSession> {
        self.store.data_mut().sql()
    }

    /// Discards the instance, keeping its database session.
    pub fn into_sql(mut self) -> Option<SqlSession> {
        self.store.data_mut().take_sql()
    }
}

fn call_error(e: wasmtime::Error, timeout: Duration) -> CallError {
    if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        CallError::Timeout(timeout)
    } else {
        CallError::Trap(format!("{e:#}"))
    }
}
