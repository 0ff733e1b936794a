"""Tests of plugins in CPython, with no host: projections and reactors
against an in-memory SQLite, handlers as given / when / then::

    t = ProjectionTest(plugin)
    t.apply([event(1, "order-1", 1, "OrderPlaced", {"customer": "ada"})])
    assert t.query("SELECT customer FROM order_summaries") == [{"customer": "ada"}]

    given(orders, [NewEvent("OrderPlaced", {...})]).when("PayOrder", {...}).then_events([...])
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any, List, Optional, Sequence, Union

from . import Command, CommandHandler, Commands, Event, NewEvent, Projection, Reactor, Rejection, SentCommand, failure, run
from .values import BLOB, NULL, TEXT, tagged

_REFUSED = re.compile(r"^\s*(ATTACH|DETACH|BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|VACUUM)\b", re.I)


def event(position: int, stream_id: str, stream_version: int, type: str, data: Any, metadata: Optional[dict] = None) -> Event:
    """An event for a test."""
    return Event(position, stream_id, stream_version, type, data, metadata or {}, 0)


class ApplyError(Exception):
    """Why a batch failed: the event's position and the host's message."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


def _bind(params: Sequence[Any]) -> list:
    out = []
    for p in params:
        tag, v = tagged(p)
        out.append(None if tag == NULL else v)
    return out


class NativeDb:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _check(self, statement: str) -> None:
        m = _REFUSED.match(statement)
        if m:
            raise RuntimeError(f"refused: {m.group(1).upper()} is not allowed in a plugin")

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.execute(statement, params)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        self._check(statement)
        return self.conn.execute(statement, _bind(params)).rowcount

    def query(self, statement: str, params: Sequence[Any] = ()) -> List[dict]:
        self._check(statement)
        cur = self.conn.execute(statement, _bind(params))
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row)) for row in cur.fetchall()]


class _Tables:
    """A plugin's tables: its migrations applied to an in-memory SQLite."""

    def __init__(self, migrations: Sequence[str]) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        for m in migrations:
            self.conn.executescript(m)
        self.db = NativeDb(self.conn)

    def _batch(self, wanted: Sequence[str], events: Sequence[Event], each) -> None:
        """Runs ``each`` on the events of ``wanted`` types in one
        transaction; raises ``ApplyError`` naming the failing event after
        rolling the batch back."""
        self.conn.execute("BEGIN")
        for e in events:
            if wanted and e.type not in wanted:
                continue
            try:
                # Data goes through JSON as it does in the host.
                copy = Event(e.position, e.stream_id, e.stream_version, e.type,
                             json.loads(json.dumps(e.data)), json.loads(json.dumps(e.metadata)), e.recorded_at)
                each(copy)
            except Exception as err:
                self.conn.execute("ROLLBACK")
                raise ApplyError(e.position, failure(e.position, e.type, err)) from err
        self.conn.execute("COMMIT")

    def query(self, statement: str, params: Sequence[Any] = ()) -> List[dict]:
        return self.db.query(statement, params)


class ProjectionTest(_Tables):
    """A projection run natively: its migrations applied to an in-memory
    SQLite; ``apply`` is one transaction, as in the host."""

    def __init__(self, projection: Projection) -> None:
        super().__init__(projection.migrations)
        self.projection = projection

    def apply(self, events: Sequence[Event]) -> None:
        """Applies ``events`` in one transaction; raises ``ApplyError``
        naming the failing event after rolling the batch back."""
        self._batch(self.projection.event_types, events, lambda e: self.projection.apply(self.db, e))


class ReactorTest(_Tables):
    """A reactor run natively, as a projection is: ``react`` is one
    transaction and returns the commands the batch sends (none when it
    fails)."""

    def __init__(self, reactor: Reactor) -> None:
        super().__init__(reactor.migrations)
        self.reactor = reactor

    def react(self, events: Sequence[Event]) -> List[SentCommand]:
        """Reacts to ``events`` in one transaction: the commands sent, their
        data through JSON as the host sends it."""
        commands = Commands()

        def each(e: Event) -> None:
            commands.position = e.position
            self.reactor.react(self.db, e, commands)

        self._batch(self.reactor.event_types, events, each)
        return [
            SentCommand(c.handler, c.type, c.stream_id, json.loads(json.dumps(c.data)), c.position)
            for c in commands.sent
        ]


class Decision:
    """What a handler decided: events, or a rejection."""

    def __init__(self, events: Optional[List[NewEvent]], rejection: Optional[Rejection]) -> None:
        self.events = events
        self.rejection = rejection

    def then_events(self, expected: List[NewEvent]) -> None:
        if self.rejection is not None:
            raise AssertionError(f"expected events, got rejection {self.rejection.code}: {self.rejection.message}")
        got = [(e.type, json.loads(json.dumps(e.data))) for e in self.events or []]
        want = [(e.type, e.data) for e in expected]
        if got != want:
            raise AssertionError(f"expected {want}, got {got}")

    def then_rejected(self, code: str) -> Rejection:
        if self.rejection is None:
            raise AssertionError(f"expected rejection {code}, got events {self.events}")
        if self.rejection.code != code:
            raise AssertionError(f"expected rejection {code}, got {self.rejection.code}: {self.rejection.message}")
        return self.rejection


class Given:
    def __init__(self, handler: CommandHandler, history: List[Event]) -> None:
        self.handler = handler
        self.history = history

    def when(self, type: str, data: Any, stream_id: str = "stream-1") -> Decision:
        command = Command(type, json.loads(json.dumps(data)), stream_id, {})
        try:
            return Decision(run(self.handler, command, self.history), None)
        except Rejection as r:
            return Decision(None, r)


def given(handler: CommandHandler, history: Sequence[Union[NewEvent, Event]]) -> Given:
    """A stream's history (``NewEvent``s or full events) to send a command
    against."""
    events = [
        e if isinstance(e, Event) else event(i + 1, "stream-1", i + 1, e.type, json.loads(json.dumps(e.data)))
        for i, e in enumerate(history)
    ]
    return Given(handler, events)
