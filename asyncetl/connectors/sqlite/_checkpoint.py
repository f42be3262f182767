"""Checkpoints in a table of a SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import orjson

from asyncetl.connectors.sqlite._connection import immediate
from asyncetl.connectors.sqlite._sql import CheckpointSql
from asyncetl.connectors.sqlite._table import TableStore
from asyncetl.core.batch import Position
from asyncetl.core.interfaces import Checkpoint, CheckpointStore
from asyncetl.core.store_sql import position_from_text

__all__ = ["SqliteCheckpointStore", "checkpoint_row"]


class SqliteCheckpointStore(TableStore[CheckpointSql], CheckpointStore):
    """Committed positions in a table of a SQLite file, one row per (pipeline, source).

    The table ``(pipeline, source, position, updated_at)`` holds each position
    as JSON text and is created when the store opens. A
    :class:`~asyncetl.connectors.sqlite.SqliteSink` writing to the same file
    saves checkpoints in its own transactions instead (exactly-once).

    :param path: the database file, created when missing; its directory must exist.
    :param table: the checkpoint table.
    :param busy_timeout: seconds to wait for another connection's write lock.
    :raises ConfigError: for an invalid table name or busy timeout.
    """

    def __init__(
        self, path: str, *, table: str = "asyncetl_checkpoints", busy_timeout: float = 5.0
    ) -> None:
        super().__init__(
            "SqliteCheckpointStore",
            path,
            table=table,
            statements=CheckpointSql.of,
            busy_timeout=busy_timeout,
        )

    async def load(self, pipeline: str, source: str) -> Position:
        """The committed position, or ``None`` when there is none.

        :raises CheckpointError: when the stored position is not valid JSON.
        """
        await self._ready()

        def select(conn: sqlite3.Connection) -> str | bytes | None:
            row = conn.execute(self.sql.load, (pipeline, source)).fetchone()
            return None if row is None else row[0]

        text = await self._db.run(select, what=f"checkpoint load from table {self.table!r}")
        if text is None:
            return None
        return position_from_text(
            text, pipeline, source, f"SQLite table {self.table!r} of {self.path}"
        )

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the committed position was saved (its ``updated_at``), or ``None``."""
        await self._ready()

        def select(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(self.sql.saved_at, (pipeline, source)).fetchone()
            return None if row is None else str(row[0])

        text = await self._db.run(select, what=f"checkpoint time from table {self.table!r}")
        return None if text is None else datetime.fromisoformat(text)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Replace the committed position of the checkpoint's pipeline and source."""
        await self._ready()
        row = checkpoint_row(checkpoint)

        def upsert(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute(self.sql.save, row)

        await self._db.run(upsert, what=f"checkpoint save to table {self.table!r}")


def checkpoint_row(checkpoint: Checkpoint) -> tuple[str, str, str, str]:
    """The parameters of :attr:`CheckpointSql.save` for ``checkpoint``."""
    position = orjson.dumps(checkpoint.position).decode()
    now = datetime.now(UTC).isoformat()
    return checkpoint.pipeline, checkpoint.source, position, now
