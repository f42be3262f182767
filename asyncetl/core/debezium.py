"""Debezium envelopes as JSON bytes, for sinks that send many change events.

:class:`DebeziumEncoder` writes the bytes of ``orjson.dumps`` of
:func:`~asyncetl.core.changes.encode_debezium` (and of its key), computing what
every event shares once and handing rows to orjson as they are.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping
from typing import Final

import orjson

from asyncetl.core.batch import JsonValue
from asyncetl.core.changes import (
    ChangeEvent,
    _debezium_times,
    _epoch_micros,
    _json_value,
    _version,
    encode_debezium,
    encode_debezium_key,
)

__all__ = ["DebeziumEncoder"]


class DebeziumEncoder:
    """Debezium envelopes and keys as JSON bytes, for a stream of events.

    The bytes are those of ``orjson.dumps`` of :func:`encode_debezium` and
    :func:`encode_debezium_key`, made faster for many events: what every event
    shares (the ``source`` block's constants, the times of one transaction and of
    one batch) is computed once, and rows go to orjson as they are, their values
    that JSON has no type for converted as :func:`encode_debezium` converts them.

    :param connector: written to ``source.connector``.
    :param name: written to ``source.name`` (Debezium's topic prefix).
    :param database: written to ``source.db``.
    :param with_schema: write the ``schema`` section beside each payload.
    """

    __slots__ = ("_commit", "_connector", "_database", "_name", "_processed", "with_schema")

    def __init__(
        self,
        *,
        connector: str = "postgresql",
        name: str = "asyncetl",
        database: str = "",
        with_schema: bool = False,
    ) -> None:
        self._connector, self._name, self._database = connector, name, database
        self.with_schema = with_schema
        self._commit, self._processed = _Times(), _Times()

    def envelope(self, event: ChangeEvent, processed_at: dt.datetime) -> bytes:
        """The envelope of ``event``, encoded at ``processed_at``.

        :raises TypeError: a value JSON cannot hold (orjson's error).
        """
        if self.with_schema:
            typed = encode_debezium(
                event,
                connector=self._connector,
                name=self._name,
                database=self._database,
                processed_at=processed_at,
                with_schema=True,
            )
            return orjson.dumps(typed)
        lsn = event.lsn
        source = {
            "version": _version(),
            "connector": self._connector,
            "name": self._name,
            **self._commit(event.commit_time),
            "snapshot": "true" if event.op == "r" else "false",
            "db": self._database,
            "sequence": "[null,null]" if lsn is None else f'[null,"{lsn}"]',
            "schema": event.schema,
            "table": event.table,
            "txId": event.xid,
            "lsn": lsn,
            "xmin": None,
        }
        doc: dict[str, object] = {
            "before": event.before,
            "after": event.after,
            "source": source,
            "transaction": None,
            "op": event.op,
            **self._processed(processed_at),
        }
        return orjson.dumps(doc, default=_to_json, option=_AS_DEBEZIUM)

    def key(self, event: ChangeEvent, key: Mapping[str, object]) -> bytes:
        """``key`` of ``event``'s row: the bare object, or with its schema when asked."""
        if self.with_schema:
            return orjson.dumps(encode_debezium_key(event, key, name=self._name))
        return orjson.dumps(key, default=_to_json, option=_AS_DEBEZIUM)


class _Times:
    """Debezium's ``ts_ms``/``ts_us``/``ts_ns`` of a time, kept for the next event with the
    same one: a transaction's events share their commit time, a batch its encoding time."""

    __slots__ = ("times", "when")

    def __init__(self) -> None:
        self.when: dt.datetime | None = None
        self.times = _debezium_times(None)

    def __call__(self, when: dt.datetime | None) -> dict[str, JsonValue]:
        if when is not self.when:
            self.when, self.times = when, _debezium_times(_epoch_micros(when))
        return self.times


# Dates, times and dataclasses go to _to_json like every type JSON lacks, so that they are
# written as encode_debezium writes them; keys that are no strings are str()'d as there.
_AS_DEBEZIUM: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
)


# The commonest types that JSON lacks, by exact type: a lookup instead of _json_value's
# isinstance chain, with the same results.
_BY_TYPE: Final[dict[type, Callable[[object], JsonValue]]] = {
    dt.datetime: dt.datetime.isoformat,  # type: ignore[dict-item]
    dt.date: dt.date.isoformat,  # type: ignore[dict-item]
    dt.time: dt.time.isoformat,  # type: ignore[dict-item]
    decimal.Decimal: str,
    uuid.UUID: str,
}


def _to_json(value: object) -> JsonValue:
    convert = _BY_TYPE.get(type(value))
    return convert(value) if convert is not None else _json_value(value)
