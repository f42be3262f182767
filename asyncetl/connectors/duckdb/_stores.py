"""Checkpoints and dead letters in tables of a DuckDB file."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb
import orjson

from asyncetl.connectors.duckdb._check import table_problems
from asyncetl.connectors.duckdb._connection import DuckDBConnection, transaction
from asyncetl.connectors.duckdb._sql import DIALECT, CheckpointSql, DeadLetterSql
from asyncetl.core.batch import Position
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetter,
    LetterFilter,
    Problem,
)
from asyncetl.core.store_sql import (
    FilteredLetterStore,
    letter_from_row,
    letter_json,
    letter_params,
    limit_param,
    position_from_text,
)

__all__ = ["DuckDBCheckpointStore", "DuckDBDeadLetterStore", "checkpoint_row", "letter_row"]


class DuckDBCheckpointStore(CheckpointStore):
    """Committed positions in a table of a DuckDB file, one row per (pipeline, source).

    The table ``(pipeline, source, position, updated_at)`` holds each position
    as JSON text and is created when the store opens. A
    :class:`~asyncetl.connectors.duckdb.DuckDBSink` writing to the same file
    saves checkpoints in its own transactions instead (exactly-once).

    :param path: the database file, created when missing; its directory must exist.
    :param table: the checkpoint table.
    :raises ConfigError: for an invalid table name.
    """

    def __init__(self, path: str, *, table: str = "asyncetl_checkpoints") -> None:
        self.path = str(path)
        self.table = table
        self.sql = CheckpointSql.of(table)
        self._db = DuckDBConnection(self.path)
        self._created = False

    async def open(self) -> None:
        """Connect and create the table when missing.

        :raises PermanentError: when the database cannot be opened or written.
        """
        if not self._created:
            create = self.sql.create
            await self._db.run(lambda conn: conn.execute(create), what=f"creating {self.table!r}")
            self._created = True

    async def aclose(self) -> None:
        await self._db.close()
        self._created = False

    async def check(self) -> list[Problem]:
        """Whether the database can be written; the table is created when missing."""
        return await table_problems(self.path, self.table, create=True)

    async def load(self, pipeline: str, source: str) -> Position:
        """The committed position, or ``None`` when there is none.

        :raises CheckpointError: when the stored position is not valid JSON.
        """
        await self.open()

        def select(conn: duckdb.DuckDBPyConnection) -> str | None:
            rows = conn.execute(self.sql.load, [pipeline, source]).fetchall()
            return str(rows[0][0]) if rows else None

        text = await self._db.run(select, what=f"checkpoint load from table {self.table!r}")
        if text is None:
            return None
        return position_from_text(
            text, pipeline, source, f"DuckDB table {self.table!r} of {self.path}"
        )

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the committed position was saved (its ``updated_at``), or ``None``."""
        await self.open()

        def select(conn: duckdb.DuckDBPyConnection) -> datetime | None:
            rows = conn.execute(self.sql.saved_at, [pipeline, source]).fetchall()
            return rows[0][0].astimezone(UTC) if rows else None

        return await self._db.run(select, what=f"checkpoint time from table {self.table!r}")

    async def save(self, checkpoint: Checkpoint) -> None:
        """Replace the committed position of the checkpoint's pipeline and source."""
        await self.open()
        row = checkpoint_row(checkpoint)

        def upsert(conn: duckdb.DuckDBPyConnection) -> None:
            with transaction(conn):
                conn.execute(self.sql.save, row)

        await self._db.run(upsert, what=f"checkpoint save to table {self.table!r}")


def checkpoint_row(checkpoint: Checkpoint) -> list[str]:
    """The parameters of :attr:`CheckpointSql.save` for ``checkpoint``."""
    return [checkpoint.pipeline, checkpoint.source, orjson.dumps(checkpoint.position).decode()]


class DuckDBDeadLetterStore(FilteredLetterStore):
    """Dead letters in a table of a DuckDB file, created when the store opens.

    Columns: ``id`` (from a sequence, never reused), ``pipeline``, ``stage``,
    ``error``, ``error_type``, ``record`` and ``position`` (JSON text), ``time``
    (TIMESTAMPTZ) and ``key`` (unique: a letter whose key is stored already is
    skipped). Ids are handed out as strings. A
    :class:`~asyncetl.connectors.duckdb.DuckDBSink` on the same file stores a
    batch's letters in the batch's transaction.

    :param path: the database file, created when missing; its directory must exist.
    :param table: the dead-letter table.
    :raises ConfigError: for an invalid table name.
    """

    def __init__(self, path: str, *, table: str = "asyncetl_dead_letters") -> None:
        self.path = str(path)
        self.table = table
        self.sql = DeadLetterSql.of(table)
        self._db = DuckDBConnection(self.path)
        self._created = False

    async def open(self) -> None:
        """Connect and create the table when missing.

        :raises PermanentError: when the database cannot be opened or written.
        """
        if self._created:
            return

        def create(conn: duckdb.DuckDBPyConnection) -> None:
            for statement in self.sql.create:
                conn.execute(statement)

        await self._db.run(create, what=f"creating table {self.table!r}")
        self._created = True

    async def aclose(self) -> None:
        await self._db.close()
        self._created = False

    async def check(self) -> list[Problem]:
        """Whether the database can be written; the table is created when missing."""
        return await table_problems(self.path, self.table, create=True)

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` in one transaction, skipping those whose key is stored."""
        if not letters:
            return
        await self.open()
        rows = [letter_row(letter) for letter in letters]

        def insert(conn: duckdb.DuckDBPyConnection) -> None:
            with transaction(conn):
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
        params = [*letter_params(DIALECT, pipeline, wanted), limit_param(DIALECT, limit)]
        rows = await self._query(self.sql.find, params, "find in")
        where = f"DuckDB table {self.table!r} of {self.path}"
        return [letter_from_row(row, _time, where) for row in rows]

    async def _count(self, pipeline: str, wanted: LetterFilter) -> int:
        rows = await self._query(
            self.sql.count, letter_params(DIALECT, pipeline, wanted), "count in"
        )
        number = rows[0][0]
        assert isinstance(number, int)
        return number

    async def _purge(self, pipeline: str, wanted: LetterFilter) -> int:
        params = letter_params(DIALECT, pipeline, wanted)
        return len(await self._query(self.sql.purge, params, "purge in", write=True))

    async def _query(
        self, sql: str, params: builtins.list[object], what: str, *, write: bool = False
    ) -> builtins.list[tuple[object, ...]]:
        await self.open()

        def run(conn: duckdb.DuckDBPyConnection) -> builtins.list[tuple[object, ...]]:
            if not write:
                return conn.execute(sql, params).fetchall()
            with transaction(conn):
                return conn.execute(sql, params).fetchall()

        return await self._db.run(run, what=f"dead-letter {what} table {self.table!r}")


def _time(stored: object) -> datetime:
    assert isinstance(stored, datetime)
    return stored.astimezone(UTC)


def letter_row(letter: DeadLetter) -> list[object]:
    """The bound parameters of :attr:`DeadLetterSql.put` for ``letter``."""
    time = letter.time if letter.time.tzinfo else letter.time.replace(tzinfo=UTC)
    return [
        letter.pipeline,
        letter.stage,
        letter.error,
        letter.error_type,
        *letter_json(letter),
        time.astimezone(UTC),
        letter.key,
    ]
