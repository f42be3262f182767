"""Backfill statuses in PostgreSQL: one backfill shared by workers on many machines.

A worker claims the next pending partition with ``SELECT … FOR UPDATE SKIP
LOCKED`` and marks it running under a lease (``lease_until``, from the
server's clock, so workers' clocks need not agree); it renews the lease while
it works. A partition whose worker died is claimable again once its lease
expired. Every write names the worker, so one that lost its lease cannot
overwrite the outcome of the one that took over.

The table name is fixed (``asyncetl_backfill_partitions``): every statement
below is constant SQL, values are bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar, cast

import asyncpg

from asyncetl.connectors.postgres._connect import (
    Dsn,
    close_pool,
    in_transaction,
    open_pool,
    retry_policy,
)
from asyncetl.core.backfill_store import (
    RESETS,
    BackfillStore,
    Outcome,
    Partition,
    PartitionState,
    Reset,
    Scope,
    Status,
)
from asyncetl.core.errors import CheckpointError

__all__ = ["PostgresBackfillStore"]

T = TypeVar("T")

# Concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog: serialise it.
_SCHEMA_LOCK = 0x6173796E63_6266  # "asyncbf"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS asyncetl_backfill_partitions (
    backfill text NOT NULL,
    key text NOT NULL,
    kind text NOT NULL,
    ordinal bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    error text,
    worker text,
    lease_until timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (backfill, key)
);
CREATE INDEX IF NOT EXISTS asyncetl_backfill_partitions_claim
    ON asyncetl_backfill_partitions (backfill, kind, status, ordinal);
"""
_INSERT = """
INSERT INTO asyncetl_backfill_partitions (backfill, key, kind, ordinal)
SELECT $1, k, $2, o FROM unnest($3::text[], $4::bigint[]) AS t(k, o)
ON CONFLICT (backfill, key) DO NOTHING
"""
_RESET = """
UPDATE asyncetl_backfill_partitions
SET status = 'pending', error = NULL, worker = NULL, lease_until = NULL
WHERE backfill = $1 AND kind = $2 AND ordinal BETWEEN $3 AND $4 AND status = ANY($5::text[])
  AND NOT (status = 'running' AND lease_until >= clock_timestamp())
"""
_CLAIM = """
UPDATE asyncetl_backfill_partitions AS p
SET status = 'running', worker = $5, started_at = clock_timestamp(), finished_at = NULL,
    error = NULL, lease_until = clock_timestamp() + make_interval(secs => $6)
FROM (
    SELECT key FROM asyncetl_backfill_partitions
    WHERE backfill = $1 AND kind = $2 AND ordinal BETWEEN $3 AND $4
      AND (status = 'pending' OR (status = 'running' AND lease_until < clock_timestamp()))
    ORDER BY ordinal {direction} LIMIT 1
    FOR UPDATE SKIP LOCKED
) AS next
WHERE p.backfill = $1 AND p.key = next.key
RETURNING p.key
"""
_CLAIM_OLDEST = _CLAIM.replace("{direction}", "ASC")
_CLAIM_NEWEST = _CLAIM.replace("{direction}", "DESC")
_RENEW = """
UPDATE asyncetl_backfill_partitions
SET lease_until = clock_timestamp() + make_interval(secs => $4)
WHERE backfill = $1 AND key = ANY($2::text[]) AND worker = $3 AND status = 'running'
RETURNING key
"""
_FINISH = """
UPDATE asyncetl_backfill_partitions
SET status = $4, attempts = attempts + $5, error = $6, worker = NULL, lease_until = NULL,
    finished_at = CASE WHEN $4 = 'pending' THEN NULL ELSE clock_timestamp() END
WHERE backfill = $1 AND key = $2 AND worker = $3 AND status = 'running'
RETURNING key
"""
_STATES = """
SELECT key, kind, ordinal, status, attempts, error, worker, started_at, finished_at, lease_until
FROM asyncetl_backfill_partitions
WHERE backfill = $1 AND ($2::text IS NULL OR (kind = $2 AND ordinal BETWEEN $3 AND $4))
ORDER BY kind, ordinal
"""


