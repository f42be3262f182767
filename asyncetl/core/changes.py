"""Change events (CDC) and the Debezium envelope.

A :class:`ChangeEvent` is one row-level change read from a database's change
stream: an insert, update, delete, truncate, or a row read by an initial
snapshot. Several connectors produce and consume them, so the type lives in
core; nothing here knows about any particular database. A position in a
database's log (:attr:`ChangeEvent.lsn`) is an integer, as in Debezium's
``source.lsn``; how a database writes it as text is its connector's business.

Operations use Debezium's letters::

    c  create (insert)      u  update      d  delete
    r  read (snapshot row)  t  truncate

Values that the source did not send because they are unchanged out-of-line
(TOAST) values are :data:`UNCHANGED`, never ``None``: a sink must leave those
columns alone. A ``json``/``jsonb`` value that is JSON ``null`` is
:data:`JSON_NULL`, so that it stays apart from SQL ``NULL`` (``None``). A
source that has a JSON value's exact text (key order, spacing, the scale of
its numbers) gives it as :class:`JsonText`, as Debezium gives json as a string.

:func:`encode_debezium` and :func:`decode_debezium` translate to and from the
Debezium JSON envelope (``before``, ``after``, ``op``, ``source``, ``ts_ms``), with the
fields of Debezium's PostgreSQL connector.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import decimal
import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final, Literal, TypeAlias, cast

import orjson

from asyncetl.core._connect_schema import envelope_schema, key_schema, typed_row
from asyncetl.core.batch import JsonValue
from asyncetl.core.errors import ConfigError

__all__ = [
    "JSON_NULL",
    "UNCHANGED",
    "ChangeEvent",
    "DeclaredColumns",
    "JsonNull",
    "JsonText",
    "Op",
    "Unchanged",
    "decode_debezium",
    "encode_debezium",
    "encode_debezium_key",
    "revive",
]

#: Debezium's operation letters.
Op: TypeAlias = Literal["c", "u", "d", "r", "t"]
OPS: Final = ("c", "u", "d", "r", "t")

#: The placeholder Debezium writes for values it did not receive.
DEBEZIUM_UNAVAILABLE: Final = "__debezium_unavailable_value"

Row: TypeAlias = dict[str, object]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)


class Unchanged:
    """The type of :data:`UNCHANGED`: a column value that was not sent because it did not change."""

    __slots__ = ()
    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __str__(self) -> str:
        return DEBEZIUM_UNAVAILABLE

    def __reduce__(self) -> str:
        return "UNCHANGED"


#: Marks an unchanged out-of-line (TOAST) value in :attr:`ChangeEvent.after`.
UNCHANGED: Final = Unchanged()


class JsonNull:
    """The type of :data:`JSON_NULL`: a json value that is JSON ``null``, not SQL ``NULL``."""

    __slots__ = ()
    _instance: JsonNull | None = None

    def __new__(cls) -> JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "JSON_NULL"

    def __str__(self) -> str:
        return "null"

    def __reduce__(self) -> str:
        return "JSON_NULL"


#: A ``json``/``jsonb`` column holding JSON ``null`` (``None`` is SQL ``NULL``).
JSON_NULL: Final = JsonNull()

#: How the markers are written beside a schema.
_MARKERS: Final = {id(UNCHANGED): DEBEZIUM_UNAVAILABLE, id(JSON_NULL): "null"}


class JsonText(str):
    """A JSON value as its exact text, as the database keeps it: ``json`` keeps key order,
    duplicate keys and spacing, ``jsonb`` the scale of its numbers (``1.50``). A ``str``
    (``json.loads`` it for Python values); a sink writing to a json column writes the text
    as it is, where a plain ``str`` would be a JSON string."""

    __slots__ = ()


class DeclaredColumns(dict[str, str]):
    """:attr:`ChangeEvent.columns` as a message's schema declares them (Debezium's Connect
    schema), not as the source database has them: each the type that holds the values
    (``string`` → ``text``, whatever the source's length), so a sink may create a table
    from them, but not read a change of the source's column types from them."""

    __slots__ = ()


_JSON_TYPES: Final = frozenset({"json", "jsonb"})


@dataclass(slots=True)
class ChangeEvent:
    """One row-level change, or one row of an initial snapshot.

    Treat it as immutable. (It is not frozen only because frozen dataclasses
    are several times slower to create, and a CDC source makes hundreds of
    thousands per second.)

    :param op: ``c``, ``u``, ``d``, ``r`` (snapshot read) or ``t`` (truncate).
    :param schema: the table's schema (namespace).
    :param table: the table's name.
    :param key: the row's identity (primary key or replica identity columns),
        or ``None`` for a truncate or a table without one.
    :param before: the old row when the source sent it (deletes, and updates
        under a full replica identity); old key values only otherwise.
    :param after: the new row for ``c``, ``u`` and ``r``; may hold :data:`UNCHANGED`.
    :param lsn: the commit LSN of the change's transaction (``None`` for snapshot rows).
    :param seq: the change's ordinal within its transaction, from 0.
    :param commit_time: the transaction's commit time (UTC).
    :param xid: the transaction id.
    :param columns: column name → SQL type, in table order, when known.
    :param key_columns: the names of the key columns, in table order; none when the source
        identifies rows by their whole old row (PostgreSQL's ``REPLICA IDENTITY FULL``:
        ``key`` then holds every column, but they are no primary key).
    :param origin: the replication origin the transaction came from, if any.
    :param options: extra flags, e.g. ``cascade`` and ``restart_identity`` for truncates.
    """

    op: Op
    schema: str
    table: str
    key: Row | None = None
    before: Row | None = None
    after: Row | None = None
    lsn: int | None = None
    seq: int = 0
    commit_time: dt.datetime | None = None
    xid: int | None = None
    columns: Mapping[str, str] | None = field(default=None, compare=False)
    key_columns: tuple[str, ...] = ()
    origin: str | None = None
    options: Mapping[str, bool] | None = None

    @property
    def qualified_table(self) -> str:
        """``schema.table``, unquoted."""
        return f"{self.schema}.{self.table}"

    @property
    def unchanged(self) -> frozenset[str]:
        """Columns of :attr:`after` that hold :data:`UNCHANGED`."""
        if not self.after:
            return frozenset()
        return frozenset(name for name, value in self.after.items() if value is UNCHANGED)

    def to_json(self) -> dict[str, JsonValue]:
        """This event as plain JSON data (for dead letters); :meth:`from_json` reverses it.

        Bytes are base64 and a json column's JSON ``null`` is ``"null"``, read back by the
        column's type; ``columns_declared`` says the columns are :class:`DeclaredColumns`.
        """
        return {
            "op": self.op,
            "schema": self.schema,
            "table": self.table,
            "key": _letter_row(self.key),
            "before": _letter_row(self.before),
            "after": _letter_row(self.after),
            "lsn": self.lsn,
            "seq": self.seq,
            "commit_time": self.commit_time.isoformat() if self.commit_time else None,
            "xid": self.xid,
            "columns": dict(self.columns) if self.columns is not None else None,
            "columns_declared": isinstance(self.columns, DeclaredColumns),
            "key_columns": list(self.key_columns),
            "origin": self.origin,
            "options": dict(self.options or {}),
        }

    @classmethod
    def from_json(cls, data: JsonValue) -> ChangeEvent:
        """The event that :meth:`to_json` produced ``data`` from.

        Values come back as JSON types (decimals and timestamps as strings), but for
        bytea columns (bytes) and json columns (:class:`JsonText`); ``lsn`` may be a
        number or a string of digits. Data without ``columns_declared`` is what dead
        letters held before it was written (orjson's encoding of the dataclass, bytes
        as their repr): its columns are read as the source's.

        :raises ConfigError: when ``data`` is not such a document.
        """
        doc = _expect_dict(data, "change event")
        op = doc.get("op")
        if op not in OPS:
            raise ConfigError(f"change event has op {op!r}; expected one of {', '.join(OPS)}")
        when = doc.get("commit_time")
        columns = _letter_columns(doc)
        read = _RowReader(columns or {}, legacy="columns_declared" not in doc)
        return cls(
            op=op,
            schema=str(doc.get("schema", "")),
            table=str(doc.get("table", "")),
            key=read(doc.get("key")),
            before=read(doc.get("before")),
            after=read(doc.get("after")),
            lsn=_lsn(doc.get("lsn"), "change event"),
            seq=int(cast(int, doc.get("seq") or 0)),
            commit_time=dt.datetime.fromisoformat(when) if isinstance(when, str) else None,
            xid=cast(int | None, doc.get("xid")),
            columns=columns,
            key_columns=tuple(str(c) for c in cast(list[str], doc.get("key_columns") or [])),
            origin=cast(str | None, doc.get("origin")),
            options={
                str(k): bool(v)
                for k, v in _expect_dict(doc.get("options") or {}, "options").items()
            },
        )


#: The keys of :meth:`ChangeEvent.to_json`'s form; ``columns_declared`` is missing from
#: letters stored before it was written.
_EVENT_KEYS: Final = frozenset(f.name for f in fields(ChangeEvent))
_LETTER_KEYS: Final = _EVENT_KEYS | {"columns_declared"}


def revive(record: JsonValue) -> object:
    """The change event a dead letter's ``record`` holds (:meth:`ChangeEvent.to_json`'s
    form, or orjson's encoding of the dataclass in letters stored before), else ``record``.

    :raises ConfigError: when ``record`` has an event's keys but is no event.
    """
    if isinstance(record, dict) and _EVENT_KEYS <= record.keys() <= _LETTER_KEYS:
        return ChangeEvent.from_json(record)
    return record


def _letter_columns(doc: Mapping[str, object]) -> dict[str, str] | None:
    columns = doc.get("columns")
    if not isinstance(columns, dict):
        return None
    named = ((str(k), str(v)) for k, v in columns.items())
    # A message's schema, not the source's DDL: apart, or a sink would read a change of
    # the source's column types from them (see DeclaredColumns).
    return DeclaredColumns(named) if doc.get("columns_declared") is True else dict(named)


# -- Debezium --------------------------------------------------------------------


def encode_debezium(
    event: ChangeEvent,
    *,
    connector: str = "postgresql",
    name: str = "asyncetl",
    database: str = "",
    processed_at: dt.datetime | None = None,
    with_schema: bool = False,
) -> dict[str, JsonValue]:
    """The Debezium JSON envelope (payload only, no schema) of ``event``, as Debezium writes it.

    The ``source`` block has Debezium's fields for PostgreSQL: ``version``,
    ``connector``, ``name``, ``ts_ms``/``ts_us``/``ts_ns`` (the commit time),
    ``snapshot`` (``"true"`` for snapshot rows, else ``"false"``), ``db``,
    ``sequence`` (``[last commit LSN, LSN]`` as text; the first is not tracked
    here, so ``null``), ``schema``, ``table``, ``txId``, numeric ``lsn`` and
    ``xmin``. The envelope's own ``ts_ms``/``ts_us``/``ts_ns`` say when the event
    was encoded. Timestamps in rows become ISO strings, decimals strings, bytes
    base64, unchanged TOAST values Debezium's ``__debezium_unavailable_value``.

    :param connector: written to ``source.connector``.
    :param name: written to ``source.name`` (Debezium's topic prefix).
    :param database: written to ``source.db``, the database the change came from.
    :param processed_at: the envelope's time; now when not given.
    :param with_schema: wrap the payload as the JSON converter does with
        ``schemas.enable``: ``{"schema": …, "payload": …}``, row values then written
        as Debezium types them (dates as days, timestamps as microseconds, decimals
        as ``VariableScaleDecimal``, JSON as text; see the ``schema`` section).
    """
    committed = _epoch_micros(event.commit_time)
    processed = _epoch_micros(processed_at or dt.datetime.now(dt.UTC))
    source: dict[str, JsonValue] = {
        "version": _version(),
        "connector": connector,
        "name": name,
        **_debezium_times(committed),
        "snapshot": "true" if event.op == "r" else "false",
        "db": database,
        "sequence": orjson.dumps([None, None if event.lsn is None else str(event.lsn)]).decode(),
        "schema": event.schema,
        "table": event.table,
        "txId": event.xid,
        "lsn": event.lsn,
        "xmin": None,
    }
    if not with_schema:
        return {
            "before": _debezium_row(event.before),
            "after": _debezium_row(event.after),
            "source": source,
            "transaction": None,
            "op": event.op,
            **_debezium_times(processed),
        }
    payload = {
        "before": typed_row(event.before, _MARKERS),
        "after": typed_row(event.after, _MARKERS),
        "source": source,
        "transaction": None,
        "op": event.op,
        **_debezium_times(processed),
    }
    rows = [_unmarked(row) for row in (event.before, event.after) if row is not None]
    topic = f"{name}.{event.schema}.{event.table}"
    return {"schema": envelope_schema(rows, event.columns, topic), "payload": payload}


def encode_debezium_key(
    event: ChangeEvent, key: Mapping[str, object], *, name: str = "asyncetl"
) -> dict[str, JsonValue]:
    """``key`` of ``event``'s row as the JSON converter writes it with ``schemas.enable``."""
    topic = f"{name}.{event.schema}.{event.table}"
    return {
        "schema": key_schema(key, event.columns, topic),
        "payload": typed_row(key, _MARKERS),
    }


def _unmarked(row: Row) -> Row:
    """``row`` with markers as ``None``: they say nothing of a column's type."""
    return {k: None if v is UNCHANGED or v is JSON_NULL else v for k, v in row.items()}


def _debezium_times(micros: int | None) -> dict[str, JsonValue]:
    if micros is None:
        return {"ts_ms": None, "ts_us": None, "ts_ns": None}
    return {"ts_ms": micros // 1000, "ts_us": micros, "ts_ns": micros * 1000}


def _epoch_micros(when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - _EPOCH) // _MICROSECOND


@functools.cache
def _version() -> str:
    """asyncetl's version, where Debezium writes its own (``source.version``)."""
    # Imported here, when the first Debezium envelope is written: importlib.metadata (with
    # zipfile and email) would otherwise add tens of milliseconds to every start.
    import importlib.metadata

    try:
        return f"asyncetl-{importlib.metadata.version('asyncetl')}"
    except importlib.metadata.PackageNotFoundError:
        return "asyncetl"


def decode_debezium(message: bytes | str | Mapping[str, object]) -> ChangeEvent:
    """The change event in a Debezium envelope, with or without its ``schema`` wrapper.

    ``source.lsn`` becomes :attr:`ChangeEvent.lsn` and ``source.ts_us`` (or
    ``source.ts_ms``, or ``ts_ms``) the commit time; ``__debezium_unavailable_value`` becomes
    :data:`UNCHANGED`. Values keep their JSON types.

    :raises ConfigError: when the message is not a Debezium change event.
    """
    doc = _load(message)
    if "payload" in doc and "op" not in doc:
        doc = _expect_dict(doc["payload"], "Debezium payload")
    op = doc.get("op")
    if op not in OPS:
        raise ConfigError(f"Debezium message has op {op!r}; expected one of {', '.join(OPS)}")
    source = _expect_dict(doc.get("source") or {}, "Debezium source block")
    before = _undebezium_row(doc.get("before"))
    after = _undebezium_row(doc.get("after"))
    lsn = source.get("lsn")
    return ChangeEvent(
        op=op,
        schema=str(source.get("schema", "")),
        table=str(source.get("table", "")),
        before=before,
        after=after,
        lsn=_lsn(lsn, "Debezium source block"),
        seq=_debezium_seq(source.get("sequence")),
        commit_time=_commit_time(source, doc),
        xid=source.get("txId") if isinstance(source.get("txId"), int) else None,  # type: ignore[arg-type]
    )


# -- helpers ---------------------------------------------------------------------


def _json_value(value: object) -> JsonValue:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if value is UNCHANGED:
        return DEBEZIUM_UNAVAILABLE
    if value is JSON_NULL:
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def _json_row(row: Row | None) -> JsonValue:
    return None if row is None else {name: _json_value(value) for name, value in row.items()}


_debezium_row = _json_row


def _unjson_row(
    value: JsonValue | object, json_columns: frozenset[str] = frozenset()
) -> Row | None:
    """A row back from JSON data; a str in a json column (``json_columns``) is its
    :class:`JsonText`, as the event held it."""
    if value is None:
        return None
    row = _expect_dict(value, "row")
    return {
        k: (
            UNCHANGED
            if v == DEBEZIUM_UNAVAILABLE
            else JsonText(v)
            if k in json_columns and isinstance(v, str)
            else v
        )
        for k, v in row.items()
    }


def _letter_row(row: Row | None) -> JsonValue:
    """:func:`_json_row`, but a json column's JSON ``null`` as its text, not SQL ``NULL``."""
    if row is None:
        return None
    return {name: "null" if v is JSON_NULL else _json_value(v) for name, v in row.items()}


class _RowReader:
    """Rows of :meth:`ChangeEvent.to_json` back, typed by their columns: a str in a json
    column is its :class:`JsonText`, in a bytea column its bytes (base64, or in a letter
    stored before :meth:`ChangeEvent.to_json` wrote them, the repr ``b'...'``)."""

    def __init__(self, columns: Mapping[str, str], *, legacy: bool) -> None:
        self.json = frozenset(k for k, v in columns.items() if v in _JSON_TYPES)
        self.bytea = frozenset(k for k, v in columns.items() if v == "bytea")
        self.legacy = legacy

    def __call__(self, value: object) -> Row | None:
        row = _unjson_row(value, self.json)
        if row is None or not self.bytea.intersection(row):
            return row
        return {k: self._bytes(v) if k in self.bytea else v for k, v in row.items()}

    def _bytes(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not self.legacy:
            return base64.b64decode(value, validate=True)
        if value[:2] in ("b'", 'b"'):
            # str() of bytes, which the dead-letter encoder fell back to before.
            try:
                found = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
            if isinstance(found, bytes):
                return found
        return value


_undebezium_row = _unjson_row


def _lsn(value: object, what: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.isdigit():
            raise ConfigError(f"{what} has lsn {value!r}; expected a number")
        return int(value)
    return None


def _commit_time(source: Mapping[str, object], doc: Mapping[str, object]) -> dt.datetime | None:
    """``source.ts_us`` (exact), else ``source.ts_ms``, else the envelope's ``ts_ms``."""
    micros = source.get("ts_us")
    if isinstance(micros, int) and not isinstance(micros, bool):
        return _EPOCH + micros * _MICROSECOND
    ts_ms = source.get("ts_ms", doc.get("ts_ms"))
    if isinstance(ts_ms, int | float) and not isinstance(ts_ms, bool):
        return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return None


def _debezium_seq(value: object) -> int:
    if isinstance(value, str):
        try:
            parts = orjson.loads(value)
        except orjson.JSONDecodeError:
            return 0
        if isinstance(parts, list) and parts and isinstance(parts[-1], int):
            return parts[-1]
    return 0


def _load(message: bytes | str | Mapping[str, object]) -> dict[str, object]:
    if isinstance(message, Mapping):
        return dict(message)
    try:
        doc = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"Debezium message is not valid JSON: {exc}") from exc
    return _expect_dict(doc, "Debezium message")


def _expect_dict(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value
