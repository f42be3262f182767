"""Values PostgreSQL would take but change, or refuse for the whole batch: found before loading.

asyncpg's binary encoder truncates a ``float`` written to an integer column
(``1.5`` is stored as ``1``) without a word, and a ``str`` holding a NUL
character fails the whole COPY (``invalid byte sequence for encoding "UTF8":
0x00``) on every rerun. Both are found here, per column, so that just the
records holding them are refused, naming table, column and key, and the rest
of the batch lands. A quick scan per column finds nothing in the usual case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import contains, itemgetter
from typing import Any

from asyncetl.connectors.postgres.schema import TableSchema

__all__ = ["find_changed_values"]

_INTEGERS = frozenset({"smallint", "integer", "bigint"})
_BINARY = frozenset({"bytea"})

Row = tuple[Any, ...]


def _fraction(value: object) -> bool:
    return type(value) is float and not value.is_integer()


def _nul(value: object) -> bool:
    return type(value) is str and "\x00" in value


def _any_fraction(values: list[Any]) -> bool:
    return float in set(map(type, values)) and any(map(_fraction, values))


def _any_nul(values: list[Any]) -> bool:
    types = set(map(type, values))
    if str not in types:
        return False  # the usual case for a non-text column: no str to look into
    strings = values if len(types) == 1 else [v for v in values if type(v) is str]
    return any(map(contains, strings, repeat("\x00")))  # no Python call per value


def _problem(schema: TableSchema, column: str) -> tuple[Any, Any, str] | None:
    found = schema.column(column)
    if found is None or found.type in _BINARY:
        return None
    if found.type in _INTEGERS:
        return _fraction, _any_fraction, "it would lose its fraction; round it with a transform"
    why = "PostgreSQL text cannot hold the NUL character; strip it with a transform"
    return _nul, _any_nul, why


def find_changed_values(
    schema: TableSchema,
    columns: Sequence[str],
    rows: Sequence[Row],
    records: Sequence[Mapping[str, Any]],
    key: Sequence[str],
) -> dict[int, str]:
    """The index of each row holding such a value, with the reason naming table, column and key."""
    found: dict[int, str] = {}
    for i, column in enumerate(columns):
        problem = _problem(schema, column)
        if problem is None:
            continue
        test, found_any, why = problem
        values = list(map(itemgetter(i), rows))
        if not found_any(values):
            continue
        type_ = schema.column(column).type  # type: ignore[union-attr]
        for index, value in enumerate(values):
            if index in found or not test(value):
                continue
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            where = ", ".join(f"{k}={records[index].get(k)!r}" for k in key)
            found[index] = (
                f"column {column!r} of table {schema.table} is {type_} and cannot take "
                f"the value {shown}{f' (record {where})' if where else ''}: {why}"
            )
    return found
