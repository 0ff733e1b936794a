"""The packed batch of wit/types.wit (``event-batch``) taken apart."""

from __future__ import annotations

from typing import Iterator, Tuple


class MalformedBatch(Exception):
    pass


def unpack(positions, stream_versions, recorded_at, lengths, text: str) -> Iterator[Tuple[int, str, int, str, str, str, int]]:
    """(position, stream id, stream version, type, data, metadata, recorded
    at) of each event, in order."""
    n = len(positions)
    if len(stream_versions) != n or len(recorded_at) != n or len(lengths) != 4 * n:
        raise MalformedBatch("the host sent a malformed event batch: its lists differ in length")
    raw = text.encode("utf-8")
    # Lengths count UTF-8 bytes; when every character is ASCII they count
    # characters too, and the text is cut without being decoded.
    ascii = len(raw) == len(text)
    source = text if ascii else raw
    at = 0
    total = len(raw)
    for i in range(n):
        fields = []
        for k in range(4):
            ln = lengths[4 * i + k]
            if at + ln > total:
                raise MalformedBatch("the host sent a malformed event batch: a length runs past its text")
            piece = source[at : at + ln]
            fields.append(piece if ascii else piece.decode("utf-8"))
            at += ln
        yield (positions[i], fields[0], stream_versions[i], fields[1], fields[2], fields[3], recorded_at[i])
