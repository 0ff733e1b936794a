//! `inventory`: a warehouse's stock, as a command handler on one stream
//! (`inventory`). Orders reserve stock and give it back; the `fulfilment`
//! reactor sends those commands as orders are paid and cancelled.
//!
//! A reservation that the stock cannot cover is not an error but a fact the
//! order process must act on: it is recorded as `StockUnavailable` (with
//! what is short), which the saga answers by cancelling the order. Requests
//! that make no sense — a second reservation for one order, releasing what
//! was never reserved, a quantity below 1 — are rejected.

use std::collections::BTreeMap;

use refract_sdk::{CommandHandler, HandlerDescription, Rejection};
use serde::{Deserialize, Serialize};

/// The stream every inventory command targets.
pub const STREAM: &str = "inventory";

/// A quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The product.
    pub product_id: String,
    /// How many; at least 1.
    pub quantity: i64,
}

/// What is missing for a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    /// The product.
    pub product_id: String,
    /// How many the order wants.
    pub wanted: i64,
    /// How many are free.
    pub available: i64,
}

/// What can be asked of the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InventoryCommand {
    /// Stock arrives.
    AddStock(Line),
    /// Set aside the items of an order.
    ReserveStock {
        /// The order.
        order_id: String,
        /// What it needs.
        items: Vec<Line>,
    },
    /// Give an order's reserved items back to the free stock.
    ReleaseStock {
        /// The order.
        order_id: String,
    },
}

/// What happened in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InventoryEvent {
    /// Stock arrived.
    StockAdded(Line),
    /// An order's items were set aside.
    StockReserved {
        /// The order.
        order_id: String,
        /// Its items.
        items: Vec<Line>,
    },
    /// An order's items could not all be set aside; nothing was.
    StockUnavailable {
        /// The order.
        order_id: String,
        /// What is short.
        missing: Vec<Shortage>,
    },
    /// An order's reserved items went back to the free stock.
    StockReleased {
        /// The order.
        order_id: String,
        /// Its items.
        items: Vec<Line>,
    },
}

/// The warehouse, folded from its events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stock {
    /// Free quantity per product.
    pub free: BTreeMap<String, i64>,
    /// Items set aside per order.
    pub reserved: BTreeMap<String, Vec<Line>>,
    /// Orders whose reservation was decided (reserved or unavailable).
    pub decided: BTreeMap<String, bool>,
}

/// The handler.
pub struct Inventory;

fn check(line: &Line) -> Result<(), Rejection> {
    if line.product_id.trim().is_empty() {
        return Err(Rejection::new("invalid_product", "product_id must not be empty"));
    }
    if line.quantity < 1 {
        return Err(Rejection::new("invalid_quantity", "quantity must be at least 1"));
    }
    Ok(())
}

/// The items of `lines`, one line per product (quantities added).
fn merged(lines: Vec<Line>) -> Vec<Line> {
    let mut by_product: BTreeMap<String, i64> = BTreeMap::new();
    for l in lines {
        *by_product.entry(l.product_id).or_default() += l.quantity;
    }
    by_product.into_iter().map(|(product_id, quantity)| Line { product_id, quantity }).collect()
}

impl CommandHandler for Inventory {
    type State = Stock;
    type Command = InventoryCommand;
    type Event = InventoryEvent;

    fn describe() -> HandlerDescription {
        HandlerDescription::new(
            "inventory",
            env!("CARGO_PKG_VERSION"),
            ["AddStock", "ReserveStock", "ReleaseStock"],
        )
    }

    fn evolve(mut stock: Stock, event: InventoryEvent) -> Stock {
        match event {
            InventoryEvent::StockAdded(l) => *stock.free.entry(l.product_id).or_default() += l.quantity,
            InventoryEvent::StockReserved { order_id, items } => {
                for l in &items {
                    *stock.free.entry(l.product_id.clone()).or_default() -= l.quantity;
                }
                stock.decided.insert(order_id.clone(), true);
                stock.reserved.insert(order_id, items);
            }
            InventoryEvent::StockUnavailable { order_id, .. } => {
                stock.decided.insert(order_id, false);
            }
            InventoryEvent::StockReleased { order_id, items } => {
                for l in &items {
                    *stock.free.entry(l.product_id.clone()).or_default() += l.quantity;
                }
                stock.reserved.remove(&order_id);
            }
        }
        stock
    }

