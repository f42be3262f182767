"""The base of PostgreSQL stores that keep their rows in one table they create."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import asyncpg

from asyncetl.connectors.postgres._check import Needs, checking, table_problems
from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._sql import TableName, create_schema
from asyncetl.core.interfaces import Problem

__all__ = ["Body", "TableStore", "create_once"]

_T = TypeVar("_T")
Body: TypeAlias = Callable[[asyncpg.Connection], Awaitable[_T]]


async def create_once(conn: asyncpg.Connection, table: TableName, ddl: str) -> None:
    """Run ``CREATE TABLE IF NOT EXISTS`` under an advisory lock: concurrent runs may race."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", str(table))
    if table.schema is not None:
        await conn.execute(create_schema(table.schema))
    await conn.execute(ddl)


class TableStore:
    """Holds the DSN, retry policy and pool of a store keeping its rows in one table."""

    #: Creates the table when missing (``CREATE TABLE IF NOT EXISTS``); set by the subclass.
    _ddl: str
    #: The rights the store uses on its table; set by the subclass.
    _privileges: tuple[str, ...]

    def __init__(self, dsn: str, table: TableName, retries: int, retry_max_time: float) -> None:
        self.dsn = Dsn.parse(dsn)
        self.table = table
        self.policy = retry_policy(retries, retry_max_time)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{type(self).__name__} used before open()")
        return self._pool

    async def open(self) -> None:
        self._pool = await open_pool(self.dsn, policy=self.policy, max_size=1)
        try:
            await in_transaction(
                self.pool,
                self.dsn,
                f"creating {self.table}",
                lambda conn: create_once(conn, self.table, self._ddl),
                policy=self.policy,
            )
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def check(self) -> list[Problem]:
        """Whether the server answers and the role may use (or create) the table and schema."""
        needs = Needs(self._privileges, create=True, create_schema=True)
        problems: list[Problem] = []
        async with checking(self.dsn, problems) as conn:
            if conn is not None:
                problems += await table_problems(conn, self.dsn, self.table, needs)
        return problems

    async def _run(self, what: str, body: Body[_T]) -> _T:
        """``body`` in one transaction, retried whole; ``what`` names it, the table appended."""
        return await in_transaction(
            self.pool, self.dsn, f"{what} in {self.table}", body, policy=self.policy
        )
