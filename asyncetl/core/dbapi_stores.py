"""Checkpoint and dead-letter stores in one table of an embedded DB-API database.

SQLite and DuckDB keep their stores alike: one blocking connection per store,
run in a worker thread one call at a time (the connector's connection class),
one table created when the store opens, the statements of
:mod:`asyncetl.core.store_sql`. What is left to a connector is small and says
what its database is: how to create the table, how a write transaction begins,
how a stored time reads back. Nothing here imports a database driver.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from asyncetl.core.batch import Position
from asyncetl.core.interfaces import Checkpoint, CheckpointStore, DeadLetter, LetterFilter
from asyncetl.core.store_sql import (
    FilteredLetterStore,
    SqlDialect,
    letter_from_row,
    letter_params,
    limit_param,
    position_from_text,
)

__all__ = ["Connection", "DbApiCheckpointStore", "DbApiDeadLetterStore", "DbApiTableStore"]

T = TypeVar("T")
Row = tuple[Any, ...]


class Connection(Protocol):
    """The DB-API calls the stores make."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


C = TypeVar("C", bound=Connection)
C_co = TypeVar("C_co", bound=Connection, covariant=True)


class Runner(Protocol[C_co]):
    """The connector's connection: runs a blocking call off the event loop, mapping errors."""

    async def run(self, fn: Callable[[C_co], T], *, what: str) -> T: ...

    async def close(self) -> None: ...


class _CheckpointStatements(Protocol):
    @property
    def load(self) -> str: ...
    @property
    def saved_at(self) -> str: ...
    @property
    def save(self) -> str: ...


class _LetterStatements(Protocol):
    @property
    def put(self) -> str: ...
    @property
    def find(self) -> str: ...
    @property
    def count(self) -> str: ...
    @property
    def purge(self) -> str: ...


S = TypeVar("S")


class DbApiTableStore(Generic[C, S], abc.ABC):
    """A store keeping its rows in one table of a database file, made when it opens.

    :param path: the database file.
    :param table: the store's table.
    :param sql: the statements of that table.
    :param db: the connection the store runs its calls on.
    """

    #: The database, for messages: ``SQLite``.
    database: str
    #: How the connector's statements are spelled.
    dialect: SqlDialect

    def __init__(self, path: str, table: str, sql: S, db: Runner[C]) -> None:
        self.path = str(path)
        self.table = table
        self.sql = sql
        self._db = db
        self._created = False

    @abc.abstractmethod
    def _create(self, conn: C) -> None:
        """Create the table (and what it needs) when missing."""

    @abc.abstractmethod
    def _write(self, conn: C) -> AbstractContextManager[None]:
        """One write transaction: committed on exit, rolled back on an error."""

    @abc.abstractmethod
    def _time(self, stored: object) -> datetime:
        """A time as stored, read back as an aware datetime."""

    async def open(self) -> None:
        """Connect and create the table when missing.

        :raises PermanentError: when the database cannot be opened or written.
        """
        if not self._created:
            await self._db.run(self._create, what=f"creating table {self.table!r}")
            self._created = True

    async def aclose(self) -> None:
        await self._db.close()
        self._created = False

    @property
    def _where(self) -> str:
        return f"{self.database} table {self.table!r} of {self.path}"

    async def _query(
        self, what: str, sql: str, params: Sequence[object], *, write: bool = False
    ) -> builtins.list[Row]:
        """The rows of one statement, in a write transaction when ``write``."""
        await self.open()

        def run(conn: C) -> builtins.list[Row]:
            if not write:
                return list(conn.execute(sql, params).fetchall())
            with self._write(conn):
                return list(conn.execute(sql, params).fetchall())

        return await self._db.run(run, what=f"{what} table {self.table!r}")

    async def _execute_many(self, what: str, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run ``sql`` once a row, all in one write transaction."""
        await self.open()

        def run(conn: C) -> None:
            with self._write(conn):
                conn.executemany(sql, rows)

        await self._db.run(run, what=f"{what} table {self.table!r}")


SC = TypeVar("SC", bound=_CheckpointStatements)
SL = TypeVar("SL", bound=_LetterStatements)


class DbApiCheckpointStore(DbApiTableStore[C, SC], CheckpointStore):
    """Committed positions, one row per (pipeline, source), the position as JSON text."""

    @abc.abstractmethod
    def _row(self, checkpoint: Checkpoint) -> Sequence[object]:
        """The parameters of the ``save`` statement."""

    async def load(self, pipeline: str, source: str) -> Position:
        """The committed position, or ``None`` when there is none.

        :raises CheckpointError: when the stored position is not valid JSON.
        """
        rows = await self._query("checkpoint load from", self.sql.load, (pipeline, source))
        if not rows:
            return None
        return position_from_text(rows[0][0], pipeline, source, self._where)

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the committed position was saved (its ``updated_at``), or ``None``."""
        rows = await self._query("checkpoint time from", self.sql.saved_at, (pipeline, source))
        return self._time(rows[0][0]) if rows else None

    async def save(self, checkpoint: Checkpoint) -> None:
        """Replace the committed position of the checkpoint's pipeline and source."""
        await self._execute_many("checkpoint save to", self.sql.save, [self._row(checkpoint)])


class DbApiDeadLetterStore(DbApiTableStore[C, SL], FilteredLetterStore):
    """Dead letters, one row each, ids from the table and handed out as strings."""

    @abc.abstractmethod
    def _row(self, letter: DeadLetter) -> Sequence[object]:
        """The parameters of the ``put`` statement."""

    def _purged(self, conn: C, sql: str, params: Sequence[object]) -> int:
        """Run the ``purge`` statement; how many rows it deleted (it returns one per row)."""
        return len(conn.execute(sql, params).fetchall())

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` in one transaction, skipping those whose key is stored."""
        if letters:
            rows = [self._row(letter) for letter in letters]
            await self._execute_many("dead-letter put into", self.sql.put, rows)

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        """Delete the letters of ``pipeline`` with these ids; unknown ids are ignored."""
        if ids:
            await self.purge(pipeline, ids=ids)

    async def _find(
        self, pipeline: str, wanted: LetterFilter, limit: int | None
    ) -> builtins.list[DeadLetter]:
        """:raises PermanentError: when a stored row is not valid JSON."""
        params = (*letter_params(self.dialect, pipeline, wanted), limit_param(self.dialect, limit))
        rows = await self._query("dead-letter find in", self.sql.find, params)
        return [letter_from_row(row, self._time, self._where) for row in rows]

    async def _count(self, pipeline: str, wanted: LetterFilter) -> int:
        params = letter_params(self.dialect, pipeline, wanted)
        rows = await self._query("dead-letter count in", self.sql.count, params)
        number = rows[0][0]
        assert isinstance(number, int)
        return number

    async def _purge(self, pipeline: str, wanted: LetterFilter) -> int:
        await self.open()
        params = letter_params(self.dialect, pipeline, wanted)
        sql = self.sql.purge

        def delete(conn: C) -> int:
            with self._write(conn):
                return self._purged(conn, sql, params)

        return await self._db.run(delete, what=f"dead-letter purge in table {self.table!r}")
