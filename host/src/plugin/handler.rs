//! Command-handler plugins: compiled once; every command runs in a fresh
//! instance (no state survives between decisions).

use std::path::PathBuf;

use wasmtime::component::InstancePre;

use super::bindings::exports::refract::plugin::decider::{self, Command, Description, NewEvent, Rejection};
use super::bindings::refract::plugin::types::Event;
use super::{CallError, PluginEngine, PluginState, call_error};

/// A compiled, checked command handler.
pub struct HandlerPlugin {
    pub(super) engine: PluginEngine,
    pub(super) pre: InstancePre<PluginState>,
    pub(super) indices: decider::GuestIndices,
    /// What the handler said about itself.
    pub description: Description,
    /// SHA-256 of the component's bytes.
    pub hash: String,
    /// The file it was loaded from.
    pub path: PathBuf,
}

impl HandlerPlugin {
    fn instance(&self) -> Result<(wasmtime::Store<PluginState>, decider::Guest), CallError> {
        let timeout = self.engine.limits.call_timeout;
        let mut store = self.engine.store(&self.description.name, None);
        let instance = self.pre.instantiate(&mut store).map_err(|e| call_error(e, timeout))?;
        let guest = self.indices.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?;
        Ok((store, guest))
    }

    pub(super) fn describe(&self) -> Result<Description, CallError> {
        let (mut store, guest) = self.instance()?;
        guest.call_describe(&mut store).map_err(|e| call_error(e, self.engine.limits.call_timeout))
    }

    /// Decides on `command` given `history`, in a fresh sandboxed instance.
    /// The outer error is a sandbox failure (trap, timeout); the inner one
    /// the handler's rejection.
    pub fn handle(
        &self,
        command: &Command,
        history: &[Event],
    ) -> Result<Result<Vec<NewEvent>, Rejection>, CallError> {
        let (mut store, guest) = self.instance()?;
        guest
            .call_handle(&mut store, command, history)
            .map_err(|e| call_error(e, self.engine.limits.call_timeout))
    }
}
