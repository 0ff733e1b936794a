"""refract's SDK for plugins written in Python: the same shape as the Rust
SDK. A projection describes itself and applies one event at a time through
``db``; a command handler folds a stream's history with ``evolve`` and
``decide``s on a command; a reactor answers events with commands; an
upcaster rewrites old events. ``python -m refract_sdk.build`` turns a plugin
into a component; ``refract_sdk.testing`` runs it natively, with no host.

A plugin module (``app.py``) names its plugin ``plugin``::

    class Counter(Projection):
        name = "counter"
        version = "1.0.0"
        event_types = ["Counted"]
        migrations = ["CREATE TABLE counts (stream TEXT PRIMARY KEY, n INTEGER)"]

        def apply(self, db, event):
            db.write("INSERT INTO counts VALUES (?, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1",
                     [event.stream_id])

    plugin = Counter()
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Protocol, Sequence

from .values import Param, Real, real

__all__ = [
    "Command",
    "CommandHandler",
    "Commands",
    "Db",
    "Event",
    "NewEvent",
    "Param",
    "Projection",
    "Reactor",
    "Real",
    "Rejection",
    "SentCommand",
    "UpcastFailure",
    "Upcaster",
    "log",
    "real",
    "reject",
    "upcast_all",
]


@dataclass
class Event:
    """One event from the log, its data parsed."""

    position: int
    stream_id: str
    stream_version: int
    type: str
    data: Any
    metadata: Dict[str, Any] = field(default_factory=dict)
    recorded_at: int = 0


@dataclass
class Command:
    """A command: its type and parsed data."""

    type: str
    data: Any
    stream_id: str = "stream-1"
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class NewEvent:
    """An event a handler decides to append."""

    type: str
    data: Any = None


class Rejection(Exception):
    """A refused command: a stable code and a sentence; the client gets 422."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def reject(code: str, message: str) -> Rejection:
    """``raise reject("already_paid", "order already paid")``."""
    return Rejection(code, message)


