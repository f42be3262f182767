"""asyncpg's own value objects as the PostgreSQL text a cast from ``text`` reads.

Sources give ranges, composites, geometric types and bit strings as their text;
a record an application built may still hold asyncpg's objects for them
(``asyncpg.Range``, ``asyncpg.Point``, a tuple for a point…). The sink stages
such columns as text, so these are written in their text form here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from asyncpg import types as pgtypes

from asyncetl.connectors.postgres._text import position_text

__all__ = ["object_text"]


def object_text(value: Any) -> Any:
    """``value`` as PostgreSQL text if it is one of asyncpg's objects or a tuple (a
    list: element by element); any other value as it is."""
    if isinstance(value, list):
        return [object_text(v) for v in value]
    if isinstance(value, asyncpg.Range):
        return _range(value)
    if isinstance(value, asyncpg.BitString):
        return "".join(value.as_string().split())  # printed in groups of four
    if isinstance(value, pgtypes.Path):  # a Polygon is a Path, always closed
        points = ",".join(_point(p) for p in value)
        return f"({points})" if value.is_closed else f"[{points}]"
    if isinstance(value, pgtypes.Line):
        return "{" + ",".join(_number(v) for v in value) + "}"
    if isinstance(value, pgtypes.LineSegment):
        return f"[{_point(value.p1)},{_point(value.p2)}]"
    if isinstance(value, pgtypes.Circle):
        return f"<{_point(value.center)},{_number(value.radius)}>"
    if isinstance(value, pgtypes.Box):
        return f"{_point(value.high)},{_point(value.low)}"
    if isinstance(value, tuple):  # a point, or a composite given as a tuple
        return _row(value)
    if isinstance(value, asyncpg.Record):  # a composite as asyncpg reads one
        return _row(tuple(value.values()))
    return value


def _number(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _point(point: tuple[float, float]) -> str:
    return f"({_number(point[0])},{_number(point[1])})"


def _field(value: object) -> str:
    """One field of a row or bound of a range: a number as it is (a point's fields take
    no quotes), NULL empty, anything else quoted with ``"`` and ``\\`` doubled."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return _number(value)
    text = str(position_text(object_text(value)))  # infinity timestamps too
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def _row(fields: tuple[object, ...]) -> str:
    return "(" + ",".join(_field(v) for v in fields) + ")"


def _range(value: asyncpg.Range[Any]) -> str:
    if value.isempty:
        return "empty"
    opening = "[" if value.lower_inc else "("
    closing = "]" if value.upper_inc else ")"
    return f"{opening}{_field(value.lower)},{_field(value.upper)}{closing}"
