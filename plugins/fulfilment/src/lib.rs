//! `fulfilment`: the saga between `orders` and `inventory`, as a reactor.
//!
//! - `OrderPaid` → `ReserveStock` (inventory) for the order's items;
//! - `StockReserved` → `ShipOrder` (orders);
//! - `StockUnavailable` → `CancelOrder` (orders): the compensation, since
//!   the order was paid but cannot be served;
//! - `OrderCancelled` while its stock is reserved (cancelled before it
//!   shipped) → `ReleaseStock` (inventory).
//!
//! It remembers each order's items and where its process stands in two
//! tables of its own, written in the same transaction as its checkpoint and
//! the commands it decides, so a crash neither forgets a step nor repeats
//! one.

use std::borrow::Cow;

use refract_sdk::{Commands, Db, Description, Event, Reactor, Result, params};
use serde::{Deserialize, Serialize};

/// The carrier `ShipOrder` names.
pub const CARRIER: &str = "refract-post";

/// The stream of the `inventory` handler.
pub const INVENTORY: &str = "inventory";

/// A line of an order, as `orders` records it.
#[derive(Debug, Deserialize)]
struct OrderLine<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    quantity: i64,
}

#[derive(Debug, Deserialize)]
struct OrderPlaced<'a> {
    #[serde(default, borrow)]
    items: Vec<OrderLine<'a>>,
}

#[derive(Debug, Deserialize)]
struct ForOrder<'a> {
    #[serde(borrow)]
    order_id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
struct Shortage<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    wanted: i64,
    available: i64,
}

#[derive(Debug, Deserialize)]
struct StockUnavailable<'a> {
    #[serde(borrow)]
    order_id: Cow<'a, str>,
    #[serde(borrow)]
    missing: Vec<Shortage<'a>>,
}

/// A line of a reservation, as `inventory` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
}

/// The commands this saga sends to `inventory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum InventoryCommand {
    /// Set aside an order's items.
    ReserveStock {
        /// The order.
        order_id: String,
        /// Its items.
        items: Vec<Line>,
    },
    /// Give them back.
    ReleaseStock {
        /// The order.
        order_id: String,
    },
}

/// The commands this saga sends to `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderCommand {
    /// Ship a paid order.
    ShipOrder {
        /// Who carries it.
        carrier: String,
    },
    /// Cancel it.
    CancelOrder {
        /// Why.
        reason: Option<String>,
    },
}

/// The reactor.
pub struct Fulfilment;

