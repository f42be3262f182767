"""Turning dict records into COPY rows: grouping by shape, row hashes, type inference."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson

from asyncetl.connectors.postgres.schema import Column

__all__ = [
    "group_by_shape",
    "hash_payload",
    "infer_columns",
    "json_text",
    "row_hash",
    "rows_of",
    "salted_hash",
    "uniform_rows",
]

Record = Mapping[str, Any]


def group_by_shape(records: Iterable[Record]) -> dict[tuple[str, ...], list[Record]]:
    """Records grouped by their column names, so each group is one COPY.

    Names are in the order of each group's first record; key order does not matter.
    """
    records = list(records)
    if not records:
        return {}
    first = records[0].keys()
    if all(record.keys() == first for record in records):  # the usual case
        return {tuple(first): records}
    groups: dict[tuple[str, ...], list[Record]] = {}
    shapes: dict[frozenset[str], tuple[str, ...]] = {}
    for record in records:
        names = frozenset(record)
        shape = shapes.setdefault(names, tuple(record))
        groups.setdefault(shape, []).append(record)
    return groups


def uniform_rows(records: Sequence[Record]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]] | None:
    """The field names and value tuples of ``records`` when all have the first one's fields.

    ``None`` when they differ (or there are none). Cheaper than comparing key
    sets: records of equal length that all hold the first record's names hold
    exactly those names.
    """
    if not records:
        return None
    names = tuple(records[0])
    if len(set(map(len, records))) != 1:
        return None
    try:
        return names, rows_of(records, names)
    except KeyError:
        return None


def rows_of(records: Sequence[Record], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """The values of ``columns`` of each record, as tuples."""
    if len(columns) == 1:
        (only,) = columns
        return [(record[only],) for record in records]
    return list(map(itemgetter(*columns), records))


def json_text(rows: list[tuple[Any, ...]], columns: Sequence[int]) -> list[tuple[Any, ...]]:
    """``rows`` with the values of json ``columns`` that are not already text encoded as JSON.

    A ``str`` is taken to be JSON text already (as asyncpg reads json columns).
    """
    text = {str, type(None)}
    if all(set(map(type, map(itemgetter(i), rows))) <= text for i in columns):
        return rows  # the usual case, e.g. rows read from PostgreSQL

    def fixed(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for i in columns:
            value = values[i]
            if value is not None and not isinstance(value, str):
                values[i] = orjson.dumps(value, default=_canonical).decode()
        return tuple(values)

    return [fixed(row) for row in rows]


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value.normalize()) if value.is_finite() else str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def row_hash(values: Sequence[Any], salt: int = 0) -> str:
    """A stable hex digest of ``values`` (BLAKE2b over a canonical JSON encoding).

    The same values give the same hash in every process and run, unlike
    Python's ``hash()``. ``salt`` tells apart identical rows (their occurrence number).
    """
    return salted_hash(hash_payload(values), salt)


def hash_payload(values: Sequence[Any]) -> bytes:
    """What :func:`row_hash` digests for ``values``: rows with equal payloads hash alike.

    orjson writes a float NaN or ±Infinity as ``null``, as it writes ``None``: a
    row holding one is written with that float tagged instead (``"\\u0000nan"``,
    ``"\\u0000inf"``, ``"\\u0000-inf"``: no PostgreSQL text holds a NUL), so
    such rows hash apart. Only their hashes changed: a target filled before
    holds such a row under the old hash, so a new run appends it once more
    (see ``TablesSink``).
    """
    try:
        payload = orjson.dumps(values, default=_canonical, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # orjson refuses a time with a zone (timetz), so no row holding one was ever
        # hashed: its ISO text is no change to any stored hash.
        if not _inexact(values):
            raise
    else:
        # The usual case: no null, or only NULLs (no float, container or time at all).
        if b"null" not in payload or _SUSPECT.isdisjoint(map(type, values)):
            return payload
        if not _inexact(values):
            return payload
    return orjson.dumps(_exact(values), default=_canonical, option=orjson.OPT_SORT_KEYS)


#: The types of values orjson might write as ``null`` though they are not ``None``.
_SUSPECT = frozenset({float, list, tuple, dict, time})


def _inexact(value: Any) -> bool:
    """Whether orjson would write something in ``value`` as ``null`` that is not ``None``."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list | tuple):
        return any(map(_inexact, value))
    if isinstance(value, dict):
        return any(map(_inexact, value.values()))
    return isinstance(value, time) and value.tzinfo is not None


def _exact(value: Any) -> Any:
    """``value`` with zoned times as ISO text and non-finite floats tagged, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else f"\x00{value!r}"
    if isinstance(value, time) and value.tzinfo is not None:
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    return value


def salted_hash(payload: bytes, salt: int = 0) -> str:
    """:func:`row_hash` of the values whose :func:`hash_payload` is ``payload``."""
    if salt:
        payload += b"#%d" % salt
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


_TYPES: list[tuple[type, str]] = [
    (bool, "boolean"),
    (int, "bigint"),
    (float, "double precision"),
    (Decimal, "numeric"),
    (str, "text"),
    (bytes, "bytea"),
    (uuid.UUID, "uuid"),
    (timedelta, "interval"),
    (time, "time"),
    (dict, "jsonb"),
    (list, "jsonb"),
]


def _sql_type(value: Any) -> str:
    if isinstance(value, datetime):
        return "timestamp with time zone" if value.tzinfo else "timestamp without time zone"
    if isinstance(value, date):
        return "date"
    for python_type, sql_type in _TYPES:
        if isinstance(value, python_type):
            return sql_type
    return "text"


def infer_columns(records: Sequence[Record], not_null: Sequence[str] = ()) -> list[Column]:
    """Columns for a new table from the first non-NULL value of each column; ``text`` if none.

    Columns named in ``not_null`` (the key, and any the user asked for) are ``NOT NULL``.
    """
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = []
    for name in names:
        value = next((r[name] for r in records if r.get(name) is not None), None)
        columns.append(Column(name, _sql_type(value), not_null=name in not_null))
    return columns
