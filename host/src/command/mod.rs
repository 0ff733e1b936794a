//! Command dispatch: load the stream's history, let the handler decide in
//! the sandbox, append its events with the history's version as the
//! expected version, and on a conflict re-read and decide again.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::log::{AppendError, EventLog, ExpectedVersion, Idempotency, NewEvent, RecordedEvent};
use crate::plugin::{Command, Event, HandlerPlugin};

/// Most attempts at one command when other writers keep changing its stream.
pub const MAX_ATTEMPTS: u32 = 50;

/// A command as sent over HTTP.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The command type, one the handler accepts.
    #[serde(rename = "type")]
    pub command_type: String,
    /// The target stream: 1 to 256 characters, no control characters.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub stream_id: String,
    /// The payload: any JSON value, handed to the handler as sent.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// Optional metadata (a JSON object; `null` is the same as none);
    /// `correlation_id` in it is kept. Its members reach the events'
    /// metadata as sent.
    #[serde(default)]
    #[schema(value_type = Option<Object>, nullable)]
    pub metadata: Option<Box<RawValue>>,
    /// Makes the command happen at most once per key (per handler): 1 to
    /// 256 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub idempotency_key: Option<String>,
}

/// What a command did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommandResponse {
    /// The id given to this command (for a repeated idempotency key: the
    /// original command's id).
    pub command_id: String,
    /// The stream's version after the command.
    pub stream_version: u64,
    /// Position of the first appended event; null when none was appended.
    pub first_position: Option<u64>,
    /// Position of the last appended event; null when none was appended.
    pub last_position: Option<u64>,
    /// The appended events.
    pub events: Vec<RecordedEvent>,
    /// True when the idempotency key had been seen: nothing new was written.
    pub duplicate: bool,
}

/// Why a command did not go through. Nothing was appended.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No handler of that name is loaded.
    #[error("no command handler named {0:?}; GET /handlers lists them")]
    UnknownHandler(String),
    /// The handler does not accept that command type.
    #[error("handler {handler} does not accept {command_type:?} commands; it accepts {}", accepted.join(", "))]
    UnknownCommandType { handler: String, command_type: String, accepted: Vec<String> },
    /// The command itself is invalid (stream id, metadata, key).
    #[error("{0}")]
    Invalid(String),
    /// The handler refused the command.
    #[error("{message}")]
    Rejected { code: String, message: String },
    /// Other writers kept changing the stream.
    #[error("stream {stream_id} kept changing under the command; gave up after {attempts} attempts")]
    Conflict { stream_id: String, attempts: u32 },
    /// The handler trapped, ran out of time or memory, or returned events
    /// that are not valid.
    #[error("command handler {plugin} failed: {message}")]
    PluginFailed { plugin: String, message: String },
    /// The log failed.
    #[error("{0}")]
    Storage(String),
    /// The log cannot be reached right now; nothing was appended unless the
    /// message says the outcome is unknown. Retry (with an idempotency key,
    /// a retry is safe either way).
    #[error("{0}")]
    Unavailable(String),
}

impl From<crate::log::ReadError> for CommandError {
    fn from(e: crate::log::ReadError) -> Self {
        match e {
            crate::log::ReadError::Unavailable(m) => CommandError::Unavailable(m),
            crate::log::ReadError::Storage(m) => CommandError::Storage(m),
        }
    }
}

/// Every loaded command handler, by name.
#[derive(Default)]
pub struct Handlers {
    loaded: RwLock<BTreeMap<String, Arc<HandlerPlugin>>>,
}

/// A handler as listed by `GET /handlers`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HandlerInfo {
    /// Its name.
    pub name: String,
    /// Its version label.
    pub version: String,
    /// The command types it accepts.
    pub command_types: Vec<String>,
    /// SHA-256 of its bytes.
    pub hash: String,
    /// Its file.
    pub file: String,
}

impl Handlers {
    /// Adds `plugin`. A handler of the same name loaded from the same file
    /// is replaced at once (commands in flight finish on the version they
    /// started with); one from another file is a conflict.
    pub fn add(&self, plugin: HandlerPlugin) -> Result<(), String> {
        let name = plugin.description.name.clone();
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = loaded.get(&name)
            && existing.path != plugin.path
        {
            return Err(format!(
                "a command handler named {name:?} is already loaded from {}; names must be unique",
                existing.path.display()
            ));
        }
        tracing::info!(handler = %name, version = %plugin.description.version, file = %plugin.path.display(), "loaded command handler");
        loaded.insert(name, Arc::new(plugin));
        Ok(())
    }

