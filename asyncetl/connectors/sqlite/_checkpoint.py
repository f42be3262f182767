"""Checkpoints in a table of a SQLite file."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import orjson

from asyncetl.connectors.sqlite._check import table_problems
from asyncetl.connectors.sqlite._connection import SqliteConnection, check_busy_timeout, immediate
from asyncetl.connectors.sqlite._sql import DIALECT, CheckpointSql
from asyncetl.core.dbapi_stores import DbApiCheckpointStore
from asyncetl.core.interfaces import Checkpoint, Problem

__all__ = ["SqliteCheckpointStore", "checkpoint_row", "stored_time"]


class SqliteCheckpointStore(DbApiCheckpointStore[sqlite3.Connection, CheckpointSql]):
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

    database, dialect = "SQLite", DIALECT
    _db: SqliteConnection

    def __init__(
        self, path: str, *, table: str = "asyncetl_checkpoints", busy_timeout: float = 5.0
    ) -> None:
        check_busy_timeout("SqliteCheckpointStore", busy_timeout)
        db = SqliteConnection(str(path), busy_timeout=busy_timeout)
        super().__init__(path, table, CheckpointSql.of(table), db)

    async def check(self) -> list[Problem]:
        """Whether the database can be written; the table is created when missing."""
        return await table_problems(self.path, self.table, create=True)

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.executescript(self.sql.create)

    def _write(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return immediate(conn)

    def _time(self, stored: object) -> datetime:
        return stored_time(stored)

    def _row(self, checkpoint: Checkpoint) -> tuple[str, str, str, str]:
        return checkpoint_row(checkpoint)


def stored_time(stored: object) -> datetime:
    """A time as this connector stores it (ISO 8601 text), read back."""
    return datetime.fromisoformat(str(stored))


def checkpoint_row(checkpoint: Checkpoint) -> tuple[str, str, str, str]:
    """The parameters of :attr:`CheckpointSql.save` for ``checkpoint``."""
    position = orjson.dumps(checkpoint.position).decode()
    now = datetime.now(UTC).isoformat()
    return checkpoint.pipeline, checkpoint.source, position, now
