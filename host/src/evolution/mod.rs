//! Event evolution and long streams: schema contracts of event types
//! ([`contracts`]), upcasters that bring old events to the versions a
//! plugin reads ([`upcast`]), and command-handler snapshots
//! ([`snapshots`]).

pub mod contracts;
pub mod snapshots;
pub mod upcast;

pub use contracts::{Contracts, SchemaInfo, Violation};
pub use snapshots::{SnapshotStore, Stored};
pub use upcast::{UpcastPlan, UpcasterInfo, Upcasters};
