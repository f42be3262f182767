"""Column types: chosen from values, SQL type names or declarations, and values made to fit.

Every column is an Arrow type that Iceberg has a type for. A value either
fits its column exactly or is refused with a sentence naming it: a decimal is
never rounded, an integer never wrapped. Types without an Iceberg counterpart
(UUIDs, JSON documents, intervals, network addresses) are stored as their
exact text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Mapping
from typing import Final

import pyarrow as pa
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.types import IcebergType, NestedField

from asyncetl.core.changes import JSON_NULL
from asyncetl.core.errors import ConfigError
from asyncetl.core.jsonout import json_text

__all__ = [
    "Converter",
    "arrow_type_of",
    "converter",
    "declared_type",
    "exact_type",
    "sql_type",
]

#: Makes a record's value fit a column; raises ``ValueError`` naming it when it cannot.
Converter = Callable[[object], object]

_INT64 = (-(2**63), 2**63 - 1)
_MAX_PRECISION: Final = 38
_UTC_TS = pa.timestamp("us", tz="UTC")

_SQL_TYPES: Final[dict[str, pa.DataType]] = {
    "smallint": pa.int64(),
    "integer": pa.int64(),
    "bigint": pa.int64(),
    "real": pa.float64(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "uuid": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(),
    "timestamp with time zone": _UTC_TS,
    "timestamp without time zone": pa.timestamp("us"),
    "time without time zone": pa.time64("us"),
}
_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")
_TYPMOD = re.compile(r"\(.*\)")


def sql_type(name: str) -> pa.DataType | None:
    """The column type for a SQL type name as ``format_type`` writes it, if one is known."""
    numeric = _NUMERIC.fullmatch(name.replace(" ", ""))
    if numeric is not None:
        precision, scale = int(numeric[1]), int(numeric[2])
        return pa.decimal128(precision, scale) if precision <= _MAX_PRECISION else pa.string()
    if name.endswith("[]"):
        return pa.string()
    return _SQL_TYPES.get(_TYPMOD.sub("", name).strip())


def declared_type(where: str, column: str, name: str) -> pa.DataType:
    """The column type for an Iceberg type name (``long``, ``decimal(10, 2)``, ``timestamptz``…).

    :raises ConfigError: for a name Iceberg does not know, or a nested type.
    """
    try:
        iceberg = IcebergType.model_validate(name)
    except ValueError:
        raise ConfigError(
            f"column {column!r} has type {name!r}, which is not an Iceberg primitive type "
            "(long, int, double, boolean, string, binary, date, timestamp, timestamptz, "
            "decimal(P, S)…)",
            where=where,
            key="columns",
        ) from None
    schema = Schema(NestedField(1, column, iceberg, required=False))
    return schema_to_pyarrow(schema, include_field_ids=False).field(column).type


def arrow_type_of(values: list[object]) -> pa.DataType | None:
    """The column type for a new column holding ``values``; ``None`` when all are null."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        return None
    if isinstance(first, bool):
        return pa.bool_()
    if isinstance(first, int):
        return pa.int64()
    if isinstance(first, float):
        return pa.float64()
    if isinstance(first, decimal.Decimal):
        return _decimal_for(values)
    if isinstance(first, dt.datetime):
        return _UTC_TS if first.tzinfo is not None else pa.timestamp("us")
    if isinstance(first, dt.date):
        return pa.date32()
    if isinstance(first, dt.time) and first.tzinfo is None:
        return pa.time64("us")
    if isinstance(first, bytes | bytearray | memoryview):
        return pa.binary()
    return pa.string()


def _decimal_for(values: list[object]) -> pa.DataType:
    scale, digits = 0, 1
    for value in values:
        if isinstance(value, decimal.Decimal) and value.is_finite():
            exponent = int(value.as_tuple().exponent)
            scale = max(scale, -exponent)
            digits = max(digits, len(value.as_tuple().digits) + max(exponent, 0))
    if digits + scale > _MAX_PRECISION or scale > _MAX_PRECISION:
        return pa.string()  # beyond Iceberg's decimals: kept exact as text
    return pa.decimal128(_MAX_PRECISION, scale)


