"""Debezium's JSON converter output read back to exact Python values, by the ``schema`` section.

With ``schemas.enable`` the converter sends each value's Connect schema beside
its payload; its semantic ``name`` says how a column was written: days since
the epoch for ``io.debezium.time.Date``, microseconds for ``MicroTimestamp``,
a base64 big-endian unscaled integer for ``org.apache.kafka.connect.data.Decimal``
and so on. Without a schema, values keep their JSON types.

The same schema says each column's PostgreSQL type (:func:`column_types`), so
that a sink may create a missing table for the events: the type that holds the
decoded values exactly (``MicroTimestamp`` → ``timestamp without time zone``,
``Decimal`` with a precision → ``numeric(p,s)``, ``Json`` → ``jsonb``, an
array of ``string`` → ``text[]``, ...).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from asyncetl.core.changes import DEBEZIUM_UNAVAILABLE, DeclaredColumns, JsonText

__all__ = ["column_types", "typed_payload"]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)


def typed_payload(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The envelope's payload with ``before`` and ``after`` typed by the schema, if any.

    :raises ValueError: a value does not fit its schema (TypeError: not even its JSON type).
    """
    schema, payload = doc.get("schema"), doc.get("payload")
    if not isinstance(schema, Mapping) or not isinstance(payload, Mapping):
        return doc
    rows = {f.get("field"): f for f in schema.get("fields") or () if isinstance(f, Mapping)}
    typed = dict(payload)
    for side in ("before", "after"):
        row, row_schema = payload.get(side), rows.get(side)
        if isinstance(row, Mapping) and isinstance(row_schema, Mapping):
            typed[side] = _row(row, row_schema)
    return typed


def column_types(doc: Mapping[str, Any]) -> DeclaredColumns | None:
    """Column → PostgreSQL type of the envelope's rows, from its schema section (to create
    a table with, not to compare with one's: see :class:`DeclaredColumns`); ``None``
    without one."""
    schema = doc.get("schema")
    if not isinstance(schema, Mapping):
        return None
    rows = {f.get("field"): f for f in schema.get("fields") or () if isinstance(f, Mapping)}
    row = rows.get("after") or rows.get("before")
    if not isinstance(row, Mapping):
        return None
    return DeclaredColumns(
        (str(field["field"]), _sql_type(field))
        for field in row.get("fields") or ()
        if isinstance(field, Mapping) and isinstance(field.get("field"), str)
    )


def _sql_type(schema: Mapping[str, Any]) -> str:
    name = schema.get("name")
    if name == "org.apache.kafka.connect.data.Decimal":
        parameters = schema.get("parameters") or {}
        precision, scale = parameters.get("connect.decimal.precision"), parameters.get("scale")
        if str(precision).isdigit() and str(scale).isdigit():
            return f"numeric({precision},{scale})"
        return "numeric"
    semantic = _SEMANTIC_TYPES.get(name) if isinstance(name, str) else None
    if semantic is not None:
        return semantic
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        item = _sql_type(items) if isinstance(items, Mapping) else "jsonb"
        return "jsonb" if item == "jsonb" or item.endswith("[]") else f"{item}[]"
    return _CONNECT_TYPES.get(kind, "jsonb") if isinstance(kind, str) else "jsonb"


#: Connect's types without a semantic name; structs and maps are kept as JSON.
_CONNECT_TYPES: dict[str, str] = {
    "int8": "smallint",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "boolean": "boolean",
    "string": "text",
    "bytes": "bytea",
}

#: Debezium's semantic types: the column type that holds what the decoder makes of them.
_SEMANTIC_TYPES: dict[str, str] = {
    "io.debezium.time.Date": "date",
    "io.debezium.time.Timestamp": "timestamp without time zone",
    "io.debezium.time.MicroTimestamp": "timestamp without time zone",
    "io.debezium.time.NanoTimestamp": "timestamp without time zone",
    "io.debezium.time.ZonedTimestamp": "timestamp with time zone",
    "io.debezium.time.Time": "time without time zone",
    "io.debezium.time.MicroTime": "time without time zone",
    "io.debezium.time.NanoTime": "time without time zone",
    "io.debezium.time.ZonedTime": "time with time zone",
    "io.debezium.time.MicroDuration": "bigint",  # the microseconds, as they come
    "io.debezium.time.Interval": "interval",  # ISO 8601 text, which PostgreSQL reads
    "io.debezium.data.VariableScaleDecimal": "numeric",
    "io.debezium.data.Json": "jsonb",
    "io.debezium.data.Uuid": "uuid",
    "io.debezium.data.Bits": "bytea",  # the bits' bytes, as decoded
    "io.debezium.data.Xml": "xml",
    "io.debezium.data.Enum": "text",
    "io.debezium.data.EnumSet": "text",
}


