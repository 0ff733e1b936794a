import unittest

from refract_sdk import SentCommand
from refract_sdk.testing import ReactorTest, event

from app import plugin


def paid(position, order):
    return event(position, order, 2, "OrderPaid", {"payment_method": "card"})


class ShipperTest(unittest.TestCase):
    def test_a_paid_order_is_shipped_once(self):
        t = ReactorTest(plugin)
        self.assertEqual(
            t.react([paid(3, "o-1"), event(4, "o-1", 3, "ItemAdded", {}), paid(5, "o-2")]),
            [
                SentCommand("orders", "ShipOrder", "o-1", {"carrier": "py-post"}, 3),
                SentCommand("orders", "ShipOrder", "o-2", {"carrier": "py-post"}, 5),
            ],
        )
        self.assertEqual(t.react([paid(9, "o-1")]), [])
        self.assertEqual(
            t.query("SELECT order_id, paid_at FROM shipped ORDER BY order_id"),
            [{"order_id": "o-1", "paid_at": 3}, {"order_id": "o-2", "paid_at": 5}],
        )


if __name__ == "__main__":
    unittest.main()
