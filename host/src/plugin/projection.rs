//! Projection plugins: compiled once, instantiated per runner with the
//! projection's database.
//!
//! A projection can also be native code compiled into the process
//! ([`NativeProjection`]): it runs through the same runner, batches,
//! transactions and SQL guard, only without the Wasm boundary. The
//! benchmarks use it to measure what the boundary costs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::batch::Batch;
use super::bindings::exports::refract::plugin::projector::{self, ApplyError, Description};
use super::{CallError, PluginEngine, PluginState, ProjectionSlot, SqlSession, call_error, engine};

/// A projection compiled into the host: the same contract as the WIT
/// `projector` interface, called directly.
pub trait NativeProjection: Send + Sync {
    /// What the projection says about itself.
    fn describe(&self) -> Description;
    /// Applies one batch through `sql` (its connection, or
    /// [`SqlSession::write`] for statements to queue), inside the runner's
    /// transaction and under the same SQL guard as a plugin.
    fn apply(&self, sql: &SqlSession, events: &Batch) -> Result<(), ApplyError>;
}

/// The code of a projection: a compiled component, or native code.
pub(super) enum Code {
    Wasm { engine: PluginEngine, pre: InstancePre<PluginState>, indices: projector::GuestIndices },
    Native(Arc<dyn NativeProjection>),
}

/// A compiled, checked projection plugin: instantiate it to run it.
pub struct ProjectionPlugin {
    pub(super) code: Code,
    /// What the plugin said about itself.
    pub description: Description,
    /// SHA-256 of the component's bytes: its identity for rebuild decisions.
    pub hash: String,
    /// The file it was loaded from.
    pub path: PathBuf,
}

impl ProjectionPlugin {
    /// A native projection, identified by `native-<name>-<version>` where a
    /// plugin has the hash of its bytes.
    pub fn native(imp: Arc<dyn NativeProjection>) -> Self {
        let description = imp.describe();
        let hash = format!("native-{}-{}", description.name, description.version);
        let path = PathBuf::from(format!("native:{}", description.name));
        Self { code: Code::Native(imp), description, hash, path }
    }

    /// A fresh instance in its own store, using `sql` as its database.
    pub fn instantiate(&self, sql: Option<SqlSession>) -> Result<ProjectionInstance, CallError> {
        match &self.code {
            Code::Wasm { engine, pre, indices } => {
                let slot = engine.projection_slot()?;
                let mut store = engine.store(&self.description.name, sql);
                let timeout = engine.limits.call_timeout;
                let instance = pre.instantiate(&mut store).map_err(|e| call_error(e, timeout))?;
                let guest = indices.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?;
                Ok(ProjectionInstance(Instance::Wasm { store, guest, timeout, _slot: slot }))
            }
            Code::Native(imp) => Ok(ProjectionInstance(Instance::Native { imp: imp.clone(), sql })),
        }
    }
}

/// A running projection instance.
pub struct ProjectionInstance(Instance);

enum Instance {
    Wasm {
        store: Store<PluginState>,
        guest: projector::Guest,
        timeout: Duration,
        /// Given back after the store (declared later, dropped later).
        _slot: Option<ProjectionSlot>,
    },
    Native {
        imp: Arc<dyn NativeProjection>,
        sql: Option<SqlSession>,
    },
}

impl ProjectionInstance {
    /// Calls `describe`.
    pub fn describe(&mut self) -> Result<Description, CallError> {
        match &mut self.0 {
            Instance::Wasm { store, guest, timeout, .. } => {
                store.set_epoch_deadline(engine::ticks(*timeout));
                store.data_mut().new_call();
                guest.call_describe(&mut *store).map_err(|e| call_error(e, *timeout))
            }
            Instance::Native { imp, .. } => Ok(imp.describe()),
        }
    }

    /// Calls `apply` with one batch. The outer error is a sandbox failure
    /// (the instance must be discarded); the inner one is the plugin's own.
    pub fn apply(&mut self, events: &Batch) -> Result<Result<(), ApplyError>, CallError> {
        match &mut self.0 {
            Instance::Wasm { store, guest, timeout, .. } => {
                store.set_epoch_deadline(engine::ticks(*timeout));
                store.data_mut().new_call();
                guest.call_apply(&mut *store, &events.0).map_err(|e| call_error(e, *timeout))
            }
            Instance::Native { imp, sql } => {
                let s = sql.as_ref().ok_or_else(|| CallError::Trap("no database session".into()))?;
                let _armed = s.guard.arm();
                Ok(imp.apply(s, events))
            }
        }
    }

    /// The instance's database session.
    pub fn sql(&mut self) -> Option<&mut SqlSession> {
        match &mut self.0 {
            Instance::Wasm { store, .. } => store.data_mut().sql(),
            Instance::Native { sql, .. } => sql.as_mut(),
        }
    }

    /// Discards the instance, keeping its database session.
    pub fn into_sql(self) -> Option<SqlSession> {
        match self.0 {
            Instance::Wasm { mut store, .. } => store.data_mut().take_sql(),
            Instance::Native { sql, .. } => sql,
        }
    }
}
