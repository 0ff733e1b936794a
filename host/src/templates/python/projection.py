"""``__NAME__``: a refract projection in Python. ``refract dev`` builds and
hot-reloads it on save; ``python -m unittest`` (with the SDK on PYTHONPATH)
runs its tests."""

from refract_sdk import Db, Event, Projection


class Template(Projection):
    name = "__NAME__"
    version = "0.1.0"
    event_types = ["Happened"]
    migrations = ["CREATE TABLE totals (stream_id TEXT PRIMARY KEY, total INTEGER NOT NULL)"]

    def apply(self, db: Db, event: Event) -> None:
        amount = event.data["amount"]
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValueError("`amount` must be an integer")
        db.write(
            """INSERT INTO totals (stream_id, total) VALUES (?1, ?2)
               ON CONFLICT (stream_id) DO UPDATE SET total = total + excluded.total""",
            [event.stream_id, amount],
        )


plugin = Template()
