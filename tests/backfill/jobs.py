"""Partition jobs that backfill specs in the tests name as ``tests.backfill.jobs:…``."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg

from asyncetl.backfill import Partition

_pools: dict[str, asyncpg.Pool] = {}
_pool_lock = anyio.Lock()

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS target (key text PRIMARY KEY, pid integer NOT NULL, n integer NOT NULL);
"""


async def noop(partition: Partition) -> None:
    """Does nothing."""


async def write_marker(
    partition: Partition, *, marker: str, sleep: float = 0.0, fail: str = ""
) -> None:
    """Append ``start KEY`` to ``marker``, sleep, fail when KEY is in ``fail``, append ``end KEY``."""
    await _append(marker, f"start {partition.key}")
    await anyio.sleep(sleep)
    if partition.key in fail.split(","):
        raise RuntimeError(f"partition {partition.key} is broken")
    await _append(marker, f"end {partition.key}")


async def _append(path: str, line: str) -> None:
    def write() -> None:
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    await anyio.to_thread.run_sync(write)


async def record_run(partition: Partition, *, dsn: str, sleep: float = 0.3) -> None:
    """Record the run's interval in ``runs`` and replace the partition's row of ``target``."""
    pool = await _pool(dsn)
    pid = os.getpid()
    run_id = await pool.fetchval(
        "INSERT INTO runs (key, pid) VALUES ($1, $2) RETURNING id", partition.key, pid
    )
    await anyio.sleep(sleep)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM target WHERE key = $1", partition.key)
        await conn.execute(
            "INSERT INTO target (key, pid, n) VALUES ($1, $2, 1)", partition.key, pid
        )
        await conn.execute("UPDATE runs SET finished_at = clock_timestamp() WHERE id = $1", run_id)


async def _pool(dsn: str) -> asyncpg.Pool:
    async with _pool_lock:
        if dsn not in _pools:
            _pools[dsn] = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        return _pools[dsn]
