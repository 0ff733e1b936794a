//! `__NAME__`: a refract command handler. Build it with
//! `cargo build --release --target wasm32-wasip2` and drop the `.wasm` into
//! the plugins directory, or run `refract dev`.

use refract_sdk::{CommandHandler, HandlerDescription, Rejection};
use serde::{Deserialize, Serialize};

/// The commands it accepts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Command {
    /// Start the thing.
    Start {},
}

/// The events it emits.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// The thing started.
    Started {},
}

/// What it knows about one stream.
/// Kept in snapshots of long streams: everything `decide` relies on
/// must be in it.
#[derive(Default, Serialize, Deserialize)]
pub struct State {
    started: bool,
}

/// The handler.
pub struct Template;

impl CommandHandler for Template {
    type State = State;
    type Command = Command;
    type Event = Event;

    fn describe() -> HandlerDescription {
        HandlerDescription::new("__NAME__", env!("CARGO_PKG_VERSION"), ["Start"])
    }

    fn evolve(mut state: State, event: Event) -> State {
        match event {
            Event::Started {} => state.started = true,
        }
        state
    }

    fn decide(state: &State, command: Command) -> Result<Vec<Event>, Rejection> {
        match command {
            Command::Start {} if state.started => Err(Rejection::new("already_started", "it has already started")),
            Command::Start {} => Ok(vec![Event::Started {}]),
        }
    }
}

refract_sdk::export_command_handler!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::testing::given;

    #[test]
    fn starts_once() {
        given::<Template>([]).when(Command::Start {}).then([Event::Started {}]);
        given::<Template>([Event::Started {}]).when(Command::Start {}).then_rejected("already_started");
    }
}
