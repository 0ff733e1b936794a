//! Native twins of the example plugins: the plugin crates' own Rust code,
//! compiled into this process and driven by the host exactly as their
//! `.wasm` builds are (same runner, batches, transactions, SQL guard; same
//! command path) — so a ratio between the two is the cost of the Wasm
//! boundary and nothing else.

use refract::plugin::{
    ApplyError, Batch, Command, Decision, Description, Event, EventRef, HandlerDescription, NativeHandler,
    NativeProjection, NewEvent, QueuedWrites, Refusal, Rejection, Snapshot, SqlError, SqlSession, WriteQueue,
};

/// The host's queue of queued statements, as the SDK's native `Db` takes
/// it: what a plugin's `sql.write-queued` reaches through the Wasm
/// boundary. The packed lists are handed over as they are, where a plugin's
/// are copied out of its memory.
struct Queue(WriteQueue);

impl refract_sdk::__private::WriteQueue for Queue {
    fn write_queued(
        &self,
        w: refract_sdk::__private::bindings::refract::plugin::sql::QueuedWrites,
    ) -> Result<(), refract_sdk::SqlError> {
        let writes = QueuedWrites {
            statements: w.statements,
            positions: w.positions,
            statement_indices: w.statement_indices,
            params: w.params,
        };
        self.0.push_packed(writes).map_err(to_sdk_error)
    }

    fn drain(&self) -> Result<(), refract_sdk::SqlError> {
        self.0.drain().map_err(to_sdk_error)
    }
}

fn to_sdk_error(e: SqlError) -> refract_sdk::SqlError {
    match e {
        SqlError::Refused(m) => refract_sdk::SqlError::Refused(m),
        SqlError::Failed(m) => refract_sdk::SqlError::Failed(m),
    }
}

fn to_sdk(e: &Event) -> refract_sdk::Event {
    refract_sdk::Event {
        position: e.position,
        stream_id: e.stream_id.clone(),
        stream_version: e.stream_version,
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: e.metadata.clone(),
        recorded_at: e.recorded_at,
    }
}

/// Refills `to` from `e`, reusing its strings: what the SDK does for each
/// event of a packed batch inside the plugin.
fn refill(to: &mut refract_sdk::Event, e: &EventRef<'_>) {
    to.position = e.position;
    to.stream_version = e.stream_version;
    to.recorded_at = e.recorded_at;
    for (field, value) in [
        (&mut to.stream_id, e.stream_id),
        (&mut to.event_type, e.event_type),
        (&mut to.data, e.data),
        (&mut to.metadata, e.metadata),
    ] {
        field.clear();
        field.push_str(value);
    }
}

/// `order-summary`, natively.
pub struct OrderSummaryTwin;

impl NativeProjection for OrderSummaryTwin {
    fn describe(&self) -> Description {
        let d = <order_summary::OrderSummary as refract_sdk::Projection>::describe();
        // The twin is fed what the workload appends: `OrderPlaced` at
        // version 2 already, as the plugin declares.
        Description {
            name: d.name,
            version: d.version,
            event_types: d.event_types,
            migrations: d.migrations,
            event_versions: d
                .event_versions
                .into_iter()
                .map(|(event_type, version)| refract::plugin::EventVersion { event_type, version })
                .collect(),
        }
    }

    fn apply(&self, sql: &SqlSession, events: &Batch) -> Result<(), ApplyError> {
        let failed = |message: String| ApplyError { position: events.first_position().unwrap_or(0), message };
        let queue = sql.write_queue().map_err(|e| failed(format!("{e:?}")))?.clone();
        let conn = sql.conn();
        // SAFETY: the wrapper shares the runner's open connection for this
        // call only. `from_handle` never closes the handle, and the wrapper
        // (with the statements it cached) is dropped before we return,
        // while the runner's connection is still open. Statements it runs
        // itself wait for the queue first (`WriteQueue::drain`), so the
        // writer thread and this one never use the connection at once, as
        // for a plugin.
        let shared =
            unsafe { rusqlite::Connection::from_handle(conn.handle()) }.map_err(|e| failed(e.to_string()))?;
        drop(conn);
        let db = refract_sdk::Db::from_connection(shared).with_write_queue(Box::new(Queue(queue)));
        let Some(first) = events.first() else { return Ok(()) };
        let mut event = to_sdk(&first.to_event());
        for e in events.iter() {
            refill(&mut event, &e);
            db.set_position(e.position);
            <order_summary::OrderSummary as refract_sdk::Projection>::apply(&db, &event)
                .map_err(|err| ApplyError { position: e.position, message: err.message().to_owned() })?;
        }
        // As the SDK does at the end of a plugin's batch.
        db.flush().map_err(|err| failed(format!("{err:?}")))
    }
}

/// `orders`, natively.
pub struct OrdersTwin;

impl NativeHandler for OrdersTwin {
    fn describe(&self) -> HandlerDescription {
        let d = <orders::Orders as refract_sdk::CommandHandler>::describe();
        // Beside the `.wasm` build in the same host, under its own name.
        HandlerDescription {
            name: format!("{}-native", d.name),
            version: d.version,
            command_types: d.command_types,
            event_versions: d
                .event_versions
                .into_iter()
                .map(|(event_type, version)| refract::plugin::EventVersion { event_type, version })
                .collect(),
        }
    }

    /// Folds the whole history every time (no snapshots).
    fn handle(
        &self,
        command: &Command,
        _snapshot: Option<&Snapshot>,
        history: &[Event],
        _keep_state: bool,
    ) -> Result<Decision, Refusal> {
        let history: Vec<refract_sdk::Event> = history.iter().map(to_sdk).collect();
        match refract_sdk::__private::decide::<orders::Orders>(&command.command_type, &command.data, &history)
        {
            Ok(events) => Ok(Decision {
                events: events.into_iter().map(|(event_type, data)| NewEvent { event_type, data }).collect(),
                state: None,
            }),
            Err(r) => Err(Refusal::Rejected(Rejection { code: r.code, message: r.message })),
        }
    }
}
