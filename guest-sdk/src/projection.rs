use std::marker::PhantomData;

use crate::__private::bindings::exports::refract::plugin::projector::{self, ApplyError, Guest};
use crate::{Db, Event, Result};

/// A projection: turns events into rows of its own tables.
///
/// The host calls [`Projection::apply`] once per event, in log order, inside
/// one transaction per batch. Make writes idempotent on the primary key
/// (upserts) and keep all state in the database: the plugin instance may be
/// recreated between batches.
pub trait Projection {
    /// Name, version, wanted event types and schema migrations.
    fn describe() -> Description;

    /// Applies one event. An error rolls back the whole batch.
    fn apply(db: &Db, event: &Event) -> Result<()>;
}

/// What a projection says about itself; built with chained calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// Unique name: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
    pub name: String,
    /// Version label for people.
    pub version: String,
    /// Event types to receive; empty means all.
    pub event_types: Vec<String>,
    /// Schema migrations, in order, each run once.
    pub migrations: Vec<String>,
}

impl Description {
    /// A projection called `name` at version `version`, with no migrations,
    /// receiving every event type until [`Description::event_types`] narrows it.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self { name: name.into(), version: version.into(), event_types: Vec::new(), migrations: Vec::new() }
    }

    /// Only these event types are delivered.
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Appends a schema migration (SQL, one or more statements).
    pub fn migration(mut self, sql: impl Into<String>) -> Self {
        self.migrations.push(sql.into());
        self
    }
}

/// Applies `events` in order; the first failure names its event.
pub fn apply_all<P: Projection>(db: &Db, events: &[Event]) -> Result<(), ApplyError> {
    for event in events {
        P::apply(db, event)
            .map_err(|e| ApplyError { position: event.position, message: e.message().to_owned() })?;
    }
    Ok(())
}

/// Adapts a [`Projection`] to the exported WIT interface.
#[doc(hidden)]
pub struct ProjectionExport<P>(PhantomData<P>);

/// Lets the native expansion of [`export_projection!`] check that the type
/// implements [`Projection`].
#[doc(hidden)]
pub trait ExportedProjection {
    fn check();
}

impl<P: Projection> ExportedProjection for ProjectionExport<P> {
    fn check() {}
}

impl<P: Projection> Guest for ProjectionExport<P> {
    fn describe() -> projector::Description {
        let d = P::describe();
        projector::Description {
            name: d.name,
            version: d.version,
            event_types: d.event_types,
            migrations: d.migrations,
        }
    }

    fn apply(events: Vec<Event>) -> Result<(), ApplyError> {
        #[cfg(target_family = "wasm")]
        let db = Db::host();
        #[cfg(not(target_family = "wasm"))]
        let db = Db::open_in_memory().map_err(|e| ApplyError {
            position: events.first().map_or(0, |e| e.position),
            message: e.to_string(),
        })?;
        apply_all::<P>(&db, &events)
    }
}

/// Exports a [`Projection`] implementation as the plugin's projection:
/// `refract_sdk::export_projection!(MyProjection);` once, at the crate root.
///
/// The exports exist only in the wasm build; natively (unit tests, clippy)
/// the macro checks the type and exports nothing, so the crate also links
/// as a native `cdylib`.
#[macro_export]
macro_rules! export_projection {
    ($ty:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            type __RefractProjectionExport = $crate::__private::ProjectionExport<$ty>;
            $crate::__private::bindings::export_projection_world!(
                __RefractProjectionExport with_types_in $crate::__private::bindings
            );
        };
        #[cfg(not(target_family = "wasm"))]
        const _: fn() = || {
            let _ =
                <$crate::__private::ProjectionExport<$ty> as $crate::__private::ExportedProjection>::check;
        };
    };
}
