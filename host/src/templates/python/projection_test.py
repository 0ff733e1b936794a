import unittest

from refract_sdk.testing import ProjectionTest, event

from app import plugin


class Test(unittest.TestCase):
    def test_sums_per_stream(self):
        t = ProjectionTest(plugin)
        t.apply([event(1, "a", 1, "Happened", {"amount": 2}), event(2, "a", 2, "Happened", {"amount": 3})])
        self.assertEqual(t.query("SELECT total FROM totals WHERE stream_id = 'a'"), [{"total": 5}])


if __name__ == "__main__":
    unittest.main()
