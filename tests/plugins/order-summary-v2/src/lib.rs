//! Version 2 of `order-summary`, for hot-reload tests: the same logic (the
//! source is shared with `plugins/order-summary`), one more column
//! (`channel`), and tolerant of `OrderShipped` events without a carrier —
//! the "fixed version" that re-drives such events from the dead letters.

#[allow(dead_code)]
#[path = "../../../../plugins/order-summary/src/summary.rs"]
mod summary;

use refract_sdk::{Db, Description, Event, Projection, Result, params};
use summary::{OrderShipped, OrderSummary};

/// The projection.
pub struct OrderSummaryV2;

impl Projection for OrderSummaryV2 {
    fn describe() -> Description {
        let mut d = OrderSummary::describe()
            .migration("ALTER TABLE order_summaries ADD COLUMN channel TEXT NOT NULL DEFAULT 'web'");
        d.version = "2.0.0".into();
        d
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        if event.event_type == "OrderShipped" && event.data::<OrderShipped>().is_err() {
            db.execute(
                "UPDATE order_summaries SET status = 'shipped', last_updated_position = ?2
                 WHERE order_id = ?1 AND last_updated_position < ?2",
                params![event.stream_id.as_str(), event.position],
            )?;
            return Ok(());
        }
        OrderSummary::apply(db, event)
    }
}

refract_sdk::export_projection!(OrderSummaryV2);
