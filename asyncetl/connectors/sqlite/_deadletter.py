"""Dead letters in a table of a SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC

from asyncetl.connectors.sqlite._connection import SqliteConnection
from asyncetl.connectors.sqlite._sql import TABLE_COLUMNS, DeadLetterSql, dead_letter_sql
from asyncetl.connectors.sqlite._table import SqliteTable, connection
from asyncetl.core.dbapi_stores import DbApiDeadLetterStore
from asyncetl.core.interfaces import DeadLetter
from asyncetl.core.store_sql import letter_json

__all__ = ["SqliteDeadLetterStore", "letter_row", "migrate"]


class SqliteDeadLetterStore(SqliteTable, DbApiDeadLetterStore[sqlite3.Connection, DeadLetterSql]):
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

    _db: SqliteConnection

    def __init__(
        self, path: str, *, table: str = "asyncetl_dead_letters", busy_timeout: float = 5.0
    ) -> None:
        db = connection("SqliteDeadLetterStore", path, busy_timeout)
        super().__init__(path, table, dead_letter_sql(table), db)

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.executescript(self.sql.create)
        migrate(self.sql, self.table, conn)

    def _row(self, letter: DeadLetter) -> tuple[str | None, ...]:
        return letter_row(letter)

    def _purged(self, conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> int:
        return conn.execute(sql, params).rowcount  # the statement returns no rows


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
