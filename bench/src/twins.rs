//! Native twins of the example plugins: the plugin crates' own Rust code,
//! compiled into this process and driven by the host exactly as their
//! `.wasm` builds are (same runner, batches, transactions, SQL guard; same
//! command path) — so a ratio between the two is the cost of the Wasm
//! boundary and nothing else.

use refract::plugin::{
    ApplyError, Batch, Command, Description, Event, EventRef, HandlerDescription, NativeHandler,
    NativeProjection, NewEvent, Rejection,
};

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
        Description { name: d.name, version: d.version, event_types: d.event_types, migrations: d.migrations }
    }

    fn apply(&self, conn: &rusqlite::Connection, events: &Batch) -> Result<(), ApplyError> {
        let failed = |message: String| ApplyError { position: events.first_position().unwrap_or(0), message };
        // SAFETY: the wrapper shares the runner's open connection for this
        // call only. `from_handle` never closes the handle, and the wrapper
        // (with the statements it cached) is dropped before we return,
        // while the runner's connection is still open.
        let shared =
            unsafe { rusqlite::Connection::from_handle(conn.handle()) }.map_err(|e| failed(e.to_string()))?;
        let db = refract_sdk::Db::from_connection(shared);
        let Some(first) = events.first() else { return Ok(()) };
        let mut event = to_sdk(&first.to_event());
        for e in events.iter() {
            refill(&mut event, &e);
            <order_summary::OrderSummary as refract_sdk::Projection>::apply(&db, &event)
                .map_err(|err| ApplyError { position: e.position, message: err.message().to_owned() })?;
        }
        Ok(())
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
        }
    }

    fn handle(&self, command: &Command, history: &[Event]) -> Result<Vec<NewEvent>, Rejection> {
        let history: Vec<refract_sdk::Event> = history.iter().map(to_sdk).collect();
        match refract_sdk::__private::decide::<orders::Orders>(&command.command_type, &command.data, &history)
        {
            Ok(events) => {
                Ok(events.into_iter().map(|(event_type, data)| NewEvent { event_type, data }).collect())
            }
            Err(r) => Err(Rejection { code: r.code, message: r.message }),
        }
    }
}
