//! Command-handler plugins: compiled once; every command runs in a fresh
//! instance (no state survives between decisions).

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::InstancePre;

use super::bindings::exports::refract::plugin::decider::{
    self, Command, Decision, Description, Refusal, Snapshot,
};
use super::bindings::refract::plugin::types::Event;
use super::{CallError, PluginEngine, PluginState, call_error, finish};
use crate::evolution::UpcastPlan;

/// A command handler compiled into the host: the WIT `decider` contract,
/// called directly (the benchmarks' native twins).
pub trait NativeHandler: Send + Sync {
    /// What the handler says about itself.
    fn describe(&self) -> Description;
    /// Decides on `command` given `snapshot` and the `history` after it.
    fn handle(
        &self,
        command: &Command,
        snapshot: Option<&Snapshot>,
        history: &[Event],
        keep_state: bool,
    ) -> Result<Decision, Refusal>;
}

/// The code of a handler: a compiled component, or native code.
pub(super) enum Code {
    Wasm { engine: PluginEngine, pre: InstancePre<PluginState>, indices: decider::GuestIndices },
    Native(Arc<dyn NativeHandler>),
}

/// A compiled, checked command handler.
pub struct HandlerPlugin {
    pub(super) code: Code,
    /// What the handler said about itself.
    pub description: Description,
    /// Its identity: the SHA-256 of the component's bytes, or, when
    /// upcasters take part, of those and theirs (snapshots are kept per
    /// identity).
    pub hash: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// How a stream's history reaches it at the versions it declared.
    pub upcasts: Option<Arc<UpcastPlan>>,
}

impl HandlerPlugin {
    /// A native handler, identified by `native-<name>-<version>`.
    pub fn native(imp: Arc<dyn NativeHandler>) -> Self {
        let description = imp.describe();
        let hash = format!("native-{}-{}", description.name, description.version);
        let path = PathBuf::from(format!("native:{}", description.name));
        Self { code: Code::Native(imp), description, hash, path, upcasts: None }
    }

    fn instance(
        engine: &PluginEngine,
        pre: &InstancePre<PluginState>,
        indices: &decider::GuestIndices,
        name: &str,
    ) -> Result<(wasmtime::Store<PluginState>, decider::Guest), CallError> {
        let timeout = engine.limits.call_timeout;
        let mut store = engine.store(name, None);
        let instance = pre.instantiate(&mut store);
        let instance = finish(store.data(), instance, timeout)?;
        let guest = indices.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?;
        Ok((store, guest))
    }

    pub(super) fn describe(&self) -> Result<Description, CallError> {
        match &self.code {
            Code::Wasm { engine, pre, indices } => {
                let (mut store, guest) = Self::instance(engine, pre, indices, &self.description.name)?;
                let r = guest.call_describe(&mut store);
                finish(store.data(), r, engine.limits.call_timeout)
            }
            Code::Native(imp) => Ok(imp.describe()),
        }
    }

    /// Waits until the pool has an instance for a command (see
    /// [`super::SandboxLimits::max_instances`]); the returned permit keeps
    /// it until dropped. `None` when there is nothing to wait for.
    pub async fn instance_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.code {
            Code::Wasm { engine, .. } => engine.command_slot().await,
            Code::Native(_) => None,
        }
    }

    /// Decides on `command` given `snapshot` and the `history` after it,
    /// in a fresh sandboxed instance; with `keep_state`, the decision
    /// carries the folded state. The outer error is a sandbox failure
    /// (trap, timeout, no free instance — take [`Self::instance_slot`]
    /// first to wait for one); the inner one the handler's refusal.
    pub fn handle(
        &self,
        command: &Command,
        snapshot: Option<&Snapshot>,
        history: &[Event],
        keep_state: bool,
    ) -> Result<Result<Decision, Refusal>, CallError> {
        match &self.code {
            Code::Wasm { engine, pre, indices } => {
                let (mut store, guest) = Self::instance(engine, pre, indices, &self.description.name)?;
                let r = guest.call_handle(&mut store, command, snapshot, history, keep_state);
                finish(store.data(), r, engine.limits.call_timeout)
            }
            Code::Native(imp) => Ok(imp.handle(command, snapshot, history, keep_state)),
        }
    }
}
