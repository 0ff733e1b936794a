"""``order-summary-py``: the ``order-summary`` read model written in Python —
one row per order with its customer, item count, total and status. Every
write is guarded by ``last_updated_position``, so applying an event a
second time changes nothing."""

from refract_sdk import Db, Event, Projection, real

SCHEMA = """
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
"""

PLACE = """
INSERT INTO order_summaries (order_id, customer, item_count, total, status, last_updated_position)
VALUES (?1, ?2, ?3, ?4, 'placed', ?5)
ON CONFLICT (order_id) DO NOTHING"""

ADD_ITEM = """
UPDATE order_summaries
SET item_count = item_count + ?2, total = total + ?3, last_updated_position = ?4
WHERE order_id = ?1 AND last_updated_position < ?4"""

SET_STATUS = """
UPDATE order_summaries SET status = ?2, last_updated_position = ?3
WHERE order_id = ?1 AND last_updated_position < ?3"""

I64 = (-(2**63), 2**63 - 1)


def text(data, field):
    if field not in data:
        raise ValueError(f"missing field `{field}`")
    v = data[field]
    if not isinstance(v, str):
        raise ValueError(f"invalid type for `{field}`: expected a string")
    return v


def item(data):
    if not isinstance(data, dict):
        raise ValueError("invalid type for an item: expected an object")
    product = text(data, "product_id")
    if "quantity" not in data:
        raise ValueError("missing field `quantity`")
    quantity = data["quantity"]
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not I64[0] <= quantity <= I64[1]:
        raise ValueError("invalid type for `quantity`: expected an integer")
    if "price" not in data:
        raise ValueError("missing field `price`")
    price = data["price"]
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise ValueError("invalid type for `price`: expected a number")
    return product, quantity, float(price)


class OrderSummary(Projection):
    name = "order-summary-py"
    version = "0.1.0"
    event_types = ["OrderPlaced", "ItemAdded", "OrderPaid", "OrderShipped", "OrderCancelled"]
    migrations = [SCHEMA]
    event_versions = {"OrderPlaced": 2}

    def apply(self, db: Db, event: Event) -> None:
        order, pos, data = event.stream_id, event.position, event.data
        if not isinstance(data, dict):
            raise ValueError("invalid type: expected an object")
        if event.type == "OrderPlaced":
            who = data.get("customer") if isinstance(data, dict) else None
            if not isinstance(who, dict):
                raise ValueError("missing field `customer` (an object with `id` and `name`)")
            customer = text(who, "id")
            items = data.get("items", [])
            if not isinstance(items, list):
                raise ValueError("invalid type for `items`: expected a list")
            # The same sums, in the same order, as the Rust plugin: doubles
            # added from -0.0 up.
            count, total = 0, -0.0
            for product, quantity, price in map(item, items):
                count += quantity
                total += float(quantity) * price
            db.write(PLACE, [order, customer, count, real(total), pos])
        elif event.type == "ItemAdded":
            _, quantity, price = item(data)
            db.write(ADD_ITEM, [order, quantity, real(float(quantity) * price), pos])
        elif event.type == "OrderPaid":
            text(data, "payment_method")
            db.write(SET_STATUS, [order, "paid", pos])
        elif event.type == "OrderShipped":
            text(data, "carrier")
            db.write(SET_STATUS, [order, "shipped", pos])
        elif event.type == "OrderCancelled":
            db.write(SET_STATUS, [order, "cancelled", pos])


plugin = OrderSummary()
