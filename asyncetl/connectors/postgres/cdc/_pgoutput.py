"""The pgoutput logical decoding protocol (version 1), decoded into change events.

Message layouts are those of PostgreSQL's "Logical Replication Message
Formats". The decoder keeps the Relation and Type messages it has seen, since
row messages refer to relations by OID only, and the current transaction's
Begin, whose commit LSN, time and xid every change of the transaction carries.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

from asyncetl.connectors.postgres._sql import quote_qualified
from asyncetl.connectors.postgres.cdc._values import Converter, converter, type_name
from asyncetl.core.changes import UNCHANGED, ChangeEvent, Op
from asyncetl.core.errors import PermanentError

__all__ = ["Begin", "Commit", "PgOutputDecoder", "Relation", "pg_time"]

_I16 = struct.Struct("!h").unpack_from
_I32 = struct.Struct("!i").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U64 = struct.Struct("!Q").unpack_from
_I64 = struct.Struct("!q").unpack_from
_BEGIN = struct.Struct("!QqI").unpack_from
_COMMIT = struct.Struct("!BQQq").unpack_from

_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
#: 2000-01-01 UTC in seconds since the Unix epoch.
_PG_EPOCH_S = 946_684_800


def pg_time(micros: int) -> dt.datetime:
    """A PostgreSQL protocol timestamp (microseconds since 2000-01-01 UTC) as a datetime."""
    # One microsecond times the count: building a timedelta from a count normalises it
    # through Python integers, nearly twice the work, and this runs once per transaction.
    return _PG_EPOCH + _MICROSECOND * micros


@dataclass(slots=True)
class Begin:
    """A transaction starts; ``final_lsn`` is its commit record's LSN."""

    final_lsn: int
    commit_time: dt.datetime
    xid: int
    #: ``commit_time`` as seconds since the Unix epoch.
    timestamp: float = 0.0


@dataclass(slots=True)
class Commit:
    """A transaction ends; ``end_lsn`` is where the next one can start (the position to confirm)."""

    commit_lsn: int
    end_lsn: int
    commit_time: dt.datetime


@dataclass(slots=True)
class Relation:
    """A table's shape as of the changes that follow."""

    oid: int
    schema: str
    table: str
    replica_identity: str
    names: tuple[str, ...]
    type_oids: tuple[int, ...]
    converters: tuple[Converter, ...]
    key_index: tuple[int, ...]
    columns: dict[str, str] = field(default_factory=dict)
    key_columns: tuple[str, ...] = ()
    identity_columns: tuple[str, ...] = ()
    pairs: tuple[tuple[str, Converter], ...] = ()
    #: The identity's one column, when it has exactly one (the events' key is made inline).
    key_name: str | None = None

    def __post_init__(self) -> None:
        # Under REPLICA IDENTITY FULL pgoutput flags every column as part of the identity:
        # the events' key is then the whole row, but that is no primary key (columns may be
        # NULL, rows may repeat), so the events name no key columns.
        self.identity_columns = tuple(self.names[i] for i in self.key_index)
        self.key_columns = () if self.replica_identity == "f" else self.identity_columns
        self.pairs = tuple(zip(self.names, self.converters, strict=True))
        self.key_name = self.identity_columns[0] if len(self.identity_columns) == 1 else None


