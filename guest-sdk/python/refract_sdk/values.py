"""SQL values: how Python values bind to statement parameters and come back
from result columns, and the byte encoding of queued writes
(``queued-writes`` in wit/sql.wit)."""

from __future__ import annotations

import struct
from typing import Any, List, Union

NULL, INTEGER, REAL, TEXT, BLOB = 0, 1, 2, 3, 4
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

#: Send the queue once it holds this many statements or parameter bytes.
FLUSH_STATEMENTS = 64
FLUSH_BYTES = 32 << 10


class Real:
    """A number to bind as SQLite REAL even when it is whole."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = float(value)


def real(value: float) -> Real:
    """Binds ``value`` as REAL."""
    return Real(value)


Param = Union[None, bool, int, float, str, bytes, bytearray, memoryview, Real]


def check_integer(v: int) -> int:
    if not I64_MIN <= v <= I64_MAX:
        raise OverflowError(f"{v} does not fit SQLite's 64-bit integers")
    return v


def tagged(p: Any) -> tuple:
    """The storage class and value a parameter binds as."""
    if p is None:
        return (NULL, None)
    if isinstance(p, bool):
        return (INTEGER, int(p))
    if isinstance(p, int):
        return (INTEGER, check_integer(p))
    if isinstance(p, float):
        return (REAL, p)
    if isinstance(p, Real):
        return (REAL, p.value)
    if isinstance(p, str):
        return (TEXT, p)
    if isinstance(p, (bytes, bytearray, memoryview)):
        return (BLOB, bytes(p))
    raise TypeError(f"cannot bind {type(p).__name__} as an SQL parameter")


class Pending:
    """Statements queued and not yet sent, packed as ``queued-writes``."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.statements: List[str] = []
        self.index: dict = {}
        self.positions: List[int] = []
        self.statement_indices: List[int] = []
        self.params = bytearray()

    def push(self, position: int, sql: str, params: Any) -> bool:
        """Queues ``sql`` with ``params`` for the event at ``position``;
        whether the queue should now be sent."""
        # Converted before anything is written, so a bad parameter queues
        # nothing.
        values = [tagged(p) for p in params]
        i = self.index.get(sql)
        if i is None:
            i = len(self.statements)
            self.statements.append(sql)
            self.index[sql] = i
        out = self.params
        out += struct.pack("<I", len(values))
        for tag, v in values:
            if tag == NULL:
                out.append(NULL)
            elif tag == INTEGER:
                out += struct.pack("<Bq", INTEGER, v)
            elif tag == REAL:
                out += struct.pack("<Bd", REAL, v)
            else:
                b = v.encode("utf-8") if tag == TEXT else v
                out += struct.pack("<BI", tag, len(b))
                out += b
        self.positions.append(position)
        self.statement_indices.append(i)
        return len(self.positions) >= FLUSH_STATEMENTS or len(out) >= FLUSH_BYTES

    @property
    def is_empty(self) -> bool:
        return not self.positions
