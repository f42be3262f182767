"""Dead letters in a table of a SQLite file."""

from __future__ import annotations

import builtins
import functools
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

import orjson

from asyncetl.connectors.sqlite._connection import immediate
from asyncetl.connectors.sqlite._sql import TABLE_COLUMNS, DeadLetterQueries, DeadLetterSql
from asyncetl.connectors.sqlite._table import TableStore
from asyncetl.core.errors import PermanentError
from asyncetl.core.interfaces import DeadLetter, DeadLetterStore

__all__ = ["SqliteDeadLetterStore", "letter_row", "migrate"]

_NO_LIMIT = -1  # SQLite's LIMIT for "all rows"


class SqliteDeadLetterStore(TableStore[DeadLetterSql], DeadLetterStore):
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

    async def list(self, pipeline: str, *, limit: int | None = None) -> list[DeadLetter]:
        """The letters of ``pipeline``, oldest first.

        :raises PermanentError: when a stored row is not valid JSON.
        """
        await self._ready()
        params = (pipeline, _NO_LIMIT if limit is None else max(0, limit))

        def select(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
            return conn.execute(self.sql.list, params).fetchall()

        rows = await self._db.run(select, what=f"dead-letter list from table {self.table!r}")
        return [self._letter(row) for row in rows]

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        """Delete the letters of ``pipeline`` with these ids; unknown ids are ignored."""
        await self._ready()
        params = [(pipeline, int(i)) for i in ids if str(i).isdigit()]

        def delete(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.executemany(self.sql.remove, params)

        if params:
            await self._db.run(delete, what=f"dead-letter remove from table {self.table!r}")

    async def find(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """The letters of ``pipeline`` matching every filter given, oldest first, in one query.

        :raises PermanentError: when a stored row is not valid JSON.
        """
        await self._ready()
        params = _filters(pipeline, stage, since, before, ids)
        params["limit"] = _NO_LIMIT if limit is None else max(0, limit)
        sql = self._queries.find

        def select(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
            return conn.execute(sql, params).fetchall()

        rows = await self._db.run(select, what=f"dead-letter find in table {self.table!r}")
        return [self._letter(row) for row in rows]

    async def count(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        await self._ready()
        params = _filters(pipeline, stage, since, before, ids)
        sql = self._queries.count

        def select(conn: sqlite3.Connection) -> int:
            number: int = conn.execute(sql, params).fetchone()[0]
            return number

        return await self._db.run(select, what=f"dead-letter count in table {self.table!r}")

    async def purge(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete the matching letters of ``pipeline`` in one statement; how many went."""
        await self._ready()
        params = _filters(pipeline, stage, None, before, ids)
        sql = self._queries.purge

        def delete(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                return conn.execute(sql, params).rowcount

        return await self._db.run(delete, what=f"dead-letter purge in table {self.table!r}")

    @functools.cached_property
    def _queries(self) -> DeadLetterQueries:
        return DeadLetterQueries.of(self.table)

    def _letter(self, row: tuple[object, ...]) -> DeadLetter:
        letter_id, pipeline, stage, error, error_type, record, position, time = row
        try:
            return DeadLetter(
                pipeline=str(pipeline),
                stage=str(stage),
                error=str(error),
                error_type=str(error_type),
                record=orjson.loads(str(record)),
                position=orjson.loads(str(position)),
                time=datetime.fromisoformat(str(time)),
                id=str(letter_id),
            )
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            raise PermanentError(
                f"dead letter {letter_id} in SQLite table {self.table!r} of {self.path} is "
                f"unreadable ({exc}); fix or delete that row"
            ) from exc


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
        orjson.dumps(letter.record, default=str).decode(),
        orjson.dumps(letter.position, default=str).decode(),
        time.astimezone(UTC).isoformat(),
        letter.key,
    )


def _filters(
    pipeline: str,
    stage: str | None,
    since: datetime | None,
    before: datetime | None,
    ids: Sequence[str] | None,
) -> dict[str, object]:
    """The named parameters of :class:`DeadLetterQueries`; an id that is no integer matches none."""
    numbers = None if ids is None else orjson.dumps(_row_ids(ids))
    return {
        "pipeline": pipeline,
        "stage": stage,
        "since": None if since is None else _utc_text(since),
        "before": None if before is None else _utc_text(before),
        "ids": None if numbers is None else numbers.decode(),
    }


def _utc_text(moment: datetime) -> str:
    """``moment`` as the letters' times are stored: ISO 8601 in UTC (naive means UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _row_ids(ids: Sequence[str]) -> list[int]:
    """The ids that can be row ids (64-bit integers); any other id matches no row."""
    numbers = (int(i) for i in ids if str(i).isascii() and str(i).isdigit())
    return [number for number in numbers if number < 2**63]
