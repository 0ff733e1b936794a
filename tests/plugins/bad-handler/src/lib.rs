//! A hostile command handler, written against the raw WIT interface (as a
//! hostile author would, bypassing the SDK's typed events). Depending on the
//! command it panics, loops forever, returns an event with an empty type,
//! returns data that is not JSON, floods the stream with `count` events, or
//! leaves the command's data in its memory for a later command to find.
//! The host must answer with a clear error and append nothing — or, for a
//! flood within the log's limits, append it atomically; and every command
//! must start from a fresh memory.

#[cfg(target_family = "wasm")]
use refract_sdk::__private::handler_bindings::exports::refract::plugin::decider::{
    Command, Decision, Description, Guest, NewEvent, Refusal, Rejection, Snapshot,
};

/// The command types.
pub const COMMAND_TYPES: &[&str] = &["Trap", "Loop", "Malformed", "BadJson", "Flood", "Remember", "Fine"];

/// Bytes "Remember" fills before the command's data: more than the host
/// keeps resident of an ended instance's memory, so both of the ways it
/// resets a memory are exercised.
const REMEMBER_BYTES: usize = 2 << 20;

/// What the last "Remember" of this memory left: `REMEMBER_BYTES` of
/// filler, then the command's data.
static REMEMBERED: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

/// The handler.
pub struct BadHandler;

/// The events to return for `command_type` with JSON `data`, as
/// `(type, data)`; `Err` is a rejection `(code, message)`.
pub fn decide(command_type: &str, data: &str) -> Result<Vec<(String, String)>, (String, String)> {
    let fine = || ("Fine".to_owned(), "{}".to_owned());
    match command_type {
        "Trap" => panic!("the handler panicked on purpose"),
        "Loop" => {
            let mut n: u64 = 1;
            loop {
                n = std::hint::black_box(n.wrapping_mul(3).wrapping_add(1));
                if n == 0 {
                    return Ok(vec![]);
                }
            }
        }
        "Malformed" => Ok(vec![fine(), (String::new(), "{}".to_owned())]),
        "BadJson" => Ok(vec![fine(), ("Fine".to_owned(), "{\"unterminated\": [1, 2".to_owned())]),
        "Flood" => {
            let count = data
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| ("invalid_command".to_owned(), "Flood needs {\"count\": N}".to_owned()))?;
            Ok((0..count).map(|i| ("Flooded".to_owned(), format!("{{\"i\":{i}}}"))).collect())
        }
        "Remember" => {
            let mut kept = vec![b' '; REMEMBER_BYTES];
            kept.extend_from_slice(data.as_bytes());
            let mut remembered = REMEMBERED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let previous =
                remembered.replace(kept).map(|p| String::from_utf8_lossy(&p[REMEMBER_BYTES..]).into_owned());
            Ok(vec![(
                "Remembered".to_owned(),
                format!("{{\"previous\":{}}}", previous.as_deref().unwrap_or("null")),
            )])
        }
        "Fine" => Ok(vec![fine()]),
        other => Err(("unknown_command".to_owned(), format!("no command {other}"))),
    }
}

#[cfg(target_family = "wasm")]
impl Guest for BadHandler {
    fn describe() -> Description {
        Description {
            name: "bad-handler".into(),
            version: "2".into(),
            command_types: COMMAND_TYPES.iter().map(|s| (*s).to_owned()).collect(),
            event_versions: Vec::new(),
        }
    }

    fn handle(
        command: Command,
        _snapshot: Option<Snapshot>,
        _history: Vec<refract_sdk::Event>,
        _keep_state: bool,
    ) -> Result<Decision, Refusal> {
        match decide(&command.command_type, &command.data) {
            Ok(events) => Ok(Decision {
                events: events.into_iter().map(|(event_type, data)| NewEvent { event_type, data }).collect(),
                state: None,
            }),
            Err((code, message)) => Err(Refusal::Rejected(Rejection { code, message })),
        }
    }
}

#[cfg(target_family = "wasm")]
refract_sdk::__private::handler_bindings::export_handler_world!(
    BadHandler with_types_in refract_sdk::__private::handler_bindings
);

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn floods_as_many_events_as_asked() {
        assert_eq!(decide("Flood", r#"{"count": 3}"#).unwrap().len(), 3);
        assert!(decide("Flood", "{}").is_err());
    }

    #[test]
    fn remember_finds_what_an_earlier_call_left_in_the_same_memory() {
        // Natively the memory is the test's and persists; in the host each
        // command has a fresh one and must find nothing.
        let first = decide("Remember", r#"{"secret":1}"#).unwrap();
        assert_eq!(first[0].1, r#"{"previous":null}"#);
        let second = decide("Remember", r#"{"secret":2}"#).unwrap();
        assert_eq!(second[0].1, r#"{"previous":{"secret":1}}"#);
    }
}
