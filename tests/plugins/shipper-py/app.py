"""``shipper-py``: a reactor in Python. Each paid order is shipped: on
``OrderPaid`` it remembers the order and sends ``ShipOrder`` to the
``orders`` handler, once per order however often the order is paid."""

from refract_sdk import Reactor


class Shipper(Reactor):
    name = "shipper-py"
    version = "0.1.0"
    event_types = ["OrderPaid"]
    migrations = ["CREATE TABLE shipped (order_id TEXT PRIMARY KEY, paid_at INTEGER NOT NULL)"]

    def react(self, db, event, commands):
        fresh = db.execute(
            "INSERT INTO shipped VALUES (?, ?) ON CONFLICT (order_id) DO NOTHING", [event.stream_id, event.position]
        )
        if fresh == 1:
            commands.send("orders", event.stream_id, "ShipOrder", {"carrier": "py-post"})


plugin = Shipper()