class PgOutputDecoder:
    """Decodes pgoutput messages one at a time, in stream order."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self.type_names: dict[int, str] = {}
        self.begin: Begin | None = None
        self.origin: str | None = None
        self.seq = 0

    def decode(
        self, data: bytes, offset: int = 0
    ) -> Begin | Commit | Relation | ChangeEvent | list[ChangeEvent] | None:
        """Decode the pgoutput message at ``data[offset:]``; ``None`` if it has nothing to emit.

        :raises PermanentError: for a message this decoder does not understand.
        """
        kind = data[offset]
        if kind == 73:  # I
            return self.insert(data, offset + 1)
        if kind == 85:  # U
            return self.update(data, offset + 1)
        if kind == 68:  # D
            return self.delete(data, offset + 1)
        if offset:
            data = data[offset:]
        if kind == 66:  # B
            return self._begin(data)
        if kind == 67:  # C
            return self._commit(data)
        if kind == 82:  # R
            return self._relation(data)
        if kind == 84:  # T
            return self._truncate(data)
        if kind == 89:  # Y
            self._type(data)
            return None
        if kind == 79:  # O
            self.origin = _cstring(data, 9)[0]
            return None
        if kind == 77:  # M (logical message; only sent when asked for)
            return None
        raise PermanentError(
            f"unexpected pgoutput message type {chr(kind)!r}; "
            "use protocol version 1 without streaming"
        )

    # -- transaction boundaries ---------------------------------------------------

    def _begin(self, data: bytes) -> Begin:
        return self.begin_at(data, 1)

    def _commit(self, data: bytes) -> Commit:
        _flags, commit_lsn, end_lsn, micros = _COMMIT(data, 1)
        self.begin = None
        return Commit(commit_lsn, end_lsn, pg_time(micros))

    # The stream reads Begin and Commit in place too (``pos`` just after the type byte): a
    # transaction of a few changes would otherwise spend as long on its two boundaries,
    # copied out and turned into objects, as on its changes.

    def begin_at(self, data: bytes, pos: int) -> Begin:
        """A Begin message (``B``) at ``pos``: the transaction whose changes follow."""
        final_lsn, micros, xid = _BEGIN(data, pos)
        self.begin = begin = Begin(final_lsn, pg_time(micros), xid, micros / 1e6 + _PG_EPOCH_S)
        self.origin = None
        self.seq = 0
        return begin

    def commit_at(self, data: bytes, pos: int) -> tuple[int, float]:
        """A Commit message (``C``) at ``pos``: its end LSN and commit time (seconds since
        the Unix epoch), without making a :class:`Commit`."""
        _flags, _commit_lsn, end_lsn, micros = _COMMIT(data, pos)
        self.begin = None
        return end_lsn, micros / 1e6 + _PG_EPOCH_S

    # -- metadata ---------------------------------------------------------------------

    def _relation(self, data: bytes) -> Relation:
        (oid,) = _U32(data, 1)
        schema, pos = _cstring(data, 5)
        table, pos = _cstring(data, pos)
        identity = chr(data[pos])
        (count,) = _I16(data, pos + 1)
        pos += 3
        names: list[str] = []
        oids: list[int] = []
        key: list[int] = []
        columns: dict[str, str] = {}
        for index in range(count):
            flags = data[pos]
            name, pos = _cstring(data, pos + 1)
            (type_oid,) = _U32(data, pos)
            (typmod,) = _I32(data, pos + 4)
            pos += 8
            names.append(name)
            oids.append(type_oid)
            columns[name] = type_name(type_oid, typmod, self.type_names)
            if flags & 1:
                key.append(index)
        relation = Relation(
            oid,
            schema,
            table,
            identity,
            tuple(names),
            tuple(oids),
            tuple(converter(o) for o in oids),
            tuple(key),
            columns,
        )
        self.relations[oid] = relation
        return relation

    def _type(self, data: bytes) -> None:
        (oid,) = _U32(data, 1)
        schema, pos = _cstring(data, 5)
        name, _ = _cstring(data, pos)
        # For a domain pgoutput names its base type, and a type in pg_catalog by an empty
        # schema (e.g. ``int4`` or ``_text`` for a domain over ``int`` or ``text[]``).
        self.type_names[oid] = quote_qualified(schema or "pg_catalog", name)

    # -- rows ---------------------------------------------------------------------------

    # The row messages take ``pos``, the offset just after the message type byte,
    # so that the stream can decode them in place in the CopyData payload.

    def insert(self, data: bytes, pos: int) -> ChangeEvent:
        """An Insert message (``I``) at ``pos``."""
        relation = self.relations.get(_U32(data, pos)[0]) or self._relation_of(data, pos)
        after, _ = _row(data, pos + 5, relation)
        name = relation.key_name
        key = {name: after[name]} if name is not None else _key(relation, after)
        begin = self.begin
        if begin is None:
            return self._event("c", relation, key, None, after)
        seq = self.seq
        self.seq = seq + 1
        # Inlined _event (and _key, for a one-column key): inserts are the bulk of most streams.
        return ChangeEvent(
            "c",
            relation.schema,
            relation.table,
            key,
            None,
            after,
            begin.final_lsn,
            seq,
            begin.commit_time,
            begin.xid,
            relation.columns,
            relation.key_columns,
            self.origin,
        )

    def update(self, data: bytes, pos: int) -> ChangeEvent:
        """An Update message (``U``) at ``pos``."""
        relation = self.relations.get(_U32(data, pos)[0]) or self._relation_of(data, pos)
        pos += 4
        before: dict[str, object] | None = None
        kind = data[pos]
        if kind == 75 or kind == 79:  # K (old key) or O (old row)
            before, pos = _row(data, pos + 1, relation)
            if kind == 75:
                before = _key(relation, before)
        after, _ = _row(data, pos + 1, relation)
        name = relation.key_name
        key = {name: after[name]} if name is not None else _key(relation, after)
        begin = self.begin
        if begin is None:
            return self._event("u", relation, key, before, after)
        seq = self.seq
        self.seq = seq + 1
        # Inlined _event and _key, as in insert: updates are the other bulk of most streams.
        return ChangeEvent(
            "u",
            relation.schema,
            relation.table,
            key,
            before,
            after,
            begin.final_lsn,
            seq,
            begin.commit_time,
            begin.xid,
            relation.columns,
            relation.key_columns,
            self.origin,
        )

    def delete(self, data: bytes, pos: int) -> ChangeEvent:
        """A Delete message (``D``) at ``pos``."""
        relation = self._relation_of(data, pos)
        old, _ = _row(data, pos + 5, relation)
        key = _key(relation, old)
        return self._event("d", relation, key, old if data[pos + 4] == 79 else key, None)

    def _truncate(self, data: bytes) -> list[ChangeEvent]:
        (count,) = _I32(data, 1)
        flags = data[5]
        options = {"cascade": bool(flags & 1), "restart_identity": bool(flags & 2)}
        events = []
        for index in range(count):
            relation = self._relation_of(data, 6 + 4 * index)
            event = self._event("t", relation, None, None, None)
            event.options = options
            events.append(event)
        return events

    def _relation_of(self, data: bytes, pos: int) -> Relation:
        (oid,) = _U32(data, pos)
        try:
            return self.relations[oid]
        except KeyError:
            raise PermanentError(
                f"pgoutput sent a change for relation OID {oid} before its Relation message"
            ) from None

    def _event(
        self,
        op: Op,
        relation: Relation,
        key: dict[str, object] | None,
        before: dict[str, object] | None,
        after: dict[str, object] | None,
    ) -> ChangeEvent:
        begin = self.begin
        seq = self.seq
        self.seq = seq + 1
        if begin is None:
            return ChangeEvent(op, relation.schema, relation.table, key, before, after)
        return ChangeEvent(
            op,
            relation.schema,
            relation.table,
            key,
            before,
            after,
            begin.final_lsn,
            seq,
            begin.commit_time,
            begin.xid,
            relation.columns,
            relation.key_columns,
            self.origin,
        )


def _key(relation: Relation, row: dict[str, object]) -> dict[str, object] | None:
    columns = relation.identity_columns
    if not columns:
        return None
    if len(columns) == 1:
        first = columns[0]
        return {first: row[first]}
    return {name: row[name] for name in columns}


def _row(data: bytes, pos: int, relation: Relation) -> tuple[dict[str, object], int]:
    """TupleData at ``pos`` as column → value, and the position after it.

    :raises PermanentError: naming table and column, for a value that cannot be decoded.
    """
    pos += 2  # the column count, which the Relation message already gave
    row: dict[str, object] = {}
    unpack = _I32
    name = ""
    try:
        for name, convert in relation.pairs:
            kind = data[pos]
            if kind == 116:  # t: text
                start = pos + 5
                pos = start + unpack(data, pos + 1)[0]
                row[name] = convert(data[start:pos])
            elif kind == 110:  # n: null
                row[name] = None
                pos += 1
            elif kind == 117:  # u: unchanged TOAST
                row[name] = UNCHANGED
                pos += 1
            else:  # b: binary, only sent when asked for
                start = pos + 5
                pos = start + unpack(data, pos + 1)[0]
                row[name] = data[start:pos]
    except (ValueError, ArithmeticError, IndexError) as exc:
        raise PermanentError(
            f"cannot decode column {name!r} ({relation.columns.get(name, '?')}) of table "
            f"{relation.schema}.{relation.table}: {exc}"
        ) from exc
    return row, pos


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(0, pos)
    return data[pos:end].decode(), end + 1
