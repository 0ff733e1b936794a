"""``orders-py``: the ``orders`` command handler written in Python — place,
add items, pay, ship or cancel an order, with the same rules and rejection
codes as the Rust ``orders`` handler."""

from dataclasses import dataclass

from refract_sdk import Command, CommandHandler, Event, NewEvent, reject


@dataclass
class Order:
    status: str = "none"  # none, open, paid, shipped, cancelled
    items: int = 0


def field(data, name, kind, what):
    if not isinstance(data, dict) or name not in data:
        raise reject("invalid_command", f"missing field `{name}`")
    v = data[name]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise reject("invalid_command", f"invalid type for `{name}`: expected {what}")
    return v


def item(data):
    it = {
        "product_id": field(data, "product_id", str, "a string"),
        "quantity": field(data, "quantity", int, "an integer"),
        "price": float(field(data, "price", (int, float), "a number")),
    }
    if it["quantity"] < 1:
        raise reject("invalid_quantity", "quantity must be at least 1")
    if it["price"] != it["price"] or it["price"] < 0:
        raise reject("invalid_price", "price must not be negative")
    return it


class Orders(CommandHandler):
    name = "orders-py"
    version = "0.1.0"
    command_types = ["PlaceOrder", "AddItem", "PayOrder", "ShipOrder", "CancelOrder"]
    event_versions = {"OrderPlaced": 2}

    def initial_state(self) -> Order:
        return Order()

    def evolve(self, order: Order, event: Event) -> Order:
        t, d = event.type, event.data
        if t == "OrderPlaced":
            order.status = "open"
            order.items += sum(i["quantity"] for i in d.get("items", []))
        elif t == "ItemAdded":
            order.items += d["quantity"]
        elif t == "OrderPaid":
            order.status = "paid"
        elif t == "OrderShipped":
            order.status = "shipped"
        elif t == "OrderCancelled":
            order.status = "cancelled"
        return order

    def decide(self, order: Order, c: Command):
        s, t, d = order.status, c.type, c.data
        if t == "PlaceOrder":
            if s != "none":
                raise reject("order_exists", "this order has already been placed")
            who = d.get("customer") if isinstance(d, dict) else None
            if isinstance(who, dict):
                customer = {
                    "id": field(who, "id", str, "a string"),
                    "name": field(who, "name", str, "a string"),
                }
            else:
                cid = field(d, "customer", str, "a string or an object")
                customer = {"id": cid, "name": cid}
            if not customer["id"].strip() or not customer["name"].strip():
                raise reject("invalid_customer", "customer must not be empty")
            items = d.get("items", [])
            if not isinstance(items, list):
                raise reject("invalid_command", "invalid type for `items`: expected a list")
            return [NewEvent("OrderPlaced", {"customer": customer, "items": [item(i) for i in items]})]
        if s == "none":
            raise reject("no_order", "there is no such order; place it first")
        if t == "AddItem":
            if s != "open":
                raise reject("order_not_open", "items can only be added before payment")
            return [NewEvent("ItemAdded", item(d))]
        if t == "PayOrder":
            method = field(d, "payment_method", str, "a string")
            if s in ("paid", "shipped"):
                raise reject("already_paid", "order already paid")
            if s == "cancelled":
                raise reject("order_cancelled", "a cancelled order cannot be paid")
            if order.items == 0:
                raise reject("order_empty", "an empty order cannot be paid; add items first")
            return [NewEvent("OrderPaid", {"payment_method": method})]
        if t == "ShipOrder":
            carrier = field(d, "carrier", str, "a string")
            if s == "shipped":
                raise reject("already_shipped", "order already shipped")
            if s != "paid":
                raise reject("not_paid", "only paid orders can be shipped")
            return [NewEvent("OrderShipped", {"carrier": carrier})]
        if t == "CancelOrder":
            if s == "shipped":
                raise reject("already_shipped", "a shipped order cannot be cancelled")
            if s == "cancelled":
                raise reject("already_cancelled", "order already cancelled")
            reason = d.get("reason") if isinstance(d, dict) else None
            return [NewEvent("OrderCancelled", {"reason": reason})]
        raise reject("invalid_command", f"unknown command type {t}")


plugin = Orders()
