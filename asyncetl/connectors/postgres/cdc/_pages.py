"""The initial snapshot as pages of COPY's binary format, for an :class:`ApplySink`.

With ``snapshot_format = "binary"`` a keyed table whose columns all have
built-in types is read as pages: the key of the page's last row is found
first (the ``limit``-th row after the position, or the table's last), then the
rows up to it come in one ``COPY (SELECT …) TO STDOUT (FORMAT binary)`` under
the snapshot's transaction. No value is printed as text, decoded in Python or
encoded again: the apply sink COPYs the page into the target as it is
(straight into the table until a row is already there, then through a staged
``INSERT … ON CONFLICT``). Other tables are read as change events.

A page travels as ``rows`` records that are all one :class:`SnapshotPage`, so
that batches, counts and progress see rows; the position after a page is its
last key, as after a chunk of events, so a crash resumes after the last page
committed.

A page is sized in bytes (the source's ``snapshot_page_bytes``), not by the
pipeline's batch size: a table's first page has the batch size's rows, each
next one as many rows as that many bytes held in the page before. A page is one
batch and one transaction in the target, so large pages spend few round trips
per row, while the batches of the stream after it stay small.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import asyncpg

from asyncetl.connectors.postgres._binary import HEADER, TRAILER, BinaryPage, page_of
from asyncetl.connectors.postgres._copy_out import copy_query_parts, copy_setting, set_copy_setting
from asyncetl.connectors.postgres._sql import TableName, quote_ident
from asyncetl.connectors.postgres.cdc._apply_sql import upsert_sql
from asyncetl.connectors.postgres.cdc._apply_stage import Stage
from asyncetl.connectors.postgres.cdc._catalog import TableInfo
from asyncetl.connectors.postgres.schema import Column, TableSchema
from asyncetl.core.errors import PermanentError

__all__ = [
    "RowsMet",
    "SnapshotPage",
    "apply_pages",
    "binary_table",
    "check_types",
    "next_limit",
    "page_columns",
    "read_page",
    "split_pages",
]

#: Below it, an OID is the same built-in type in every database (FirstNormalObjectId).
_FIRST_USER_OID = 16384
#: Bytes of a page sent to the target at a time.
_SEND = 256 << 10


class RowsMet(Exception):
    """Pages COPYed straight into ``table`` met a row already there; the transaction is
    spoilt, and the batch is to be written again, merging into that table."""

    def __init__(self, table: TableName) -> None:
        super().__init__(f"rows already in {table}")
        self.table = table


@dataclass(frozen=True, slots=True, eq=False)
class SnapshotPage:
    """Rows of one source table from the snapshot, as a page of COPY's binary format.

    :param columns: ``(name, SQL type)`` of the page's columns, in order.
    :param key: the table's primary key.
    """

    schema: str
    table: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    page: BinaryPage

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"


def binary_table(table: TableInfo) -> bool:
    """Whether ``table`` can be read as binary pages: keyed, every column's type built in."""
    return bool(table.key) and all(oid < _FIRST_USER_OID for _, oid, _ in table.columns)


