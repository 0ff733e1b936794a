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
use super::bindings::exports::refract::plugin::reactor;
use super::{CallError, PluginEngine, PluginState, ProjectionSlot, SqlSession, call_error, engine, finish};
use crate::evolution::UpcastPlan;

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
    Wasm { engine: PluginEngine, pre: InstancePre<PluginState>, indices: Exports },
    Native(Arc<dyn NativeProjection>),
}

/// What a component exports: a projector, or a reactor (which follows the
/// log the same way and also returns commands).
pub(super) enum Exports {
    Projector(projector::GuestIndices),
    Reactor(reactor::GuestIndices),
}

/// What follows the log: a projection, or a reactor (a process manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Turns events into rows.
    Projection,
    /// Turns events into rows of its own and commands.
    Reactor,
}

/// A command a reactor returned, to send.
pub use reactor::Command as CommandOut;

/// A compiled, checked projection plugin: instantiate it to run it.
pub struct ProjectionPlugin {
    pub(super) code: Code,
    /// What the plugin said about itself.
    pub description: Description,
    /// Its identity for rebuild decisions: the SHA-256 of the component's
    /// bytes, or, when upcasters take part, of those and theirs (see
    /// [`UpcastPlan::identity`]).
    pub hash: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// How events reach it at the versions it declared; `None` when it
    /// declared none.
    pub upcasts: Option<Arc<UpcastPlan>>,
}

impl ProjectionPlugin {
    /// A projection or a reactor.
    pub fn kind(&self) -> Kind {
        match &self.code {
            Code::Wasm { indices: Exports::Reactor(_), .. } => Kind::Reactor,
            _ => Kind::Projection,
        }
    }

    /// A native projection, identified by `native-<name>-<version>` where a
    /// plugin has the hash of its bytes.
    pub fn native(imp: Arc<dyn NativeProjection>) -> Self {
        let description = imp.describe();
        let hash = format!("native-{}-{}", description.name, description.version);
        let path = PathBuf::from(format!("native:{}", description.name));
        Self { code: Code::Native(imp), description, hash, path, upcasts: None }
    }

    /// A fresh instance in its own store, using `sql` as its database.
    pub fn instantiate(&self, sql: Option<SqlSession>) -> Result<ProjectionInstance, CallError> {
        match &self.code {
            Code::Wasm { engine, pre, indices } => {
                let slot = engine.projection_slot()?;
                let mut store = engine.store(&self.description.name, sql);
                let timeout = engine.limits.call_timeout;
                let instance = pre.instantiate(&mut store);
                let instance = finish(store.data(), instance, timeout)?;
                let guest = match indices {
                    Exports::Projector(i) => {
                        Guest::Projector(i.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?)
                    }
                    Exports::Reactor(i) => {
                        Guest::Reactor(i.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?)
                    }
                };
                Ok(ProjectionInstance(
                    Instance::Wasm { store, guest, timeout, _slot: slot },
                    self.upcasts.clone(),
                ))
            }
            Code::Native(imp) => {
                Ok(ProjectionInstance(Instance::Native { imp: imp.clone(), sql }, self.upcasts.clone()))
            }
        }
    }
}

/// A running projection instance, and how events are brought to the
/// versions it reads.
pub struct ProjectionInstance(Instance, Option<Arc<UpcastPlan>>);

/// A loaded component's export.
enum Guest {
    Projector(projector::Guest),
    Reactor(reactor::Guest),
}

enum Instance {
    Wasm {
        store: Store<PluginState>,
        guest: Guest,
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
                let r = match guest {
                    Guest::Projector(g) => g.call_describe(&mut *store),
                    Guest::Reactor(g) => g.call_describe(&mut *store).map(|d| Description {
                        name: d.name,
                        version: d.version,
                        event_types: d.event_types,
                        migrations: d.migrations,
                        event_versions: d.event_versions,
                    }),
                };
                finish(store.data(), r, *timeout)
            }
            Instance::Native { imp, .. } => Ok(imp.describe()),
        }
    }

    /// Calls `apply` (a projection) or `react` (a reactor) with one batch:
    /// the commands a reactor returned (none for a projection). The outer
    /// error is a sandbox failure (the instance must be discarded); the
    /// inner one is the plugin's own.
    /// Events of the types it declared versions of are upcast first; an
    /// upcaster's failure is the batch's, at the event it failed on.
    pub fn apply(&mut self, events: &Batch) -> Result<Result<Vec<CommandOut>, ApplyError>, CallError> {
        let upcast;
        let events = match self.1.as_deref().map(|plan| plan.batch(events)) {
            Some(Ok(Some(b))) => {
                upcast = b;
                &upcast
            }
            Some(Err(e)) => return Ok(Err(e)),
            Some(Ok(None)) | None => events,
        };
        match &mut self.0 {
            Instance::Wasm { store, guest, timeout, .. } => {
                store.set_epoch_deadline(engine::ticks(*timeout));
                store.data_mut().new_call();
                let r = match guest {
                    Guest::Projector(g) => {
                        g.call_apply(&mut *store, &events.0).map(|r| r.map(|()| Vec::new()))
                    }
                    Guest::Reactor(g) => g.call_react(&mut *store, &events.0),
                };
                finish(store.data(), r, *timeout)
            }
            Instance::Native { imp, sql } => {
                let s = sql.as_ref().ok_or_else(|| CallError::Trap("no database session".into()))?;
                let _armed = s.guard.arm();
                Ok(imp.apply(s, events).map(|()| Vec::new()))
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
