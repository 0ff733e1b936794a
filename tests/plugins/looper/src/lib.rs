//! A hostile projection: `apply` never returns. The host must interrupt it
//! at the time budget and keep everything else running.

use refract_sdk::{Db, Description, Event, Projection, Result};

/// The projection.
pub struct Looper;

impl Projection for Looper {
    fn describe() -> Description {
        Description::new("looper", "1").migration("CREATE TABLE seen (position INTEGER PRIMARY KEY)")
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        let mut n: u64 = event.position;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
            if n == 0 {
                db.execute("INSERT INTO seen (position) VALUES (?)", refract_sdk::params![event.position])?;
            }
        }
    }
}

refract_sdk::export_projection!(Looper);
