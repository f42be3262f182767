"""Copy, from the source, the values that a volatile default gave rows older than a column.

``ALTER TABLE … ADD COLUMN c … DEFAULT random()`` (or ``now()``, ``gen_random_uuid()``, a
default set after the column was added, a table rewritten since) gives each existing source
row its own value, which no catalog keeps and no change event carries until the row changes.
The apply sink reads them from the source table by key and writes them into the target rows
whose value is still NULL, in the batch transaction that added the column.

Reading the source's *current* values is correct although the stream lags behind it:

- a row not changed since the ``ALTER`` still holds the value the rewrite gave it, which is
  the value the target lacks;
- a row changed since has change events still to come (or already applied). Each carries the
  full row, new column included, and they are applied in stream order after this batch, so
  whatever value is copied now is overwritten by the row's own history and ends as the
  source's;
- a row the stream already reached in this or an earlier batch holds its streamed value,
  which the ``IS NULL`` condition keeps;
- a row deleted since is not read, and its delete removes it; a row inserted since is not in
  the target yet, or holds its streamed value.

Values travel as text in the sessions' ISO/UTC settings (as :mod:`._defaults` reads them),
so each arrives as exactly the value the source holds, whatever its type.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from asyncetl.connectors.postgres._connect import Dsn, map_errors
from asyncetl.connectors.postgres._sql import TableName, quote_ident
from asyncetl.connectors.postgres.cdc._apply_stage import target_column
from asyncetl.connectors.postgres.cdc._values import SESSION_SETTINGS
from asyncetl.connectors.postgres.schema import TableSchema
from asyncetl.core.errors import ConnectorError

__all__ = ["CHUNK_ROWS", "backfill"]

#: Rows read from the source and updated in the target at a time: memory stays bounded
#: whatever the table's size, and each UPDATE joins one array of keys.
CHUNK_ROWS = 5000


async def backfill(
    conn: asyncpg.Connection,
    source_dsn: Dsn,
    source: TableName,
    schema: TableSchema,
    names: Sequence[str],
    chunk: int = CHUNK_ROWS,
) -> list[str]:
    """Give the rows of target ``schema`` whose columns ``names`` are NULL the values the
    source table's rows of the same key hold; the columns the source no longer has (dropped
    or renamed since, or the table with them), whose values are lost with them.

    ``schema`` must have a primary key; ``conn`` is the target's batch transaction, whose
    errors pass through as the caller's.

    :raises ConnectorError: when the source cannot be read.
    """
    gone = []
    settings = {k: v for k, v in SESSION_SETTINGS.items() if k != "client_encoding"}
    with map_errors(source_dsn, f"connecting to read source table {source}"):
        reader = await asyncpg.connect(source_dsn.url, server_settings=settings, timeout=10)
    try:
        for name in names:
            if not await _backfill_column(conn, reader, source_dsn, source, schema, name, chunk):
                gone.append(name)
    finally:
        await reader.close()
    return gone


async def _backfill_column(
    conn: asyncpg.Connection,
    reader: asyncpg.Connection,
    source_dsn: Dsn,
    source: TableName,
    schema: TableSchema,
    name: str,
    chunk: int,
) -> bool:
    """Whether the source still has column ``name``, whose values are then copied."""
    key = schema.primary_key
    column = quote_ident(name)
    selected = ", ".join(f"{quote_ident(k)}::text" for k in (*key, name))
    # NULLs are left out: the target's rows already hold them.
    query = f"SELECT {selected} FROM {source.sql} WHERE {column} IS NOT NULL"  # noqa: S608
    update = _update_sql(schema, name)
    what = f"reading column {name!r} of source table {source}"
    try:
        # One snapshot of the table, read through a cursor a chunk at a time.
        async with reader.transaction(isolation="repeatable_read", readonly=True):
            with map_errors(source_dsn, what):
                cursor = await reader.cursor(query)
            while True:
                with map_errors(source_dsn, what):
                    rows = await cursor.fetch(chunk)
                if not rows:
                    return True
                await conn.execute(update, *([r[i] for r in rows] for i in range(len(key) + 1)))
    except ConnectorError as exc:
        if isinstance(exc.__cause__, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
            return False
        raise


def _update_sql(schema: TableSchema, name: str) -> str:
    key = schema.primary_key
    params = ", ".join(f"${i + 1}::text[]" for i in range(len(key) + 1))
    aliases = ", ".join([*(f"k{i}" for i in range(len(key))), "v"])
    matches = " AND ".join(
        f"t.{quote_ident(k)} = s.k{i}::{target_column(schema, k).type}" for i, k in enumerate(key)
    )
    column = quote_ident(name)
    return (
        f"UPDATE {schema.table.sql} AS t "  # noqa: S608
        f"SET {column} = s.v::{target_column(schema, name).type} "
        f"FROM unnest({params}) AS s({aliases}) "
        f"WHERE {matches} AND t.{column} IS NULL"
    )
