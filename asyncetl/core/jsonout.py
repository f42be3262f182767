"""Values as JSON, for every sink that writes JSON: one rule for the values JSON lacks.

Bytes become base64 text, as Kafka Connect writes them in JSON; any other value
JSON has no type for (a decimal, a UUID, a date…) becomes its ``str``. Python's
``repr`` of bytes (``"b'\\x00'"``) was what ``default=str`` wrote before: no
reader could turn it back into the bytes.
"""

from __future__ import annotations

import base64
import json

import orjson

__all__ = ["json_default", "json_text"]


def json_default(value: object) -> object:
    """orjson's and :func:`json.dumps`'s ``default``: what to write for ``value``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def json_text(value: object) -> str:
    """``value`` as JSON text, keys that are not strings as their text.

    orjson first; :func:`json.dumps` for what orjson refuses (an integer beyond 64 bits).
    """
    try:
        return orjson.dumps(value, json_default, orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=json_default, ensure_ascii=False)
