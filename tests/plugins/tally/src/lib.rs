//! A projection that queues its writes with `Db::write`: `Enter` inserts
//! the event's stream id as a key (a second `Enter` of the same stream
//! breaks the primary key), `Count` reads how many keys there are and
//! records it beside its position, `Sneak` queues a write to the host's
//! table and `Vacuum` a `VACUUM`.

use refract_sdk::{Db, Description, Event, Projection, Result, params};

/// The projection.
pub struct Tally;

impl Projection for Tally {
    fn describe() -> Description {
        Description::new("tally", "1")
            .event_types(["Enter", "Count", "Sneak", "Vacuum"])
            .migration("CREATE TABLE entries (key TEXT PRIMARY KEY); CREATE TABLE counts (position INTEGER PRIMARY KEY, keys INTEGER NOT NULL);")
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        match event.event_type.as_str() {
            "Enter" => {
                db.write("INSERT INTO entries (key) VALUES (?1)", params![event.stream_id.as_str()])?
            }
            "Count" => {
                let keys: i64 = db.query("SELECT count(*) AS n FROM entries", &[])?.get(0, "n")?;
                db.write(
                    "INSERT INTO counts (position, keys) VALUES (?1, ?2)",
                    params![event.position, keys],
                )?;
            }
            "Sneak" => db.write("UPDATE refract_meta SET position = 0", &[])?,
            "Vacuum" => db.write("VACUUM", &[])?,
            _ => {}
        }
        Ok(())
    }
}

refract_sdk::export_projection!(Tally);
