"""PostgreSQL checkpoint and dead-letter stores.

The checkpoint table is also written by :class:`~asyncetl.connectors.postgres.sinks.PostgresSink`
inside each batch's own transaction when both live in the same database
(exactly-once); :meth:`PostgresCheckpointStore.save_on` is that shared write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeAlias, TypeVar

import asyncpg
import orjson

from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.connectors.postgres._sql import TableName, create_schema
from asyncetl.core.batch import JsonValue, Position
from asyncetl.core.errors import CheckpointError, ConfigError, ConnectorError
from asyncetl.core.interfaces import Checkpoint, CheckpointStore, DeadLetter, DeadLetterStore

__all__ = ["PostgresCheckpointStore", "PostgresDeadLetterStore"]

_T = TypeVar("_T")
_Body: TypeAlias = Callable[[asyncpg.Connection], Awaitable[_T]]


async def _create_once(conn: asyncpg.Connection, table: TableName, ddl: str) -> None:
    """Run ``CREATE TABLE IF NOT EXISTS`` under an advisory lock: concurrent runs may race."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", str(table))
    if table.schema is not None:
        await conn.execute(create_schema(table.schema))
    await conn.execute(ddl)


class _TableStore:
    """Holds the DSN, retry policy and pool of a store keeping its rows in one table."""

    #: Creates the table when missing (``CREATE TABLE IF NOT EXISTS``); set by the subclass.
    _ddl: str

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
                lambda conn: _create_once(conn, self.table, self._ddl),
                policy=self.policy,
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def _run(self, what: str, body: _Body[_T]) -> _T:
        """``body`` in one transaction, retried whole; ``what`` names it, the table appended."""
        return await in_transaction(
            self.pool, self.dsn, f"{what} in {self.table}", body, policy=self.policy
        )


class PostgresCheckpointStore(_TableStore, CheckpointStore):
    """Checkpoints as rows ``(pipeline, source) → position jsonb`` of a table it creates.

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param table: the checkpoint table; created when missing.
    :param schema: the table's schema; created when missing.
    :param retries: retries of a failed connection or statement.
    :param retry_max_time: seconds after which no retry starts.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "asyncetl_checkpoints",
        schema: str = "public",
        retries: int = 5,
        retry_max_time: float = 60.0,
    ) -> None:
        super().__init__(dsn, TableName(schema, table), retries, retry_max_time)
        t = self.table.sql
        self._ddl = (
            f"CREATE TABLE IF NOT EXISTS {t} (pipeline text NOT NULL, source text NOT NULL, "
            "position jsonb, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (pipeline, source))"
        )
        self._load_sql = f"SELECT position::text FROM {t} WHERE pipeline = $1 AND source = $2"  # noqa: S608
        self._save_sql = (
            f"INSERT INTO {t} (pipeline, source, position, updated_at) "  # noqa: S608
            "VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (pipeline, source) "
            "DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at"
        )

    async def load(self, pipeline: str, source: str) -> Position:
        async def fetch(conn: asyncpg.Connection) -> str | None:
            value: str | None = await conn.fetchval(self._load_sql, pipeline, source)
            return value

        text = await self._run(f"loading the checkpoint of {pipeline!r}", fetch)
        if text is None:
            return None
        try:
            position: Position = orjson.loads(text)
        except orjson.JSONDecodeError as exc:  # jsonb is always valid JSON; be safe anyway
            raise CheckpointError(
                f"checkpoint of {pipeline!r} in {self.table} is not JSON"
            ) from exc
        return position

    async def save(self, checkpoint: Checkpoint) -> None:
        await self._run(
            f"saving the checkpoint of {checkpoint.pipeline!r}",
            lambda conn: self.save_on(conn, checkpoint),
        )

    async def save_on(self, conn: asyncpg.Connection, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` through ``conn``, inside the caller's transaction."""
        await conn.execute(
            self._save_sql,
            checkpoint.pipeline,
            checkpoint.source,
            orjson.dumps(checkpoint.position).decode(),
        )

    async def _run(self, what: str, body: _Body[_T]) -> _T:
        try:
            return await super()._run(what, body)
        except ConnectorError as exc:
            raise CheckpointError(str(exc)) from exc


class PostgresDeadLetterStore(_TableStore, DeadLetterStore):
    """Dead letters as rows of a table it creates; ids are the row's ``bigserial`` id.

    ``record`` and ``position`` are stored as ``json`` (not ``jsonb``), which
    keeps any JSON text as it was, NUL escapes included.

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
        self._ddl = (
            f"CREATE TABLE IF NOT EXISTS {t} (id bigserial PRIMARY KEY, pipeline text NOT NULL, "
            "stage text NOT NULL, error text NOT NULL, error_type text NOT NULL, record json, "
            "position json, time timestamptz NOT NULL)"
        )
        self._put_sql = (
            f"INSERT INTO {t} (pipeline, stage, error, error_type, record, position, time) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5::json, $6::json, $7)"
        )
        self._list_sql = (
            "SELECT id, pipeline, stage, error, error_type, record::text AS record, "  # noqa: S608
            f"position::text AS position, time FROM {t} WHERE pipeline = $1 ORDER BY id LIMIT $2"
        )
        self._remove_sql = f"DELETE FROM {t} WHERE pipeline = $1 AND id = ANY($2::bigint[])"  # noqa: S608

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        rows = [
            (d.pipeline, d.stage, d.error, d.error_type, _json(d.record), _json(d.position), d.time)
            for d in letters
        ]
        if rows:
            await self._run(
                "storing dead letters", lambda conn: conn.executemany(self._put_sql, rows)
            )

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
