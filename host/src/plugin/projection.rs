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

use super::bindings::exports::refract::plugin::projector::{self, ApplyError, Description, EventBatch};
use super::bindings::refract::plugin::types::Event;
use super::{CallError, PluginEngine, PluginState, SqlSession, call_error, engine};

/// A projection compiled into the host: the same contract as the WIT
/// `projector` interface, called directly.
pub trait NativeProjection: Send + Sync {
    /// What the projection says about itself.
    fn describe(&self) -> Description;
    /// Applies one batch through `conn`, inside the runner's transaction
    /// and under the same SQL guard as a plugin.
    fn apply(&self, conn: &rusqlite::Connection, events: &[Event]) -> Result<(), ApplyError>;
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
                let mut store = engine.store(&self.description.name, sql);
                let timeout = engine.limits.call_timeout;
                let instance = pre.instantiate(&mut store).map_err(|e| call_error(e, timeout))?;
                let guest = indices.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?;
                Ok(ProjectionInstance(Instance::Wasm { store, guest, timeout, batch: empty_batch() }))
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
        /// The packed form of the current batch; its buffers are reused.
        batch: EventBatch,
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
    pub fn apply(&mut self, events: &[Event]) -> Result<Result<(), ApplyError>, CallError> {
        match &mut self.0 {
            Instance::Wasm { store, guest, timeout, batch } => {
                pack(events, batch);
                store.set_epoch_deadline(engine::ticks(*timeout));
                store.data_mut().new_call();
                guest.call_apply(&mut *store, batch).map_err(|e| call_error(e, *timeout))
            }
            Instance::Native { imp, sql } => {
                let s = sql.as_ref().ok_or_else(|| CallError::Trap("no database session".into()))?;
                let _armed = s.guard.arm();
                Ok(imp.apply(&s.conn, events))
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

fn empty_batch() -> EventBatch {
    EventBatch {
        positions: Vec::new(),
        stream_versions: Vec::new(),
        recorded_at: Vec::new(),
        lengths: Vec::new(),
        text: String::new(),
    }
}

/// Packs `events` into `batch` (see `event-batch` in `wit/projection.wit`),
/// reusing its buffers.
fn pack(events: &[Event], batch: &mut EventBatch) {
    let EventBatch { positions, stream_versions, recorded_at, lengths, text } = batch;
    positions.clear();
    stream_versions.clear();
    recorded_at.clear();
    lengths.clear();
    text.clear();
    for e in events {
        positions.push(e.position);
        stream_versions.push(e.stream_version);
        recorded_at.push(e.recorded_at);
        for s in [&e.stream_id, &e.event_type, &e.data, &e.metadata] {
            // Event strings are far below 4 GiB: the log caps them.
            lengths.push(u32::try_from(s.len()).unwrap_or(u32::MAX));
            text.push_str(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_lays_out_every_field_in_order_and_reuses_the_buffers() {
        let event = |position: u64, stream: &str, data: &str| Event {
            position,
            stream_id: stream.into(),
            stream_version: position + 10,
            event_type: "T".into(),
            data: data.into(),
            metadata: "{}".into(),
            recorded_at: -1,
        };
        let mut batch = empty_batch();
        pack(&[event(1, "a", "[1]"), event(2, "bé", "{}")], &mut batch);
        assert_eq!(batch.positions, [1, 2]);
        assert_eq!(batch.stream_versions, [11, 12]);
        assert_eq!(batch.recorded_at, [-1, -1]);
        assert_eq!(batch.lengths, [1, 1, 3, 2, 3, 1, 2, 2]);
        assert_eq!(batch.text, "aT[1]{}béT{}{}");
        pack(&[event(3, "c", "0")], &mut batch);
        assert_eq!((batch.positions.as_slice(), batch.text.as_str()), (&[3][..], "cT0{}"));
    }
}
