//! The `order-summary` logic, shared by the plugin and by test plugins that
//! build other versions of it.

use std::borrow::Cow;

use refract_sdk::{Db, Description, Event, Projection, Result, params};
use serde::Deserialize;

// The payloads borrow their strings from the event (`Cow`, `serde(borrow)`)
// rather than copying each one: a replay reads millions of them.

/// A line of an order.
#[derive(Debug, Deserialize)]
pub struct Item<'a> {
    /// The product ordered.
    #[serde(borrow)]
    pub product_id: Cow<'a, str>,
    /// How many.
    pub quantity: i64,
    /// Unit price.
    pub price: f64,
}

/// Who placed an order (`OrderPlaced` version 2).
#[derive(Debug, Deserialize)]
pub struct Customer<'a> {
    /// A stable identifier: the summary's `customer`.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The name to show.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// `OrderPlaced` version 2: a new order with its first items (version 1
/// events arrive upcast by `order-placed-v2`).
#[derive(Debug, Deserialize)]
pub struct OrderPlaced<'a> {
    /// Who placed it.
    #[serde(borrow)]
    pub customer: Customer<'a>,
    /// Its items; may be empty.
    #[serde(default, borrow)]
    pub items: Vec<Item<'a>>,
}

/// `OrderPaid`.
#[derive(Debug, Deserialize)]
pub struct OrderPaid<'a> {
    /// How it was paid.
    #[serde(borrow)]
    pub payment_method: Cow<'a, str>,
}

/// `OrderShipped`.
#[derive(Debug, Deserialize)]
pub struct OrderShipped<'a> {
    /// Who carries it.
    #[serde(borrow)]
    pub carrier: Cow<'a, str>,
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
            .reads("OrderPlaced", 2)
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        let order = event.stream_id.as_str();
        let pos = event.position;
        match event.event_type.as_str() {
            "OrderPlaced" => {
                let e: OrderPlaced = event.data()?;
                let count: i64 = e.items.iter().map(|i| i.quantity).sum();
                let total: f64 = e.items.iter().map(|i| i.quantity as f64 * i.price).sum();
                db.write(PLACE, params![order, &e.customer.id, count, total, pos])?;
            }
            "ItemAdded" => {
                let i: Item = event.data()?;
                db.write(ADD_ITEM, params![order, i.quantity, i.quantity as f64 * i.price, pos])?;
            }
            "OrderPaid" => {
                let _: OrderPaid = event.data()?;
                db.write(SET_STATUS, params![order, "paid", pos])?;
            }
            "OrderShipped" => {
                let _: OrderShipped = event.data()?;
                db.write(SET_STATUS, params![order, "shipped", pos])?;
            }
            "OrderCancelled" => {
                db.write(SET_STATUS, params![order, "cancelled", pos])?;
            }
            _ => {}
        }
        Ok(())
    }
}
