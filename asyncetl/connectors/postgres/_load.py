"""Loading rows at COPY speed: COPY into a temporary table, then merge it with one statement.

Each helper takes a connection that is already inside a transaction (see
:func:`asyncetl.connectors.postgres._connect.in_transaction`), stages ``rows``
with asyncpg's binary ``copy_records_to_table`` into a staging table (a temporary
table with the target's column types, kept for the session and emptied at each
commit: see :func:`~._sql.create_stage`) and merges it into the target. They are
shared by the table sinks.

``rows`` are tuples in the order of ``columns``, or :class:`CopyRows` loaded
without ever being decoded: :class:`TextRows`, lines in COPY's text format, as
``TableSource(format="copy")`` reads them, or :class:`BinaryRows`, pages of COPY's
binary format, as ``TableSource(format="binary")`` reads them. Upserts need at
most one row per key (see :func:`last_per_key`, or ``dedupe`` for COPY data):
``ON CONFLICT DO UPDATE`` cannot touch one row twice in a statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import ClassVar, Literal, NamedTuple, TypeVar
from uuid import UUID

import asyncpg

from asyncetl.connectors.postgres import _sql
from asyncetl.connectors.postgres._binary import BinaryPage, binary_data
from asyncetl.connectors.postgres._sql import TableName

__all__ = [
    "BinaryRows",
    "CopyRows",
    "Loaded",
    "Staged",
    "TargetChanged",
    "TextRows",
    "copy_append",
    "copy_replace",
    "copy_soft_delete",
    "copy_upsert",
    "execute_merge",
    "last_per_key",
    "row_count",
    "stage_for_merge",
    "stage_rows",
]

Row = Sequence[object]
R = TypeVar("R", bound=Sequence[object])


class Loaded(NamedTuple):
    """What loading a batch into a table did."""

    #: Target rows inserted, updated or flagged.
    changed: int
    #: Records not written because the target already held them.
    unchanged: int


class CopyRows:
    """Rows as COPY data, passed to the server as they are: never decoded, never split."""

    __slots__ = ()

    #: COPY's ``FORMAT`` option for the data.
    format: ClassVar[Literal["text", "binary"]]

    def __len__(self) -> int:
        raise NotImplementedError

    async def data(self) -> AsyncIterator[bytes]:
        """The COPY data, whole."""
        raise NotImplementedError
        yield b""  # pragma: no cover - makes this an async generator


class TextRows(CopyRows):
    """Rows in COPY's text format, one line each without its newline."""

    __slots__ = ("lines",)
    format = "text"

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    async def data(self) -> AsyncIterator[bytes]:
        """The COPY data: every line, each ending in a newline."""
        yield b"\n".join(self.lines) + b"\n"


class BinaryRows(CopyRows):
    """Pages of rows in COPY's binary format (see :class:`~._binary.BinaryPage`)."""

    __slots__ = ("pages",)
    format = "binary"

    def __init__(self, pages: Sequence[BinaryPage]) -> None:
        self.pages = pages

    def __len__(self) -> int:
        return sum(page.rows for page in self.pages)

    async def data(self) -> AsyncIterator[bytes]:
        """The COPY data: the header, every page's rows, the trailer."""
        yield binary_data(self.pages)


Rows = Iterable[Row] | CopyRows
#: Values bound in an array as they are: no container that asyncpg would take for a
#: dimension of the array (a list, a set…), which could shift a column's values.
_SCALARS = frozenset(
    {type(None), bool, int, float, str, bytes, Decimal, datetime, date, time, timedelta, UUID}
)
#: Column types bound as arrays of themselves: built-in types without a modifier. An
#: explicit cast to ``varchar(5)`` or ``numeric(6,2)`` would cut or round a value that
#: the column refuses when COPY or an assignment stores it.
_BINDABLE_TYPES = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "real",
        "double precision",
        "numeric",
        "boolean",
        "text",
        "character varying",
        "bytea",
        "uuid",
        "json",
        "jsonb",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
    }
)
#: Rows merged from arrays bound to the statement at most; more are COPYed into a
#: staging table, which streams them.
_BOUND_ROWS = 10_000
#: Columns staged as text and cast to their type (the value) when merged: the
#: types asyncpg has no binary codec for (see ``Column.text_io``).
Casts = Mapping[str, str] | None


async def copy_in(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Rows,
    *,
    schema_name: str | None,
) -> str:
    """COPY ``rows`` into ``schema_name.table``; returns the command status."""
    if isinstance(rows, CopyRows):
        return await conn.copy_to_table(
            table,
            source=rows.data(),
            columns=list(columns),
            schema_name=schema_name,
            format=rows.format,
        )
    return await conn.copy_records_to_table(
        table, records=rows, columns=list(columns), schema_name=schema_name
    )


