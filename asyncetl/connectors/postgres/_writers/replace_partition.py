"""``replace_partition``: a batch replaces the partitions it holds.

Every partition (distinct values of the ``partition`` columns, NULL matching
NULL) present in the batch is deleted, then the batch is inserted, in the
batch's one transaction.
"""

from __future__ import annotations

import asyncpg

from asyncetl.connectors.postgres import _load
from asyncetl.connectors.postgres._plan import Group
from asyncetl.connectors.postgres._writers.base import WriteOptions, Writer
from asyncetl.core.errors import ConfigError

__all__ = ["ReplacePartitionWriter"]


class ReplacePartitionWriter(Writer):
    """Deletes the batch's partitions, then inserts the batch."""

    mode = "replace_partition"

    @classmethod
    def check_options(cls, options: WriteOptions, where: str) -> None:
        if not options.partition:
            raise ConfigError(
                'replace_partition needs the partition columns, e.g. partition = ["day"]',
                where=where,
                key="partition",
            )

    async def load(self, conn: asyncpg.Connection, group: Group) -> int:
        return await _load.copy_replace(
            conn,
            self.target,
            group.columns,
            group.rows,
            partition=self.options.partition,
            casts=self.casts,
            types=self.column_types(group.columns),
        )
