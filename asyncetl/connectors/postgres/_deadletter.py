"""PostgreSQL dead letters: rows of a table, ids from its ``bigserial``."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson

from asyncetl.connectors.postgres._sql import TableName, quote_ident
from asyncetl.connectors.postgres._table import TableStore
from asyncetl.core.batch import JsonValue, Reject
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.interfaces import DeadLetter, DeadLetterStore, Settle

__all__ = ["PostgresDeadLetterStore", "settle_on"]


class PostgresDeadLetterStore(TableStore, DeadLetterStore):
    """Dead letters as rows of a table it creates; ids are the row's ``bigserial`` id.

    ``record`` and ``position`` are stored as ``json`` (not ``jsonb``), which
    keeps any JSON text as it was, NUL escapes included. ``key`` is unique: a
    letter whose key is stored already is skipped. A table made by an older
    version gets the column when the store opens; its rows keep a NULL key.

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param table: the dead-letter table; created when missing.
    :param schema: the table's schema; created when missing.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "asyncetl_dead_letters",
        schema: str = "public",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        super().__init__(dsn, TableName(schema, table), retries, retry_max_time)
        t = self.table.sql
        by_key = quote_ident(f"{table}_by_key")
        self._privileges = ("SELECT", "INSERT", "DELETE")
        self._ddl = (
            f"CREATE TABLE IF NOT EXISTS {t} (id bigserial PRIMARY KEY, pipeline text NOT NULL, "
            "stage text NOT NULL, error text NOT NULL, error_type text NOT NULL, record json, "
            "position json, time timestamptz NOT NULL, key text); "
            f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS key text; "
            f"CREATE UNIQUE INDEX IF NOT EXISTS {by_key} ON {t} (key)"
        )
        self._put_sql = (
            f"INSERT INTO {t} (pipeline, stage, error, error_type, record, position, time, key) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5::json, $6::json, $7, $8) ON CONFLICT (key) DO NOTHING"
        )
        self._list_sql = (
            "SELECT id, pipeline, stage, error, error_type, record::text AS record, "  # noqa: S608
            f"position::text AS position, time FROM {t} WHERE pipeline = $1 ORDER BY id LIMIT $2"
        )
        self._remove_sql = f"DELETE FROM {t} WHERE pipeline = $1 AND id = ANY($2::bigint[])"  # noqa: S608

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` in one transaction, skipping those whose key is stored."""
        if letters:
            await self._run("storing dead letters", lambda conn: self.put_on(conn, letters))

    async def put_on(self, conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` through ``conn``, inside the caller's transaction (a sink's)."""
        rows = [
            (
                d.pipeline,
                d.stage,
                d.error,
                d.error_type,
                _json(d.record),
                _json(d.position),
                d.time,
                d.key,
            )
            for d in letters
        ]
        if rows:
            await conn.executemany(self._put_sql, rows)

    async def list(self, pipeline: str, *, limit: int | None = None) -> list[DeadLetter]:
        async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(self._list_sql, pipeline, limit)

        rows = await self._run("listing dead letters", fetch)
        return [_letter(row) for row in rows]

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        try:
            numbers = [int(i) for i in ids]
        except ValueError as exc:
            raise ConfigError(f"dead-letter ids are integers, not {list(ids)!r}") from exc
        await self._run(
            "removing dead letters", lambda conn: conn.execute(self._remove_sql, pipeline, numbers)
        )

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
        """The letters of ``pipeline`` matching every filter given, oldest first, in one query."""
        params = (*_filters(pipeline, stage, since, before, ids), limit)

        async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(self._queries.find, *params)

        rows = await self._run("finding dead letters", fetch)
        return [_letter(row) for row in rows]

    async def count(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        params = _filters(pipeline, stage, since, before, ids)

        async def fetch(conn: asyncpg.Connection) -> int:
            number: int = await conn.fetchval(self._queries.count, *params)
            return number

        return await self._run("counting dead letters", fetch)

    async def purge(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete the matching letters of ``pipeline`` in one statement; how many went."""
        params = _filters(pipeline, stage, None, before, ids)

        async def delete(conn: asyncpg.Connection) -> int:
            number: int = await conn.fetchval(self._queries.purge, *params)
            return number

        return await self._run("purging dead letters", delete)

    @functools.cached_property
    def _queries(self) -> _Queries:
        return _Queries.of(self.table.sql)


#: The filters of a dead-letter query, $1 to $5; a filter is off when its parameter is NULL.
_FILTERS = (
    "pipeline = $1 AND ($2::text IS NULL OR stage = $2) "
    "AND ($3::timestamptz IS NULL OR time >= $3) AND ($4::timestamptz IS NULL OR time < $4) "
    "AND ($5::bigint[] IS NULL OR id = ANY($5))"
)


@dataclass(frozen=True, slots=True)
class _Queries:
    find: str
    count: str
    purge: str

    @classmethod
    def of(cls, table: str) -> _Queries:
        columns = (
            "id, pipeline, stage, error, error_type, record::text AS record, "
            "position::text AS position, time"
        )
        return cls(
            find=f"SELECT {columns} FROM {table} WHERE {_FILTERS} ORDER BY id LIMIT $6",  # noqa: S608
            count=f"SELECT count(*) FROM {table} WHERE {_FILTERS}",  # noqa: S608
            purge=(
                f"WITH gone AS (DELETE FROM {table} WHERE {_FILTERS} RETURNING 1) "  # noqa: S608
                "SELECT count(*) FROM gone"
            ),
        )


def _filters(
    pipeline: str,
    stage: str | None,
    since: datetime | None,
    before: datetime | None,
    ids: Sequence[str] | None,
) -> tuple[object, ...]:
    """The parameters of :data:`_FILTERS`; an id that is no integer matches none."""
    numbers = None if ids is None else _row_ids(ids)
    return (pipeline, stage, _aware(since), _aware(before), numbers)


def _aware(moment: datetime | None) -> datetime | None:
    """Naive times mean UTC, as the letters' times do."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def settle_on(
    conn: asyncpg.Connection,
    settle: Settle | None,
    rejects: Sequence[Reject],
    store: PostgresDeadLetterStore | None,
) -> None:
    """Settle a sink's ``rejects`` inside its transaction, before it commits.

    ``settle`` raises to fail the batch (the transaction then rolls back); the
    letters it returns are stored through ``conn`` in ``store``.
    """
    if settle is None:
        return
    letters = await settle(list(rejects))
    if not letters:
        return
    if store is None:
        raise PermanentError("a sink was given dead letters to store but has no store bound")
    await store.put_on(conn, letters)


def _json(value: JsonValue) -> str:
    return orjson.dumps(value).decode()


def _letter(row: asyncpg.Record) -> DeadLetter:
    time: datetime = row["time"]
    return DeadLetter(
        pipeline=row["pipeline"],
        stage=row["stage"],
        error=row["error"],
        error_type=row["error_type"],
        record=_loads(row["record"]),
        position=_loads(row["position"]),
        time=time,
        id=str(row["id"]),
    )


def _loads(text: str | None) -> JsonValue:
    if text is None:
        return None
    value: JsonValue = orjson.loads(text)
    return value


def _row_ids(ids: Sequence[str]) -> list[int]:
    """The ids that can be row ids (64-bit integers); any other id matches no row."""
    numbers = (int(i) for i in ids if str(i).isascii() and str(i).isdigit())
    return [number for number in numbers if number < 2**63]
