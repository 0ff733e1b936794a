"""``__NAME__``: a refract upcaster in Python. ``Happened`` version 1 called
its number ``amount``; version 2 calls it ``quantity``. Plugins that declare
they read ``Happened`` at version 2 get old events rewritten by this on the
way in; the log keeps what was appended. ``refract dev`` builds and
hot-reloads it on save; ``python -m unittest`` (with the SDK on PYTHONPATH)
runs its tests."""

from refract_sdk import Upcaster


class Template(Upcaster):
    """It must be deterministic: read models are rebuilt through it."""

    name = "__NAME__"
    version = "0.1.0"
    event_type = "Happened"
    from_version = 1

    def upcast(self, data):
        amount = data.pop("amount")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValueError("`amount` must be an integer")
        data["quantity"] = amount
        return data


plugin = Template()
