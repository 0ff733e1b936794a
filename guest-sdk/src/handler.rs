//! Command handlers in the decider shape: fold the stream's history into a
//! state with `evolve`, then `decide` what happens to a command.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::handler_bindings::exports::refract::plugin::decider::{
    self, Command, Decision, Guest, NewEvent, Refusal, Snapshot,
};
use crate::Event;

/// A command handler: business rules that turn a command and the history of
/// its stream into new events, or a rejection.
///
/// `Command` and `Event` are serde types in the adjacently tagged form
/// `#[serde(tag = "type", content = "data")]`: the variant name is the
/// command or event type, its fields are the JSON data. The SDK
/// deserializes the history into `Event`s, folds them with
/// [`CommandHandler::evolve`] starting from `State::default()`, and calls
/// [`CommandHandler::decide`].
///
/// Handlers see nothing but the command and the history, so a decision is a
/// pure function of them: the host may run it again when another writer
/// changed the stream first.
///
/// The state is serialized (JSON) for the host's snapshots: on a long
/// stream the host passes the state folded from its first events and only
/// the events after them. `State` must therefore serialize everything
/// `decide` relies on; a snapshot that does not deserialize (the state's
/// shape changed) makes the host fold the whole history instead.
pub trait CommandHandler {
    /// What the handler knows about one stream.
    type State: Default + Serialize + DeserializeOwned;
    /// The commands it accepts.
    type Command: DeserializeOwned;
    /// The events it reads and emits.
    type Event: DeserializeOwned + Serialize;

    /// Name, version and accepted command types.
    fn describe() -> HandlerDescription;

    /// Applies one past event to the state.
    fn evolve(state: Self::State, event: Self::Event) -> Self::State;

    /// Decides on a command: the events to append (possibly none), or a
    /// rejection.
    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Rejection>;
}

/// What a command handler says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerDescription {
    /// Unique name: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
    pub name: String,
    /// Version label for people.
    pub version: String,
    /// Command types it accepts.
    pub command_types: Vec<String>,
    /// The versions of event types it reads and writes (see
    /// [`HandlerDescription::reads`]).
    pub event_versions: Vec<(String, u32)>,
}

impl HandlerDescription {
    /// A handler called `name` at `version` accepting `command_types`.
    pub fn new<I, S>(name: impl Into<String>, version: impl Into<String>, command_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            version: version.into(),
            command_types: command_types.into_iter().map(Into::into).collect(),
            event_versions: Vec::new(),
        }
    }

    /// Reads and writes events of `event_type` at version `version` of its
    /// schema: the host upcasts older ones in the history, and records the
    /// handler's events of that type at that version.
    pub fn reads(mut self, event_type: impl Into<String>, version: u32) -> Self {
        self.event_versions.push((event_type.into(), version));
        self
    }
}

/// A refused command: a stable code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason, for example `already_paid`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

/// Rebuilds the JSON `{"type": …, "data": …}` form of an event or command.
fn tagged(kind: &str, data: &str) -> Result<serde_json::Value, serde_json::Error> {
    let data: serde_json::Value = serde_json::from_str(data)?;
    Ok(serde_json::json!({ "type": kind, "data": data }))
}

/// Splits a serialized event back into its type and data.
pub(crate) fn untagged<E: Serialize>(event: &E) -> Result<(String, String), String> {
    let value = serde_json::to_value(event).map_err(|e| format!("cannot serialize an event: {e}"))?;
    let kind = value.get("type").and_then(|t| t.as_str()).map(str::to_owned);
    match kind {
        Some(kind) => {
            let data = value.get("data").cloned().unwrap_or(serde_json::Value::Null);
            Ok((kind, data.to_string()))
        }
        None => Err("events must serialize as {\"type\": …, \"data\": …}: use #[serde(tag = \"type\", content = \"data\")]".into()),
    }
}

