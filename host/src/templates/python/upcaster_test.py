import json
import unittest

from refract_sdk import UpcastFailure, upcast_all

from app import plugin


class Test(unittest.TestCase):
    def test_amount_becomes_quantity_and_the_rest_is_kept(self):
        out = upcast_all(plugin, ['{"amount":3,"note":"x"}'])
        self.assertEqual(json.loads(out[0]), {"quantity": 3, "note": "x"})
        with self.assertRaises(UpcastFailure) as e:
            upcast_all(plugin, ['{"amount":3}', "{}"])
        self.assertEqual(e.exception.index, 1)


if __name__ == "__main__":
    unittest.main()
