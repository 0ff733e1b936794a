//! Reactors (process managers, sagas): follow the log like a projection and
//! answer events with commands to command handlers.

use std::marker::PhantomData;

use serde::Serialize;

use crate::__private::bindings::refract::plugin::types::{ApplyError, EventBatch};
use crate::__private::reactor_bindings::exports::refract::plugin::reactor::{self, Guest};
use crate::projection::for_each_event;
use crate::{Db, Description, Error, Event, Result};

/// A reactor: reads events in log order, remembers what it must in its own
/// tables (through [`Db`], as a projection does), and sends commands.
///
/// The host records the commands of a batch in the same transaction as the
/// batch's writes and checkpoint, then sends each exactly once, in order,
/// keyed by the reactor, the event's position and the command's index among
/// that event's. Keep decisions a function of the event and the tables:
/// a batch that fails is retried, and what it sent is only what its
/// successful attempt returned.
pub trait Reactor {
    /// Name, version, wanted event types and schema migrations.
    fn describe() -> Description;

    /// Reacts to one event; commands to send go into `commands`. An error
    /// rolls back the whole batch and sends nothing.
    fn react(db: &Db, event: &Event, commands: &mut Commands) -> Result<()>;
}

/// A command a reactor sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command handler it goes to.
    pub handler: String,
    /// Its type.
    pub command_type: String,
    /// The stream it targets.
    pub stream_id: String,
    /// Its JSON data.
    pub data: String,
    /// The position of the event it answers.
    pub position: u64,
}

/// The commands a reactor sends while it reacts.
#[derive(Debug, Default)]
pub struct Commands {
    sent: Vec<Command>,
    position: u64,
}

impl Commands {
    /// Sends `command` — a serde value in the form the handler reads,
    /// `#[serde(tag = "type", content = "data")]` — to `handler`, for
    /// stream `stream_id`.
    pub fn send<C: Serialize>(&mut self, handler: &str, stream_id: &str, command: &C) -> Result<()> {
        let (command_type, data) = crate::handler::untagged(command).map_err(Error::new)?;
        self.sent.push(Command {
            handler: handler.to_owned(),
            command_type,
            stream_id: stream_id.to_owned(),
            data,
            position: self.position,
        });
        Ok(())
    }

    /// Sends a command given as its type and JSON data.
    pub fn send_json(
        &mut self,
        handler: &str,
        stream_id: &str,
        command_type: &str,
        data: &serde_json::Value,
    ) -> Result<()> {
        self.sent.push(Command {
            handler: handler.to_owned(),
            command_type: command_type.to_owned(),
            stream_id: stream_id.to_owned(),
            data: data.to_string(),
            position: self.position,
        });
        Ok(())
    }

    /// The commands sent so far, in order.
    pub fn sent(&self) -> &[Command] {
        &self.sent
    }
}

/// Reacts to `events` in order; the commands, or the first failure naming
/// its event. Native only: the test harness runs batches through it.
#[cfg(not(target_family = "wasm"))]
pub fn react_all<R: Reactor>(db: &Db, events: &[Event]) -> Result<Vec<Command>, ApplyError> {
    let mut commands = Commands::default();
    for event in events {
        db.set_position(event.position);
        commands.position = event.position;
        R::react(db, event, &mut commands)
            .map_err(|e| ApplyError { position: event.position, message: e.message().to_owned() })?;
    }
    let last = events.last().map_or(0, |e| e.position);
    db.flush().map_err(|e| ApplyError { position: last, message: crate::sql::describe(&e) })?;
    Ok(commands.sent)
}

/// Reacts to a packed batch in order.
pub fn react_batch<R: Reactor>(db: &Db, batch: &EventBatch) -> Result<Vec<Command>, ApplyError> {
    let mut commands = Commands::default();
    for_each_event(db, batch, |event| {
        commands.position = event.position;
        R::react(db, event, &mut commands)
    })?;
    Ok(commands.sent)
}

/// Adapts a [`Reactor`] to the exported WIT interface.
#[doc(hidden)]
pub struct ReactorExport<R>(PhantomData<R>);

/// Lets the native expansion of [`export_reactor!`] check the type.
#[doc(hidden)]
pub trait ExportedReactor {
    fn check();
}

impl<R: Reactor> ExportedReactor for ReactorExport<R> {
    fn check() {}
}

impl<R: Reactor> Guest for ReactorExport<R> {
    fn describe() -> reactor::Description {
        let d = R::describe();
        reactor::Description {
            event_versions: d.wit_versions(),
            name: d.name,
            version: d.version,
            event_types: d.event_types,
            migrations: d.migrations,
        }
    }

    fn react(batch: EventBatch) -> Result<Vec<reactor::Command>, ApplyError> {
        #[cfg(target_family = "wasm")]
        let db = Db::host();
        #[cfg(not(target_family = "wasm"))]
        let db = Db::open_in_memory().map_err(|e| ApplyError {
            position: batch.positions.first().copied().unwrap_or(0),
            message: e.to_string(),
        })?;
        let commands = react_batch::<R>(&db, &batch)?;
        Ok(commands
            .into_iter()
            .map(|c| reactor::Command {
                handler: c.handler,
                command_type: c.command_type,
                stream_id: c.stream_id,
                data: c.data,
                position: c.position,
            })
            .collect())
    }
}

/// Exports a [`Reactor`] implementation as the plugin's reactor:
/// `refract_sdk::export_reactor!(MyReactor);` once, at the crate root.
#[macro_export]
macro_rules! export_reactor {
    ($ty:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            type __RefractReactorExport = $crate::__private::ReactorExport<$ty>;
            $crate::__private::reactor_bindings::export_reactor_world!(
                __RefractReactorExport with_types_in $crate::__private::reactor_bindings
            );
        };
        #[cfg(not(target_family = "wasm"))]
        const _: fn() = || {
            let _ = <$crate::__private::ReactorExport<$ty> as $crate::__private::ExportedReactor>::check;
        };
    };
}
