//! Projection plugins: compiled once, instantiated per runner with the
//! projection's database.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::exports::refract::plugin::projector::{self, ApplyError, Description};
use super::bindings::refract::plugin::types::Event;
use super::{CallError, PluginEngine, PluginState, SqlSession, call_error, engine};

/// A compiled, checked projection plugin: instantiate it to run it.
pub struct ProjectionPlugin {
    pub(super) engine: PluginEngine,
    pub(super) pre: InstancePre<PluginState>,
    pub(super) indices: projector::GuestIndices,
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
        let mut store = self.engine.store(&self.description.name, sql);
        let timeout = self.engine.limits.call_timeout;
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
        self.store.data_mut().new_call();
        self.guest.call_describe(&mut self.store).map_err(|e| call_error(e, self.timeout))
    }

    /// Calls `apply` with one batch. The outer error is a sandbox failure
    /// (the instance must be discarded); the inner one is the plugin's own.
    pub fn apply(&mut self, events: &[Event]) -> Result<Result<(), ApplyError>, CallError> {
        self.store.set_epoch_deadline(engine::ticks(self.timeout));
        self.store.data_mut().new_call();
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
