import unittest

from refract_sdk import NewEvent
from refract_sdk.testing import given

from app import plugin


def item(q):
    return {"product_id": "p-1", "quantity": q, "price": 2.5}


PLACED = NewEvent("OrderPlaced", {"customer": {"id": "ada", "name": "ada"}, "items": [item(1)]})
PAID = NewEvent("OrderPaid", {"payment_method": "card"})
SHIPPED = NewEvent("OrderShipped", {"carrier": "dhl"})
CANCELLED = NewEvent("OrderCancelled", {"reason": None})
PAY = {"payment_method": "card"}


class OrdersTest(unittest.TestCase):
    def test_places_adds_pays_ships(self):
        given(plugin, []).when("PlaceOrder", {"customer": "ada", "items": [item(1)]}).then_events([PLACED])
        given(plugin, [PLACED]).when("AddItem", item(2)).then_events([NewEvent("ItemAdded", item(2))])
        given(plugin, [PLACED]).when("PayOrder", PAY).then_events([PAID])
        given(plugin, [PLACED, PAID]).when("ShipOrder", {"carrier": "dhl"}).then_events([SHIPPED])
        given(plugin, [PLACED]).when("CancelOrder", {}).then_events([CANCELLED])

    def test_rejects_what_the_rules_forbid(self):
        empty = NewEvent("OrderPlaced", {"customer": {"id": "ada", "name": "ada"}, "items": []})
        given(plugin, [PLACED, PAID]).when("PayOrder", PAY).then_rejected("already_paid")
        given(plugin, [PLACED, CANCELLED]).when("PayOrder", PAY).then_rejected("order_cancelled")
        given(plugin, [empty]).when("PayOrder", PAY).then_rejected("order_empty")
        given(plugin, [PLACED]).when("ShipOrder", {"carrier": "x"}).then_rejected("not_paid")
        given(plugin, [PLACED, PAID, SHIPPED]).when("CancelOrder", {}).then_rejected("already_shipped")
        given(plugin, [PLACED, CANCELLED]).when("CancelOrder", {}).then_rejected("already_cancelled")
        given(plugin, []).when("PayOrder", PAY).then_rejected("no_order")
        given(plugin, [PLACED]).when("PlaceOrder", {"customer": "bob", "items": []}).then_rejected("order_exists")
        given(plugin, [PLACED, PAID]).when("AddItem", item(1)).then_rejected("order_not_open")
        given(plugin, [PLACED]).when("AddItem", item(0)).then_rejected("invalid_quantity")
        given(plugin, []).when("PlaceOrder", {"items": []}).then_rejected("invalid_command")


if __name__ == "__main__":
    unittest.main()
