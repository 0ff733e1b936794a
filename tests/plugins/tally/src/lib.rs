//! A projection that queues its writes with `Db::write`: `Enter` inserts
//! the event's stream id as a key (a second `Enter` of the same stream
//! breaks the primary key), `Count` reads how many keys there are and
//! records it beside its position, `Sneak` queues a write to the host's
//! table and `Vacuum` a `VACUUM`. Two reach past the SDK to the raw
//! contract: `Single` enters its stream id with `sql.write`, one statement
//! per call (what plugins built before `write-queued` send), and `Garble`
//! sends `write-queued` a parameter list with an unknown tag. `Echo`
//! stores its event's data and metadata as the text the plugin received.

use refract_sdk::__private::bindings::refract::plugin::sql;
use refract_sdk::{Db, Description, Event, Projection, Result, Value, params};

const ENTER: &str = "INSERT INTO entries (key) VALUES (?1)";

/// The projection.
pub struct Tally;

impl Projection for Tally {
    fn describe() -> Description {
        Description::new("tally", "1")
            .event_types(["Enter", "Count", "Sneak", "Vacuum", "Single", "Garble", "Echo"])
            .migration("CREATE TABLE entries (key TEXT PRIMARY KEY); CREATE TABLE counts (position INTEGER PRIMARY KEY, keys INTEGER NOT NULL);")
            .migration("CREATE TABLE echoes (position INTEGER PRIMARY KEY, data TEXT NOT NULL, metadata TEXT NOT NULL)")
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        match event.event_type.as_str() {
            "Enter" => db.write(ENTER, params![event.stream_id.as_str()])?,
            "Count" => {
                let keys: i64 = db.query("SELECT count(*) AS n FROM entries", &[])?.get(0, "n")?;
                db.write(
                    "INSERT INTO counts (position, keys) VALUES (?1, ?2)",
                    params![event.position, keys],
                )?;
            }
            "Echo" => db.write(
                "INSERT INTO echoes (position, data, metadata) VALUES (?1, ?2, ?3)",
                params![event.position, event.data.as_str(), event.metadata.as_str()],
            )?,
            "Sneak" => db.write("UPDATE refract_meta SET position = 0", &[])?,
            "Vacuum" => db.write("VACUUM", &[])?,
            "Single" => {
                db.flush()?;
                sql::write(event.position, ENTER, &[Value::Text(event.stream_id.clone())])?
            }
            "Garble" => {
                db.flush()?;
                sql::write_queued(&sql::QueuedWrites {
                    statements: vec![ENTER.into()],
                    positions: vec![event.position],
                    statement_indices: vec![0],
                    // One parameter, tagged 9.
                    params: vec![1, 0, 0, 0, 9],
                })?
            }
            _ => {}
        }
        Ok(())
    }
}

refract_sdk::export_projection!(Tally);