    /// Unloads the handler called `name`.
    pub fn remove(&self, name: &str) -> bool {
        self.loaded.write().unwrap_or_else(|p| p.into_inner()).remove(name).is_some()
    }

    /// The handler called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<HandlerPlugin>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every handler, by name.
    pub fn list(&self) -> Vec<HandlerInfo> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|h| HandlerInfo {
                name: h.description.name.clone(),
                version: h.description.version.clone(),
                command_types: h.description.command_types.clone(),
                hash: h.hash.clone(),
                file: h.path.display().to_string(),
            })
            .collect()
    }
}

fn storage(e: impl std::fmt::Display) -> CommandError {
    CommandError::Storage(e.to_string())
}

/// A new random command id (UUID v4).
fn new_command_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The members of a JSON object in the order they were sent, each value
/// as its text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The metadata members refract sets on every event of a command.
const RESERVED_METADATA: [&str; 3] = ["command_id", "correlation_id", "causation_id"];

/// The metadata every event of the command carries, as JSON text: the
/// command's own members as sent (their order and their values' text
/// kept), then `command_id`, `correlation_id` (the client's, if it sent
/// one, else the command id) and `causation_id` (the command id).
fn event_metadata(command_id: &str, metadata: Option<&RawValue>) -> Result<String, CommandError> {
    let members = match metadata {
        None => Members(Vec::new()),
        Some(m) => serde_json::from_str::<Members<'_>>(m.get())
            .map_err(|_| CommandError::Invalid("metadata must be a JSON object".into()))?,
    };
    let id = Value::from(command_id).to_string();
    let mut correlation = id.clone();
    let mut out = String::from("{");
    for (key, value) in &members.0 {
        if key == "correlation_id" {
            correlation = value.get().to_owned();
        }
        if RESERVED_METADATA.contains(&key.as_str()) {
            continue;
        }
        out.push_str(&Value::from(key.as_str()).to_string());
        out.push(':');
        out.push_str(value.get());
        out.push(',');
    }
    out.push_str(&format!(r#""command_id":{id},"correlation_id":{correlation},"causation_id":{id}}}"#));
    Ok(out)
}

/// Runs `req` through the handler called `handler` and appends its events.
pub async fn execute(
    log: &EventLog,
    handlers: &Handlers,
    handler: &str,
    req: CommandRequest,
) -> Result<CommandResponse, CommandError> {
    let plugin = handlers.get(handler).ok_or_else(|| CommandError::UnknownHandler(handler.to_owned()))?;
    if !plugin.description.command_types.contains(&req.command_type) {
        return Err(CommandError::UnknownCommandType {
            handler: handler.to_owned(),
            command_type: req.command_type,
            accepted: plugin.description.command_types.clone(),
        });
    }
    crate::log::validate_name("stream id", &req.stream_id)
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
    if let Some(key) = &req.idempotency_key {
        if key.is_empty() || key.chars().count() > 256 {
            return Err(CommandError::Invalid("idempotency_key must be 1 to 256 characters".into()));
        }
        // A key seen before: answer with the original outcome, without
        // running the handler again.
        if let Some(o) = log.find_idempotent(handler.to_owned(), key.clone()).await? {
            return respond(log, o, "").await;
        }
    }
    let command_id = new_command_id();
    let metadata_text = event_metadata(&command_id, req.metadata.as_deref())?;
    let command = Command {
        command_type: req.command_type.clone(),
        stream_id: req.stream_id.clone(),
        data: req.data.get().to_owned(),
        metadata: req.metadata.as_ref().map_or_else(|| "{}".to_owned(), |m| m.get().to_owned()),
    };
    let command = Arc::new(command);
    for attempt in 1..=MAX_ATTEMPTS {
        let history = log.read_whole_stream(req.stream_id.clone()).await?;
        let expected =
            history.last().map_or(ExpectedVersion::NoStream, |e| ExpectedVersion::Exact(e.stream_version));
        let history: Vec<Event> = history.into_iter().map(to_plugin_event).collect();
        let (p, c) = (plugin.clone(), command.clone());
        // Held by the blocking task, so the instance's slot is counted
        // until it is gone even if this request is dropped meanwhile.
        let slot = plugin.instance_slot().await;
        let decided = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            p.handle(&c, &history)
        })
        .await
        .map_err(|e| CommandError::PluginFailed { plugin: handler.to_owned(), message: e.to_string() })?;
        let new_events = match decided {
            Ok(Ok(events)) => events,
            Ok(Err(r)) => return Err(CommandError::Rejected { code: r.code, message: r.message }),
            Err(e) => {
                return Err(CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: e.to_string(),
                });
            }
        };
        let events = new_events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let data = RawValue::from_string(e.data).map_err(|err| CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: format!("event {i} ({}) has invalid JSON data: {err}", e.event_type),
                })?;
                let metadata = RawValue::from_string(metadata_text.clone()).map_err(storage)?;
                Ok(NewEvent { event_type: e.event_type, data, metadata: Some(metadata) })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        let idempotency = req.idempotency_key.clone().map(|key| Idempotency {
            scope: handler.to_owned(),
            key,
            command_id: command_id.clone(),
        });
        match log.append_once(&req.stream_id, expected, events, idempotency).await {
            Ok(outcome) => return respond(log, outcome, &command_id).await,
            Err(AppendError::Conflict { .. }) => {
                tracing::debug!(handler, stream = %req.stream_id, attempt, "conflict; deciding again");
                // Spread retries of commands racing on one stream.
                tokio::time::sleep(Duration::from_micros(jitter(&command_id, attempt))).await;
            }
            Err(e @ (AppendError::Invalid(_) | AppendError::TooLarge(_))) => {
                return Err(CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: format!("returned events the log refuses: {e}"),
                });
            }
            Err(AppendError::Unavailable(m)) => return Err(CommandError::Unavailable(m)),
            Err(e) => return Err(storage(e)),
        }
    }
    Err(CommandError::Conflict { stream_id: req.stream_id, attempts: MAX_ATTEMPTS })
}

