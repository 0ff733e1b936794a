//! `orders`: the business rules of an order, as a command handler. It emits
//! exactly the events the `order-summary` and `customer-stats` projections
//! read, so commands flow straight into the read models.

use refract_sdk::{CommandHandler, HandlerDescription, Rejection};
use serde::{Deserialize, Serialize};

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The product.
    pub product_id: String,
    /// How many; at least 1.
    pub quantity: i64,
    /// Unit price; not negative.
    pub price: f64,
}

/// Who places an order: `OrderPlaced` version 2 carries both (version 1
/// had one string, which the `order-placed-v2` upcaster makes both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// A stable identifier.
    pub id: String,
    /// The name to show.
    pub name: String,
}

/// A customer as a command names one: `{"id", "name"}`, or one string
/// that is both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CustomerRef {
    /// Id and name.
    Full(Customer),
    /// One string, for both.
    Id(String),
}

impl CustomerRef {
    fn into_customer(self) -> Customer {
        match self {
            CustomerRef::Full(c) => c,
            CustomerRef::Id(id) => Customer { name: id.clone(), id },
        }
    }
}

/// What a client can ask of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderCommand {
    /// Open a new order, possibly with items.
    PlaceOrder {
        /// Who orders.
        customer: CustomerRef,
        /// First items.
        #[serde(default)]
        items: Vec<Item>,
    },
    /// Add an item to an open order.
    AddItem(Item),
    /// Pay a non-empty open order.
    PayOrder {
        /// How.
        payment_method: String,
    },
    /// Ship a paid order.
    ShipOrder {
        /// Who carries it.
        carrier: String,
    },
    /// Cancel an order that has not shipped.
    CancelOrder {
        /// Why, for the record.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    /// The order was opened.
    OrderPlaced {
        /// Who ordered.
        customer: Customer,
        /// First items.
        items: Vec<Item>,
    },
    /// An item was added.
    ItemAdded(Item),
    /// The order was paid.
    OrderPaid {
        /// How.
        payment_method: String,
    },
    /// The order was shipped.
    OrderShipped {
        /// Who carries it.
        carrier: String,
    },
    /// The order was cancelled.
    OrderCancelled {
        /// Why, if given.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Where an order is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not placed yet.
    #[default]
    None,
    /// Placed, open for items.
    Open,
    /// Paid.
    Paid,
    /// Shipped.
    Shipped,
    /// Cancelled.
    Cancelled,
}

/// An order's state, folded from its events (and kept in snapshots).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    /// Its status.
    pub status: Status,
    /// Number of items (sum of quantities).
    pub items: i64,
}

/// The handler.
pub struct Orders;

fn reject(code: &str, message: &str) -> Result<Vec<OrderEvent>, Rejection> {
    Err(Rejection::new(code, message))
}

fn check_item(item: &Item) -> Result<(), Rejection> {
    if item.quantity < 1 {
        return Err(Rejection::new("invalid_quantity", "quantity must be at least 1"));
    }
    if item.price.is_nan() || item.price < 0.0 {
        return Err(Rejection::new("invalid_price", "price must not be negative"));
    }
    Ok(())
}

impl CommandHandler for Orders {
    type State = Order;
    type Command = OrderCommand;
    type Event = OrderEvent;

    fn describe() -> HandlerDescription {
        HandlerDescription::new(
            "orders",
            env!("CARGO_PKG_VERSION"),
            ["PlaceOrder", "AddItem", "PayOrder", "ShipOrder", "CancelOrder"],
        )
        .reads("OrderPlaced", 2)
    }

    fn evolve(mut order: Order, event: OrderEvent) -> Order {
        match event {
            OrderEvent::OrderPlaced { items, .. } => {
                order.status = Status::Open;
                order.items += items.iter().map(|i| i.quantity).sum::<i64>();
            }
            OrderEvent::ItemAdded(item) => order.items += item.quantity,
            OrderEvent::OrderPaid { .. } => order.status = Status::Paid,
            OrderEvent::OrderShipped { .. } => order.status = Status::Shipped,
            OrderEvent::OrderCancelled { .. } => order.status = Status::Cancelled,
        }
        order
    }

