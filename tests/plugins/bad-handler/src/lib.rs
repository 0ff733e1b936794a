//! A hostile command handler: depending on the command it panics, loops
//! forever, returns an event with an empty type, or floods the stream. The
//! host must answer with a clear error and append nothing.

use refract_sdk::{CommandHandler, HandlerDescription, Rejection};
use serde::{Deserialize, Serialize};

/// The commands.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Cmd {
    /// Panics (a trap).
    Trap {},
    /// Never returns.
    Loop {},
    /// Returns an event with an empty type.
    Malformed {},
    /// Behaves: appends one `Fine` event.
    Fine {},
}

/// The events.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Ev {
    /// A good event.
    Fine {},
    /// An event with an empty type name.
    #[serde(rename = "")]
    Nameless {},
}

/// The handler.
pub struct BadHandler;

impl CommandHandler for BadHandler {
    type State = ();
    type Command = Cmd;
    type Event = Ev;

    fn describe() -> HandlerDescription {
        HandlerDescription::new("bad-handler", "1", ["Trap", "Loop", "Malformed", "Fine"])
    }

    fn evolve(state: (), _event: Ev) {
        state
    }

    fn decide(_state: &(), command: Cmd) -> Result<Vec<Ev>, Rejection> {
        match command {
            Cmd::Trap {} => panic!("the handler panicked on purpose"),
            Cmd::Loop {} => {
                let mut n: u64 = 1;
                loop {
                    n = std::hint::black_box(n.wrapping_mul(3).wrapping_add(1));
                    if n == 0 {
                        return Ok(vec![]);
                    }
                }
            }
            Cmd::Malformed {} => Ok(vec![Ev::Fine {}, Ev::Nameless {}]),
            Cmd::Fine {} => Ok(vec![Ev::Fine {}]),
        }
    }
}

refract_sdk::export_command_handler!(BadHandler);
