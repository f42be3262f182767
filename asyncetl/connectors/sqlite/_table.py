"""What the checkpoint and dead-letter stores share: one connection, one table made on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from asyncetl.connectors.sqlite._check import table_problems
from asyncetl.connectors.sqlite._connection import SqliteConnection, check_busy_timeout
from asyncetl.core.interfaces import Problem

__all__ = ["TableStore"]


class _Statements(Protocol):
    @property
    def create(self) -> str: ...


S = TypeVar("S", bound=_Statements)


class TableStore(Generic[S]):
    """A store keeping its rows in one table of a SQLite file.

    :param where: the store's name in configuration errors.
    :param path: the database file, created when missing; its directory must exist.
    :param table: the table, created (by the statements' ``create`` script) when missing.
    :param statements: builds the store's SQL for ``table``.
    :param busy_timeout: seconds to wait for another connection's write lock.
    :raises ConfigError: for an invalid busy timeout or table name.
    """

    def __init__(
        self,
        where: str,
        path: str,
        *,
        table: str,
        statements: Callable[[str], S],
        busy_timeout: float,
    ) -> None:
        check_busy_timeout(where, busy_timeout)
        self.path = str(path)
        self.table = table
        self.sql = statements(table)
        self._db = SqliteConnection(self.path, busy_timeout=busy_timeout)
        self._created = False

    async def open(self) -> None:
        """Connect and create the table when missing.

        :raises PermanentError: when the database cannot be opened or written.
        """
        await self._ready()

    async def aclose(self) -> None:
        await self._db.close()

    async def check(self) -> list[Problem]:
        """Whether the database can be written; the table is created when missing."""
        return await table_problems(self.path, self.table, create=True)

    async def _ready(self) -> None:
        if not self._created:
            create = self.sql.create
            await self._db.run(
                lambda conn: conn.executescript(create), what=f"creating table {self.table!r}"
            )
            self._created = True
