"""``upsert``: insert new keys, update existing ones, in one statement per batch.

The batch is bound as one array per column to ``INSERT … SELECT … FROM
unnest(…) ON CONFLICT (key) DO UPDATE`` (a batch too large for that, or holding
types not bound as arrays, is COPYed into a temporary table and merged from
there: see :func:`~.._load.stage_for_merge`). With ``version_column`` an older
row never overwrites a newer one; an unchanged row is not rewritten, told by its
stored values (``skip_unchanged``, the default) or by its ``row_hash``.

Until a batch meets a key already in the table, batches are COPYed straight
into it inside a savepoint: about twice as fast on the server, and what an
initial load or an append-only source needs. The first batch that meets an
existing key rolls back to the savepoint and merges, and so do all later ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from asyncetl.connectors.postgres import _load
from asyncetl.connectors.postgres._load import CopyRows
from asyncetl.connectors.postgres._plan import Group
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres._writers.base import WriteOptions
from asyncetl.connectors.postgres._writers.keyed import KeyedWriter

__all__ = ["UpsertWriter"]

Row = tuple[Any, ...]


class UpsertWriter(KeyedWriter):
    """Inserts or updates each row by its key."""

    mode = "upsert"

    def __init__(self, table: TableName, options: WriteOptions) -> None:
        super().__init__(table, options)
        self._insert_first = True

    async def load(self, conn: asyncpg.Connection, group: Group) -> int:
        columns, rows = group.columns, group.rows
        if isinstance(rows, CopyRows):  # COPY lines are never decoded: the merge dedupes them
            return await self._upsert(conn, columns, rows, None, dedupe=True)
        return await self._upsert(conn, columns, self.one_per_key(columns, rows), self.hash_column)

    async def _upsert(
        self,
        conn: asyncpg.Connection,
        columns: list[str],
        rows: Sequence[Row] | CopyRows,
        row_hash_column: str | None,
        *,
        dedupe: bool = False,
    ) -> int:
        if self._insert_first:
            try:
                async with conn.transaction():
                    return await _load.copy_append(
                        conn,
                        self.target,
                        columns,
                        rows,
                        casts=self.casts,
                        types=self.column_types(columns),
                    )
            except asyncpg.UniqueViolationError:
                self._insert_first = False
        return await _load.copy_upsert(
            conn,
            self.target,
            columns,
            rows,
            key=self.key,
            version_column=self.options.version_column,
            row_hash_column=row_hash_column,
            dedupe=dedupe,
            skip_unchanged=self.options.skip_unchanged,
            casts=self.casts,
            types=self.column_types(columns),
        )
