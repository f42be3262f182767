"""Typed values from PostgreSQL's text output, chosen by type OID.

pgoutput sends column values in their text form (the type's output function,
run in the walsender with ``DateStyle=ISO``, ``TimeZone=UTC``,
``extra_float_digits=3``, ``bytea_output=hex``); snapshot reads select
``column::text`` under the same settings. Both turn text into Python values
with :func:`converter`, so a row looks the same whether it came from the
snapshot or the stream. Types without a converter stay text.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Final

import orjson

from asyncetl.connectors.postgres._text import parsed_or_text
from asyncetl.core.changes import JSON_NULL, JsonText

__all__ = [
    "SESSION_SETTINGS",
    "Converter",
    "converter",
    "parse_array",
    "pg_text",
    "text_writer",
    "type_name",
]

#: Converts one value's text form (as bytes) to a Python value.
Converter = Callable[[bytes], object]

#: Settings that make the text output parseable here; used on every connection that reads values.
SESSION_SETTINGS: Final = {
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "TimeZone": "UTC",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


_text: Converter = bytes.decode


def _bool(raw: bytes) -> object:
    return raw in (b"t", b"true")  # output function; bool::text (snapshot reads)


def _numeric(raw: bytes) -> object:
    return decimal.Decimal(raw.decode())


def _json(raw: bytes) -> object:
    # The exact text: decoding would lose json's key order and spacing and jsonb's scale.
    return JsonText(raw.decode())


def _bytea(raw: bytes) -> object:
    if raw.startswith(b"\\x"):
        return bytes.fromhex(raw[2:].decode())
    return raw  # escape format: leave as received


def _guarded(parse: Callable[[str], object]) -> Converter:
    """``parse`` of the text, or the text itself for values Python cannot hold.

    (``infinity``, dates BC, years past 9999; see :func:`parsed_or_text`.)
    """
    convert = parsed_or_text(parse)
    return lambda raw: convert(raw.decode())


_timestamp = _guarded(dt.datetime.fromisoformat)
_date = _guarded(dt.date.fromisoformat)
_time = _guarded(dt.time.fromisoformat)

# OID → (SQL type name, converter).
_SCALARS: Final[dict[int, tuple[str, Converter]]] = {
    16: ("boolean", _bool),
    17: ("bytea", _bytea),
    18: ('"char"', _text),
    19: ("name", _text),
    20: ("bigint", int),
    21: ("smallint", int),
    23: ("integer", int),
    25: ("text", _text),
    26: ("oid", int),
    114: ("json", _json),
    142: ("xml", _text),
    650: ("cidr", _text),
    700: ("real", float),
    701: ("double precision", float),
    790: ("money", _text),
    829: ("macaddr", _text),
    869: ("inet", _text),
    1042: ("character", _text),
    1043: ("character varying", _text),
    1082: ("date", _date),
    1083: ("time without time zone", _time),
    1114: ("timestamp without time zone", _timestamp),
    1184: ("timestamp with time zone", _timestamp),
    1186: ("interval", _text),
    1266: ("time with time zone", _text),
    1560: ("bit", _text),
    1562: ("bit varying", _text),
    1700: ("numeric", _numeric),
    2950: ("uuid", _text),
    3802: ("jsonb", _json),
}

# Array OID → element OID.
_ARRAYS: Final[dict[int, int]] = {
    1000: 16,
    1001: 17,
    1002: 18,
    1003: 19,
    1016: 20,
    1005: 21,
    1007: 23,
    1009: 25,
    1028: 26,
    199: 114,
    143: 142,
    651: 650,
    1021: 700,
    1022: 701,
    791: 790,
    1040: 829,
    1041: 869,
    1014: 1042,
    1015: 1043,
    1182: 1082,
    1183: 1083,
    1115: 1114,
    1185: 1184,
    1187: 1186,
    1270: 1266,
    1561: 1560,
    1563: 1562,
    1231: 1700,
    2951: 2950,
    3807: 3802,
}

# Type modifiers that change a column's declared type (length, precision).
_LENGTH_TYPES: Final = {1042: "character", 1043: "character varying"}
_BIT_TYPES: Final = {1560: "bit", 1562: "bit varying"}


def converter(oid: int) -> Converter:
    """The converter for values of type ``oid``; text for types without one."""
    scalar = _SCALARS.get(oid)
    if scalar is not None:
        return scalar[1]
    element = _ARRAYS.get(oid)
    if element is not None:
        return _array_converter(_SCALARS[element][1])
    return _text


def _array_converter(inner: Converter) -> Converter:
    def convert(raw: bytes) -> object:
        text = raw.decode()
        if text.startswith("["):
            # Explicit lower bounds ([0:1]={7,8}), which lists cannot hold: the text keeps them.
            return text
        try:
            return parse_array(text, inner)
        except (ValueError, IndexError, ArithmeticError):
            # A literal this parser does not follow: its text, which a cast to the target
            # column's (same) type reads back exactly.
            return text

    return convert


def type_name(oid: int, typmod: int = -1, known: dict[int, str] | None = None) -> str:
    """The SQL name of type ``oid`` (with length or precision from ``typmod``).

    :param known: names of non-built-in types, from pgoutput Type messages or the catalog.
    """
    if known and oid in known:
        return known[oid]
    if oid in _LENGTH_TYPES and typmod > 4:
        return f"{_LENGTH_TYPES[oid]}({typmod - 4})"
    if oid in _BIT_TYPES and typmod > 0:  # a bit type's modifier is its length itself
        return f"{_BIT_TYPES[oid]}({typmod})"
    if oid == 1700 and typmod > 4:
        precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
        return f"numeric({precision},{scale})"
    scalar = _SCALARS.get(oid)
    if scalar is not None:
        return scalar[0]
    element = _ARRAYS.get(oid)
    if element is not None:
        return _SCALARS[element][0] + "[]"
    return "text"


def parse_array(text: str, element: Converter) -> object:
    """A PostgreSQL array literal (``{1,2,NULL}``, nested, quoted) as nested lists.

    :raises ValueError: when ``text`` is not an array literal.
    """
    if text.startswith("["):  # explicit bounds, e.g. [0:2]={1,2,3}
        text = text[text.index("=") + 1 :]
    value, end = _parse_level(text, 0, element)
    if end != len(text):
        raise ValueError(f"unexpected text after array literal: {text[end:]!r}")
    return value


def _parse_level(text: str, pos: int, element: Converter) -> tuple[list[object], int]:
    if text[pos] != "{":
        raise ValueError(f"array literal must start with '{{': {text!r}")
    pos += 1
    items: list[object] = []
    if text[pos] == "}":
        return items, pos + 1
    while True:
        char = text[pos]
        if char == "{":
            nested, pos = _parse_level(text, pos, element)
            items.append(nested)
        elif char == '"':
            raw, pos = _read_quoted(text, pos)
            items.append(element(raw.encode()))
        else:
            raw, pos = _read_bare(text, pos)
            items.append(None if raw.upper() == "NULL" else element(raw.encode()))
        if text[pos] == "}":
            return items, pos + 1
        if text[pos] != ",":
            raise ValueError(f"expected ',' or '}}' at {pos} in array literal {text!r}")
        pos += 1


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    pos += 1
    while text[pos] != '"':
        if text[pos] == "\\":
            pos += 1
        out.append(text[pos])
        pos += 1
    return "".join(out), pos + 1


def _read_bare(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    while text[pos] not in ",}":
        if text[pos] == "\\":
            pos += 1
        out.append(text[pos])
        pos += 1
    return "".join(out).strip(), pos


def pg_text(value: object, *, json: bool = False) -> str | None:
    """``value`` in a PostgreSQL text form that a cast from ``text`` accepts.

    The inverse of the converters, for writing: ``None`` stays ``None``.

    :param json: the target column is ``json``/``jsonb``: encode as JSON (a ``str``
        becomes a JSON string, as the decoder parsed it from one).
    """
    if value is None:
        return None
    if value is JSON_NULL:
        return "null"
    if type(value) is JsonText:
        return value
    if json:
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        return _FLOATS.get(repr(value), repr(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return _array_literal(value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)


_FLOATS: Final = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def _array_literal(items: list[object] | tuple[object, ...]) -> str:
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list | tuple):
            parts.append(_array_literal(item))
        else:
            text = pg_text(item) or ""
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def text_writer(sql_type: str) -> Callable[[object], str | None]:
    """A fast :func:`pg_text` for values bound for a column of ``sql_type``.

    It takes the short way for the Python type the decoder produces for that
    column type, and falls back to :func:`pg_text` for anything else.
    """
    base = sql_type.split("(", 1)[0].strip()
    if base in ("json", "jsonb"):
        return _write_json
    if base in ("json[]", "jsonb[]"):
        return _write_json_array
    if base in _TEXT_TYPES:
        return lambda value: value if type(value) is str else pg_text(value)
    if base in ("integer", "bigint", "smallint"):
        return lambda value: str(value) if type(value) is int else pg_text(value)
    if base in ("timestamp with time zone", "timestamp without time zone", "date"):
        return _cached_isoformat()
    if base in ("double precision", "real"):
        return _write_float
    return pg_text


def _write_json(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is JsonText:
        return value
    if value is JSON_NULL:
        return "null"
    return orjson.dumps(value).decode()


def _write_json_array(value: object) -> str | None:
    """A ``json[]`` value: its items are JSON values (``[]`` is an element, not a dimension)."""
    if not isinstance(value, list | tuple):
        return pg_text(value)
    parts = []
    for item in value:
        text = _write_json(item)
        parts.append(
            "NULL" if text is None else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        )
    return "{" + ",".join(parts) + "}"


def _write_float(value: object) -> str | None:
    if type(value) is float:
        text = repr(value)
        return _FLOATS.get(text, text)
    return pg_text(value)


_TEXT_TYPES: Final = frozenset({"text", "character varying", "character", "name", "uuid"})


def _cached_isoformat() -> Callable[[object], str | None]:
    last: list[object] = [None, None]

    def write(value: object) -> str | None:
        if value is last[0]:
            return last[1]  # type: ignore[return-value]
        text = value.isoformat() if isinstance(value, dt.date) else pg_text(value)
        last[0], last[1] = value, text
        return text

    return write
