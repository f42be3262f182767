"""Checkpoints and dead letters in tables of a DuckDB file."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime

import duckdb
import orjson

from asyncetl.connectors.duckdb._check import table_problems
from asyncetl.connectors.duckdb._connection import DuckDBConnection, transaction
from asyncetl.connectors.duckdb._sql import (
    DIALECT,
    CheckpointSql,
    DeadLetterSql,
    checkpoint_sql,
    dead_letter_sql,
)
from asyncetl.core.dbapi_stores import DbApiCheckpointStore, DbApiDeadLetterStore
from asyncetl.core.interfaces import Checkpoint, DeadLetter, Problem
from asyncetl.core.store_sql import letter_json

__all__ = ["DuckDBCheckpointStore", "DuckDBDeadLetterStore", "checkpoint_row", "letter_row"]


class _InFile:
    """The DuckDB half of a :class:`~asyncetl.core.dbapi_stores.DbApiTableStore`."""

    database, dialect = "DuckDB", DIALECT
    path: str
    table: str

    async def check(self) -> list[Problem]:
        """Whether the database can be written; the table is created when missing."""
        return await table_problems(self.path, self.table, create=True)

    def _write(self, conn: duckdb.DuckDBPyConnection) -> AbstractContextManager[None]:
        return transaction(conn)

    def _time(self, stored: object) -> datetime:
        assert isinstance(stored, datetime)
        return stored.astimezone(UTC)


class DuckDBCheckpointStore(
    _InFile, DbApiCheckpointStore[duckdb.DuckDBPyConnection, CheckpointSql]
):
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
        super().__init__(path, table, checkpoint_sql(table), DuckDBConnection(str(path)))

    def _create(self, conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute(self.sql.create)

    def _row(self, checkpoint: Checkpoint) -> list[str]:
        return checkpoint_row(checkpoint)


class DuckDBDeadLetterStore(
    _InFile, DbApiDeadLetterStore[duckdb.DuckDBPyConnection, DeadLetterSql]
):
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
        super().__init__(path, table, dead_letter_sql(table), DuckDBConnection(str(path)))

    def _create(self, conn: duckdb.DuckDBPyConnection) -> None:
        for statement in self.sql.create:
            conn.execute(statement)

    def _row(self, letter: DeadLetter) -> list[object]:
        return letter_row(letter)


def checkpoint_row(checkpoint: Checkpoint) -> list[str]:
    """The parameters of :attr:`CheckpointSql.save` for ``checkpoint``."""
    return [checkpoint.pipeline, checkpoint.source, orjson.dumps(checkpoint.position).decode()]


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
