"""Checkpoints in a table of a SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import orjson

from asyncetl.connectors.sqlite._connection import SqliteConnection
from asyncetl.connectors.sqlite._sql import CheckpointSql, checkpoint_sql
from asyncetl.connectors.sqlite._table import SqliteTable, connection
from asyncetl.core.dbapi_stores import DbApiCheckpointStore
from asyncetl.core.interfaces import Checkpoint

__all__ = ["SqliteCheckpointStore", "checkpoint_row"]


class SqliteCheckpointStore(SqliteTable, DbApiCheckpointStore[sqlite3.Connection, CheckpointSql]):
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

    _db: SqliteConnection

    def __init__(
        self, path: str, *, table: str = "asyncetl_checkpoints", busy_timeout: float = 5.0
    ) -> None:
        db = connection("SqliteCheckpointStore", path, busy_timeout)
        super().__init__(path, table, checkpoint_sql(table), db)

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute(self.sql.create)

    def _row(self, checkpoint: Checkpoint) -> tuple[str, str, str, str]:
        return checkpoint_row(checkpoint)


def checkpoint_row(checkpoint: Checkpoint) -> tuple[str, str, str, str]:
    """The parameters of :attr:`CheckpointSql.save` for ``checkpoint``."""
    position = orjson.dumps(checkpoint.position).decode()
    now = datetime.now(UTC).isoformat()
    return checkpoint.pipeline, checkpoint.source, position, now
