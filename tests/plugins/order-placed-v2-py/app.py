"""``order-placed-v2-py``: the ``order-placed-v2`` upcaster in Python.

``OrderPlaced`` version 1 had ``customer`` as one string; version 2 has
``{"id", "name"}``, and version 1 had no separate name, so the string
becomes both. The other members are kept as they are."""

from refract_sdk import Upcaster


class OrderPlacedV2(Upcaster):
    name = "order-placed-v2-py"
    version = "0.1.0"
    event_type = "OrderPlaced"
    from_version = 1

    def upcast(self, data):
        customer = data.get("customer")
        if not isinstance(customer, str):
            raise ValueError("invalid type for `customer`: expected a string (version 1)")
        data["customer"] = {"id": customer, "name": customer}
        return data


plugin = OrderPlacedV2()