class PostgresBackfillStore(BackfillStore):
    """Partition statuses in table ``asyncetl_backfill_partitions`` (created when missing).

    :param dsn: ``postgresql://user[:password]@host[:port]/database``.
    :param pool_size: connections kept; claims, renewals and finishes are short.
    :param retries: retries of one store call after a transient failure.
    :param retry_max_time: seconds past which no retry of a call starts.
    """

    def __init__(
        self, dsn: str, *, pool_size: int = 4, retries: int = 5, retry_max_time: float = 30.0
    ) -> None:
        self.dsn = Dsn.parse(dsn)
        self.pool_size = pool_size
        self.policy = retry_policy(retries, retry_max_time)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = await open_pool(self.dsn, policy=self.policy, max_size=self.pool_size)

        async def create(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(_SCHEMA)

        await self._tx("creating the backfill table", create)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def register(self, backfill: str, partitions: Sequence[Partition], reset: Reset) -> None:
        if not partitions:
            return
        scope = Scope.of(partitions)
        keys = [p.key for p in partitions]
        ordinals = [p.ordinal for p in partitions]

        async def write(conn: asyncpg.Connection) -> None:
            await conn.execute(_INSERT, backfill, scope.kind, keys, ordinals)
            if RESETS[reset]:
                await conn.execute(
                    _RESET, backfill, scope.kind, scope.first, scope.last, list(RESETS[reset])
                )

        await self._tx(f"registering the partitions of backfill {backfill!r}", write)

    async def claim(
        self, backfill: str, scope: Scope, *, worker: str, lease: float, newest_first: bool
    ) -> str | None:
        sql = _CLAIM_NEWEST if newest_first else _CLAIM_OLDEST

        async def take(conn: asyncpg.Connection) -> str | None:
            key = await conn.fetchval(
                sql, backfill, scope.kind, scope.first, scope.last, worker, float(lease)
            )
            return cast("str | None", key)

        return await self._tx(f"claiming a partition of backfill {backfill!r}", take)

    async def renew(
        self, backfill: str, keys: Sequence[str], *, worker: str, lease: float
    ) -> set[str]:
        async def extend(conn: asyncpg.Connection) -> set[str]:
            rows = await conn.fetch(_RENEW, backfill, list(keys), worker, float(lease))
            return {cast(str, row["key"]) for row in rows}

        return await self._tx(f"renewing leases of backfill {backfill!r}", extend)

    async def finish(
        self,
        backfill: str,
        key: str,
        *,
        worker: str,
        outcome: Outcome,
        tries: int,
        error: str | None = None,
    ) -> bool:
        async def write(conn: asyncpg.Connection) -> bool:
            done = await conn.fetchval(_FINISH, backfill, key, worker, outcome, tries, error)
            return done is not None

        return await self._tx(f"recording partition {key!r} of backfill {backfill!r}", write)

    async def states(self, backfill: str, scope: Scope | None = None) -> list[PartitionState]:
        bounds = (scope.kind, scope.first, scope.last) if scope else (None, None, None)

        async def read(conn: asyncpg.Connection) -> list[PartitionState]:
            return [_state(row) for row in await conn.fetch(_STATES, backfill, *bounds)]

        return await self._tx(f"reading backfill {backfill!r}", read)

    async def _tx(self, what: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise CheckpointError(f"backfill store {self.dsn} is not open; call open() first")
        return await in_transaction(self._pool, self.dsn, what, body, policy=self.policy)


def _state(row: asyncpg.Record) -> PartitionState:
    return PartitionState(
        key=row["key"],
        kind=row["kind"],
        ordinal=row["ordinal"],
        status=cast(Status, row["status"]),
        attempts=row["attempts"],
        error=row["error"],
        worker=row["worker"],
        started_at=cast("datetime | None", row["started_at"]),
        finished_at=cast("datetime | None", row["finished_at"]),
        lease_until=cast("datetime | None", row["lease_until"]),
    )
