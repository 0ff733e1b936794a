//! Command dispatch: load the stream's history, let the handler decide in
//! the sandbox, append its events with the history's version as the
//! expected version, and on a conflict re-read and decide again.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::evolution::{Contracts, SnapshotStore, Stored};
use crate::log::{AppendError, EventLog, ExpectedVersion, Idempotency, NewEvent, RecordedEvent};
use crate::metrics::Metrics;
use crate::plugin::{Command, Event, HandlerPlugin, Refusal, Snapshot};

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
    /// An event does not follow its type's schema (see `GET /schemas`).
    #[error("{message}")]
    SchemaViolation { path: String, message: String },
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

/// Every loaded command handler, by name, and what commands share: the
/// schema contracts their events must follow, the snapshots of their
/// state.
#[derive(Default)]
pub struct Handlers {
    loaded: RwLock<BTreeMap<String, Arc<HandlerPlugin>>>,
    /// The schemas events are checked against.
    pub contracts: Arc<Contracts>,
    /// Handler snapshots; `None`: none kept.
    pub snapshots: Option<SnapshotStore>,
    /// Where snapshot and upcast counts go.
    pub metrics: Metrics,
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
    /// No handler yet; events checked against `contracts`, snapshots kept
    /// in `snapshots`.
    pub fn new(contracts: Arc<Contracts>, snapshots: Option<SnapshotStore>, metrics: Metrics) -> Self {
        Self { loaded: RwLock::default(), contracts, snapshots, metrics }
    }

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
        if let Some(store) = &self.snapshots {
            store.prune(&name, &plugin.hash);
        }
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
    // Versions the handler writes its events at.
    let versions: BTreeMap<&str, u32> =
        plugin.description.event_versions.iter().map(|v| (v.event_type.as_str(), v.version)).collect();
    let mut use_snapshot = handlers.snapshots.is_some();
    let mut attempt = 0;
    while attempt < MAX_ATTEMPTS {
        attempt += 1;
        let state = read_state(log, handlers, &plugin, &req.stream_id, use_snapshot).await?;
        let expected = state.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let mut history = state.history;
        if let Some(plan) = &plugin.upcasts {
            tokio::task::block_in_place(|| plan.events(&mut history)).map_err(|(position, message)| {
                CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: format!("cannot read the stream's event at position {position}: {message}"),
                }
            })?;
        }
        let last = history.last().map(|e| (e.stream_version, e.position));
        let keep_state = handlers
            .snapshots
            .as_ref()
            .is_some_and(|s| s.every() > 0 && use_snapshot && history.len() as u64 >= s.every());
        let history: Vec<Event> = history.into_iter().map(to_plugin_event).collect();
        let snapshot = state.snapshot.map(|s| Snapshot { version: s.version, state: s.state });
        let had_snapshot = snapshot.is_some();
        let (p, c) = (plugin.clone(), command.clone());
        // Held by the blocking task, so the instance's slot is counted
        // until it is gone even if this request is dropped meanwhile.
        let slot = plugin.instance_slot().await;
        let decided = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            p.handle(&c, snapshot.as_ref(), &history, keep_state)
        })
        .await
        .map_err(|e| CommandError::PluginFailed { plugin: handler.to_owned(), message: e.to_string() })?;
        let decision = match decided {
            Ok(Ok(decision)) => decision,
            Ok(Err(Refusal::Rejected(r))) => {
                return Err(CommandError::Rejected { code: r.code, message: r.message });
            }
            Ok(Err(Refusal::BadSnapshot(why))) if had_snapshot => {
                tracing::warn!(handler, stream = %req.stream_id, reason = %why, "the handler cannot read its snapshot; using the whole history");
                handlers.metrics.snapshot("fallback");
                use_snapshot = false;
                attempt -= 1;
                continue;
            }
            Ok(Err(Refusal::BadSnapshot(why))) => {
                return Err(CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: format!("refused a snapshot it was not given: {why}"),
                });
            }
            Err(e) => {
                return Err(CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: e.to_string(),
                });
            }
        };
        if had_snapshot {
            handlers.metrics.snapshot("used");
        }
        if let (Some(store), Some(state), Some((version, position))) =
            (&handlers.snapshots, decision.state, last)
        {
            save_snapshot(
                store,
                &plugin,
                &req.stream_id,
                Stored { version, position, state },
                &handlers.metrics,
            )
            .await;
        }
        let mut events = decision
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let data = RawValue::from_string(e.data).map_err(|err| CommandError::PluginFailed {
                    plugin: handler.to_owned(),
                    message: format!("event {i} ({}) has invalid JSON data: {err}", e.event_type),
                })?;
                let metadata = RawValue::from_string(metadata_text.clone()).map_err(storage)?;
                let schema_version = versions.get(e.event_type.as_str()).copied();
                Ok(NewEvent { event_type: e.event_type, data, metadata: Some(metadata), schema_version })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        handlers.contracts.check(&mut events).map_err(|v| CommandError::SchemaViolation {
            path: format!("/events/{}/data{}", v.index, v.path),
            message: format!("handler {handler} returned an event its type's schema refuses: {}", v.message),
        })?;
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

