import unittest

from refract_sdk import NewEvent
from refract_sdk.testing import given

from app import plugin


class Test(unittest.TestCase):
    def test_starts_once(self):
        given(plugin, []).when("Start", {}).then_events([NewEvent("Started", {})])
        given(plugin, [NewEvent("Started", {})]).when("Start", {}).then_rejected("already_started")


if __name__ == "__main__":
    unittest.main()
