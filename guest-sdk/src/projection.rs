use std::marker::PhantomData;

use crate::__private::bindings::exports::refract::plugin::projector::{self, ApplyError, EventBatch, Guest};
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
    /// The versions of event types it reads: events stored at older
    /// versions reach it upcast by the host's upcasters.
    pub event_versions: Vec<(String, u32)>,
}

impl Description {
    /// A projection called `name` at version `version`, with no migrations,
    /// receiving every event type until [`Description::event_types`] narrows it.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            event_types: Vec::new(),
            migrations: Vec::new(),
            event_versions: Vec::new(),
        }
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

    /// Reads events of `event_type` at version `version` of its schema:
    /// the host upcasts older ones before they arrive.
    pub fn reads(mut self, event_type: impl Into<String>, version: u32) -> Self {
        self.event_versions.push((event_type.into(), version));
        self
    }

    /// The declared versions, as the WIT carries them.
    pub(crate) fn wit_versions(
        &self,
    ) -> Vec<crate::__private::bindings::refract::plugin::types::EventVersion> {
        self.event_versions
            .iter()
            .map(|(t, v)| crate::__private::bindings::refract::plugin::types::EventVersion {
                event_type: t.clone(),
                version: *v,
            })
            .collect()
    }

    /// Appends a schema migration (SQL, one or more statements).
    pub fn migration(mut self, sql: impl Into<String>) -> Self {
        self.migrations.push(sql.into());
        self
    }
}

/// Applies `events` in order; the first failure names its event. Native
/// only: the test harness runs batches through it.
#[cfg(not(target_family = "wasm"))]
pub fn apply_all<P: Projection>(db: &Db, events: &[Event]) -> Result<(), ApplyError> {
    for event in events {
        db.set_position(event.position);
        P::apply(db, event)
            .map_err(|e| ApplyError { position: event.position, message: e.message().to_owned() })?;
    }
    let last = events.last().map_or(0, |e| e.position);
    db.flush().map_err(|e| ApplyError { position: last, message: crate::sql::describe(&e) })
}

/// Applies a packed batch (see `event-batch` in `wit/types.wit`) in order;
/// the first failure names its event.
pub fn apply_batch<P: Projection>(db: &Db, batch: &EventBatch) -> Result<(), ApplyError> {
    for_each_event(db, batch, |event| P::apply(db, event))
}