/// Folds `history` and decides on a command given as type + JSON data.
pub fn run<H: CommandHandler>(
    command_type: &str,
    data: &str,
    history: &[Event],
) -> Result<Vec<(String, String)>, Rejection> {
    let state = fold::<H>(H::State::default(), history)?;
    decide_on::<H>(&state, command_type, data)
}

/// Applies `history` to `state`, in order.
pub fn fold<H: CommandHandler>(mut state: H::State, history: &[Event]) -> Result<H::State, Rejection> {
    for e in history {
        let event: H::Event =
            tagged(&e.event_type, &e.data).and_then(serde_json::from_value).map_err(|err| {
                Rejection::new(
                    "invalid_history",
                    format!("cannot read event {} ({}) of the stream: {err}", e.stream_version, e.event_type),
                )
            })?;
        state = H::evolve(state, event);
    }
    Ok(state)
}

/// Decides on a command given as type + JSON data.
fn decide_on<H: CommandHandler>(
    state: &H::State,
    command_type: &str,
    data: &str,
) -> Result<Vec<(String, String)>, Rejection> {
    let command: H::Command = tagged(command_type, data)
        .and_then(serde_json::from_value)
        .map_err(|e| Rejection::new("invalid_command", format!("invalid {command_type} command: {e}")))?;
    let events = H::decide(state, command)?;
    events.iter().map(|e| untagged(e).map_err(|m| Rejection::new("handler_bug", m))).collect()
}

/// Adapts a [`CommandHandler`] to the exported WIT interface.
#[doc(hidden)]
pub struct HandlerExport<H>(PhantomData<H>);

/// Lets the native expansion of [`export_command_handler!`] check the type.
#[doc(hidden)]
pub trait ExportedHandler {
    fn check();
}

impl<H: CommandHandler> ExportedHandler for HandlerExport<H> {
    fn check() {}
}

impl<H: CommandHandler> Guest for HandlerExport<H> {
    fn describe() -> decider::Description {
        let d = H::describe();
        decider::Description {
            event_versions: d
                .event_versions
                .into_iter()
                .map(|(event_type, version)| crate::EventVersion { event_type, version })
                .collect(),
            name: d.name,
            version: d.version,
            command_types: d.command_types,
        }
    }

    fn handle(
        command: Command,
        snapshot: Option<Snapshot>,
        history: Vec<Event>,
        keep_state: bool,
    ) -> Result<Decision, Refusal> {
        let rejected =
            |r: Rejection| Refusal::Rejected(decider::Rejection { code: r.code, message: r.message });
        let start = match snapshot {
            Some(s) => serde_json::from_slice::<H::State>(&s.state).map_err(|e| {
                Refusal::BadSnapshot(format!("cannot read the state of version {}: {e}", s.version))
            })?,
            None => H::State::default(),
        };
        let state = fold::<H>(start, &history).map_err(rejected)?;
        let kept = if keep_state {
            Some(serde_json::to_vec(&state).map_err(|e| {
                rejected(Rejection::new("handler_bug", format!("cannot serialize the state: {e}")))
            })?)
        } else {
            None
        };
        let events = decide_on::<H>(&state, &command.command_type, &command.data).map_err(rejected)?;
        Ok(Decision {
            events: events.into_iter().map(|(event_type, data)| NewEvent { event_type, data }).collect(),
            state: kept,
        })
    }
}

/// Exports a [`CommandHandler`] implementation as the plugin's handler:
/// `refract_sdk::export_command_handler!(MyHandler);` once, at the crate root.
#[macro_export]
macro_rules! export_command_handler {
    ($ty:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            type __RefractHandlerExport = $crate::__private::HandlerExport<$ty>;
            $crate::__private::handler_bindings::export_handler_world!(
                __RefractHandlerExport with_types_in $crate::__private::handler_bindings
            );
        };
        #[cfg(not(target_family = "wasm"))]
        const _: fn() = || {
            let _ = <$crate::__private::HandlerExport<$ty> as $crate::__private::ExportedHandler>::check;
        };
    };
}
