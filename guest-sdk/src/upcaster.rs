//! Upcasters: rewrite the data of one event type from one version of its
//! schema to the next, so that plugins reading the newer version get old
//! events in the shape they expect. The log keeps what was appended; the
//! host runs upcasters as it reads.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::upcaster_bindings::exports::refract::plugin::upcast::{self, Guest, UpcastError};

/// An upcaster of `EVENT_TYPE` from `FROM_VERSION` to `FROM_VERSION + 1`.
///
/// `Old` is the data at the version read, `New` at the next one. The
/// rewrite must be deterministic — the same input, the same output, every
/// time — because read models are rebuilt through it.
pub trait Upcaster {
    /// The data at `FROM_VERSION`.
    type Old: DeserializeOwned;
    /// The data at `FROM_VERSION + 1`.
    type New: Serialize;

    /// Name and version label (the plugin's).
    fn describe() -> UpcasterDescription;

    /// Rewrites one event's data; an error names what is wrong with it.
    fn upcast(old: Self::Old) -> Result<Self::New, String>;
}

/// What an upcaster says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpcasterDescription {
    /// Unique name among the plugins.
    pub name: String,
    /// Version label for people.
    pub version: String,
    /// The event type it rewrites.
    pub event_type: String,
    /// The version it reads; it writes the next one.
    pub from_version: u32,
}

impl UpcasterDescription {
    /// An upcaster `name` at `version` of `event_type` from `from_version`.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        event_type: impl Into<String>,
        from_version: u32,
    ) -> Self {
        Self { name: name.into(), version: version.into(), event_type: event_type.into(), from_version }
    }
}

/// Rewrites each of `data` (JSON text at the upcaster's version) to the
/// next version; the first failure names its index. Native code and tests
/// call it directly.
pub fn upcast_all<U: Upcaster>(data: &[String]) -> Result<Vec<String>, (u32, String)> {
    data.iter()
        .enumerate()
        .map(|(i, text)| {
            let old: U::Old =
                serde_json::from_str(text).map_err(|e| (i as u32, format!("cannot read: {e}")))?;
            let new = U::upcast(old).map_err(|m| (i as u32, m))?;
            serde_json::to_string(&new).map_err(|e| (i as u32, format!("cannot write: {e}")))
        })
        .collect()
}

/// Adapts an [`Upcaster`] to the exported WIT interface.
#[doc(hidden)]
pub struct UpcasterExport<U>(PhantomData<U>);

/// Lets the native expansion of [`export_upcaster!`] check the type.
#[doc(hidden)]
pub trait ExportedUpcaster {
    fn check();
}

impl<U: Upcaster> ExportedUpcaster for UpcasterExport<U> {
    fn check() {}
}

impl<U: Upcaster> Guest for UpcasterExport<U> {
    fn describe() -> upcast::Description {
        let d = U::describe();
        upcast::Description {
            name: d.name,
            version: d.version,
            event_type: d.event_type,
            from_version: d.from_version,
        }
    }

    fn upcast(data: Vec<String>) -> Result<Vec<String>, UpcastError> {
        upcast_all::<U>(&data).map_err(|(index, message)| UpcastError { index, message })
    }
}

/// Exports an [`Upcaster`] implementation as the plugin's upcaster:
/// `refract_sdk::export_upcaster!(MyUpcaster);` once, at the crate root.
#[macro_export]
macro_rules! export_upcaster {
    ($ty:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            type __RefractUpcasterExport = $crate::__private::UpcasterExport<$ty>;
            $crate::__private::upcaster_bindings::export_upcaster_world!(
                __RefractUpcasterExport with_types_in $crate::__private::upcaster_bindings
            );
        };
        #[cfg(not(target_family = "wasm"))]
        const _: fn() = || {
            let _ = <$crate::__private::UpcasterExport<$ty> as $crate::__private::ExportedUpcaster>::check;
        };
    };
}
