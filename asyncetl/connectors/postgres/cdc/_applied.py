"""Which changes the apply sink has applied: the commit LSN and in-transaction sequence of the
last one, kept in the sink's state table and written in each batch's own transaction, and the
grouping of a batch's unapplied events by table."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import asyncpg

from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.cdc._guess import value_type
from asyncetl.core.changes import ChangeEvent, DeclaredColumns

__all__ = [
    "Marker",
    "by_table",
    "latest_types",
    "load_marker",
    "save_marker",
    "source_columns",
    "unapplied",
]

Marker = tuple[int, int]

_LSN = attrgetter("lsn")
_POSITION = attrgetter("lsn", "seq")
_TABLE = attrgetter("schema", "table")
_COLUMNS = attrgetter("columns")


async def load_marker(conn: asyncpg.Connection, table: TableName, sink: str) -> Marker | None:
    """The last applied change of ``sink`` (creating ``table`` when missing)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", str(table))
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table.sql} (sink text PRIMARY KEY, lsn pg_lsn NOT NULL, "
        "seq integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
    )
    row = await conn.fetchrow(
        f"SELECT lsn, seq FROM {table.sql} WHERE sink = $1",  # noqa: S608
        sink,
    )
    return (int(row[0]), int(row[1])) if row is not None else None


async def save_marker(
    conn: asyncpg.Connection, table: TableName, sink: str, marker: Marker
) -> None:
    await conn.execute(
        f"INSERT INTO {table.sql} (sink, lsn, seq, updated_at) "  # noqa: S608
        "VALUES ($1, $2, $3, now()) ON CONFLICT (sink) DO UPDATE SET "
        "lsn = EXCLUDED.lsn, seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at",
        sink,
        marker[0],
        marker[1],
    )


def unapplied(
    records: Sequence[ChangeEvent], marker: Marker | None
) -> tuple[list[ChangeEvent], Marker | None]:
    """The events after ``marker`` (snapshot rows have no LSN: all of them), and the last one's
    position (``marker`` when none has one)."""
    # A batch's changes share their transactions' LSNs: the set is small, and asking it
    # for None costs no comparison of None with each LSN.
    lsns = set(map(_LSN, records))
    if None not in lsns:  # streamed changes only: compare whole LSNs first
        if not lsns:
            return [], marker
        if marker is None or min(lsns) > marker[0]:
            return list(records), max(map(_POSITION, records))
    events = [e for e in records if e.lsn is None or marker is None or (e.lsn, e.seq) > marker]
    latest = max(((e.lsn, e.seq) for e in events if e.lsn is not None), default=marker)
    return events, latest


def by_table(events: Sequence[ChangeEvent]) -> dict[tuple[str, str], list[ChangeEvent]]:
    names = list(map(_TABLE, events))
    tables = dict.fromkeys(names)  # in the order they first appear
    if len(tables) == 1:  # the usual batch of one table
        return {names[0]: list(events)}
    groups: dict[tuple[str, str], list[ChangeEvent]] = {table: [] for table in tables}
    for name, event in zip(names, events, strict=True):
        groups[name].append(event)
    return groups


def latest_types(events: Sequence[ChangeEvent]) -> dict[str, str]:
    """Column → SQL type as the last event's column mapping names it: after an ``ALTER
    COLUMN … TYPE`` on the source, the new type (columns no mapping names are left out)."""
    last = next((e.columns for e in reversed(events) if e.columns is not None), None)
    if isinstance(last, DeclaredColumns):  # a message's schema, not the source's DDL
        return {}
    return dict(last or {})


def source_columns(events: Sequence[ChangeEvent]) -> dict[str, str]:
    """Column → SQL type of every column the events carry, in table order (a type as the
    first event naming it says: a snapshot row's comes from the catalog, exactly; for
    events without column types, as the column's first value that says one, else text)."""
    # A CDC source's events share a few column mappings: the distinct ones, by identity
    # (a mapping is no key), in the order they first appear.
    mappings = list(map(_COLUMNS, events))
    distinct = dict(zip(map(id, mappings), mappings, strict=True))
    if id(None) not in distinct:
        columns: dict[str, str] = {}
        for mapping in distinct.values():
            for name, sql_type in (mapping or {}).items():  # never None here
                columns.setdefault(name, sql_type)
        return columns
    seen: set[int] = set()
    columns = {}
    untyped: set[str] = set()  # guessed as text for want of a value saying more
    for event in events:
        if event.columns is not None:
            if id(event.columns) not in seen:
                seen.add(id(event.columns))
                for name, sql_type in event.columns.items():
                    columns.setdefault(name, sql_type)
            continue
        for name, value in (event.after or event.before or {}).items():
            if name in columns and name not in untyped:
                continue
            guessed = value_type(value)
            if guessed is None:
                columns.setdefault(name, "text")
                untyped.add(name)
            else:
                columns[name] = guessed
                untyped.discard(name)
    return columns