/// Calls `f` with each event of a packed batch, in order, and flushes the
/// statements still queued at the end; the first failure names its event.
/// One [`Event`] is refilled for each event in turn, so its strings are
/// allocated once per batch, not once per event.
pub(crate) fn for_each_event(
    db: &Db,
    batch: &EventBatch,
    mut f: impl FnMut(&Event) -> Result<()>,
) -> Result<(), ApplyError> {
    let n = batch.positions.len();
    let malformed = |position: u64, what: &str| ApplyError {
        position,
        message: format!("the host sent a malformed event batch: {what}"),
    };
    let first = batch.positions.first().copied().unwrap_or(0);
    if batch.stream_versions.len() != n || batch.recorded_at.len() != n || batch.lengths.len() != 4 * n {
        return Err(malformed(first, "its lists differ in length"));
    }
    let mut event = Event {
        position: 0,
        stream_id: String::new(),
        stream_version: 0,
        event_type: String::new(),
        data: String::new(),
        metadata: String::new(),
        recorded_at: 0,
    };
    let mut rest = batch.text.as_str();
    for (i, lengths) in batch.lengths.chunks_exact(4).enumerate() {
        event.position = batch.positions[i];
        event.stream_version = batch.stream_versions[i];
        event.recorded_at = batch.recorded_at[i];
        for (field, &len) in
            [&mut event.stream_id, &mut event.event_type, &mut event.data, &mut event.metadata]
                .into_iter()
                .zip(lengths)
        {
            let len = len as usize;
            let (value, tail) = match (rest.get(..len), rest.get(len..)) {
                (Some(value), Some(tail)) => (value, tail),
                _ => return Err(malformed(event.position, "a length runs past its text")),
            };
            field.clear();
            field.push_str(value);
            rest = tail;
        }
        db.set_position(event.position);
        f(&event).map_err(|e| ApplyError { position: event.position, message: e.message().to_owned() })?;
    }
    // The statements still queued in the plugin go to the host before the
    // batch ends.
    db.flush().map_err(|e| ApplyError { position: event.position, message: crate::sql::describe(&e) })
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
            event_versions: d.wit_versions(),
            name: d.name,
            version: d.version,
            event_types: d.event_types,
            migrations: d.migrations,
        }
    }

    fn apply(batch: EventBatch) -> Result<(), ApplyError> {
        #[cfg(target_family = "wasm")]
        let db = Db::host();
        #[cfg(not(target_family = "wasm"))]
        let db = Db::open_in_memory().map_err(|e| ApplyError {
            position: batch.positions.first().copied().unwrap_or(0),
            message: e.to_string(),
        })?;
        apply_batch::<P>(&db, &batch)
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

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;
    use crate::params;

    /// Records every field of every event it is given.
    struct Recorder;

    impl Projection for Recorder {
        fn describe() -> Description {
            Description::new("recorder", "1").migration(
                "CREATE TABLE seen (position INTEGER, stream TEXT, version INTEGER, type TEXT,
                 data TEXT, metadata TEXT, recorded_at INTEGER)",
            )
        }

        fn apply(db: &Db, e: &Event) -> Result<()> {
            if e.event_type == "Bad" {
                return Err(crate::Error::new("bad event"));
            }
            db.execute(
                "INSERT INTO seen VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    e.position,
                    e.stream_id.as_str(),
                    e.stream_version,
                    e.event_type.as_str(),
                    e.data.as_str(),
                    e.metadata.as_str(),
                    e.recorded_at
                ],
            )?;
            Ok(())
        }
    }

    fn db() -> Db {
        let db = Db::open_in_memory().unwrap();
        db.execute_batch(&Recorder::describe().migrations[0]).unwrap();
        db
    }

    /// Two events laid out as `event-batch` in `wit/projection.wit` says.
    fn batch() -> EventBatch {
        EventBatch {
            positions: vec![7, 9],
            stream_versions: vec![1, 4],
            recorded_at: vec![1000, -5],
            lengths: vec![3, 1, 3, 2, 6, 3, 2, 9],
            text: "s-1A[1]{}ßé-2Bad{}{\"k\":\"v\"}".into(),
        }
    }

    #[test]
    fn a_packed_batch_unpacks_into_its_events_in_order() {
        let db = db();
        let mut b = batch();
        b.text = b.text.replace("Bad", "Yes");
        apply_batch::<Recorder>(&db, &b).unwrap();
        let rows = db.query("SELECT * FROM seen ORDER BY position", &[]).unwrap();
        assert_eq!(rows.len(), 2);
        let text = |row: usize, column: &str| rows.get::<String>(row, column).unwrap();
        let int = |row: usize, column: &str| rows.get::<i64>(row, column).unwrap();
        assert_eq!((int(0, "position"), int(0, "version"), int(0, "recorded_at")), (7, 1, 1000));
        assert_eq!(
            (text(0, "stream"), text(0, "type"), text(0, "data"), text(0, "metadata")),
            ("s-1".into(), "A".into(), "[1]".into(), "{}".into())
        );
        assert_eq!((int(1, "position"), int(1, "version"), int(1, "recorded_at")), (9, 4, -5));
        assert_eq!(
            (text(1, "stream"), text(1, "type"), text(1, "data"), text(1, "metadata")),
            ("ßé-2".into(), "Yes".into(), "{}".into(), r#"{"k":"v"}"#.into())
        );
    }

    #[test]
    fn a_failing_event_is_named_by_its_position() {
        let err = apply_batch::<Recorder>(&db(), &batch()).unwrap_err();
        assert_eq!(err.position, 9);
        assert!(err.message.contains("bad event"), "{}", err.message);
    }

    #[test]
    fn a_malformed_batch_is_an_error_not_a_panic() {
        let mut short = batch();
        short.lengths.pop();
        let mut past = batch();
        past.lengths[7] = 99;
        let mut split = batch();
        // Ends inside the two-byte `ß`.
        split.lengths[4] = 1;
        for b in [short, past, split] {
            let err = apply_batch::<Recorder>(&db(), &b).unwrap_err();
            assert!(err.message.contains("malformed event batch"), "{}", err.message);
        }
    }
}
