"""``refresh_swap``: load a fresh copy aside, then swap it in at once.

Batches are appended into a staging table ``<table>__asyncetl_new``; the swap
renames the target away and the staging table in, in one transaction, and
drops the old table after that committed, so readers never see a half-loaded
table. The swap happens in the transaction of the batch that ends at position
``None`` — where a ``TableSource(snapshot=true)`` ends a complete scan — or
when :meth:`~asyncetl.connectors.postgres.PostgresSink.swap` is called.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from asyncetl.connectors.postgres import _sql
from asyncetl.connectors.postgres._plan import Group
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres._writers.append import AppendWriter
from asyncetl.connectors.postgres._writers.base import Transact
from asyncetl.core.batch import Batch

__all__ = ["RefreshSwapWriter"]

_STAGING_SUFFIX = "__asyncetl_new"
_OLD_SUFFIX = "__asyncetl_old"


class RefreshSwapWriter(AppendWriter):
    """Appends to the staging table; :meth:`swap_in` publishes it."""

    mode = "refresh_swap"

    @property
    def target(self) -> TableName:
        """The staging table."""
        return super().target.sibling(_STAGING_SUFFIX)

    def swaps_after(self, batch: Batch[Any]) -> bool:
        """Whether ``batch`` ends a complete snapshot scan (at position ``None``)."""
        return batch.position is None

    async def open(self, transact: Transact, *, resume: bool) -> None:
        """Create the staging table; without ``resume``, drop one a crashed run left first."""
        staging = self.target

        async def body(conn: asyncpg.Connection) -> None:
            if not resume:
                await conn.execute(_sql.drop_table(staging, if_exists=True))
            await conn.execute(self._create_staging())

        await transact(f"creating {staging}", body)

    async def load(self, conn: asyncpg.Connection, group: Group) -> int:
        await conn.execute(self._create_staging())  # after a swap, the next batch starts anew
        return await super().load(conn, group)

    async def swap_in(self, conn: asyncpg.Connection) -> None:
        """Rename the target away and the staging table in, inside the caller's transaction."""
        assert self.schema is not None
        table, staging = self.schema.table, self.target
        old = table.sibling(_OLD_SUFFIX)
        await conn.execute(_sql.drop_table(old, if_exists=True))
        await conn.execute(_sql.rename_table(table, old.name))
        await conn.execute(_sql.rename_table(staging, table.name))

    async def after_swap(self, transact: Transact) -> None:
        """Drop the old table, only now that the swap committed.

        Views on the table followed it to its old name, so this drop fails for
        them: recreate such views after the swap.
        """
        assert self.schema is not None
        old = self.schema.table.sibling(_OLD_SUFFIX)

        async def drop(conn: asyncpg.Connection) -> None:
            await conn.execute(_sql.drop_table(old))

        await transact(f"dropping {old}", drop)

    def _create_staging(self) -> str:
        assert self.schema is not None
        return _sql.create_like(self.target, self.schema.table)