class Db(Protocol):
    """The projection's own SQLite database. Writes run in the transaction
    of the batch being applied: a failing event rolls all of it back."""

    def write(self, sql: str, params: Sequence[Param] = ()) -> None:
        """Queues a statement that returns no rows; it runs in order, before
        any later ``execute`` or ``query``. The fastest way to write."""

    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Runs a statement that returns no rows; the rows changed."""

    def query(self, sql: str, params: Sequence[Param] = ()) -> List[Dict[str, Any]]:
        """Runs a query; its rows as dicts by column name."""


class Projection:
    """A projection: events in, rows of its own tables out."""

    kind = "projection"
    #: 1-64 characters of a-z, 0-9, ``-`` and ``_``.
    name: str = ""
    version: str = "0.0.0"
    #: The event types it wants; empty for every event.
    event_types: List[str] = []
    #: Schema migrations, in order; append, never edit one that shipped.
    migrations: List[str] = []
    #: The schema version of each event type it reads (``{"OrderPlaced": 2}``):
    #: the host upcasts older events before they arrive.
    event_versions: Dict[str, int] = {}

    def apply(self, db: Db, event: Event) -> None:
        """Applies one event; raise to fail the batch at this event."""
        raise NotImplementedError


@dataclass
class SentCommand:
    """A command a reactor sends: to a command handler, for a stream, in
    answer to the event at ``position``."""

    handler: str
    type: str
    stream_id: str
    data: Any
    position: int


class Commands:
    """The commands a reactor sends while it reacts to one event."""

    def __init__(self) -> None:
        self.sent: List[SentCommand] = []
        #: The event being reacted to (set by the SDK).
        self.position = 0

    def send(self, handler: str, stream_id: str, type: str, data: Any = None) -> None:
        """Sends command ``type`` with ``data`` (``{}`` when None) to
        ``handler``, for stream ``stream_id``."""
        for what, v in (("handler", handler), ("stream_id", stream_id), ("type", type)):
            if not isinstance(v, str) or not v:
                raise TypeError(f"a command needs a non-empty {what}")
        self.sent.append(SentCommand(handler, type, stream_id, {} if data is None else data, self.position))


class Reactor:
    """A reactor (a process manager, a saga): reads events in log order like
    a projection, remembers what it must in its own tables, and answers
    events with commands. The host records a batch's commands with its
    writes and checkpoint and sends each exactly once, in order."""

    kind = "reactor"
    name: str = ""
    version: str = "0.0.0"
    #: The event types it wants; empty for every event.
    event_types: List[str] = []
    #: Migrations of its own tables, in order.
    migrations: List[str] = []
    #: The schema version of each event type it reads.
    event_versions: Dict[str, int] = {}

    def react(self, db: Db, event: Event, commands: Commands) -> None:
        """Reacts to one event: writes through ``db``, sends through
        ``commands``. Raise to fail the batch at this event (nothing of it
        is sent)."""
        raise NotImplementedError


class CommandHandler:
    """A command handler in the decider shape."""

    kind = "command-handler"
    name: str = ""
    version: str = "0.0.0"
    command_types: List[str] = []
    #: The schema version of each event type it reads and writes: older
    #: events in a history arrive upcast, and its events of these types are
    #: recorded at these versions.
    event_versions: Dict[str, int] = {}

    def initial_state(self) -> Any:
        """The state of a stream with no events. The state must come back
        unchanged through ``json.dumps`` and ``json.loads``: the host keeps
        it as a snapshot of long streams."""
        return None

    def evolve(self, state: Any, event: Event) -> Any:
        """Folds one past event into the state."""
        raise NotImplementedError

    def decide(self, state: Any, command: Command) -> List[NewEvent]:
        """The events to append (possibly none); raise ``reject(...)``."""
        raise NotImplementedError


class Upcaster:
    """An upcaster: rewrites the data of one event type from one version of
    its schema to the next. It sees nothing but the data and must be
    deterministic: read models are rebuilt through it."""

    kind = "upcaster"
    name: str = ""
    version: str = "0.0.0"
    #: The event type it rewrites.
    event_type: str = ""
    #: The version it reads; it writes ``from_version + 1``.
    from_version: int = 1

    def upcast(self, data: Any) -> Any:
        """One event's data at ``from_version``, parsed, → its data at the
        next version. Raise to refuse it (the error names the event)."""
        raise NotImplementedError


class UpcastFailure(Exception):
    """Why an upcaster refused one of the data it was given: ``index`` says
    which."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def upcast_all(upcaster: Upcaster, data: Sequence[str]) -> List[str]:
    """Rewrites each of ``data`` (JSON text at the upcaster's version) to
    the next version; the first failure is raised as an ``UpcastFailure``
    naming its index. The component and tests both run upcasters through
    it."""
    out = []
    for index, text in enumerate(data):
        try:
            old = json.loads(text)
        except ValueError as e:
            raise UpcastFailure(index, f"cannot read: {e}") from None
        try:
            out.append(to_json(upcaster.upcast(old)))
        except Exception as e:  # every failure names its event
            why = str(e) or type(e).__name__
            if isinstance(e, KeyError):
                why = f"missing field `{e.args[0]}`"
            raise UpcastFailure(index, why) from None
    return out


def failure(position: int, event_type: str, e: BaseException) -> str:
    """Why an event could not be applied, naming it."""
    why = str(e) or type(e).__name__
    if isinstance(e, KeyError):
        why = f"missing field `{e.args[0]}`"
    return f"event {position} ({event_type}): {why}"


def run(handler: CommandHandler, command: Command, history: Sequence[Event]) -> List[NewEvent]:
    """Folds ``history`` and decides on ``command``: shared by the component
    and the native test helpers."""
    return decide_on(handler, fold(handler, handler.initial_state(), history), command)


def fold(handler: CommandHandler, state: Any, history: Sequence[Event]) -> Any:
    """Folds ``history`` into ``state``."""
    for e in history:
        state = handler.evolve(state, e)
    return state


def decide_on(handler: CommandHandler, state: Any, command: Command) -> List[NewEvent]:
    """Decides on ``command`` given a folded ``state``."""
    events = handler.decide(state, command)
    if not isinstance(events, list):
        raise TypeError(f"decide must return a list of events, got {type(events).__name__}")
    for e in events:
        if not isinstance(e, NewEvent) or not e.type:
            raise TypeError("every event decide returns must be a NewEvent with a non-empty type")
    return events


def to_json(data: Any) -> str:
    """An event's data as the host stores it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class _Log:
    """Writes to the host's structured log, tagged with the plugin's name
    (to stderr when run natively, in tests)."""

    def __init__(self) -> None:
        self.sink = lambda level, message: print(f"{level}: {message}", file=sys.stderr)

    def trace(self, m: str) -> None:
        self.sink("trace", m)

    def debug(self, m: str) -> None:
        self.sink("debug", m)

    def info(self, m: str) -> None:
        self.sink("info", m)

    def warn(self, m: str) -> None:
        self.sink("warn", m)

    def error(self, m: str) -> None:
        self.sink("error", m)


log = _Log()
