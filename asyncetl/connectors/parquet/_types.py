"""Declared column types: Arrow type names from a spec, e.g. ``int64``, ``decimal128(12, 2)``."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pyarrow as pa

from asyncetl.core.errors import ConfigError

__all__ = ["declared_types"]

_DECIMAL = re.compile(r"decimal(?:128)?\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([\w/+:-]+))?\]")


def declared_types(schema: Mapping[str, str], where: str) -> dict[str, pa.DataType]:
    """Column name → Arrow type for each declared column.

    :raises ConfigError: naming the column whose type is not an Arrow type name.
    """
    return {name: _parse(name, text, where) for name, text in schema.items()}


def _parse(name: str, text: str, where: str) -> pa.DataType:
    spelled = str(text).strip().lower()
    if match := _DECIMAL.fullmatch(spelled):
        return pa.decimal128(int(match[1]), int(match[2]))
    if match := _TIMESTAMP.fullmatch(str(text).strip()):
        return pa.timestamp(match[1], tz=match[2])
    try:
        kind: pa.DataType = pa.type_for_alias(spelled)
    except (ValueError, KeyError):
        raise ConfigError(
            f"column {name!r} has type {text!r}, which is not an Arrow type name; use one such "
            "as int64, float64, string, bool, date32, timestamp[us, tz=UTC] or decimal128(12, 2)",
            where=where,
            key="schema",
        ) from None
    return kind
