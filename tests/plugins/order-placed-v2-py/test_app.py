import json
import unittest

from refract_sdk import UpcastFailure, upcast_all

from app import plugin


class OrderPlacedV2Test(unittest.TestCase):
    def test_the_customer_string_becomes_id_and_name_and_the_rest_is_kept(self):
        out = upcast_all(plugin, ['{"customer":"ada \\"the\\" first","items":[{"product_id":"p","quantity":1,"price":2.5}]}'])
        self.assertEqual(
            json.loads(out[0]),
            {
                "customer": {"id": 'ada "the" first', "name": 'ada "the" first'},
                "items": [{"product_id": "p", "quantity": 1, "price": 2.5}],
            },
        )

    def test_data_without_a_customer_string_is_refused_with_its_index(self):
        with self.assertRaises(UpcastFailure) as e:
            upcast_all(plugin, ['{"customer":"a"}', '{"customer":{"id":"b"}}'])
        self.assertEqual(e.exception.index, 1)
        self.assertIn("customer", e.exception.message)


if __name__ == "__main__":
    unittest.main()