def exact_type(kind: pa.DataType) -> type | None:
    """The Python type whose values fit a column of type ``kind`` as they are, if there is one."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return str
    return _EXACT.get(kind.id)


def converter(column: str, kind: pa.DataType) -> Converter:
    """A function making a value fit column ``column`` of type ``kind`` exactly.

    :raises ConfigError: for a column type asyncetl does not write.
    """
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text
    make = _CONVERTERS.get(kind.id)
    if make is None:
        raise ConfigError(f"column {column!r} has type {kind}, which the Iceberg sink cannot write")
    return make(column, kind)


def _text(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if value is JSON_NULL:
        return "null"
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError("bytes do not fit a string column")  # noqa: TRY004 - a refused value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _refuse(column: str, kind: pa.DataType, value: object) -> ValueError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ValueError(f"value {shown} of column {column!r} does not fit its type {kind}")


def _integer(column: str, kind: pa.DataType) -> Converter:
    low, high = _INT64 if kind == pa.int64() else (-(2**31), 2**31 - 1)

    def convert(value: object) -> object:
        if type(value) is int and low <= value <= high:
            return value
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return int(value)
        raise _refuse(column, kind, value)

    return convert


def _floating(column: str, kind: pa.DataType) -> Converter:
    def convert(value: object) -> object:
        if value is None or isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and float(value) == value:
            return float(value)
        raise _refuse(column, kind, value)

    return convert


def _boolean(column: str, kind: pa.DataType) -> Converter:
    def convert(value: object) -> object:
        if value is None or isinstance(value, bool):
            return value
        raise _refuse(column, kind, value)

    return convert


def _decimal(column: str, kind: pa.DataType) -> Converter:
    assert isinstance(kind, pa.Decimal128Type)
    quantum = decimal.Decimal(1).scaleb(-kind.scale)
    exponent = -kind.scale
    limit = decimal.Decimal(10) ** (kind.precision - kind.scale)

    def convert(value: object) -> object:
        if type(value) is decimal.Decimal:
            shape = value.as_tuple()
            if shape.exponent == exponent and len(shape.digits) <= kind.precision:
                return value  # already exactly this scale, and few enough digits
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = decimal.Decimal(value)
        if isinstance(value, decimal.Decimal) and value.is_finite() and abs(value) < limit:
            exact = value.quantize(quantum, context=decimal.Context(prec=_MAX_PRECISION + 2))
            if exact == value:
                return exact
        raise _refuse(column, kind, value)

    return convert


def _timestamp(column: str, kind: pa.DataType) -> Converter:
    assert isinstance(kind, pa.TimestampType)
    aware = kind.tz is not None

    def convert(value: object) -> object:
        if value is None:
            return None
        if aware and type(value) is dt.datetime and value.tzinfo is dt.UTC:
            return value
        if isinstance(value, dt.datetime) and (value.tzinfo is not None) == aware:
            return value.astimezone(dt.UTC) if aware else value
        raise _refuse(column, kind, value)

    return convert


def _date(column: str, kind: pa.DataType) -> Converter:
    def convert(value: object) -> object:
        if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
            return value
        raise _refuse(column, kind, value)

    return convert


def _time(column: str, kind: pa.DataType) -> Converter:
    def convert(value: object) -> object:
        if value is None or (isinstance(value, dt.time) and value.tzinfo is None):
            return value
        raise _refuse(column, kind, value)

    return convert


def _binary(column: str, kind: pa.DataType) -> Converter:
    def convert(value: object) -> object:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise _refuse(column, kind, value)

    return convert


_CONVERTERS: Final[Mapping[int, Callable[[str, pa.DataType], Converter]]] = {
    pa.int64().id: _integer,
    pa.int32().id: _integer,
    pa.float64().id: _floating,
    pa.float32().id: _floating,
    pa.bool_().id: _boolean,
    pa.decimal128(1, 0).id: _decimal,
    pa.timestamp("us").id: _timestamp,
    pa.date32().id: _date,
    pa.time64("us").id: _time,
    pa.binary().id: _binary,
    pa.large_binary().id: _binary,
}

#: Values of these exact types need no conversion, nor any check, for these column types.
_EXACT: Final[Mapping[int, type]] = {
    pa.float64().id: float,
    pa.bool_().id: bool,
    pa.binary().id: bytes,
    pa.large_binary().id: bytes,
    pa.date32().id: dt.date,
}