const SCHEMA: &str = "
CREATE TABLE fulfilment_orders (
    order_id         TEXT PRIMARY KEY,
    -- open, reserving, shipping, shipped, cancelling, released, cancelled
    stage            TEXT NOT NULL,
    updated_position INTEGER NOT NULL
);
CREATE TABLE fulfilment_items (
    order_id   TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
";

const OPEN: &str = "INSERT INTO fulfilment_orders (order_id, stage, updated_position) VALUES (?1, 'open', ?2)
    ON CONFLICT (order_id) DO NOTHING";

const ADD_ITEM: &str = "INSERT INTO fulfilment_items (order_id, product_id, quantity) VALUES (?1, ?2, ?3)
    ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = quantity + excluded.quantity";

const STAGE: &str = "SELECT stage FROM fulfilment_orders WHERE order_id = ?1";

const SET_STAGE: &str = "UPDATE fulfilment_orders SET stage = ?2, updated_position = ?3 WHERE order_id = ?1";

const ITEMS: &str =
    "SELECT product_id, quantity FROM fulfilment_items WHERE order_id = ?1 ORDER BY product_id";

fn stage(db: &Db, order: &str) -> Result<Option<String>> {
    let rows = db.query(STAGE, params![order])?;
    if rows.is_empty() { Ok(None) } else { Ok(Some(rows.get(0, "stage")?)) }
}

impl Reactor for Fulfilment {
    fn describe() -> Description {
        Description::new("fulfilment", env!("CARGO_PKG_VERSION"))
            .event_types([
                "OrderPlaced",
                "ItemAdded",
                "OrderPaid",
                "OrderShipped",
                "OrderCancelled",
                "StockReserved",
                "StockUnavailable",
            ])
            .migration(SCHEMA)
    }

    fn react(db: &Db, event: &Event, commands: &mut Commands) -> Result<()> {
        let pos = event.position;
        match event.event_type.as_str() {
            "OrderPlaced" => {
                let order = event.stream_id.as_str();
                let e: OrderPlaced = event.data()?;
                db.write(OPEN, params![order, pos])?;
                for l in &e.items {
                    db.write(ADD_ITEM, params![order, &l.product_id, l.quantity])?;
                }
            }
            "ItemAdded" => {
                let l: OrderLine = event.data()?;
                db.write(ADD_ITEM, params![event.stream_id.as_str(), &l.product_id, l.quantity])?;
            }
            "OrderPaid" => {
                let order = event.stream_id.as_str();
                if stage(db, order)?.as_deref() != Some("open") {
                    return Ok(());
                }
                let rows = db.query(ITEMS, params![order])?;
                let items = (0..rows.len())
                    .map(|i| {
                        Ok(Line {
                            product_id: rows.get(i, "product_id")?,
                            quantity: rows.get(i, "quantity")?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                commands.send(
                    "inventory",
                    INVENTORY,
                    &InventoryCommand::ReserveStock { order_id: order.to_owned(), items },
                )?;
                db.write(SET_STAGE, params![order, "reserving", pos])?;
            }
            "StockReserved" => {
                let e: ForOrder = event.data()?;
                if stage(db, &e.order_id)?.as_deref() == Some("reserving") {
                    commands.send(
                        "orders",
                        &e.order_id,
                        &OrderCommand::ShipOrder { carrier: CARRIER.into() },
                    )?;
                    db.write(SET_STAGE, params![&e.order_id, "shipping", pos])?;
                }
            }
            "StockUnavailable" => {
                let e: StockUnavailable = event.data()?;
                if stage(db, &e.order_id)?.as_deref() == Some("reserving") {
                    let short: Vec<String> = e
                        .missing
                        .iter()
                        .map(|m| format!("{} (wanted {}, {} free)", m.product_id, m.wanted, m.available))
                        .collect();
                    let reason = format!("out of stock: {}", short.join(", "));
                    commands.send(
                        "orders",
                        &e.order_id,
                        &OrderCommand::CancelOrder { reason: Some(reason) },
                    )?;
                    db.write(SET_STAGE, params![&e.order_id, "cancelling", pos])?;
                }
            }
            "OrderShipped" => {
                db.write(SET_STAGE, params![event.stream_id.as_str(), "shipped", pos])?;
            }
            "OrderCancelled" => {
                let order = event.stream_id.as_str();
                // Cancelled while its stock was set aside (before it
                // shipped): the reservation is given back.
                if stage(db, order)?.as_deref() == Some("shipping") {
                    commands.send(
                        "inventory",
                        INVENTORY,
                        &InventoryCommand::ReleaseStock { order_id: order.to_owned() },
                    )?;
                    db.write(SET_STAGE, params![order, "released", pos])?;
                } else {
                    db.write(SET_STAGE, params![order, "cancelled", pos])?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

refract_sdk::export_reactor!(Fulfilment);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::testing::{ReactorTest, event};
    use serde_json::json;

    fn placed(pos: u64, order: &str) -> Event {
        event(
            pos,
            order,
            1,
            "OrderPlaced",
            json!({"customer": "ada", "items": [
                {"product_id": "p-2", "quantity": 1, "price": 3.0},
                {"product_id": "p-1", "quantity": 2, "price": 5.0}]}),
        )
    }

    fn paid(pos: u64, order: &str) -> Event {
        event(pos, order, 2, "OrderPaid", json!({"payment_method": "card"}))
    }

    fn sent(c: &refract_sdk::Command) -> (String, String, String, serde_json::Value) {
        let data = serde_json::from_str(&c.data).unwrap();
        (c.handler.clone(), c.command_type.clone(), c.stream_id.clone(), data)
    }

    #[test]
    fn a_paid_order_reserves_its_items_then_ships() {
        let t = ReactorTest::<Fulfilment>::new();
        let added =
            event(2, "o-1", 2, "ItemAdded", json!({"product_id": "p-1", "quantity": 1, "price": 5.0}));
        assert!(t.react(&[placed(1, "o-1"), added]).unwrap().is_empty());
        let commands = t.react(&[paid(3, "o-1")]).unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0].position, 3);
        assert_eq!(
            sent(&commands[0]),
            (
                "inventory".into(),
                "ReserveStock".into(),
                "inventory".into(),
                json!({"order_id": "o-1", "items": [
                    {"product_id": "p-1", "quantity": 3}, {"product_id": "p-2", "quantity": 1}]})
            )
        );
        let reserved = event(4, "inventory", 5, "StockReserved", json!({"order_id": "o-1", "items": []}));
        let commands = t.react(&[reserved]).unwrap();
        assert_eq!(
            sent(&commands[0]),
            ("orders".into(), "ShipOrder".into(), "o-1".into(), json!({"carrier": CARRIER}))
        );
        assert!(
            t.react(&[event(5, "o-1", 3, "OrderShipped", json!({"carrier": CARRIER}))]).unwrap().is_empty()
        );
        let r = t.db().query("SELECT stage FROM fulfilment_orders WHERE order_id = 'o-1'", &[]).unwrap();
        assert_eq!(r.get::<String>(0, "stage").unwrap(), "shipped");
    }

    #[test]
    fn unavailable_stock_cancels_the_order() {
        let t = ReactorTest::<Fulfilment>::new();
        t.react(&[placed(1, "o-1"), paid(2, "o-1")]).unwrap();
        let short = event(
            3,
            "inventory",
            4,
            "StockUnavailable",
            json!({"order_id": "o-1", "missing": [{"product_id": "p-1", "wanted": 2, "available": 1}]}),
        );
        let commands = t.react(&[short]).unwrap();
        assert_eq!(
            sent(&commands[0]),
            (
                "orders".into(),
                "CancelOrder".into(),
                "o-1".into(),
                json!({"reason": "out of stock: p-1 (wanted 2, 1 free)"})
            )
        );
    }

    #[test]
    fn an_order_cancelled_while_its_stock_is_reserved_gives_it_back() {
        let t = ReactorTest::<Fulfilment>::new();
        let reserved = event(3, "inventory", 1, "StockReserved", json!({"order_id": "o-1", "items": []}));
        t.react(&[placed(1, "o-1"), paid(2, "o-1"), reserved]).unwrap();
        let commands = t.react(&[event(4, "o-1", 3, "OrderCancelled", json!({"reason": null}))]).unwrap();
        assert_eq!(
            sent(&commands[0]),
            ("inventory".into(), "ReleaseStock".into(), "inventory".into(), json!({"order_id": "o-1"}))
        );
        // A cancelled order that held no stock sends nothing.
        let t = ReactorTest::<Fulfilment>::new();
        t.react(&[placed(1, "o-2")]).unwrap();
        assert!(t.react(&[event(2, "o-2", 2, "OrderCancelled", json!({}))]).unwrap().is_empty());
    }

    #[test]
    fn reservations_of_orders_it_did_not_ask_for_are_ignored() {
        let t = ReactorTest::<Fulfilment>::new();
        let reserved = event(1, "inventory", 1, "StockReserved", json!({"order_id": "o-9", "items": []}));
        assert!(t.react(&[reserved]).unwrap().is_empty());
    }

    #[test]
    fn a_failing_event_sends_nothing_of_its_batch() {
        let t = ReactorTest::<Fulfilment>::new();
        let bad = event(3, "o-2", 1, "OrderPlaced", json!({"items": "not a list"}));
        assert!(t.react(&[placed(1, "o-1"), paid(2, "o-1"), bad]).is_err());
        let r = t.db().query("SELECT count(*) AS n FROM fulfilment_orders", &[]).unwrap();
        assert_eq!(r.get::<i64>(0, "n").unwrap(), 0);
    }
}