    fn decide(order: &Order, command: OrderCommand) -> Result<Vec<OrderEvent>, Rejection> {
        use Status::*;
        match (order.status, command) {
            (None, OrderCommand::PlaceOrder { customer, items }) => {
                let customer = customer.into_customer();
                if customer.id.trim().is_empty() || customer.name.trim().is_empty() {
                    return reject("invalid_customer", "customer must not be empty");
                }
                items.iter().try_for_each(check_item)?;
                Ok(vec![OrderEvent::OrderPlaced { customer, items }])
            }
            (_, OrderCommand::PlaceOrder { .. }) => {
                reject("order_exists", "this order has already been placed")
            }
            (None, _) => reject("no_order", "there is no such order; place it first"),
            (Open, OrderCommand::AddItem(item)) => {
                check_item(&item)?;
                Ok(vec![OrderEvent::ItemAdded(item)])
            }
            (_, OrderCommand::AddItem(_)) => {
                reject("order_not_open", "items can only be added before payment")
            }
            (Paid | Shipped, OrderCommand::PayOrder { .. }) => reject("already_paid", "order already paid"),
            (Cancelled, OrderCommand::PayOrder { .. }) => {
                reject("order_cancelled", "a cancelled order cannot be paid")
            }
            (Open, OrderCommand::PayOrder { .. }) if order.items == 0 => {
                reject("order_empty", "an empty order cannot be paid; add items first")
            }
            (Open, OrderCommand::PayOrder { payment_method }) => {
                Ok(vec![OrderEvent::OrderPaid { payment_method }])
            }
            (Paid, OrderCommand::ShipOrder { carrier }) => Ok(vec![OrderEvent::OrderShipped { carrier }]),
            (Shipped, OrderCommand::ShipOrder { .. }) => reject("already_shipped", "order already shipped"),
            (_, OrderCommand::ShipOrder { .. }) => reject("not_paid", "only paid orders can be shipped"),
            (Shipped, OrderCommand::CancelOrder { .. }) => {
                reject("already_shipped", "a shipped order cannot be cancelled")
            }
            (Cancelled, OrderCommand::CancelOrder { .. }) => {
                reject("already_cancelled", "order already cancelled")
            }
            (_, OrderCommand::CancelOrder { reason }) => Ok(vec![OrderEvent::OrderCancelled { reason }]),
        }
    }
}

refract_sdk::export_command_handler!(Orders);

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Customer {
        Customer { id: "ada".into(), name: "ada".into() }
    }
    use refract_sdk::testing::given;

    fn item(q: i64) -> Item {
        Item { product_id: "p-1".into(), quantity: q, price: 2.5 }
    }

    fn placed() -> OrderEvent {
        OrderEvent::OrderPlaced { customer: ada(), items: vec![item(1)] }
    }

    fn paid() -> OrderEvent {
        OrderEvent::OrderPaid { payment_method: "card".into() }
    }

    fn pay() -> OrderCommand {
        OrderCommand::PayOrder { payment_method: "card".into() }
    }

    #[test]
    fn places_adds_pays_ships() {
        given::<Orders>([])
            .when(OrderCommand::PlaceOrder { customer: CustomerRef::Id("ada".into()), items: vec![item(1)] })
            .then([placed()]);
        given::<Orders>([placed()])
            .when(OrderCommand::AddItem(item(2)))
            .then([OrderEvent::ItemAdded(item(2))]);
        given::<Orders>([placed()]).when(pay()).then([paid()]);
        given::<Orders>([placed(), paid()])
            .when(OrderCommand::ShipOrder { carrier: "dhl".into() })
            .then([OrderEvent::OrderShipped { carrier: "dhl".into() }]);
        given::<Orders>([placed()])
            .when(OrderCommand::CancelOrder { reason: None })
            .then([OrderEvent::OrderCancelled { reason: None }]);
    }

    #[test]
    fn rejects_what_the_rules_forbid() {
        let shipped = OrderEvent::OrderShipped { carrier: "dhl".into() };
        let cancelled = OrderEvent::OrderCancelled { reason: None };
        let empty = OrderEvent::OrderPlaced { customer: ada(), items: vec![] };
        given::<Orders>([placed(), paid()]).when(pay()).then_rejected("already_paid");
        given::<Orders>([placed(), cancelled.clone()]).when(pay()).then_rejected("order_cancelled");
        given::<Orders>([empty]).when(pay()).then_rejected("order_empty");
        given::<Orders>([placed()])
            .when(OrderCommand::ShipOrder { carrier: "x".into() })
            .then_rejected("not_paid");
        given::<Orders>([placed(), paid(), shipped])
            .when(OrderCommand::CancelOrder { reason: None })
            .then_rejected("already_shipped");
        given::<Orders>([placed(), cancelled])
            .when(OrderCommand::CancelOrder { reason: None })
            .then_rejected("already_cancelled");
        given::<Orders>([]).when(pay()).then_rejected("no_order");
        given::<Orders>([placed()])
            .when(OrderCommand::PlaceOrder { customer: CustomerRef::Id("bob".into()), items: vec![] })
            .then_rejected("order_exists");
        given::<Orders>([placed(), paid()])
            .when(OrderCommand::AddItem(item(1)))
            .then_rejected("order_not_open");
        given::<Orders>([placed()]).when(OrderCommand::AddItem(item(0))).then_rejected("invalid_quantity");
    }
}
