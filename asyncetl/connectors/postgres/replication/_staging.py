"""Rows of change events as COPY records for the apply sink's temporary tables.

A column is staged with the target's own type when every value in the batch
already has the Python type asyncpg's binary COPY encodes for it (``int`` for
``bigint``, ``datetime`` for ``timestamptz``…): asyncpg encodes those in C and
the server has nothing to parse. Any other column is staged as ``text``, in the
form :func:`~._values.text_writer` writes, and cast to the target type in SQL.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Sequence
from typing import Final

from asyncetl.connectors.postgres.replication._values import text_writer

__all__ = ["staged_records"]

Row = dict[str, object]


def _aware(value: object) -> bool:
    return type(value) is dt.datetime and value.tzinfo is not None


def _naive(value: object) -> bool:
    return type(value) is dt.datetime and value.tzinfo is None


# Target type → the Python types asyncpg encodes for it without surprises.
_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "bigint": (int,),
    "integer": (int,),
    "smallint": (int,),
    "double precision": (float,),
    "real": (float,),
    "numeric": (decimal.Decimal, int),
    "boolean": (bool,),
    "text": (str,),
    "character varying": (str,),
    "character": (str,),
    "date": (dt.date,),
    "bytea": (bytes,),
}
_CHECKS: Final[dict[str, Callable[[object], bool]]] = {
    "timestamp with time zone": _aware,
    "timestamp without time zone": _naive,
}


def staged_records(
    types: Sequence[str], columns: Sequence[str], rows: Sequence[Row]
) -> tuple[list[str], list[tuple[object, ...]]]:
    """The staging table's column types and the COPY records for ``rows``.

    :param types: the target's SQL type of each of ``columns``.
    """
    staged: list[str] = []
    getters: list[Callable[[object], object] | None] = []
    for sql_type, column in zip(types, columns, strict=True):
        if _typed(sql_type, [row[column] for row in rows]):
            staged.append(sql_type)
            getters.append(None)
        else:
            staged.append("text")
            getters.append(text_writer(sql_type))
    if all(getter is None for getter in getters):
        return staged, [tuple([row[c] for c in columns]) for row in rows]
    pairs = list(zip(columns, getters, strict=True))
    return staged, [
        tuple([row[c] if write is None else write(row[c]) for c, write in pairs]) for row in rows
    ]


def _typed(sql_type: str, values: list[object]) -> bool:
    base = sql_type.split("(", 1)[0].strip()
    check = _CHECKS.get(base)
    if check is not None:
        return all(value is None or check(value) for value in values)
    allowed = _TYPES.get(base)
    if allowed is None:
        return False
    return all(value is None or type(value) in allowed for value in values)
