"""What the checkpoint and dead-letter stores of a SQLite file share beyond the SQL."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import datetime

from asyncetl.connectors.sqlite._check import table_problems
from asyncetl.connectors.sqlite._connection import SqliteConnection, check_busy_timeout, immediate
from asyncetl.connectors.sqlite._sql import DIALECT
from asyncetl.core.interfaces import Problem

__all__ = ["SqliteTable", "connection", "stored_time"]


class SqliteTable:
    """The SQLite half of a :class:`~asyncetl.core.dbapi_stores.DbApiTableStore`."""

    database, dialect = "SQLite", DIALECT
    path: str
    table: str

    async def check(self) -> list[Problem]:
        """Whether the database can be written; the table is created when missing."""
        return await table_problems(self.path, self.table, create=True)

    def _write(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return immediate(conn)  # takes the write lock at once: no deadlock on upgrade

    def _time(self, stored: object) -> datetime:
        return stored_time(stored)


def connection(where: str, path: str, busy_timeout: float) -> SqliteConnection:
    """The connection of a store named ``where`` (in errors) on ``path``.

    :raises ConfigError: for an invalid busy timeout.
    """
    check_busy_timeout(where, busy_timeout)
    return SqliteConnection(str(path), busy_timeout=busy_timeout)


def stored_time(stored: object) -> datetime:
    """A time as this connector stores it (ISO 8601 text), read back."""
    return datetime.fromisoformat(str(stored))