def next_limit(page: SnapshotPage, page_bytes: int) -> int:
    """The rows of the page after ``page``: as many as ``page_bytes`` bytes held in it.

    Measured, not estimated from the catalog: the data's own width, its large values
    included, which statistics may not have seen yet.
    """
    size = len(page.page.data)
    return max(1, page_bytes * page.page.rows // max(size, 1))


async def read_page(
    conn: asyncpg.Connection, table: TableInfo, after: list[str] | None, limit: int
) -> tuple[list[SnapshotPage], list[str] | None]:
    """The page of at most ``limit`` rows after the key ``after``, and its last key.

    Runs inside the snapshot's transaction. ``None`` for the key: no rows are left.
    """
    last = await _page_end(conn, table, after, limit)
    if last is None:
        return [], None
    output, rows = await copy_query_parts(
        conn, _range_sql(table, after is not None), (), format="binary"
    )
    page = SnapshotPage(
        table.schema,
        table.name,
        tuple((name, sql) for name, _, sql in table.columns),
        table.key,
        page_of(output, rows),
    )
    return [page] * rows, last


async def _page_end(
    conn: asyncpg.Connection, table: TableInfo, after: list[str] | None, limit: int
) -> list[str] | None:
    """The key (as text) of the ``limit``-th row after ``after``, or of the last row.

    The same statement keeps ``after`` and that key as the settings the page's COPY reads
    (see :func:`_range_sql`): one round trip per page, not one to find its end and another
    to bind its bounds.
    """
    width = len(table.key)
    args: list[object] = [*(after or ()), int(limit) - 1]
    row = await conn.fetchrow(_page_end_sql(table, after is not None), *args)
    return None if row is None else [str(row[i]) for i in range(width)]


def _page_end_sql(table: TableInfo, after: bool) -> str:
    """The SQL of :func:`_page_end`: the key columns as text, then the settings made.

    The offset is the parameter after the key's: pages of every size share one statement.
    """
    width = len(table.key)
    offset = f"${width + 1 if after else 1}::bigint"
    order = ", ".join(f"t.{quote_ident(k)}" for k in table.key)
    backwards = ", ".join(f"t.{quote_ident(k)} DESC" for k in table.key)
    keys = ", ".join(f"t.{quote_ident(k)}::text AS k{i}" for i, k in enumerate(table.key))
    where = ""
    if after:
        casts = ", ".join(f"${i + 1}::text::{table.sql_type(k)}" for i, k in enumerate(table.key))
        where = f"WHERE ({order}) > ({casts})"
    select = f"SELECT {{}} AS o, {keys} FROM {table.sql} AS t {where}"  # noqa: S608 - quoted
    # The limit-th row when there is one, else the last: both are one index probe.
    ends = (
        f"({select.format(0)} ORDER BY {order} LIMIT 1 OFFSET {offset}) "
        f"UNION ALL ({select.format(1)} ORDER BY {backwards} LIMIT 1)"
    )
    bounds = [f"${i + 1}" for i in range(width)] if after else []
    bounds += [f"e.k{i}" for i in range(width)]
    settings = ", ".join(set_copy_setting(n, value) for n, value in enumerate(bounds, 1))
    columns = ", ".join(f"e.k{i}" for i in range(width))
    return f"SELECT {columns}, {settings} FROM ({ends} ORDER BY o LIMIT 1) AS e"  # noqa: S608


def _range_sql(table: TableInfo, after: bool) -> str:
    """The rows after the key in settings 1… (if ``after``) up to the key in the next ones."""
    width = len(table.key)
    order = ", ".join(f"t.{quote_ident(k)}" for k in table.key)

    def key(first: int) -> str:
        return ", ".join(
            f"{copy_setting(first + i)}::{table.sql_type(k)}" for i, k in enumerate(table.key)
        )

    conditions = [f"({order}) > ({key(1)})"] if after else []
    conditions.append(f"({order}) <= ({key(1 + width if after else 1)})")
    columns = ", ".join(f"t.{quote_ident(name)}" for name, _, _ in table.columns)
    # No ORDER BY: the page is loaded whole, in any order.
    return f"SELECT {columns} FROM {table.sql} AS t WHERE {' AND '.join(conditions)}"  # noqa: S608


def split_pages(records: Sequence[object]) -> tuple[list[SnapshotPage], list[object]]:
    """The distinct snapshot pages among ``records``, in order, and the other records."""
    types = set(map(type, records))  # mapped in C: cheap for every batch
    if SnapshotPage not in types:
        return [], list(records)
    if len(types) == 1:  # pages only, as every batch of a binary snapshot but its last
        return list(dict.fromkeys(records)), []  # type: ignore[arg-type]
    pages = list(dict.fromkeys(r for r in records if isinstance(r, SnapshotPage)))
    return pages, [r for r in records if not isinstance(r, SnapshotPage)]


def page_columns(page: SnapshotPage) -> list[Column]:
    """The columns a target created for ``page``'s table gets."""
    return [Column(name, sql) for name, sql in page.columns]


def check_types(page: SnapshotPage, schema: TableSchema) -> None:
    """Refuse a target whose columns lack, or differ in type from, the page's.

    :raises PermanentError: naming the columns and what to do.
    """
    differing = []
    for name, sql_type in page.columns:
        column = schema.column(name)
        if column is None or column.type != sql_type:
            ours = column.type if column is not None else "missing"
            differing.append(
                f"{name} ({sql_type} in {page.qualified_table}, {ours} in {schema.table})"
            )
    if differing:
        raise PermanentError(
            "a binary snapshot needs the source's column types in the target, and these "
            f'differ: {", ".join(differing)}; set the source\'s snapshot_format = "events"'
        )


async def apply_pages(
    conn: asyncpg.Connection,
    schema: TableSchema,
    pages: Sequence[SnapshotPage],
    stages: Iterator[int],
    *,
    copy_first: bool,
    soft_delete: str | None,
) -> bool:
    """Write ``pages`` of one table into ``schema``'s table, inside the caller's transaction.

    :param copy_first: COPY straight into the table while no row is there yet, as in
        an initial load.
    :returns: whether to go on COPYing straight into the table next time.
    :raises RowsMet: when COPYing straight in met a row already there.
    """
    columns = [name for name, _ in pages[0].columns]
    # Framed, not joined: the pages go out as they are, never copied into one buffer.
    data = [HEADER, *(page.page.data for page in pages), TRAILER]
    if copy_first:
        try:
            await _copy(conn, schema.table, columns, data)
        except asyncpg.UniqueViolationError:
            # A replayed page, or rows streamed before: merge from here on. No savepoint
            # around every page for this once-a-run case: the batch runs again instead.
            raise RowsMet(schema.table) from None
        return True
    name = f"_asyncetl_pages_{next(stages)}"
    await conn.execute(
        f"CREATE TEMPORARY TABLE {quote_ident(name)} (LIKE {schema.table.sql}) ON COMMIT DROP"
    )
    await _copy(conn, TableName("pg_temp", name), columns, data)
    stage = Stage(f"pg_temp.{quote_ident(name)}", {c: f"s.{quote_ident(c)}" for c in columns})
    await conn.execute(upsert_sql(schema, stage, columns, soft_delete))
    return False


async def _copy(
    conn: asyncpg.Connection, table: TableName, columns: list[str], data: list[bytes]
) -> None:
    async def source() -> AsyncIterator[memoryview]:
        # In slices: the client copies each into a message of its own, and waits while
        # the socket is full, so a page is never copied whole on its way out.
        for part in data:
            view = memoryview(part)
            for start in range(0, len(view), _SEND):
                yield view[start : start + _SEND]

    await conn.copy_to_table(
        table.name,
        # asyncpg takes any buffer (its stubs say bytes): slices are not copied here.
        source=cast("AsyncIterator[bytes]", source()),
        columns=columns,
        schema_name=table.schema,
        format="binary",
    )
