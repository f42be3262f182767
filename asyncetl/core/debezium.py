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
from typing import Final, TypeAlias

import orjson

from asyncetl.core.batch import JsonValue
from asyncetl.core.changes import (
    ChangeEvent,
    JsonText,
    _debezium_times,
    _epoch_micros,
    _json_value,
    _version,
    encode_debezium,
    encode_debezium_key,
)

__all__ = ["DebeziumEncoder"]

#: What the events of one run of an envelope's shared parts have in common: commit LSN,
#: commit time, operation, transaction, table and schema.
_Shared: TypeAlias = tuple[int | None, dt.datetime | None, str, int | None, str, str]


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

    __slots__ = (
        "_connector",
        "_database",
        "_name",
        "_processed_at",
        "_shared",
        "_source",
        "with_schema",
    )

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
        # The parts of the last envelope that its next events share, and what they are of.
        self._shared: _Shared | None = None
        self._processed_at: dt.datetime | None = None
        self._source = b""

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
        # Only the rows are the event's own: the rest of the envelope is the same for the
        # events of one transaction, table and operation, encoded at one time, and is
        # kept as bytes.
        shared = (event.lsn, event.commit_time, event.op, event.xid, event.table, event.schema)
        if shared != self._shared or processed_at is not self._processed_at:
            self._source = self._source_block(shared, processed_at)
            self._shared, self._processed_at = shared, processed_at
        return b"".join(
            (b'{"before":', _row(event.before), b',"after":', _row(event.after), self._source)
        )

    def _source_block(self, shared: _Shared, processed_at: dt.datetime) -> bytes:
        """The envelope after ``after``, for a transaction, operation and table encoded at
        ``processed_at``."""
        lsn, when, op, xid, table, schema = shared
        if lsn is None:
            sequence, number = _NO_SEQUENCE, b"null"
        else:
            number = b"%d" % lsn
            sequence = b'"[null,\\"' + number + b'\\"]"'
        middle, end = self._source_tail(schema, table, xid, op, processed_at)
        return self._source_head(when, op == "r") + sequence + middle + number + end

    def _source_head(self, when: dt.datetime | None, snapshot: bool) -> bytes:
        """The ``source`` block up to its ``sequence``, for a commit time and snapshot flag."""
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
        self, schema: str, table: str, xid: int | None, op: str, processed_at: dt.datetime
    ) -> tuple[bytes, bytes]:
        """The envelope after ``sequence`` (up to and after the LSN), for a table, a
        transaction, an operation and an encoding time."""
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


# Dates, times and dataclasses go to _to_json like every type JSON lacks, so that they are
# written as encode_debezium writes them; keys that are no strings are str()'d as there.
_AS_DEBEZIUM: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
)
# orjson's own dates and times, for rows whose values it writes as isoformat() does.
_NATIVE_TIMES: Final = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
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

# Values orjson writes as encode_debezium does, or hands to _to_json, or refuses (a time
# with a zone: the row is then written the slow way). Not datetimes: orjson drops the
# seconds of a zone's offset that has them (an old date's local mean time, +00:09:21),
# where isoformat() keeps them.
_PLAIN: Final = frozenset(
    {
        str,
        JsonText,
        int,
        float,
        bool,
        type(None),
        decimal.Decimal,
        uuid.UUID,
        dt.date,
        dt.time,
        bytes,
    }
)
_DATETIME: Final = dt.datetime
_UTC: Final = dt.UTC


def _to_json(value: object) -> JsonValue:
    convert = _BY_TYPE.get(type(value))
    return convert(value) if convert is not None else _json_value(value)


def _row(row: Mapping[str, object] | None) -> bytes:
    if row is None:
        return b"null"
    # Handing each datetime to _to_json costs a Python call per value: orjson writes one
    # without a zone, or in UTC, exactly as isoformat() does, so rows whose datetimes
    # are all such (CDC's are), and that hold nothing nested, leave them to orjson.
    for value in row.values():
        if type(value) is _DATETIME:
            if value.tzinfo is not None and value.tzinfo is not _UTC:
                break
        elif type(value) not in _PLAIN:
            break
    else:
        try:
            return orjson.dumps(row, default=_to_json, option=_NATIVE_TIMES)
        except orjson.JSONEncodeError:
            pass  # a time with a zone, or a value JSON cannot hold: said below
    return orjson.dumps(row, default=_to_json, option=_AS_DEBEZIUM)
