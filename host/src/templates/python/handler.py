"""``__NAME__``: a refract command handler in Python. ``refract dev`` builds
and hot-reloads it on save; ``python -m unittest`` (with the SDK on
PYTHONPATH) runs its tests."""

from refract_sdk import CommandHandler, NewEvent, reject


class Template(CommandHandler):
    name = "__NAME__"
    version = "0.1.0"
    command_types = ["Start"]

    def initial_state(self):
        return {"started": False}

    def evolve(self, state, event):
        return {"started": True} if event.type == "Started" else state

    def decide(self, state, command):
        if state["started"]:
            raise reject("already_started", "it has already started")
        return [NewEvent("Started", {})]


plugin = Template()
