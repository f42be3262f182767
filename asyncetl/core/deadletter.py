"""Turning rejected records into dead letters."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.interfaces import DeadLetter, Reject

__all__ = ["dead_letters", "keyed", "to_jsonable"]


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


def keyed(letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """``letters`` (all of one batch) with their idempotency keys.

    A key digests the pipeline, the stage, the position, the raw record and
    its ordinal among identical records of that stage and position in the
    batch: the same batch read again after a crash or a checkpoint reset gives
    the same keys, and two identical bad records give two letters.
    """
    seen: Counter[tuple[str, str, str, str]] = Counter()
    result: list[DeadLetter] = []
    for letter in letters:
        record = hashlib.sha256(_canonical(letter.record)).hexdigest()
        where = (letter.pipeline, letter.stage, _canonical(letter.position).decode(), record)
        ordinal = seen[where]
        seen[where] += 1
        identity = orjson.dumps([*where, ordinal])
        result.append(replace(letter, key=hashlib.sha256(identity).hexdigest()))
    return result


def _canonical(value: JsonValue) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