def row_count(status: str) -> int:
    """The row count of a command status such as ``INSERT 0 42`` or ``UPDATE 7``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def last_per_key(rows: Sequence[R], key_index: Sequence[int]) -> Sequence[R]:
    """The last row of each key, in order of each key's last appearance.

    ``rows`` itself when every key is distinct, the usual case, found cheaply.
    """
    get = itemgetter(*key_index)
    if len(set(map(get, rows))) == len(rows):
        return rows
    latest: dict[object, R] = {}
    for row in rows:
        k = get(row)
        latest.pop(k, None)  # re-insert so the dict keeps last-appearance order
        latest[k] = row
    return list(latest.values())


class TargetChanged(Exception):
    """The target's columns are no longer of the types the rows were planned with (an
    ``ALTER TABLE`` since): the transaction is rolled back, to plan them again."""

    def __init__(self, target: TableName, column: str, planned: str, now: str | None) -> None:
        now_text = f"is {now} now" if now is not None else "is gone"
        super().__init__(f"column {column} of {target}, planned as {planned}, {now_text}")


async def stage_rows(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Rows,
    *,
    extra: Sequence[tuple[str, str]] = (),
    casts: Casts = None,
    types: Sequence[str] | None = None,
) -> str:
    """COPY ``rows`` into an empty staging table with ``target``'s types for ``columns``.

    :param extra: ``(name, sql type)`` of staged columns the target lacks (e.g. a
        delete flag); they follow ``columns`` in each row.
    :param types: the types ``columns`` were planned with: the staging table (whose
        columns round and cut values as the target's do) is checked to have them.
    :returns: the staging table's name, quoted.
    :raises TargetChanged: when the target's columns no longer have ``types``.
    """
    if isinstance(rows, CopyRows):
        casts = None  # COPY text goes straight into the column's own type
    if types is not None:
        changed = await conn.fetchrow(_sql.changed_column(target), columns, types, target.sql)
        if changed is not None:
            raise TargetChanged(target, *changed)
    stage = _sql.create_stage(target, columns, extra, casts, types)
    await conn.execute(stage.ready)
    names = [*columns, *(name for name, _ in extra)]
    await copy_in(conn, stage.name, names, rows, schema_name="pg_temp")
    return stage.sql


async def copy_upsert(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Rows,
    *,
    key: Sequence[str],
    update: Sequence[str] | None = None,
    version_column: str | None = None,
    row_hash_column: str | None = None,
    dedupe: bool = False,
    skip_unchanged: bool = False,
    casts: Casts = None,
    types: Sequence[str] | None = None,
) -> int:
    """Upsert ``rows`` by ``key``; returns how many target rows were inserted or updated.

    Rows are staged by :func:`stage_for_merge` (given their ``types``, bound as arrays).

    :param update: columns overwritten on conflict (default: all but the key;
        ``[]`` inserts new keys only).
    :param version_column: an older row (smaller version) never overwrites a newer one.
    :param row_hash_column: a row whose stored hash is unchanged is not rewritten.
    :param dedupe: ``rows`` may hold a key more than once; the last (or newest
        version) wins.
    :param skip_unchanged: a row whose stored values are unchanged is not
        rewritten, compared in the server (no hash column).
    """
    staged = await stage_for_merge(conn, target, columns, rows, casts=casts, types=types)
    sql = _sql.merge_from_stage(
        target,
        columns,
        key,
        stage=staged.source,
        update=update,
        version_column=version_column,
        row_hash_column=row_hash_column,
        dedupe=dedupe,
        skip_unchanged=skip_unchanged,
        casts=staged.casts,
        types=dict(zip(columns, types, strict=True)) if types is not None else None,
    )
    return row_count(await execute_merge(conn, sql, staged))


class Staged(NamedTuple):
    """Rows ready to merge (see :func:`stage_for_merge`)."""

    #: The FROM item holding them: a staging table's name, or :func:`~._sql.unnest_rows`.
    source: str
    #: What the FROM item binds: one array per column, or nothing.
    args: list[list[object]]
    #: The text-staged columns to cast back to their type (see :func:`~._sql.create_stage`).
    casts: Casts


async def stage_for_merge(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Rows,
    *,
    casts: Casts = None,
    types: Sequence[str] | None = None,
) -> Staged:
    """``rows`` bound as arrays to the statement that merges them, or else COPYed into a
    staging table; a statement reading them may run more than once in the transaction.

    Given the SQL ``types`` of ``columns``, rows of plain values (no COPY data, no
    ``casts``) are bound as one array per column: one round trip instead of four
    (make the staging table ready, COPY's two, the merge).
    """
    arrays = _bound_columns(rows, types) if types is not None and not casts else None
    if arrays is not None:
        assert types is not None
        return Staged(_sql.unnest_rows(columns, types), arrays, casts)
    stage = await stage_rows(conn, target, columns, rows, casts=casts, types=types)
    return Staged(stage, [], None if isinstance(rows, CopyRows) else casts)


async def execute_merge(conn: asyncpg.Connection, sql: str, staged: Staged, *args: object) -> str:
    """Run ``sql``, which reads ``staged`` (its arguments first, then ``args``); returns
    the command status."""
    try:
        return await conn.execute(sql, *staged.args, *args)
    except asyncpg.DataError as exc:
        # What the encoder said, as a COPY raises it, so that the sink looks for the
        # records holding such values (asyncpg's message shows only the whole array).
        cause = exc.__cause__
        if isinstance(cause, TypeError | ValueError | ArithmeticError):
            raise cause from None
        raise


def _bound_columns(rows: Rows, types: Sequence[str]) -> list[list[object]] | None:
    """``rows`` as one list per column, or ``None`` if they cannot be bound as arrays.

    Not COPY data, not too many rows, only :data:`_BINDABLE_TYPES` and :data:`_SCALARS`.
    """
    if isinstance(rows, CopyRows) or not isinstance(rows, Sequence):
        return None
    if not rows or len(rows) > _BOUND_ROWS or not _BINDABLE_TYPES.issuperset(types):
        return None
    arrays = [list(values) for values in zip(*rows, strict=True)]
    if len(arrays) != len(types):
        return None
    for values in arrays:
        if not _SCALARS.issuperset(map(type, values)):
            return None
    return arrays


async def copy_append(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Rows,
    *,
    casts: Casts = None,
    types: Sequence[str] | None = None,
) -> int:
    """Append ``rows`` to ``target`` with COPY straight into it; returns the rows copied.

    With ``casts`` (and rows that are not COPY text) the rows go through a staging table
    (checked to have the planned ``types``: see :func:`stage_rows`).
    """
    if casts and not isinstance(rows, CopyRows):
        stage = await stage_rows(conn, target, columns, rows, casts=casts, types=types)
        sql = _sql.insert_from_stage(target, columns, casts, stage=stage)
        return row_count(await conn.execute(sql))
    return row_count(await copy_in(conn, target.name, columns, rows, schema_name=target.schema))


async def copy_replace(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Rows,
    *,
    partition: Sequence[str],
    casts: Casts = None,
    types: Sequence[str] | None = None,
) -> int:
    """Delete every partition present in ``rows`` from ``target``, then insert ``rows``.

    A partition is a distinct combination of the ``partition`` columns (NULL
    matches NULL). Returns the rows inserted.

    :param types: the types ``columns`` were planned with (see :func:`stage_rows`).
    """
    stage = await stage_rows(conn, target, columns, rows, casts=casts, types=types)
    casts = None if isinstance(rows, CopyRows) else casts
    await conn.execute(_sql.delete_matching(target, partition, casts, stage=stage))
    sql = _sql.insert_from_stage(target, columns, casts, stage=stage)
    return row_count(await conn.execute(sql))


async def copy_soft_delete(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Rows,
    *,
    key: Sequence[str],
    deleted_at: str,
    flag: str,
    version_column: str | None = None,
    row_hash_column: str | None = None,
    casts: Casts = None,
    types: Sequence[str] | None = None,
) -> int:
    """Upsert live rows and flag deleted ones (``deleted_at = now()``) instead of deleting.

    Each row ends with a boolean: true when the row is a delete. Live rows are
    upserted with ``deleted_at`` cleared, so a re-inserted key comes back.
    Returns target rows inserted, updated or flagged.

    :param flag: the name the delete flag gets in the staging table.
    :param types: the types ``columns`` were planned with (see :func:`stage_rows`).
    """
    extra = [(flag, "boolean")]
    stage = await stage_rows(conn, target, columns, rows, extra=extra, casts=casts, types=types)
    f = _sql.quote_ident(flag)
    upsert = _sql.merge_from_stage(
        target,
        columns,
        key,
        stage=stage,
        version_column=version_column,
        row_hash_column=row_hash_column,
        set_extra=[f"{_sql.quote_ident(deleted_at)} = NULL"],
        where=f"NOT {f}",
        revive=deleted_at,
        casts=casts,
    )
    changed = row_count(await conn.execute(upsert))
    flagged = _sql.soft_delete_from_stage(
        target, key, deleted_at, stage=stage, where=f"s.{f}", casts=casts
    )
    return changed + row_count(await conn.execute(flagged))