    fn decide(stock: &Stock, command: InventoryCommand) -> Result<Vec<InventoryEvent>, Rejection> {
        match command {
            InventoryCommand::AddStock(line) => {
                check(&line)?;
                Ok(vec![InventoryEvent::StockAdded(line)])
            }
            InventoryCommand::ReserveStock { order_id, items } => {
                if order_id.trim().is_empty() {
                    return Err(Rejection::new("invalid_order", "order_id must not be empty"));
                }
                if items.is_empty() {
                    return Err(Rejection::new("no_items", "a reservation needs at least one item"));
                }
                items.iter().try_for_each(check)?;
                if stock.decided.contains_key(&order_id) {
                    return Err(Rejection::new(
                        "already_decided",
                        "this order's reservation was already made or found short",
                    ));
                }
                let items = merged(items);
                let missing: Vec<Shortage> = items
                    .iter()
                    .filter_map(|l| {
                        let available = stock.free.get(&l.product_id).copied().unwrap_or(0);
                        (available < l.quantity).then(|| Shortage {
                            product_id: l.product_id.clone(),
                            wanted: l.quantity,
                            available,
                        })
                    })
                    .collect();
                if missing.is_empty() {
                    Ok(vec![InventoryEvent::StockReserved { order_id, items }])
                } else {
                    Ok(vec![InventoryEvent::StockUnavailable { order_id, missing }])
                }
            }
            InventoryCommand::ReleaseStock { order_id } => match stock.reserved.get(&order_id) {
                Some(items) => Ok(vec![InventoryEvent::StockReleased { order_id, items: items.clone() }]),
                None => Err(Rejection::new("not_reserved", "this order holds no reserved stock")),
            },
        }
    }
}

refract_sdk::export_command_handler!(Inventory);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::testing::given;

    fn line(product: &str, quantity: i64) -> Line {
        Line { product_id: product.into(), quantity }
    }

    fn added(product: &str, quantity: i64) -> InventoryEvent {
        InventoryEvent::StockAdded(line(product, quantity))
    }

    fn reserve(order: &str, items: Vec<Line>) -> InventoryCommand {
        InventoryCommand::ReserveStock { order_id: order.into(), items }
    }

    fn reserved(order: &str, items: Vec<Line>) -> InventoryEvent {
        InventoryEvent::StockReserved { order_id: order.into(), items }
    }

    #[test]
    fn reserves_what_is_free_merging_lines_of_one_product() {
        given::<Inventory>([added("p-1", 5), added("p-2", 1)])
            .when(reserve("o-1", vec![line("p-1", 2), line("p-2", 1), line("p-1", 3)]))
            .then([reserved("o-1", vec![line("p-1", 5), line("p-2", 1)])]);
    }

    #[test]
    fn a_reservation_the_stock_cannot_cover_is_recorded_as_unavailable() {
        given::<Inventory>([added("p-1", 5), reserved("o-1", vec![line("p-1", 4)])])
            .when(reserve("o-2", vec![line("p-1", 2), line("p-9", 1)]))
            .then([InventoryEvent::StockUnavailable {
                order_id: "o-2".into(),
                missing: vec![
                    Shortage { product_id: "p-1".into(), wanted: 2, available: 1 },
                    Shortage { product_id: "p-9".into(), wanted: 1, available: 0 },
                ],
            }]);
    }

    #[test]
    fn released_stock_is_free_again() {
        let history = [
            added("p-1", 2),
            reserved("o-1", vec![line("p-1", 2)]),
            InventoryEvent::StockReleased { order_id: "o-1".into(), items: vec![line("p-1", 2)] },
        ];
        given::<Inventory>(history.clone())
            .when(reserve("o-2", vec![line("p-1", 2)]))
            .then([reserved("o-2", vec![line("p-1", 2)])]);
        given::<Inventory>(history)
            .when(InventoryCommand::ReleaseStock { order_id: "o-1".into() })
            .then_rejected("not_reserved");
    }

    #[test]
    fn rejects_what_makes_no_sense() {
        given::<Inventory>([])
            .when(InventoryCommand::AddStock(line("p-1", 0)))
            .then_rejected("invalid_quantity");
        given::<Inventory>([])
            .when(InventoryCommand::AddStock(line(" ", 1)))
            .then_rejected("invalid_product");
        given::<Inventory>([]).when(reserve("o-1", vec![])).then_rejected("no_items");
        given::<Inventory>([]).when(reserve("", vec![line("p-1", 1)])).then_rejected("invalid_order");
        given::<Inventory>([added("p-1", 5), reserved("o-1", vec![line("p-1", 1)])])
            .when(reserve("o-1", vec![line("p-1", 1)]))
            .then_rejected("already_decided");
        given::<Inventory>([])
            .when(InventoryCommand::ReleaseStock { order_id: "o-1".into() })
            .then_rejected("not_reserved");
    }
}
