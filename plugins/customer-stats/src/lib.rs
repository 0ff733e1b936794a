//! `customer-stats`: orders, paid orders, cancellations and revenue per
//! customer — a second, independent read model over the same order events.
//!
//! `ItemAdded` and `OrderPaid` do not name the customer, so the projection
//! keeps its own `order_customers` table mapping each order to its customer
//! and running total.

use std::borrow::Cow;

use refract_sdk::{Db, Description, Event, Projection, Result, params};
use serde::Deserialize;

#[derive(Deserialize)]
struct Item {
    quantity: i64,
    price: f64,
}

#[derive(Deserialize)]
struct Customer<'a> {
    // Borrowed from the event's JSON unless it holds escapes.
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// `OrderPlaced` version 2 (version 1 events arrive upcast).
#[derive(Deserialize)]
struct OrderPlaced<'a> {
    #[serde(borrow)]
    customer: Customer<'a>,
    #[serde(default)]
    items: Vec<Item>,
}

/// The projection.
pub struct CustomerStats;

const SCHEMA: &str = "
CREATE TABLE customer_stats (
    customer         TEXT PRIMARY KEY,
    orders           INTEGER NOT NULL DEFAULT 0,
    paid_orders      INTEGER NOT NULL DEFAULT 0,
    cancelled_orders INTEGER NOT NULL DEFAULT 0,
    revenue          REAL NOT NULL DEFAULT 0
);
CREATE TABLE order_customers (
    order_id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    total    REAL NOT NULL
);
";

const PLACE_ORDER: &str = "INSERT INTO order_customers (order_id, customer, total) VALUES (?1, ?2, ?3)";
const COUNT_ORDER: &str = "
INSERT INTO customer_stats (customer, orders) VALUES (?1, 1)
ON CONFLICT (customer) DO UPDATE SET orders = orders + 1";
const ADD_TO_TOTAL: &str = "UPDATE order_customers SET total = total + ?2 WHERE order_id = ?1";
const COUNT_PAID: &str = "
UPDATE customer_stats
SET paid_orders = paid_orders + 1,
    revenue = revenue + (SELECT total FROM order_customers WHERE order_id = ?1)
WHERE customer = (SELECT customer FROM order_customers WHERE order_id = ?1)";
const COUNT_CANCELLED: &str = "
UPDATE customer_stats SET cancelled_orders = cancelled_orders + 1
WHERE customer = (SELECT customer FROM order_customers WHERE order_id = ?1)";

impl Projection for CustomerStats {
    fn describe() -> Description {
        Description::new("customer-stats", env!("CARGO_PKG_VERSION"))
            .event_types(["OrderPlaced", "ItemAdded", "OrderPaid", "OrderCancelled"])
            .migration(SCHEMA)
            .reads("OrderPlaced", 2)
    }

    fn apply(db: &Db, event: &Event) -> Result<()> {
        let order = event.stream_id.as_str();
        match event.event_type.as_str() {
            "OrderPlaced" => {
                let e: OrderPlaced = event.data()?;
                let total: f64 = e.items.iter().map(|i| i.quantity as f64 * i.price).sum();
                // A second OrderPlaced on the same stream is ignored: it
                // would otherwise count the order twice.
                if db.query("SELECT 1 FROM order_customers WHERE order_id = ?", params![order])?.is_empty() {
                    db.execute(PLACE_ORDER, params![order, &e.customer.id, total])?;
                    db.execute(COUNT_ORDER, params![&e.customer.id])?;
                }
            }
            "ItemAdded" => {
                let i: Item = event.data()?;
                db.execute(ADD_TO_TOTAL, params![order, i.quantity as f64 * i.price])?;
            }
            "OrderPaid" => {
                db.execute(COUNT_PAID, params![order])?;
            }
            "OrderCancelled" => {
                db.execute(COUNT_CANCELLED, params![order])?;
            }
            _ => {}
        }
        Ok(())
    }
}

refract_sdk::export_projection!(CustomerStats);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::testing::{ProjectionTest, event};
    use serde_json::json;

    #[test]
    fn counts_orders_and_revenue_per_customer() {
        let t = ProjectionTest::<CustomerStats>::new();
        let placed = |pos, order: &str, customer: &str| {
            event(
                pos,
                order,
                1,
                "OrderPlaced",
                json!({
                    "customer": {"id": customer, "name": customer},
                    "items": [{"product_id": "p", "quantity": 1, "price": 10.0}]
                }),
            )
        };
        t.apply(&[
            placed(1, "o-1", "ada"),
            placed(2, "o-2", "ada"),
            placed(3, "o-3", "bob"),
            event(4, "o-1", 2, "ItemAdded", json!({"product_id": "q", "quantity": 2, "price": 5.0})),
            event(5, "o-1", 3, "OrderPaid", json!({"payment_method": "card"})),
            event(6, "o-2", 2, "OrderCancelled", json!({})),
        ])
        .unwrap();
        let r = t.db().query("SELECT * FROM customer_stats WHERE customer = 'ada'", &[]).unwrap();
        assert_eq!(r.get::<i64>(0, "orders").unwrap(), 2);
        assert_eq!(r.get::<i64>(0, "paid_orders").unwrap(), 1);
        assert_eq!(r.get::<i64>(0, "cancelled_orders").unwrap(), 1);
        assert_eq!(r.get::<f64>(0, "revenue").unwrap(), 20.0);
    }
}
