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
from typing import Final, Generic, TypeVar

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

K = TypeVar("K")
V = TypeVar("V")


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

    __slots__ = ("_connector", "_database", "_head", "_name", "_tail", "with_schema")

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
        self._head = _Part(self._source_head)
        self._tail = _Part(self._source_tail)

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
        # Only the rows and the LSN are the event's own: the rest of the envelope is the
        # same for the events of one transaction and table, and is kept as bytes.
        lsn = event.lsn
        head = self._head((event.commit_time, event.op == "r"))
        tail = self._tail((event.schema, event.table, event.xid, event.op, processed_at))
        return b"".join(
            (
                b'{"before":',
                _row(event.before),
                b',"after":',
                _row(event.after),
                head,
                _NO_SEQUENCE if lsn is None else b'"[null,\\"%d\\"]"' % lsn,
                tail[0],
                b"null" if lsn is None else b"%d" % lsn,
                tail[1],
            )
        )

    def _source_head(self, key: tuple[dt.datetime | None, bool]) -> bytes:
        """The ``source`` block up to its ``sequence``, for a commit time and snapshot flag."""
        when, snapshot = key
        head = {
            "version": _version(),
            "connector": self._connector,
            "name": self._name,
            **_debezium_times(_epoch_micros(when)),
            "snapshot": "true" if snapshot else "false",
            "db": self._database,
        }
        return b',"source":' + orjson.dumps(head)[:-1] + b',"sequence":'

    def _source_tail(
        self, key: tuple[str, str, int | None, str, dt.datetime]
    ) -> tuple[bytes, bytes]:
        """The envelope after ``sequence`` (up to and after the LSN), for a table, a
        transaction, an operation and an encoding time."""
        schema, table, xid, op, processed_at = key
        mid = orjson.dumps({"schema": schema, "table": table, "txId": xid})
        end = {"transaction": None, "op": op, **_debezium_times(_epoch_micros(processed_at))}
        return (
            b"," + mid[1:-1] + b',"lsn":',
            b',"xmin":null},' + orjson.dumps(end)[1:],
        )

    def key(self, event: ChangeEvent, key: Mapping[str, object]) -> bytes:
        """``key`` of ``event``'s row: the bare object, or with its schema when asked."""
        if self.with_schema:
            return orjson.dumps(encode_debezium_key(event, key, name=self._name))
        return orjson.dumps(key, default=_to_json, option=_AS_DEBEZIUM)


class _Part(Generic[K, V]):
    """A part of the envelope made by ``make`` from a key, kept for the next event with the
    same key: a transaction's events share their commit time, a batch its encoding time."""

    __slots__ = ("key", "make", "part")

    def __init__(self, make: Callable[[K], V]) -> None:
        self.make = make
        self.key: K | None = None
        self.part: V | None = None

    def __call__(self, key: K) -> V:
        part = self.part
        if part is None or key != self.key:
            self.key, self.part = key, part = key, self.make(key)
        return part


# Dates, times and dataclasses go to _to_json like every type JSON lacks, so that they are
# written as encode_debezium writes them; keys that are no strings are str()'d as there.
_AS_DEBEZIUM: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
)
_NO_SEQUENCE: Final = orjson.dumps("[null,null]")


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


def _row(row: Mapping[str, object] | None) -> bytes:
    return orjson.dumps(row, default=_to_json, option=_AS_DEBEZIUM)
