import unittest

from refract_sdk.testing import ApplyError, ProjectionTest, event

from app import plugin


def placed(pos, order):
    return event(pos, order, 1, "OrderPlaced", {"customer": {"id": "ada", "name": "Ada"}, "items": [{"product_id": "p1", "quantity": 2, "price": 5.0}]})


class OrderSummaryTest(unittest.TestCase):
    def test_a_lifecycle_updates_one_row(self):
        t = ProjectionTest(plugin)
        t.apply([
            placed(1, "order-1"),
            event(2, "order-1", 2, "ItemAdded", {"product_id": "p2", "quantity": 1, "price": 2.5}),
            event(3, "order-1", 3, "OrderPaid", {"payment_method": "card"}),
            event(4, "order-1", 4, "OrderShipped", {"carrier": "dhl"}),
        ])
        self.assertEqual(t.query("SELECT * FROM order_summaries"), [
            {"order_id": "order-1", "customer": "ada", "item_count": 3, "total": 12.5, "status": "shipped", "last_updated_position": 4},
        ])

    def test_replaying_an_event_changes_nothing(self):
        t = ProjectionTest(plugin)
        add = event(2, "order-1", 2, "ItemAdded", {"product_id": "p", "quantity": 1, "price": 1.0})
        t.apply([placed(1, "order-1"), add])
        t.apply([add])
        self.assertEqual(t.query("SELECT item_count FROM order_summaries"), [{"item_count": 3}])

    def test_bad_data_fails_the_batch_and_names_the_event(self):
        t = ProjectionTest(plugin)
        with self.assertRaises(ApplyError) as e:
            t.apply([placed(1, "order-1"), event(2, "order-2", 1, "OrderPlaced", {"items": []})])
        self.assertEqual(e.exception.position, 2)
        self.assertIn("event 2", e.exception.message)
        self.assertIn("customer", e.exception.message)
        self.assertEqual(t.query("SELECT * FROM order_summaries"), [], "the whole batch rolls back")

    def test_a_quantity_past_64_bits_is_an_error_not_a_crash(self):
        t = ProjectionTest(plugin)
        with self.assertRaises(ApplyError) as e:
            t.apply([event(1, "o", 1, "OrderPlaced", {"customer": {"id": "c", "name": "C"}, "items": [{"product_id": "p", "quantity": 10**23, "price": 1}]})])
        self.assertIn("quantity", e.exception.message)


if __name__ == "__main__":
    unittest.main()
