"""Values as text: positions PostgreSQL parses back, fields of COPY text lines, and
dates and times from text."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

__all__ = ["copy_text", "parsed_or_text", "position_text"]


#: How asyncpg reads ``infinity`` and ``-infinity`` timestamps, and writes them back.
_INFINITE = {datetime.max: "infinity", datetime.min: "-infinity"}


def position_text(value: object) -> str | None:
    """``value`` as text PostgreSQL parses back to the same value (for positions)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime) and (infinite := _INFINITE.get(value.replace(tzinfo=None))):
        return infinite
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} seconds"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | uuid.UUID):
        return str(value)
    return str(value)


_COPY_ESCAPES = {
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
}
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def copy_text(field: bytes) -> str:
    """A non-NULL field of a COPY text line as the value's text (``value::text``)."""
    if b"\\" not in field:
        return field.decode()
    return _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES.get(m[1], m[1]), field).decode()


def parsed_or_text(parse: Callable[[str], object]) -> Callable[[str], object]:
    """``parse`` of a value's text, or the text itself where Python has no value for it.

    For dates and times read as text, by change data capture and by
    ``TableSource``: asyncpg's own codecs fail a whole read on a date BC, a year
    past 9999 or ``24:00``, and read ``infinity`` as ``date.max``, a different
    value, which a sink then writes as 9999-12-31. The text keeps each of them
    exact. The last value is remembered: rows written together often share a
    timestamp, and parsing is the slow part.
    """
    last: list[object] = [None, None]

    def convert(text: str) -> object:
        if text == last[0]:
            return last[1]
        try:
            value = parse(text)
        except ValueError:
            value = text
        last[0], last[1] = text, value
        return value

    return convert
