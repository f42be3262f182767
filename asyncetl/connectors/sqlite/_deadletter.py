"""Dead letters in a table of a SQLite file."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

from asyncetl.connectors.sqlite._connection import immediate
from asyncetl.connectors.sqlite._sql import DIALECT, TABLE_COLUMNS, DeadLetterSql
from asyncetl.connectors.sqlite._table import TableStore
from asyncetl.core.interfaces import DeadLetter, LetterFilter
from asyncetl.core.store_sql import (
    FilteredLetterStore,
    letter_from_row,
    letter_json,
    letter_params,
    limit_param,
)

__all__ = ["SqliteDeadLetterStore", "letter_row", "migrate"]


class SqliteDeadLetterStore(TableStore[DeadLetterSql], FilteredLetterStore):
    """Dead letters in a table of a SQLite file, created when the store opens.

    Columns: ``id`` (INTEGER PRIMARY KEY AUTOINCREMENT, so ids are never
    reused), ``pipeline``, ``stage``, ``error``, ``error_type``, ``record`` and
    ``position`` (JSON text), ``time`` (ISO 8601 UTC) and ``key`` (unique:
    a letter whose key is stored already is skipped; added to a table made by
    an older version, whose rows keep a NULL key). Ids are handed out as
    strings.

    :param path: the database file, created when missing; its directory must exist.
    :param table: the dead-letter table.
    :param busy_timeout: seconds to wait for another connection's write lock.
    :raises ConfigError: for an invalid table name or busy timeout.
    """

    def __init__(
        self, path: str, *, table: str = "asyncetl_dead_letters", busy_timeout: float = 5.0
    ) -> None:
        super().__init__(
            "SqliteDeadLetterStore",
            path,
            table=table,
            statements=DeadLetterSql.of,
            busy_timeout=busy_timeout,
        )

    async def _ready(self) -> None:
        if not self._created:
            await super()._ready()
            await self._db.run(
                partial(migrate, self.sql, self.table), what="adding dead-letter keys"
            )

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` in one transaction, skipping those whose key is stored."""
        if not letters:
            return
        await self._ready()
        rows = [letter_row(letter) for letter in letters]

        def insert(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.executemany(self.sql.put, rows)

        await self._db.run(insert, what=f"dead-letter put into table {self.table!r}")

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        """Delete the letters of ``pipeline`` with these ids; unknown ids are ignored."""
        if ids:
            await self.purge(pipeline, ids=ids)

    async def _find(
        self, pipeline: str, wanted: LetterFilter, limit: int | None
    ) -> builtins.list[DeadLetter]:
        """:raises PermanentError: when a stored row is not valid JSON."""
        params = (*letter_params(DIALECT, pipeline, wanted), limit_param(DIALECT, limit))
        rows = await self._query(self.sql.find, params, "find in")
        where = f"SQLite table {self.table!r} of {self.path}"
        return [letter_from_row(row, _time, where) for row in rows]

    async def _count(self, pipeline: str, wanted: LetterFilter) -> int:
        params = letter_params(DIALECT, pipeline, wanted)
        rows = await self._query(self.sql.count, params, "count in")
        number = rows[0][0]
        assert isinstance(number, int)
        return number

    async def _purge(self, pipeline: str, wanted: LetterFilter) -> int:
        await self._ready()
        params = letter_params(DIALECT, pipeline, wanted)

        def delete(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                return conn.execute(self.sql.purge, params).rowcount

        return await self._db.run(delete, what=f"dead-letter purge in table {self.table!r}")

    async def _query(
        self, sql: str, params: Sequence[object], what: str
    ) -> builtins.list[tuple[object, ...]]:
        await self._ready()

        def select(conn: sqlite3.Connection) -> builtins.list[tuple[object, ...]]:
            return conn.execute(sql, params).fetchall()

        return await self._db.run(select, what=f"dead-letter {what} table {self.table!r}")


def _time(stored: object) -> datetime:
    return datetime.fromisoformat(str(stored))


def migrate(sql: DeadLetterSql, table: str, conn: sqlite3.Connection) -> None:
    """Give a dead-letter table of an older version its ``key`` column and unique index."""
    columns = {str(row[0]).lower() for row in conn.execute(TABLE_COLUMNS, (table,))}
    if "key" not in columns:
        conn.execute(sql.add_key)
    conn.execute(sql.index_key)


def letter_row(letter: DeadLetter) -> tuple[str | None, ...]:
    """The bound parameters of :attr:`DeadLetterSql.put` for ``letter``."""
    time = letter.time if letter.time.tzinfo else letter.time.replace(tzinfo=UTC)
    return (
        letter.pipeline,
        letter.stage,
        letter.error,
        letter.error_type,
        *letter_json(letter),
        time.astimezone(UTC).isoformat(),
        letter.key,
    )