/// A stream as a handler gets it: a snapshot of its first events, if one
/// is kept and usable, and the events after it.
struct StreamState {
    snapshot: Option<Stored>,
    history: Vec<RecordedEvent>,
    /// The stream's version (None: no stream).
    version: Option<u64>,
}

/// Reads `stream` for `plugin`: from its snapshot when `use_snapshot` and
/// one is kept whose last event is still where it was, else whole.
async fn read_state(
    log: &EventLog,
    handlers: &Handlers,
    plugin: &HandlerPlugin,
    stream: &str,
    use_snapshot: bool,
) -> Result<StreamState, CommandError> {
    let name = &plugin.description.name;
    let kept = match &handlers.snapshots {
        Some(store) if use_snapshot && store.every() > 0 => {
            let (store, handler, build, s) =
                (store.clone(), name.clone(), plugin.hash.clone(), stream.to_owned());
            let loaded = tokio::task::spawn_blocking(move || store.load(&handler, &build, &s))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            loaded.unwrap_or_else(|why| {
                tracing::warn!(handler = %name, stream, reason = %why, "unreadable snapshot; using the whole history");
                handlers.metrics.snapshot("fallback");
                None
            })
        }
        _ => None,
    };
    if let Some(snapshot) = kept {
        // From the snapshot's own last event, to check it is still there.
        let events =
            log.read_stream(stream.to_owned(), snapshot.version, u64::MAX).await?.unwrap_or_default();
        match events.first() {
            Some(first)
                if first.stream_version == snapshot.version && first.position == snapshot.position =>
            {
                let history: Vec<RecordedEvent> = events.into_iter().skip(1).collect();
                let version = Some(history.last().map_or(snapshot.version, |e| e.stream_version));
                return Ok(StreamState { snapshot: Some(snapshot), history, version });
            }
            _ => {
                tracing::warn!(handler = %name, stream, "a snapshot of events that are not in the log; using the whole history");
                handlers.metrics.snapshot("fallback");
            }
        }
    }
    let history = log.read_whole_stream(stream.to_owned()).await?;
    let version = history.last().map(|e| e.stream_version);
    Ok(StreamState { snapshot: None, history, version })
}

/// Keeps `snapshot` of `stream`, off the async workers; a failure is
/// logged (a snapshot is a cache).
async fn save_snapshot(
    store: &SnapshotStore,
    plugin: &HandlerPlugin,
    stream: &str,
    snapshot: Stored,
    metrics: &Metrics,
) {
    let (store, name, build, s) =
        (store.clone(), plugin.description.name.clone(), plugin.hash.clone(), stream.to_owned());
    let saved = tokio::task::spawn_blocking(move || store.save(&name, &build, &s, &snapshot)).await;
    match saved {
        Ok(Ok(())) => metrics.snapshot("saved"),
        Ok(Err(e)) => {
            tracing::warn!(handler = %plugin.description.name, stream, error = %e, "cannot keep a snapshot")
        }
        Err(e) => {
            tracing::warn!(handler = %plugin.description.name, stream, error = %e, "cannot keep a snapshot")
        }
    }
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
