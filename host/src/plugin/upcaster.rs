//! Upcaster plugins: compiled once; every call runs in a fresh instance, so
//! nothing one call leaves behind can change the next one's output.

use std::path::PathBuf;

use wasmtime::component::InstancePre;

use super::bindings::exports::refract::plugin::upcast;
use super::{CallError, PluginEngine, PluginState, call_error, finish};

pub use upcast::{Description as UpcasterDescription, UpcastError};

/// A compiled, checked upcaster.
pub struct UpcasterPlugin {
    engine: PluginEngine,
    pre: InstancePre<PluginState>,
    indices: upcast::GuestIndices,
    /// What the upcaster said about itself.
    pub description: UpcasterDescription,
    /// SHA-256 of the component's bytes.
    pub hash: String,
    /// The file it was loaded from.
    pub path: PathBuf,
}

impl UpcasterPlugin {
    pub(super) fn new(
        engine: PluginEngine,
        pre: InstancePre<PluginState>,
        indices: upcast::GuestIndices,
        hash: String,
        path: PathBuf,
    ) -> Self {
        let description = UpcasterDescription {
            name: "(loading)".into(),
            version: String::new(),
            event_type: String::new(),
            from_version: 0,
        };
        Self { engine, pre, indices, description, hash, path }
    }

    fn instance(&self) -> Result<(wasmtime::Store<PluginState>, upcast::Guest), CallError> {
        let timeout = self.engine.limits.call_timeout;
        let mut store = self.engine.store(&self.description.name, None);
        let instance = self.pre.instantiate(&mut store);
        let instance = finish(store.data(), instance, timeout)?;
        let guest = self.indices.load(&mut store, &instance).map_err(|e| call_error(e, timeout))?;
        Ok((store, guest))
    }

    pub(super) fn describe(&self) -> Result<UpcasterDescription, CallError> {
        let (mut store, guest) = self.instance()?;
        let r = guest.call_describe(&mut store);
        finish(store.data(), r, self.engine.limits.call_timeout)
    }

    /// Rewrites `data` (events of the upcaster's type at its
    /// `from-version`) to the next version, in a fresh sandboxed instance.
    /// The outer error is a sandbox failure (trap, timeout); the inner one
    /// the upcaster's own.
    pub fn upcast(&self, data: &[String]) -> Result<Result<Vec<String>, UpcastError>, CallError> {
        let (mut store, guest) = self.instance()?;
        let r = guest.call_upcast(&mut store, data);
        finish(store.data(), r, self.engine.limits.call_timeout)
    }
}
