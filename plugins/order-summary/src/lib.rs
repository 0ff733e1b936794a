//! `order-summary`: one row per order with its customer, item count, total
//! and status — the read model a shop's order list is served from.
//!
//! Every write is guarded by `last_updated_position`, so applying an event a
//! second time changes nothing.

use refract_sdk::{Db, Description, Event, Projection, Result, params};
use serde::Deserialize;

/// A line of an order.
#[derive(Debug, Deserialize)]
pub struct Item {
    /// The product ordered.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// Unit price.
    pub price: f64,
}

/// `OrderPlaced`: a new order with its first items.
#[derive(Debug, Deserialize)]
pub struct OrderPlaced {
    /// Who placed it.
    pub customer: String,
    /// Its items; may be empty.
    #[serde(default)]
    pub items: Vec<Item>,
}

/// `OrderPaid`.
#[derive(Debug, Deserialize)]
pub struct OrderPaid {
    /// How it was paid.
    pub payment_method: String,
}

/// `OrderShipped`.
#[derive(Debug, Deserialize)]
pub struct OrderShipped {
    /// Who carries it.
    pub carrier: String,
}

/// The projection.
pub struct OrderSummary;

const SCHEMA: &str = "
CREATE TABLE order_summaries (
    order_id              TEXT PRIMARY KEY,
    customer              TEXT NOT NULL,
    item_count            INTEGER NOT NULL,
    total                 REAL NOT NULL,
    status                TEXT NOT NULL,
    last_updated_position INTEGER NOT NULL
);
CREATE INDEX order_summaries_by_customer ON order_summaries (customer);
CREATE INDEX order_summaries_by_status ON order_summaries (status);
";

const PLACE: &str = "
INSERT INTO order_summaries (order_id, customer, item_count, total, status, last_updated_position)
VALUES (?1, ?2, ?3, ?4, 'placed', ?5)
ON CONFLICT (order_id) DO NOTHING";

const ADD_ITEM: &str = "
UPDATE order_summaries
SET item_count = item_count + ?2, total = total + ?3, last_updated_position = ?4
WHERE order_id = ?1 AND last_updated_position < ?4";

const SET_STATUS: &str = "
UPDATE order_summaries SET status = ?2, last_updated_position = ?3
WHERE order_id = ?1 AND last_updated_position < ?3";

impl Projection for OrderSummary {
    fn describe() -> Description {
        Description::new("order-summary", env!("CARGO_PKG_VERSION"))
            .event_types(["OrderPlaced", "ItemAdded", "OrderPaid", "OrderShipped", "OrderCancelled"])
            .migration(SCHEMA)
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        let order = event.stream_id.as_str();
        let pos = event.position;
        match event.event_type.as_str() {
            "OrderPlaced" => {
                let e: OrderPlaced = event.data()?;
                let count: i64 = e.items.iter().map(|i| i.quantity).sum();
                let total: f64 = e.items.iter().map(|i| i.quantity as f64 * i.price).sum();
                db.execute(PLACE, params![order, e.customer, count, total, pos])?;
            }
            "ItemAdded" => {
                let i: Item = event.data()?;
                db.execute(ADD_ITEM, params![order, i.quantity, i.quantity as f64 * i.price, pos])?;
            }
            "OrderPaid" => {
                let _: OrderPaid = event.data()?;
                db.execute(SET_STATUS, params![order, "paid", pos])?;
            }
            "OrderShipped" => {
                let _: OrderShipped = event.data()?;
                db.execute(SET_STATUS, params![order, "shipped", pos])?;
            }
            "OrderCancelled" => {
                db.execute(SET_STATUS, params![order, "cancelled", pos])?;
            }
            _ => {}
        }
        Ok(())
    }
}

refract_sdk::export_projection!(OrderSummary);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::testing::{ProjectionTest, event};
    use serde_json::json;

    fn placed(pos: u64, order: &str) -> Event {
        event(
            pos,
            order,
            1,
            "OrderPlaced",
            json!({
                "customer": "ada",
                "items": [{"product_id": "p1", "quantity": 2, "price": 5.0}]
            }),
        )
    }

    #[test]
    fn lifecycle_updates_one_row() {
        let t = ProjectionTest::<OrderSummary>::new();
        t.apply(&[
            placed(1, "order-1"),
            event(2, "order-1", 2, "ItemAdded", json!({"product_id": "p2", "quantity": 1, "price": 2.5})),
            event(3, "order-1", 3, "OrderPaid", json!({"payment_method": "card"})),
            event(4, "order-1", 4, "OrderShipped", json!({"carrier": "dhl"})),
        ])
        .unwrap();
        let r = t.db().query("SELECT * FROM order_summaries", &[]).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.get::<String>(0, "customer").unwrap(), "ada");
        assert_eq!(r.get::<i64>(0, "item_count").unwrap(), 3);
        assert_eq!(r.get::<f64>(0, "total").unwrap(), 12.5);
        assert_eq!(r.get::<String>(0, "status").unwrap(), "shipped");
        assert_eq!(r.get::<i64>(0, "last_updated_position").unwrap(), 4);
    }

    #[test]
    fn replaying_an_event_changes_nothing() {
        let t = ProjectionTest::<OrderSummary>::new();
        let add =
            event(2, "order-1", 2, "ItemAdded", json!({"product_id": "p", "quantity": 1, "price": 1.0}));
        t.apply(&[placed(1, "order-1"), add.clone()]).unwrap();
        t.apply(&[add]).unwrap();
        let r = t.db().query("SELECT item_count FROM order_summaries", &[]).unwrap();
        assert_eq!(r.get::<i64>(0, "item_count").unwrap(), 3);
    }

    #[test]
    fn bad_data_fails_the_batch_and_names_the_event() {
        let t = ProjectionTest::<OrderSummary>::new();
        let bad = event(2, "order-2", 1, "OrderPlaced", json!({"items": []}));
        let err = t.apply(&[placed(1, "order-1"), bad]).unwrap_err();
        assert!(err.message().contains("event 2"), "{err}");
        assert!(err.message().contains("customer"), "{err}");
        let r = t.db().query("SELECT * FROM order_summaries", &[]).unwrap();
        assert!(r.is_empty(), "the whole batch must roll back");
    }
}
