"""The initial snapshot: existing rows of each table, read in keyset chunks.

The rows are read in one ``REPEATABLE READ`` transaction, under the snapshot
that creating the slot exported when there is one (so snapshot and stream meet
exactly at the slot's consistent point), or under a fresh snapshot when
resuming after a crash (the exported one died with its connection). A fresh
snapshot is newer than the slot's position, so streaming from there replays
changes the snapshot already saw; replaying them in order onto an upserting
target leaves it exactly right.

Tables are read in name order, each in primary-key order (``ctid`` order for
tables without one). The position after a chunk names the table and the last
key read, so a restart resumes with the next chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg
from asyncpg.transaction import Transaction

from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.cdc._catalog import TableInfo
from asyncetl.connectors.postgres.cdc._pages import (
    SnapshotPage,
    binary_table,
    next_limit,
    read_page,
)
from asyncetl.connectors.postgres.cdc._values import Converter, converter
from asyncetl.core.batch import JsonValue
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.observe import Progress

__all__ = ["SnapshotReader", "snapshot_progress"]

_SNAPSHOT_NAME = re.compile(r"[0-9A-Fa-f-]+")


def snapshot_progress(table: TableInfo | None, after: list[str] | None) -> JsonValue:
    """The ``snapshot`` part of a position: the table being read and its last key read."""
    if table is None:
        return None
    return {
        "table": [table.schema, table.name],
        "after": list(after) if after is not None else None,
    }


class SnapshotReader:
    """Reads the snapshot chunk by chunk on one asyncpg connection.

    :param tables: every table of the snapshot, in reading order.
    :param start: ``(schema, table)`` to resume at and the last key read there.
    :param exported: the name of the snapshot the slot exported, when it is still alive.
    :param binary: read keyed tables of built-in types as binary pages (see :mod:`._pages`).
    :param page_bytes: about how many bytes of binary COPY data a page holds.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        tables: Sequence[TableInfo],
        *,
        start: tuple[tuple[str, str], list[str] | None] | None = None,
        exported: str | None = None,
        binary: bool = False,
        page_bytes: int = 4 << 20,
    ) -> None:
        if exported is not None and not _SNAPSHOT_NAME.fullmatch(exported):
            raise ConfigError(f"{exported!r} is not a snapshot name")
        self._conn = conn
        self._tables = list(tables)
        self._exported = exported
        self._binary = binary
        self._page_bytes = page_bytes
        #: Rows of the current table's next binary page, once a page of it was measured.
        self._page_rows: int | None = None
        self._after: list[str] | None = None
        self._index = 0
        self._transaction: Transaction | None = None
        self.rows_read = 0
        #: Each table's rows according to the planner (``None``: never analysed).
        self.estimates: dict[str, int | None] = {}
        self._rows = [0] * len(self._tables)
        if start is not None:
            names = [(t.schema, t.name) for t in self._tables]
            where, after = start
            self._index = next((i for i, n in enumerate(names) if n >= tuple(where)), len(names))
            if self._index < len(names) and names[self._index] == tuple(where):
                self._after = after
        self._first = self._index  # tables before it were read by an earlier run

    def progress(self) -> list[Progress]:
        """Each table's rows read in this run of its estimated rows; exact once read."""
        parts = []
        for index, (table, rows) in enumerate(zip(self._tables, self._rows, strict=True)):
            total = self.estimates.get(table.qualified)
            if index < self._first:
                rows = total = total or 0  # read whole by an earlier run
            elif index < self._index:
                total = rows  # read whole in this run: counted, no longer estimated
            parts.append(Progress(rows, total, "rows", table.qualified))
        return parts

    @property
    def done(self) -> bool:
        return self._index >= len(self._tables)

    @property
    def position(self) -> JsonValue:
        """The position's ``snapshot`` part for what was read so far; ``None`` when finished."""
        if self.done:
            return None
        return snapshot_progress(self._tables[self._index], self._after)

    async def next_rows(self, limit: int) -> list[ChangeEvent] | list[SnapshotPage]:
        """The next chunk of at most ``limit`` rows (possibly empty when a table ends):
        change events, or one binary page as one record per row (``limit`` rows for a
        table's first page, then sized by ``page_bytes``)."""
        if self._transaction is None:
            await self._begin()
        table = self._tables[self._index]
        records: list[ChangeEvent] | list[SnapshotPage]
        if self._binary and binary_table(table):
            limit = self._page_rows or limit
            records, last = await read_page(self._conn, table, self._after, limit)
            if records:
                self._page_rows = next_limit(records[0], self._page_bytes)
        else:
            sql, args = _chunk_query(table, self._after, limit)
            rows = await self._conn.fetch(sql, *args)
            width = len(table.key) or 1
            last = [rows[-1][i] for i in range(width)] if rows else None
            records = _events(table, rows)
        self._advance(len(records), limit, last)
        if self.done:
            await self.finish()
        return records

    def _advance(self, count: int, limit: int, last: list[str] | None) -> None:
        """Past ``count`` rows of a chunk of at most ``limit``, the last at key ``last``."""
        self._rows[self._index] += count
        self.rows_read += count
        if count < limit:
            self._index += 1
            self._after = None
            self._page_rows = None
        else:
            self._after = last

    async def finish(self) -> None:
        """End the snapshot transaction (safe to call more than once)."""
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            await transaction.rollback()

    async def _begin(self) -> None:
        transaction = self._conn.transaction(isolation="repeatable_read", readonly=True)
        await transaction.start()
        self._transaction = transaction
        if self._exported is not None:
            # A snapshot name cannot be a bound parameter; it was checked against _SNAPSHOT_NAME.
            await self._conn.execute(f"SET TRANSACTION SNAPSHOT '{self._exported}'")


