//! `__NAME__`: a refract projection. Build it with
//! `cargo build --release --target wasm32-wasip2` and drop the `.wasm` into
//! the plugins directory, or run `refract dev`.

use refract_sdk::{Db, Description, Event, Projection, Result, params};
use serde::Deserialize;

/// The payload of the events this projection reads.
#[derive(Deserialize)]
pub struct Happened {
    /// Something to count.
    pub amount: i64,
}

/// The projection.
pub struct Template;

impl Projection for Template {
    fn describe() -> Description {
        Description::new("__NAME__", env!("CARGO_PKG_VERSION"))
            .event_types(["Happened"])
            .migration("CREATE TABLE totals (stream_id TEXT PRIMARY KEY, total INTEGER NOT NULL)")
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        let e: Happened = event.data()?;
        db.execute(
            "INSERT INTO totals (stream_id, total) VALUES (?1, ?2)
             ON CONFLICT (stream_id) DO UPDATE SET total = total + excluded.total",
            params![event.stream_id.as_str(), e.amount],
        )?;
        Ok(())
    }
}

refract_sdk::export_projection!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::testing::{ProjectionTest, event};

    #[test]
    fn sums_per_stream() {
        let t = ProjectionTest::<Template>::new();
        t.apply(&[
            event(1, "a", 1, "Happened", serde_json::json!({ "amount": 2 })),
            event(2, "a", 2, "Happened", serde_json::json!({ "amount": 3 })),
        ])
        .unwrap();
        let rows = t.db().query("SELECT total FROM totals WHERE stream_id = 'a'", &[]).unwrap();
        assert_eq!(rows.get::<i64>(0, "total").unwrap(), 5);
    }
}
