"""``append``: COPY straight into the table.

With ``row_hash`` the table has a unique ``_row_hash`` column and rows already
there are skipped (``ON CONFLICT DO NOTHING``), so a replay appends nothing:
the way to copy a table without a key. Identical rows in one batch are told
apart by their occurrence number, and rows that differ but hash alike by the
numbers free where they are stored (see :mod:`.hash_numbers`).
"""

from __future__ import annotations

import asyncpg

from asyncetl.connectors.postgres import _load
from asyncetl.connectors.postgres._plan import Group
from asyncetl.connectors.postgres._writers.base import Writer
from asyncetl.connectors.postgres._writers.hash_numbers import append_by_hash

__all__ = ["AppendWriter"]


class AppendWriter(Writer):
    """Appends every row; with a row hash, every row not already there."""

    mode = "append"
    numbered = True

    async def load(self, conn: asyncpg.Connection, group: Group) -> int:
        target, columns, rows = self.target, group.columns, group.rows
        row_hash = self.options.row_hash
        if row_hash is None:
            types = self.column_types(columns)
            return await _load.copy_append(
                conn, target, columns, rows, casts=self.casts, types=types
            )
        assert not isinstance(rows, _load.CopyRows)  # the planner hashes records only
        return await append_by_hash(
            conn,
            target,
            columns,
            rows,
            row_hash=row_hash,
            casts=self.casts,
            types=self.column_types(columns),
        )
