"""The Kafka Connect ``schema`` section of Debezium's JSON converter (``schemas.enable``).

With a schema, each row value is written as Debezium's PostgreSQL connector
writes it by default, and its field says how: ``io.debezium.time.Date`` (days
since the epoch), ``MicroTimestamp`` (microseconds), ``ZonedTimestamp`` (ISO
text in UTC), ``MicroTime``, ``MicroDuration``, ``VariableScaleDecimal``
(``{"scale", "value"}``, the unscaled value as base64 big-endian bytes),
``Uuid``, ``Json`` (the JSON text), bytes as base64, arrays. A column's type
comes from its first value that says one, else from its SQL type, else text.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

__all__ = ["envelope_schema", "key_schema", "typed_row"]

_EPOCH: Final = dt.datetime(1970, 1, 1)
_EPOCH_DATE: Final = dt.date(1970, 1, 1)
_MICRO: Final = dt.timedelta(microseconds=1)
_INTS: Final = {"smallint": "int16", "int2": "int16", "integer": "int32", "int4": "int32"}
_SQL: Final = {
    "boolean": "boolean",
    "real": "float32",
    "double precision": "float64",
    "bytea": "bytes",
    "bigint": "int64",
    "int8": "int64",
    **_INTS,
}

#: Debezium's PostgreSQL ``source`` block, field by field.
_SOURCE_FIELDS: Final = (
    ("version", "string", False),
    ("connector", "string", False),
    ("name", "string", False),
    ("ts_ms", "int64", False),
    ("ts_us", "int64", True),
    ("ts_ns", "int64", True),
    ("snapshot", "string", True),
    ("db", "string", False),
    ("sequence", "string", True),
    ("schema", "string", False),
    ("table", "string", False),
    ("txId", "int64", True),
    ("lsn", "int64", True),
    ("xmin", "int64", True),
)
_SNAPSHOT: Final = (
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
)


def _semantic(kind: str, name: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "version": 1, **more}


_DECIMAL: Final = _semantic(
    "struct",
    "io.debezium.data.VariableScaleDecimal",
    doc="Variable scaled decimal",
    fields=[
        {"type": "int32", "optional": False, "field": "scale"},
        {"type": "bytes", "optional": False, "field": "value"},
    ],
)


def _schema_of(value: object, sql_type: str | None) -> dict[str, Any]:
    """The Connect schema of one column, from a value and, failing that, its SQL type."""
    sql = (sql_type or "").lower()
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": _INTS.get(sql, "int64")}
    if isinstance(value, float):
        return {"type": "float32" if sql == "real" else "float64"}
    if isinstance(value, decimal.Decimal):
        return dict(_DECIMAL)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return _semantic("int64", "io.debezium.time.MicroTimestamp")
        return _semantic("string", "io.debezium.time.ZonedTimestamp")
    if isinstance(value, dt.date):
        return _semantic("int32", "io.debezium.time.Date")
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            return _semantic("string", "io.debezium.time.ZonedTime")
        return _semantic("int64", "io.debezium.time.MicroTime")
    if isinstance(value, dt.timedelta):
        return _semantic("int64", "io.debezium.time.MicroDuration")
    if isinstance(value, uuid.UUID):
        return _semantic("string", "io.debezium.data.Uuid")
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "bytes"}
    if sql in ("json", "jsonb") or isinstance(value, dict):
        return _semantic("string", "io.debezium.data.Json")
    if isinstance(value, list | tuple) or sql.endswith("[]"):
        values = value if isinstance(value, list | tuple) else ()
        items = next((item for item in values if item is not None), None)
        return {"type": "array", "items": {**_schema_of(items, sql[:-2] or None), "optional": True}}
    return {"type": _SQL.get(sql, "string")}


def _row_schema(
    rows: Sequence[Mapping[str, object]], columns: Mapping[str, str] | None, name: str
) -> dict[str, Any]:
    names = list(columns or {})
    for row in rows:
        names += [column for column in row if column not in names]
    fields = []
    for column in names:
        value = next((row[column] for row in rows if row.get(column) is not None), None)
        fields.append(
            {**_schema_of(value, (columns or {}).get(column)), "optional": True, "field": column}
        )
    return {"type": "struct", "fields": fields, "optional": True, "name": name}


def key_schema(
    key: Mapping[str, object], columns: Mapping[str, str] | None, name: str
) -> dict[str, Any]:
    """The schema of a message key holding ``key`` (Debezium's ``<topic>.Key``)."""
    key_types = {column: kind for column, kind in (columns or {}).items() if column in key}
    schema = _row_schema([key], key_types, f"{name}.Key")
    for field in schema["fields"]:
        field["optional"] = False
    schema["optional"] = False
    return schema


def envelope_schema(
    rows: Sequence[Mapping[str, object]], columns: Mapping[str, str] | None, name: str
) -> dict[str, Any]:
    """The schema of an envelope whose rows are ``rows`` (Debezium's ``<topic>.Envelope``).

    Markers (unchanged values, JSON nulls) in ``rows`` should be ``None`` here: they say
    nothing of their column's type.
    """
    value = _row_schema(rows, columns, f"{name}.Value")
    source = [
        {"type": kind, "optional": optional, "field": field}
        for field, kind, optional in _SOURCE_FIELDS
    ]
    source[6] |= {
        "name": "io.debezium.data.Enum",
        "version": 1,
        "parameters": {"allowed": _SNAPSHOT},
        "default": "false",
    }
    times = [{"type": "int64", "optional": True, "field": f} for f in ("ts_ms", "ts_us", "ts_ns")]
    return {
        "type": "struct",
        "fields": [
            {**value, "field": "before"},
            {**value, "field": "after"},
            {
                "type": "struct",
                "fields": source,
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source",
            },
            {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": False, "field": "id"},
                    {"type": "int64", "optional": False, "field": "total_order"},
                    {"type": "int64", "optional": False, "field": "data_collection_order"},
                ],
                "optional": True,
                "name": "event.block",
                "version": 1,
                "field": "transaction",
            },
            {"type": "string", "optional": False, "field": "op"},
            *times,
        ],
        "optional": False,
        "name": f"{name}.Envelope",
        "version": 2,
    }


def typed_row(
    row: Mapping[str, object] | None, markers: Mapping[int, str]
) -> dict[str, Any] | None:
    """``row``'s values as Debezium writes them beside a schema.

    :param markers: the text of each marker object (by ``id``): unchanged values, JSON nulls.
    """
    if row is None:
        return None
    return {column: _typed(value, markers) for column, value in row.items()}


def _typed(value: object, markers: Mapping[int, str]) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if id(value) in markers:
        return markers[id(value)]
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return (value - _EPOCH) // _MICRO
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return (value - _EPOCH_DATE).days
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            return value.isoformat()
        return (dt.datetime.combine(_EPOCH_DATE, value) - _EPOCH) // _MICRO
    if isinstance(value, dt.timedelta):
        return value // _MICRO
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return [_typed(item, markers) for item in value]
    return str(value)


def _decimal(value: decimal.Decimal) -> dict[str, Any] | str:
    if not value.is_finite():
        return str(value)  # NaN and infinities have no unscaled form
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    scale = -exponent
    if scale < 0:
        unscaled, scale = unscaled * 10**-scale, 0
    size = (unscaled.bit_length() + 8) // 8
    data = unscaled.to_bytes(size, "big", signed=True)
    return {"scale": scale, "value": base64.b64encode(data).decode("ascii")}