def _chunk_query(table: TableInfo, after: list[str] | None, limit: int) -> tuple[str, list[str]]:
    """The SQL and arguments of one keyset chunk: key texts first, then every column as text."""
    if table.key:
        # Qualified: a bare name in ORDER BY would mean the ::text output column of that name.
        order = [f"t.{quote_ident(k)}" for k in table.key]
        cursor = [f"t.{quote_ident(k)}::text" for k in table.key]
        casts = [f"${i + 1}::text::{table.sql_type(k)}" for i, k in enumerate(table.key)]
    else:
        order, cursor, casts = ["t.ctid"], ["t.ctid::text"], ["$1::text::tid"]
    columns = ", ".join(f"t.{quote_ident(name)}::text" for name, _, _ in table.columns)
    where = ""
    args: list[str] = []
    if after is not None:
        where = f"WHERE ({', '.join(order)}) > ({', '.join(casts)})"
        args = list(after)
    sql = (
        f"SELECT {', '.join(cursor)}, {columns} FROM {table.sql} AS t {where} "  # noqa: S608
        f"ORDER BY {', '.join(order)} LIMIT {int(limit)}"
    )
    return sql, args


def _events(table: TableInfo, rows: list[asyncpg.Record]) -> list[ChangeEvent]:
    names = tuple(name for name, _, _ in table.columns)
    converters: tuple[Converter, ...] = tuple(converter(oid) for _, oid, _ in table.columns)
    types = {name: sql for name, _, sql in table.columns}
    offset = len(table.key) or 1
    key_index = [names.index(k) for k in table.key]
    events = []
    for row in rows:
        try:
            values = [
                None if text is None else convert(text.encode())
                for convert, text in zip(converters, list(row)[offset:], strict=True)
            ]
        except (ValueError, ArithmeticError, IndexError) as exc:
            raise _undecodable(table, converters, list(row)[offset:], exc) from exc
        after = dict(zip(names, values, strict=True))
        key = {names[i]: values[i] for i in key_index} if key_index else None
        events.append(
            ChangeEvent(
                "r",
                table.schema,
                table.name,
                key,
                None,
                after,
                columns=types,
                key_columns=table.key,
            )
        )
    return events


def _undecodable(
    table: TableInfo, converters: tuple[Converter, ...], texts: list[str | None], exc: Exception
) -> PermanentError:
    """The error for a snapshot row with a value that cannot be decoded, naming its column."""
    for (name, _, sql), convert, text in zip(table.columns, converters, texts, strict=True):
        try:
            if text is not None:
                convert(text.encode())
        except (ValueError, ArithmeticError, IndexError):
            return PermanentError(
                f"cannot decode column {name!r} ({sql}) of table {table.qualified} "
                f"in the snapshot: {exc}"
            )
    return PermanentError(f"cannot decode a row of table {table.qualified} in the snapshot: {exc}")
