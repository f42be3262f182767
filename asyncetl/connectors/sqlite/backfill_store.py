"""The default backfill status store: one SQLite file.

Several processes on one machine may share the file: a claim runs in a
``BEGIN IMMEDIATE`` transaction, so two workers never take the same partition,
and leases work as in the PostgreSQL store. Every call runs in a worker
thread (SQLite blocks), one at a time per store.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, cast

import anyio
import anyio.to_thread

from asyncetl.connectors.sqlite._connection import immediate
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
from asyncetl.core.errors import CheckpointError, TransientError

__all__ = ["SqliteBackfillStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS asyncetl_backfill_partitions (
    backfill TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    worker TEXT,
    lease_until REAL,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (backfill, key)
);
CREATE INDEX IF NOT EXISTS asyncetl_backfill_partitions_claim
    ON asyncetl_backfill_partitions (backfill, kind, status, ordinal);
"""
_INSERT = """
INSERT INTO asyncetl_backfill_partitions (backfill, key, kind, ordinal) VALUES (?, ?, ?, ?)
ON CONFLICT (backfill, key) DO NOTHING
"""
_RESET = """
UPDATE asyncetl_backfill_partitions
SET status = 'pending', error = NULL, worker = NULL, lease_until = NULL
WHERE backfill = ? AND kind = ? AND ordinal BETWEEN ? AND ? AND status = ?
  AND NOT (status = 'running' AND lease_until >= ?)
"""
_PICK_OLDEST = """
SELECT key FROM asyncetl_backfill_partitions
WHERE backfill = ? AND kind = ? AND ordinal BETWEEN ? AND ?
  AND (status = 'pending' OR (status = 'running' AND lease_until < ?))
ORDER BY ordinal ASC LIMIT 1
"""
_PICK_NEWEST = _PICK_OLDEST.replace("ASC", "DESC")
_TAKE = """
UPDATE asyncetl_backfill_partitions
SET status = 'running', worker = ?, lease_until = ?, started_at = ?, finished_at = NULL,
    error = NULL
WHERE backfill = ? AND key = ?
"""
_RENEW = """
UPDATE asyncetl_backfill_partitions SET lease_until = ?
WHERE backfill = ? AND key = ? AND worker = ? AND status = 'running'
"""
_FINISH = """
UPDATE asyncetl_backfill_partitions
SET status = ?, attempts = attempts + ?, error = ?, worker = NULL, lease_until = NULL,
    finished_at = ?
WHERE backfill = ? AND key = ? AND worker = ? AND status = 'running'
"""
_STATES = """
SELECT key, kind, ordinal, status, attempts, error, worker, started_at, finished_at, lease_until
FROM asyncetl_backfill_partitions WHERE backfill = ?
"""
_STATES_IN = " AND kind = ? AND ordinal BETWEEN ? AND ?"
_ORDER = " ORDER BY kind, ordinal"


class SqliteBackfillStore(BackfillStore):
    """Partition statuses in table ``asyncetl_backfill_partitions`` of a SQLite file.

    :param path: the database file; created (with its table) when missing.
    :param busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._one_at_a_time = anyio.CapacityLimiter(1)

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await self._run(self._connect)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._one_at_a_time)

    async def register(self, backfill: str, partitions: Sequence[Partition], reset: Reset) -> None:
        if not partitions:
            return
        scope = Scope.of(partitions)
        rows = [(backfill, p.key, p.kind, p.ordinal) for p in partitions]

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            resets = [(*_scope(scope, backfill), status, now) for status in RESETS[reset]]
            with immediate(conn):
                conn.executemany(_INSERT, rows)
                conn.executemany(_RESET, resets)

        await self._call(write)

    async def claim(
        self, backfill: str, scope: Scope, *, worker: str, lease: float, newest_first: bool
    ) -> str | None:
        pick = _PICK_NEWEST if newest_first else _PICK_OLDEST

        def take(conn: sqlite3.Connection) -> str | None:
            now = time.time()
            with immediate(conn):
                row = conn.execute(pick, (*_scope(scope, backfill), now)).fetchone()
                if row is None:
                    return None
                conn.execute(_TAKE, (worker, now + lease, now, backfill, row[0]))
                return cast(str, row[0])

        return await self._call(take)

    async def renew(
        self, backfill: str, keys: Sequence[str], *, worker: str, lease: float
    ) -> set[str]:
        def extend(conn: sqlite3.Connection) -> set[str]:
            until = time.time() + lease
            with immediate(conn):
                return {
                    key
                    for key in keys
                    if conn.execute(_RENEW, (until, backfill, key, worker)).rowcount
                }

        return await self._call(extend)

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
        finished = None if outcome == "pending" else time.time()
        params = (outcome, tries, error, finished, backfill, key, worker)

        def write(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                return conn.execute(_FINISH, params).rowcount == 1

        return await self._call(write)

    async def states(self, backfill: str, scope: Scope | None = None) -> list[PartitionState]:
        sql = _STATES + (_STATES_IN if scope else "") + _ORDER
        params = _scope(scope, backfill) if scope else (backfill,)

        def read(conn: sqlite3.Connection) -> list[PartitionState]:
            return [_state(row) for row in conn.execute(sql, params)]

        return await self._call(read)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # Durable across process crashes; a power cut may lose the last statuses,
            # which only makes their (idempotent) partitions run again.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise CheckpointError(f"backfill store {self.path} is not open; call open() first")
        conn = self._conn
        return await self._run(lambda: fn(conn))

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._one_at_a_time)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise TransientError(f"backfill store {self.path} is busy: {exc}") from exc
            raise CheckpointError(f"cannot use backfill store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot use backfill store {self.path}: {exc}") from exc


def _scope(scope: Scope, backfill: str) -> tuple[str, str, int, int]:
    return backfill, scope.kind, scope.first, scope.last


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _state(row: tuple[object, ...]) -> PartitionState:
    key, kind, ordinal, status, attempts, error, worker, started, finished, lease = row
    return PartitionState(
        key=cast(str, key),
        kind=cast(str, kind),
        ordinal=cast(int, ordinal),
        status=cast(Status, status),
        attempts=cast(int, attempts),
        error=cast("str | None", error),
        worker=cast("str | None", worker),
        started_at=_when(cast("float | None", started)),
        finished_at=_when(cast("float | None", finished)),
        lease_until=_when(cast("float | None", lease)),
    )
