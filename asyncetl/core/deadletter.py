"""Turning rejected records into dead letters.

A refused record is stored as JSON. One that JSON cannot hold (nested deeper
than the encoder goes, an integer past 64 bits, a string with a lone surrogate)
is stored all the same, as its Python repr under :data:`UNENCODABLE` with the
reason, so the letter keeps record, error, stage and position and the run goes
on; such a letter cannot be replayed, only read.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.interfaces import DeadLetter, Reject

__all__ = [
    "UNENCODABLE",
    "dead_letters",
    "deep_repr",
    "is_unencodable",
    "keyed",
    "printable",
    "to_jsonable",
    "unencodable",
]

#: The key of a record stored as text: ``{UNENCODABLE: repr, "reason": why}``.
UNENCODABLE = "asyncetl_unencodable_record"


def to_jsonable(value: object) -> JsonValue:
    """``value`` as plain JSON data; types JSON lacks (bytes, Decimal, sets…) become strings.

    A value JSON cannot hold at all becomes its repr and the reason (:func:`unencodable`).
    A :class:`~asyncetl.core.changes.ChangeEvent` becomes its :meth:`~asyncetl.core.changes.
    ChangeEvent.to_json`, which replay turns back into the event (:func:`~asyncetl.core.
    changes.revive`), bytes, json text and declared columns included.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, ChangeEvent):
        value = value.to_json()
    try:
        encoded = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError: too deep, too big, not UTF-8
        return unencodable(value, str(exc))
    result: JsonValue = orjson.loads(encoded)
    return result


def unencodable(value: object, reason: str) -> JsonValue:
    """``value``, which JSON cannot hold, as text: its Python repr, and why."""
    return {UNENCODABLE: printable(deep_repr(value)), "reason": printable(reason)}


def is_unencodable(record: JsonValue) -> bool:
    """Whether ``record`` is what :func:`unencodable` stored instead of a record."""
    return isinstance(record, dict) and set(record) == {UNENCODABLE, "reason"}


def printable(text: str) -> str:
    """``text`` as every store takes it: lone surrogates and NUL written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class _Text(str):
    """A piece of :func:`deep_repr`'s output, as opposed to a value still to show."""


def deep_repr(value: object) -> str:
    """``repr(value)`` for dicts, lists and tuples nested at any depth (no recursion).

    A container met again inside itself is shown as ``[...]`` (or ``{...}``), as ``repr`` does.
    """
    out: list[str] = []
    todo: list[object] = [value]
    open_ids: list[int] = []
    while todo:
        item = todo.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif item is _CLOSE:
            open_ids.pop()
        elif isinstance(item, dict | list | tuple) and id(item) in open_ids:
            out.append(
                "[...]"
                if isinstance(item, list)
                else "{...}"
                if isinstance(item, dict)
                else "(...)"
            )
        elif isinstance(item, dict | list | tuple):
            open_ids.append(id(item))
            todo.append(_CLOSE)
            todo.extend(reversed(_pieces(item)))
        else:
            out.append(repr(item))
    return "".join(out)


_CLOSE = object()


def _again(container: object) -> str:
    """How ``repr`` shows a container inside itself."""
    if isinstance(container, list):
        return "[...]"
    return "{...}" if isinstance(container, dict) else "(...)"


def _pieces(container: dict[object, object] | list[object] | tuple[object, ...]) -> list[object]:
    if isinstance(container, dict):
        opening, closing = "{", "}"
        items: list[object] = []
        for key, item in container.items():
            items += [_Text(", "), _Text(f"{key!r}: "), item]
    else:
        opening, closing = ("[", "]") if isinstance(container, list) else ("(", ")")
        items = []
        for item in container:
            items += [_Text(", "), item]
        if isinstance(container, tuple) and len(container) == 1:
            closing = ",)"
    return [_Text(opening), *items[1:], _Text(closing)]


def dead_letters(
    pipeline: str, stage: str, rejects: Sequence[Reject], position: Position
) -> list[DeadLetter]:
    """One dead letter per reject, stamped with the same time."""
    now = datetime.now(UTC)
    return [
        DeadLetter(
            pipeline=pipeline,
            stage=stage,
            error=printable(str(reject.error) or type(reject.error).__name__),
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
