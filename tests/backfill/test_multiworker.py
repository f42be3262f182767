"""Several worker processes share one backfill through the PostgreSQL store; one is killed."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio.abc import Process

from tests.conftest import throwaway_database

from .jobs import RUNS_DDL

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
DAYS = [f"2024-01-{day:02d}" for day in range(1, 19)]
SPEC = """
[backfill]
name = "shared"
function = "tests.backfill.jobs:record_run"
every = "day"

[backfill.params]
dsn = "${MW_DSN}"
sleep = 0.4
"""


async def start_worker(spec: Path, dsn: str, log: Path, parallel: int) -> Process:
    command = [
        sys.executable,
        "-m",
        "asyncetl",
        "backfill",
        str(spec),
        "--start",
        DAYS[0],
        "--end",
        DAYS[-1],
        "--store",
        dsn,
        "--parallel",
        str(parallel),
        "--lease",
        "3",  # renewed every second; generous for a loaded 2-core machine
        "--log-level",
        "warning",
    ]
    with log.open("wb") as output:
        return await anyio.open_process(
            command, cwd=REPO, env={**os.environ, "MW_DSN": dsn}, stdout=output, stderr=output
        )


async def kill_mid_partition(conn: asyncpg.Connection, victim: Process) -> datetime:
    """SIGKILL ``victim`` just after it started a partition; returns the moment of the kill."""
    with anyio.fail_after(20):
        while not await conn.fetchval(
            "SELECT count(*) FROM runs WHERE pid = $1 AND finished_at IS NULL "
            "AND started_at > clock_timestamp() - interval '100 milliseconds'",
            victim.pid,
        ):
            await anyio.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    await victim.wait()
    killed_at: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return killed_at


async def test_every_partition_succeeds_exactly_once_and_never_twice_at_once(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "shared.toml"
    spec.write_text(SPEC)
    async with throwaway_database() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(RUNS_DDL)
            workers = [
                await start_worker(spec, dsn, tmp_path / f"worker{n}.log", 1 if n == 0 else 2)
                for n in range(3)
            ]
            victim, survivors = workers[0], workers[1:]
            killed_at = await kill_mid_partition(conn, victim)
            with anyio.fail_after(40):
                codes = [await worker.wait() for worker in survivors]
            logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker*.log")))
            assert codes == [0, 0], logs
            target = await conn.fetch("SELECT key, n FROM target ORDER BY key")
            runs = await conn.fetch("SELECT key, pid, started_at, finished_at FROM runs")
            states = await conn.fetch(
                "SELECT key, status FROM asyncetl_backfill_partitions ORDER BY key"
            )
        finally:
            await conn.close()
    assert [(r["key"], r["n"]) for r in target] == [(day, 1) for day in DAYS]
    assert [(r["key"], r["status"]) for r in states] == [(day, "succeeded") for day in DAYS]
    finished = sorted(r["key"] for r in runs if r["finished_at"] is not None)
    assert finished == DAYS  # each partition completed exactly once
    interrupted = [r for r in runs if r["finished_at"] is None]
    assert [r["pid"] for r in interrupted] == [victim.pid]
    taken_over = [r for r in runs if r["key"] == interrupted[0]["key"] and r["finished_at"]]
    assert taken_over[0]["pid"] != victim.pid
    assert taken_over[0]["started_at"] > killed_at  # only once the victim's lease expired
    for day in DAYS:
        intervals = sorted(
            (r["started_at"], r["finished_at"] or killed_at) for r in runs if r["key"] == day
        )
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"partition {day} ran twice at once"
