"""Rows of change events staged for the apply sink: as array parameters, one per column,
or as COPY records for a temporary table (see :mod:`._apply_stage`).

A column is staged with the target's own type when every value in the batch
already has the Python type asyncpg's binary encoding takes for it (``int`` for
``bigint``, ``str`` for ``text``…): asyncpg encodes those in C and the server
has nothing to parse. Timestamps are staged as whole microseconds since the
Unix epoch (``bigint``) and turned back into timestamps in SQL, exactly:
asyncpg's own timestamp encoding costs several times more per value than the
rest of a row. Any other column is staged as ``text``, in the form
:func:`~._values.text_writer` writes, and cast to the target type in SQL.

:func:`read_staged` writes the SQL that reads a staged column back as its target type.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter, itemgetter
from types import NoneType
from typing import Final

from asyncetl.connectors.postgres.cdc._values import text_writer

__all__ = ["MICROS", "array_values", "read_staged", "staged_columns", "staged_records"]

Row = dict[str, object]

#: The staged type of a timestamp column held as microseconds since the Unix epoch.
MICROS: Final = "bigint"

# Target type → the Python types asyncpg encodes for it without surprises (exactly these
# types: a bool is no integer here, a datetime no date).
_TYPES: Final[dict[str, frozenset[type]]] = {
    "bigint": frozenset({int}),
    "integer": frozenset({int}),
    "smallint": frozenset({int}),
    "double precision": frozenset({float}),
    "real": frozenset({float}),
    "numeric": frozenset({decimal.Decimal, int}),
    "boolean": frozenset({bool}),
    "text": frozenset({str}),
    "character varying": frozenset({str}),
    "character": frozenset({str}),
    "date": frozenset({dt.date}),
    "bytea": frozenset({bytes}),
}

# Timestamp type → whether its values carry a time zone.
_TIMESTAMPS: Final = {"timestamp with time zone": True, "timestamp without time zone": False}
_EPOCH: Final = {
    True: dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    False: dt.datetime(1970, 1, 1),  # naive: the epoch of timestamps without time zone
}
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_TZINFO = attrgetter("tzinfo")


def staged_records(
    types: Sequence[str], columns: Sequence[str], rows: Sequence[Row]
) -> tuple[list[str], Iterator[tuple[object, ...]]]:
    """The staging table's column types and the COPY records for ``rows``.

    The records are made as COPY reads them, each freed before the next: a batch's
    worth of tuples alive at once would only make the garbage collector run more.

    :param types: the target's SQL type of each of ``columns``.
    """
    staged, values = staged_columns(types, columns, rows)
    # zip builds the records' tuples without a Python-level step per row.
    return staged, zip(*values, strict=True)


def staged_columns(
    types: Sequence[str], columns: Sequence[str], rows: Sequence[Row]
) -> tuple[list[str], list[Iterable[object]]]:
    """Each column's staged type and its values for ``rows``, as :func:`staged_records`
    stages them, column by column (the values made as they are iterated).

    :param types: the target's SQL type of each of ``columns``.
    """
    staged: list[str] = []
    values: list[Iterable[object]] = []
    for sql_type, column in zip(types, columns, strict=True):
        column_values = list(map(itemgetter(column), rows))
        base = _base(sql_type)
        aware = _TIMESTAMPS.get(base)
        if aware is not None and _datetimes(column_values, aware=aware):
            staged.append(MICROS)
            values.append(map(_micros_writer(_EPOCH[aware]), column_values))
        elif _typed(base, column_values):
            staged.append(sql_type)
            values.append(column_values)
        else:
            staged.append("text")
            values.append(map(text_writer(sql_type), column_values))
    return staged, values


def array_values(sql_type: str, values: list[object]) -> tuple[str, list[object]]:
    """``values`` for an array parameter of ``sql_type`` elements, and the element type to
    declare: as they are when asyncpg encodes them for that type, else as ``text`` (to be
    cast in SQL)."""
    if _typed(_base(sql_type), values):
        return sql_type, values
    return "text", list(map(text_writer(sql_type), values))


def read_staged(source: str, staged: str, sql_type: str) -> str:
    """SQL for the staged column ``source`` (quoted) as a value of ``sql_type``.

    :param staged: the column's staged type, as :func:`staged_records` gave it.
    """
    aware = _TIMESTAMPS.get(_base(sql_type))
    if aware is None or staged != MICROS:
        return f"{source}::{sql_type}"
    # Whole seconds and the microseconds apart: to_timestamp() takes a float, exact for
    # whole seconds but not for microseconds across the years a datetime spans.
    instant = f"to_timestamp({source} / 1000000) + {source} % 1000000 * interval '1 microsecond'"
    if not aware:
        instant = f"({instant}) AT TIME ZONE 'UTC'"
    return f"({instant})::{sql_type}"


def _base(sql_type: str) -> str:
    """The type's name without length or precision: ``timestamp(3) with time zone`` too."""
    head, paren, rest = sql_type.partition("(")
    if not paren:
        return sql_type.strip()
    return (head.strip() + " " + rest.partition(")")[2].strip()).strip()


def _typed(base: str, values: list[object]) -> bool:
    """Whether asyncpg can encode every one of ``values`` for a ``base`` column as it is."""
    allowed = _TYPES.get(base)
    if allowed is None:
        return False
    present = set(map(type, values))
    present.discard(NoneType)
    return present <= allowed


def _datetimes(values: list[object], *, aware: bool) -> bool:
    """Whether ``values`` are datetimes (or ``None``), all with a time zone or all without."""
    present = set(map(type, values))
    present.discard(NoneType)
    if not present <= {dt.datetime}:
        return False
    zones = set(map(_TZINFO, filter(None, values)))  # the values are datetimes or None
    return None not in zones if aware else zones <= {None}


def _micros_writer(epoch: dt.datetime) -> Callable[[object], int | None]:
    """Microseconds since ``epoch``; the last value's are remembered, as rows written
    together often share a timestamp (the decoder hands out the same object then)."""
    last: list[object] = [None, None]

    def write(value: object) -> int | None:
        if value is last[0]:
            return last[1]  # type: ignore[return-value]
        micros = None if value is None else (value - epoch) // _MICROSECOND  # type: ignore[operator]
        last[0], last[1] = value, micros
        return micros

    return write
