"""PostgreSQL dead letters: rows of a table, ids from its ``bigserial``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from asyncetl.connectors.postgres._sql import DIALECT, TableName, quote_ident
from asyncetl.connectors.postgres._table import TableStore
from asyncetl.core.batch import JsonValue, Reject
from asyncetl.core.errors import ConfigError, PermanentError
from asyncetl.core.interfaces import DeadLetter, LetterFilter, Settle
from asyncetl.core.store_sql import FilteredLetterStore, LetterQueries, letter_params, limit_param

__all__ = ["PostgresDeadLetterStore", "settle_on"]


class PostgresDeadLetterStore(TableStore, FilteredLetterStore):
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
        self._sql = LetterQueries.of(DIALECT, self.table.name, self.table.schema)
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
            await conn.executemany(self._sql.put, rows)

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        try:
            numbers = [int(i) for i in ids]
        except ValueError as exc:
            raise ConfigError(f"dead-letter ids are integers, not {list(ids)!r}") from exc
        await self._run(
            "removing dead letters", lambda conn: conn.execute(self._remove_sql, pipeline, numbers)
        )

    async def _find(
        self, pipeline: str, wanted: LetterFilter, limit: int | None
    ) -> builtins.list[DeadLetter]:
        params = (*letter_params(DIALECT, pipeline, wanted), limit_param(DIALECT, limit))

        async def fetch(conn: asyncpg.Connection) -> builtins.list[asyncpg.Record]:
            return await conn.fetch(self._sql.find, *params)

        rows = await self._run("finding dead letters", fetch)
        return [_letter(row) for row in rows]

    async def _count(self, pipeline: str, wanted: LetterFilter) -> int:
        return await self._number("counting dead letters", self._sql.count, pipeline, wanted)

    async def _purge(self, pipeline: str, wanted: LetterFilter) -> int:
        return await self._number("purging dead letters", self._sql.purge, pipeline, wanted)

    async def _number(self, what: str, sql: str, pipeline: str, wanted: LetterFilter) -> int:
        params = letter_params(DIALECT, pipeline, wanted)

        async def fetch(conn: asyncpg.Connection) -> int:
            number: int = await conn.fetchval(sql, *params)
            return number

        return await self._run(what, fetch)


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
