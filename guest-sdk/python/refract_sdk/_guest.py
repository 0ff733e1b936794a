"""The component's side: adapts a plugin defined with the SDK to the
interfaces of wit/ (``projector``, ``reactor``, ``decider``, ``upcast``) and runs SQL
through the host. Only the component built by ``refract_sdk.build`` imports this."""

from __future__ import annotations

import dataclasses
import json

from componentize_py_types import Err
from wit_world.imports import log as host_log
try:
    from wit_world.imports import sql, types
except ImportError:  # a command handler's or an upcaster's world has no database
    sql = types = None

from . import Command, Commands, Event, Rejection, UpcastFailure, decide_on, failure, fold, log, to_json, upcast_all
from .batch import unpack
from .values import BLOB, INTEGER, NULL, REAL, TEXT, Pending, tagged

_LEVELS = {
    "trace": host_log.Level.TRACE,
    "debug": host_log.Level.DEBUG,
    "info": host_log.Level.INFO,
    "warn": host_log.Level.WARN,
    "error": host_log.Level.ERROR,
}
log.sink = lambda level, message: host_log.write(_LEVELS[level], message)


class SqlFailed(Exception):
    pass


def _value(p):
    tag, v = tagged(p)
    if tag == NULL:
        return types.Value_Null()
    if tag == INTEGER:
        return types.Value_Integer(v)
    if tag == REAL:
        return types.Value_Real(v)
    if tag == TEXT:
        return types.Value_Text(v)
    return types.Value_Blob(v)


def _column(v):
    return None if isinstance(v, types.Value_Null) else v.value


def _sql_error(e: Err) -> SqlFailed:
    v = e.value
    kind = "refused" if isinstance(v, sql.SqlError_Refused) else "SQL failed"
    return SqlFailed(f"{kind}: {v.value}")


class HostDb:
    def __init__(self) -> None:
        self.position = 0
        self.pending = Pending()

    def write(self, statement, params=()):
        if self.pending.push(self.position, statement, params):
            self.flush()

    def execute(self, statement, params=()):
        self.flush()
        try:
            return sql.execute(statement, [_value(p) for p in params])
        except Err as e:
            raise _sql_error(e) from None

    def query(self, statement, params=()):
        self.flush()
        try:
            r = sql.query(statement, [_value(p) for p in params])
        except Err as e:
            raise _sql_error(e) from None
        return [dict(zip(r.columns, (_column(v) for v in row))) for row in r.rows]

    def flush(self):
        p = self.pending
        if p.is_empty:
            return
        writes = sql.QueuedWrites(list(p.statements), list(p.positions), list(p.statement_indices), bytes(p.params))
        p.clear()
        try:
            sql.write_queued(writes)
        except Err as e:
            raise _sql_error(e) from None


def _each_event(batch, each):
    """Runs ``each(db, event)`` on every event of ``batch``, then sends the
    queued writes; a failure is the batch's, at the event it happened on."""
    db = HostDb()
    position = batch.positions[0] if batch.positions else 0
    event_type = ""
    try:
        for position, stream_id, version, event_type, data, metadata, recorded_at in unpack(
            batch.positions, batch.stream_versions, batch.recorded_at, batch.lengths, batch.text
        ):
            db.position = position
            event = Event(position, stream_id, version, event_type, json.loads(data), json.loads(metadata), recorded_at)
            each(db, event)
        db.flush()
    except Exception as e:  # every failure names its event
        raise Err(types.ApplyError(position, failure(position, event_type, e)))


def _description(interface, plugin):
    return interface.Description(
        plugin.name, plugin.version, list(plugin.event_types), list(plugin.migrations), _versions(plugin.event_versions)
    )


def projector_for(plugin):
    from wit_world import exports
    from wit_world.exports import projector

    class Projector(exports.Projector):
        def describe(self):
            return _description(projector, plugin)

        def apply(self, batch):
            _each_event(batch, plugin.apply)

    return Projector


def reactor_for(plugin):
    from wit_world import exports
    from wit_world.exports import reactor

    class Reactor(exports.Reactor):
        def describe(self):
            return _description(reactor, plugin)

        def react(self, batch):
            commands = Commands()

            def each(db, event):
                commands.position = event.position
                plugin.react(db, event, commands)

            _each_event(batch, each)
            return [
                reactor.Command(c.handler, c.type, c.stream_id, to_json(c.data), c.position) for c in commands.sent
            ]

    return Reactor


def _dump_state(state):
    # A dataclass state is kept as its fields.
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        state = dataclasses.asdict(state)
    return json.dumps(state, separators=(",", ":")).encode("utf-8")


def _load_state(plugin, raw):
    loaded = json.loads(raw.decode("utf-8"))
    initial = plugin.initial_state()
    if dataclasses.is_dataclass(initial) and not isinstance(initial, type):
        if not isinstance(loaded, dict):
            raise ValueError("the state is not an object of the state's fields")
        try:
            return type(initial)(**loaded)
        except TypeError as e:
            raise ValueError(str(e)) from None
    return loaded


def _versions(declared):
    # The handler world imports `types` without `sql`.
    from wit_world.imports import types as wit_types

    return [wit_types.EventVersion(t, v) for t, v in declared.items()]


def decider_for(plugin):
    from wit_world import exports
    from wit_world.exports import decider

    class Decider(exports.Decider):
        def describe(self):
            return decider.Description(
                plugin.name, plugin.version, list(plugin.command_types), _versions(plugin.event_versions)
            )

        def handle(self, command, snapshot, history, keep_state):
            def refuse(code, message):
                return Err(decider.Refusal_Rejected(decider.Rejection(code, message)))

            if snapshot is None:
                start = plugin.initial_state()
            else:
                try:
                    start = _load_state(plugin, bytes(snapshot.state))
                except ValueError as e:
                    raise Err(decider.Refusal_BadSnapshot(f"cannot read the state: {e}"))
            try:
                events = [
                    Event(
                        e.position,
                        e.stream_id,
                        e.stream_version,
                        e.event_type,
                        json.loads(e.data),
                        json.loads(e.metadata),
                        e.recorded_at,
                    )
                    for e in history
                ]
            except ValueError as e:
                raise refuse("invalid_history", f"cannot read the stream's history: {e}")
            try:
                data = json.loads(command.data)
            except ValueError as e:
                raise refuse("invalid_command", f"invalid {command.command_type} command: {e}")
            cmd = Command(command.command_type, data, command.stream_id, json.loads(command.metadata))
            try:
                state = fold(plugin, start, events)
                kept = _dump_state(state) if keep_state else None
                decided = decide_on(plugin, state, cmd)
            except Rejection as r:
                raise refuse(r.code, r.message)
            return decider.Decision([decider.NewEvent(e.type, to_json(e.data)) for e in decided], kept)

    return Decider


def upcast_for(plugin):
    from wit_world import exports
    from wit_world.exports import upcast

    if not isinstance(plugin.from_version, int) or plugin.from_version < 1:
        raise ValueError(f"from_version must be a whole number from 1, got {plugin.from_version!r}")

    class Upcast(exports.Upcast):
        def describe(self):
            return upcast.Description(plugin.name, plugin.version, plugin.event_type, plugin.from_version)

        def upcast(self, data):
            try:
                return upcast_all(plugin, data)
            except UpcastFailure as f:
                raise Err(upcast.UpcastError(f.index, f.message))

    return Upcast
