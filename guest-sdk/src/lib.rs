//! The refract guest SDK: write projections and command handlers as plain
//! Rust.
//!
//! - A **command handler** implements [`CommandHandler`] (the decider
//!   shape: `State`, `evolve`, `decide`) and is exported with
//!   [`export_command_handler!`]. See `plugins/orders`.
//! - A **projection** implements [`Projection`] and is exported with
//!   [`export_projection!`].
//! - A **reactor** (process manager, saga) implements [`Reactor`] and is
//!   exported with [`export_reactor!`]. See `plugins/fulfilment`.
//! - An **upcaster** implements [`Upcaster`] (one event type, one version
//!   to the next) and is exported with [`export_upcaster!`]. See
//!   `plugins/order-placed-v2`.
//!
//! A projection is a type implementing [`Projection`], exported with
//! [`export_projection!`]. It receives events from the log, with `data`
//! deserialized into your own serde types, and writes rows to its own SQLite
//! database through [`Db`]:
//!
//! ```
//! use refract_sdk::{params, Db, Description, Event, Projection, Result};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Deposited { amount: i64 }
//!
//! struct Balances;
//!
//! impl Projection for Balances {
//!     fn describe() -> Description {
//!         Description::new("balances", "1.0.0")
//!             .event_types(["Deposited"])
//!             .migration("CREATE TABLE balances (account TEXT PRIMARY KEY, amount INTEGER NOT NULL)")
//!     }
//!
//!     fn apply(db: &Db, event: &Event) -> Result<()> {
//!         let d: Deposited = event.data()?;
//!         db.execute(
//!             "INSERT INTO balances (account, amount) VALUES (?, ?)
//!              ON CONFLICT (account) DO UPDATE SET amount = amount + excluded.amount",
//!             params![event.stream_id.as_str(), d.amount],
//!         )?;
//!         Ok(())
//!     }
//! }
//!
//! refract_sdk::export_projection!(Balances);
//! # fn main() {}
//! ```
//!
//! Compiled for `wasm32-wasip2`, [`Db`] and [`log`] call into the refract
//! host. Compiled natively, [`Db`] runs on an in-memory SQLite database and
//! [`log`] prints to stderr, so projection logic has ordinary unit tests: see
//! [`testing`].

extern crate self as refract_sdk;

mod error;
mod event;
mod handler;
pub mod log;
mod projection;
mod queued;
mod reactor;
mod sql;
pub mod testing;
mod upcaster;
mod value;

pub use error::{Error, Result};
pub use handler::{CommandHandler, HandlerDescription, Rejection};
pub use projection::{Description, Projection};
pub use reactor::{Command, Commands, Reactor};
pub use sql::{Db, Rows, SqlError};
pub use upcaster::{Upcaster, UpcasterDescription, upcast_all};
pub use value::{FromValue, Value};

/// Re-exported so plugins need no direct dependency on serde_json.
pub use serde_json;

/// One event from the log: position, stream, type, JSON `data` and
/// `metadata`. Use [`Event::data`] to deserialize the payload.
pub use __private::bindings::refract::plugin::types::Event;

/// An event type at a version of its schema, as a plugin declares it.
pub use __private::bindings::refract::plugin::types::EventVersion;

/// Implementation details used by the export macros. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    #[allow(clippy::too_many_arguments, missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "refract:plugin/projection",
            pub_export_macro: true,
            export_macro_name: "export_projection_world",
            default_bindings_module: "refract_sdk::__private::bindings",
            runtime_path: "refract_sdk::__private::wit_bindgen::rt",
            additional_derives: [PartialEq],
        });
    }

    /// Bindings of the `command-handler` world; shared interfaces come from
    /// [`bindings`].
    #[allow(clippy::too_many_arguments, missing_docs)]
    pub mod handler_bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "refract:plugin/command-handler",
            pub_export_macro: true,
            export_macro_name: "export_handler_world",
            default_bindings_module: "refract_sdk::__private::handler_bindings",
            runtime_path: "refract_sdk::__private::wit_bindgen::rt",
            additional_derives: [PartialEq],
            with: {
                "refract:plugin/types@0.1.0": crate::__private::bindings::refract::plugin::types,
                "refract:plugin/log@0.1.0": crate::__private::bindings::refract::plugin::log,
            },
        });
    }

    /// Bindings of the `process-manager` world; shared interfaces come from
    /// [`bindings`].
    #[allow(clippy::too_many_arguments, missing_docs)]
    pub mod reactor_bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "refract:plugin/process-manager",
            pub_export_macro: true,
            export_macro_name: "export_reactor_world",
            default_bindings_module: "refract_sdk::__private::reactor_bindings",
            runtime_path: "refract_sdk::__private::wit_bindgen::rt",
            additional_derives: [PartialEq],
            with: {
                "refract:plugin/types@0.1.0": crate::__private::bindings::refract::plugin::types,
                "refract:plugin/log@0.1.0": crate::__private::bindings::refract::plugin::log,
                "refract:plugin/sql@0.1.0": crate::__private::bindings::refract::plugin::sql,
            },
        });
    }

    /// Bindings of the `upcaster` world; shared interfaces come from
    /// [`bindings`].
    #[allow(clippy::too_many_arguments, missing_docs)]
    pub mod upcaster_bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "refract:plugin/upcaster",
            pub_export_macro: true,
            export_macro_name: "export_upcaster_world",
            default_bindings_module: "refract_sdk::__private::upcaster_bindings",
            runtime_path: "refract_sdk::__private::wit_bindgen::rt",
            additional_derives: [PartialEq],
            with: {
                "refract:plugin/log@0.1.0": crate::__private::bindings::refract::plugin::log,
            },
        });
    }

    pub use crate::handler::{ExportedHandler, HandlerExport, run as decide};
    pub use crate::projection::{ExportedProjection, ProjectionExport};
    pub use crate::reactor::{ExportedReactor, ReactorExport};
    #[cfg(not(target_family = "wasm"))]
    pub use crate::sql::WriteQueue;
    pub use crate::upcaster::{ExportedUpcaster, UpcasterExport};
}
