"""Turning rejected records into dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.interfaces import DeadLetter, Reject

__all__ = ["dead_letters", "to_jsonable"]


def to_jsonable(value: object) -> JsonValue:
    """``value`` as plain JSON data; types JSON lacks (bytes, Decimal, sets…) become strings."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    encoded = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    result: JsonValue = orjson.loads(encoded)
    return result


def dead_letters(
    pipeline: str, stage: str, rejects: Sequence[Reject], position: Position
) -> list[DeadLetter]:
    """One dead letter per reject, stamped with the same time."""
    now = datetime.now(UTC)
    return [
        DeadLetter(
            pipeline=pipeline,
            stage=stage,
            error=str(reject.error) or type(reject.error).__name__,
            error_type=_qualified_name(type(reject.error)),
            record=to_jsonable(reject.record),
            position=position,
            time=now,
        )
        for reject in rejects
    ]


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