def _row(row: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    fields = {f.get("field"): f for f in schema.get("fields") or () if isinstance(f, Mapping)}
    return {name: _value(value, fields.get(name)) for name, value in row.items()}


def _value(value: Any, schema: Mapping[str, Any] | None) -> Any:
    if value is None or schema is None or value == DEBEZIUM_UNAVAILABLE:
        return value  # the placeholder becomes UNCHANGED in the core decoder
    name = schema.get("name")
    convert = _SEMANTIC.get(name) if isinstance(name, str) else None
    if convert is not None:
        return convert(value, schema)
    kind = schema.get("type")
    if kind == "bytes":
        return _bytes(value)
    if kind == "array" and isinstance(value, list):
        items = schema.get("items")
        return [_value(item, items if isinstance(items, Mapping) else None) for item in value]
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected base64 text for a bytes value, not {value!r}")
    return base64.b64decode(value, validate=True)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer for {what}, not {value!r}")
    return value


def _date(value: Any, _: Mapping[str, Any]) -> dt.date:
    return _EPOCH_DATE + dt.timedelta(days=_int(value, "io.debezium.time.Date"))


def _timestamp(unit: int, name: str) -> Callable[[Any, Mapping[str, Any]], dt.datetime]:
    def convert(value: Any, _: Mapping[str, Any]) -> dt.datetime:
        whole, part = divmod(_int(value, name), unit)
        return _EPOCH + dt.timedelta(seconds=whole, microseconds=_micros(part, unit, value, name))

    return convert


def _time(unit: int, name: str) -> Callable[[Any, Mapping[str, Any]], dt.time]:
    def convert(value: Any, _: Mapping[str, Any]) -> dt.time:
        micros = _micros(_int(value, name), unit, value, name)
        if not 0 <= micros < 86_400_000_000:
            raise ValueError(f"{name} value {value!r} is not a time of day")
        return (dt.datetime.min + dt.timedelta(microseconds=micros)).time()

    return convert


def _micros(count: int, unit: int, value: Any, name: str) -> int:
    """``count`` units of ``1/unit`` seconds in microseconds, refusing what Python cannot hold."""
    micros, rest = divmod(count * 1_000_000, unit)
    if rest:
        raise ValueError(
            f"{name} value {value!r} has nanoseconds, which Python's datetime cannot hold"
        )
    return micros


def _zoned(value: Any, schema: Mapping[str, Any]) -> dt.datetime | dt.time:
    if not isinstance(value, str):
        raise TypeError(f"expected ISO text for {schema.get('name')}, not {value!r}")
    text = value.replace("Z", "+00:00")
    if schema.get("name") == "io.debezium.time.ZonedTime":
        return dt.time.fromisoformat(text)
    return dt.datetime.fromisoformat(text)


def _decimal(value: Any, schema: Mapping[str, Any]) -> decimal.Decimal:
    parameters = schema.get("parameters") or {}
    scale = int(parameters.get("scale", 0))
    return _unscaled(_bytes(value), scale)


def _variable_decimal(value: Any, _: Mapping[str, Any]) -> decimal.Decimal:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected {{scale, value}} for a VariableScaleDecimal, not {value!r}")
    return _unscaled(_bytes(value.get("value")), _int(value.get("scale"), "its scale"))


def _unscaled(data: bytes, scale: int) -> decimal.Decimal:
    unscaled = int.from_bytes(data, "big", signed=True)
    return decimal.Decimal(unscaled).scaleb(-scale)


def _uuid(value: Any, _: Mapping[str, Any]) -> uuid.UUID:
    return uuid.UUID(str(value))


def _bits(value: Any, _: Mapping[str, Any]) -> bytes:
    return _bytes(value)


def _json(value: Any, _: Mapping[str, Any]) -> Any:
    # The column's exact text: a json column takes it as it is, not as a JSON string.
    return JsonText(value) if isinstance(value, str) else value


_SEMANTIC: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "io.debezium.time.Date": _date,
    "io.debezium.time.Timestamp": _timestamp(1_000, "io.debezium.time.Timestamp"),
    "io.debezium.time.MicroTimestamp": _timestamp(1_000_000, "io.debezium.time.MicroTimestamp"),
    "io.debezium.time.NanoTimestamp": _timestamp(1_000_000_000, "io.debezium.time.NanoTimestamp"),
    "io.debezium.time.ZonedTimestamp": _zoned,
    "io.debezium.time.ZonedTime": _zoned,
    "io.debezium.time.Time": _time(1_000, "io.debezium.time.Time"),
    "io.debezium.time.MicroTime": _time(1_000_000, "io.debezium.time.MicroTime"),
    "io.debezium.time.NanoTime": _time(1_000_000_000, "io.debezium.time.NanoTime"),
    "org.apache.kafka.connect.data.Decimal": _decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_decimal,
    "io.debezium.data.Uuid": _uuid,
    "io.debezium.data.Bits": _bits,
    "io.debezium.data.Json": _json,
}
