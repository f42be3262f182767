"""PostgreSQL checkpoints: a table of ``(pipeline, source) → position``.

The checkpoint table is also written by :class:`~asyncetl.connectors.postgres.PostgresSink`
(and the other sinks of this connector) inside each batch's own transaction when
both live in the same database (exactly-once); :meth:`PostgresCheckpointStore.save_on`
is that shared write.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import asyncpg
import orjson

from asyncetl.connectors.postgres._sql import DIALECT, TableName
from asyncetl.connectors.postgres._table import Body, TableStore
from asyncetl.core.batch import Position
from asyncetl.core.errors import CheckpointError, ConnectorError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore
from asyncetl.core.store_sql import CheckpointQueries, position_from_text

__all__ = ["PostgresCheckpointStore"]

_COLUMNS = (
    "pipeline text NOT NULL, source text NOT NULL, position jsonb, "
    "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, source)"
)

_T = TypeVar("_T")


class PostgresCheckpointStore(TableStore, CheckpointStore):
    """Checkpoints as rows ``(pipeline, source) → position jsonb`` of a table it creates.

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param table: the checkpoint table; created when missing.
    :param schema: the table's schema; created when missing.
    :param retries: retries of a failed connection or statement.
    :param retry_max_time: seconds after which no retry starts.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "asyncetl_checkpoints",
        schema: str = "public",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        super().__init__(dsn, TableName(schema, table), retries, retry_max_time)
        self._privileges = ("SELECT", "INSERT", "UPDATE")
        self._sql = CheckpointQueries.of(
            DIALECT, self.table.name, self.table.schema, columns=_COLUMNS
        )
        self._ddl = self._sql.create
        t = DIALECT.table(self.table.name, self.table.schema)
        # The save with the commit's wait for the WAL flush waived, in the same statement:
        # no round trip of its own for the setting.
        self._save_unflushed = (
            f"INSERT INTO {t} (pipeline, source, position, updated_at) "
            "SELECT $1, $2, $3::json, now() "
            "WHERE set_config('synchronous_commit', 'off', true) = 'off' "
            + DIALECT.upsert(("pipeline", "source"), ("position", "updated_at"))
        )

    async def load(self, pipeline: str, source: str) -> Position:
        async def fetch(conn: asyncpg.Connection) -> str | None:
            value: str | None = await conn.fetchval(self._sql.load, pipeline, source)
            return value

        text = await self._run(f"loading the checkpoint of {pipeline!r}", fetch)
        if text is None:
            return None
        return position_from_text(text, pipeline, source, f"PostgreSQL table {self.table}")

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the committed position was saved (its ``updated_at``), or ``None``."""

        async def fetch(conn: asyncpg.Connection) -> datetime | None:
            value: datetime | None = await conn.fetchval(self._sql.saved_at, pipeline, source)
            return value

        return await self._run(f"reading when the checkpoint of {pipeline!r} was saved", fetch)

    async def save(self, checkpoint: Checkpoint) -> None:
        await self._run(
            f"saving the checkpoint of {checkpoint.pipeline!r}",
            lambda conn: self.save_on(conn, checkpoint),
        )

    async def save_on(
        self, conn: asyncpg.Connection, checkpoint: Checkpoint, *, flush: bool = True
    ) -> None:
        """Write ``checkpoint`` through ``conn``, inside the caller's transaction.

        :param flush: ``False`` sets ``synchronous_commit = off`` for the transaction: its
            commit does not wait for the disk, and a server crash may lose it whole, the
            checkpoint with the rows. Only for writes a replay from the position before
            them restores exactly.
        """
        await conn.execute(
            self._sql.save if flush else self._save_unflushed,
            checkpoint.pipeline,
            checkpoint.source,
            orjson.dumps(checkpoint.position).decode(),
        )

    async def _run(self, what: str, body: Body[_T]) -> _T:
        try:
            return await super()._run(what, body)
        except ConnectorError as exc:
            raise CheckpointError(str(exc)) from exc
