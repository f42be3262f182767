"""The column type of a value, for change events that carry no column types (Debezium
messages without a schema section): what a missing target table is created with."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from asyncetl.core.changes import JsonText

__all__ = ["value_type"]

# Exact types first: bool is an int, datetime a date, JsonText a str.
_BY_TYPE: dict[type, str] = {
    bool: "boolean",
    int: "bigint",
    float: "double precision",
    decimal.Decimal: "numeric",
    str: "text",
    JsonText: "jsonb",
    dict: "jsonb",
    list: "jsonb",  # JSON arrays: their items may be of any type
    dt.date: "date",
    dt.timedelta: "interval",
    uuid.UUID: "uuid",
    bytes: "bytea",
}


def value_type(value: object) -> str | None:
    """The PostgreSQL type that holds ``value`` as it is; ``None`` when the value says
    nothing of its column (SQL or JSON null, an unchanged TOAST value)."""
    if isinstance(value, dt.datetime):
        aware = value.tzinfo is not None
        return f"timestamp with{'' if aware else 'out'} time zone"
    if isinstance(value, dt.time):
        return f"time with{'' if value.tzinfo is not None else 'out'} time zone"
    return _BY_TYPE.get(type(value))