/// A pseudo-random backoff in microseconds, growing with `attempt`.
fn jitter(seed: &str, attempt: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(seed.as_bytes());
    h.write_u32(attempt);
    h.finish() % (200 * u64::from(attempt.min(20)))
}

fn to_plugin_event(e: RecordedEvent) -> Event {
    Event {
        position: e.position,
        stream_id: e.stream_id,
        stream_version: e.stream_version,
        event_type: e.event_type,
        data: e.data.get().to_owned(),
        metadata: e.metadata.get().to_owned(),
        recorded_at: e.recorded_at,
    }
}

/// The response for an append's outcome; `command_id` is this command's id
/// (a duplicate reports the original's instead).
async fn respond(
    log: &EventLog,
    o: crate::log::Outcome,
    command_id: &str,
) -> Result<CommandResponse, CommandError> {
    let a = o.appended;
    let appended_any = a.first_position <= a.last_position;
    let events =
        if appended_any { log.read_range(a.first_position, a.last_position).await? } else { Vec::new() };
    Ok(CommandResponse {
        command_id: o.duplicate_of.clone().unwrap_or_else(|| command_id.to_owned()),
        stream_version: a.stream_version,
        first_position: appended_any.then_some(a.first_position),
        last_position: appended_any.then_some(a.last_position),
        events,
        duplicate: o.duplicate_of.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_metadata_keeps_the_clients_members_as_sent() {
        let sent = RawValue::from_string(
            r#"{"z":1, "price":9.600000000000001,"correlation_id":"c-1","big":18446744073709551615,"command_id":"forged","a":{"y":2,"b":0.1}}"#
                .into(),
        )
        .unwrap();
        let text = event_metadata("id-1", Some(&sent)).unwrap();
        assert_eq!(
            text,
            r#"{"z":1,"price":9.600000000000001,"big":18446744073709551615,"a":{"y":2,"b":0.1},"command_id":"id-1","correlation_id":"c-1","causation_id":"id-1"}"#
        );
        assert_eq!(
            event_metadata("id-2", None).unwrap(),
            r#"{"command_id":"id-2","correlation_id":"id-2","causation_id":"id-2"}"#
        );
        let not_object = RawValue::from_string("[1]".into()).unwrap();
        assert!(matches!(event_metadata("id", Some(&not_object)), Err(CommandError::Invalid(_))));
    }
}
