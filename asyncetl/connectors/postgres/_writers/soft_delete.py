"""``soft_delete``: like ``upsert``, but a delete sets ``deleted_at`` instead of removing the row.

A record whose ``delete_flag`` field is true flags its row (``deleted_at =
now()``); a live record is upserted with ``deleted_at`` cleared, so a key that
comes back is live again. The flag travels as the last value of each row.
"""

from __future__ import annotations

import asyncpg

from asyncetl.connectors.postgres import _load
from asyncetl.connectors.postgres._load import CopyRows
from asyncetl.connectors.postgres._plan import Group
from asyncetl.connectors.postgres._writers.keyed import KeyedWriter
from asyncetl.connectors.postgres._writers.row_hash import Require
from asyncetl.connectors.postgres.schema import Column

__all__ = ["SoftDeleteWriter"]


class SoftDeleteWriter(KeyedWriter):
    """Upserts live rows and flags deleted ones."""

    mode = "soft_delete"

    @property
    def delete_flag(self) -> str:
        return self.options.delete_flag

    def extra_columns(self, names: set[str]) -> list[Column]:
        extra = super().extra_columns(names)
        if self.options.deleted_at not in names:
            extra.append(Column(self.options.deleted_at, "timestamp with time zone"))
        return extra

    def check_columns(self, require: Require) -> None:
        require(self.options.deleted_at, "deleted_at")

    async def load(self, conn: asyncpg.Connection, group: Group) -> int:
        columns, rows = group.columns, group.rows
        assert not isinstance(rows, CopyRows)  # the planner refuses COPY lines: no flag in them
        return await _load.copy_soft_delete(
            conn,
            self.target,
            columns[:-1],
            self.one_per_key(columns, rows),
            key=self.key,
            deleted_at=self.options.deleted_at,
            flag=self.delete_flag,
            version_column=self.options.version_column,
            row_hash_column=self.hash_column,
            casts=self.casts,
            types=self.column_types(columns[:-1]),
        )
