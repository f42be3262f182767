"""Backfill benchmark: I/O-bound daily partitions at --parallel 1, 4 and 8, then two workers.

Each partition waits ``--sleep`` seconds on the database (``pg_sleep``), then
replaces its day in a table with ``--rows`` rows (COPY into a fresh transaction
after deleting the day). Printed: a plain ``for`` loop over the partitions (the
baseline, no asyncetl), asyncetl at each --parallel, and the speed-ups. Then
two worker processes share one backfill through the PostgreSQL store, and the
run is checked: every partition succeeded exactly once, none ran twice at
once, every day holds exactly ``--rows`` rows.

    python benchmarks/backfill.py [--partitions 90] [--sleep 0.2] [--rows 10000]

Needs PostgreSQL (``--server``, default ``postgresql://postgres@127.0.0.1:5432``);
it works in a throwaway database that it drops at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import anyio
import asyncpg

from asyncetl.backfill import Backfill, Partition, date_partitions
from asyncetl.connectors.postgres.backfill_store import PostgresBackfillStore
from asyncetl.connectors.sqlite.backfill_store import SqliteBackfillStore

DDL = """
CREATE TABLE IF NOT EXISTS bench_rows (
    day date NOT NULL, n integer NOT NULL, value bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS bench_rows_day ON bench_rows (day);
CREATE TABLE IF NOT EXISTS bench_runs (
    id bigserial PRIMARY KEY, key text NOT NULL, pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), finished_at timestamptz
);
"""
FIRST_DAY = date(2024, 1, 1)


class Job:
    """One partition: wait on the database, then replace the day's rows in one transaction."""

    def __init__(self, pool: asyncpg.Pool, *, sleep: float, rows: int, record: bool) -> None:
        self.pool = pool
        self.sleep = sleep
        self.rows = rows
        self.record = record

    async def __call__(self, partition: Partition) -> None:
        assert isinstance(partition.start, datetime)
        day = partition.start.date()
        async with self.pool.acquire() as conn:
            run_id = None
            if self.record:
                run_id = await conn.fetchval(
                    "INSERT INTO bench_runs (key, pid) VALUES ($1, $2) RETURNING id",
                    partition.key,
                    os.getpid(),
                )
            await conn.execute("SELECT pg_sleep($1)", self.sleep)
            records = [(day, n, n * 7 + day.toordinal()) for n in range(self.rows)]
            async with conn.transaction():
                await conn.execute("DELETE FROM bench_rows WHERE day = $1", day)
                await conn.copy_records_to_table("bench_rows", records=records)
                if run_id is not None:
                    await conn.execute(
                        "UPDATE bench_runs SET finished_at = clock_timestamp() WHERE id = $1",
                        run_id,
                    )


def partitions(count: int) -> list[Partition]:
    last = FIRST_DAY + timedelta(days=count - 1)
    return date_partitions(FIRST_DAY.isoformat(), last.isoformat(), "day")


async def empty_table(job: Job) -> None:
    """Every timed run starts from an empty table, so none pays for another's dead rows."""
    async with job.pool.acquire() as conn:
        await conn.execute("TRUNCATE bench_rows")


async def timed_loop(job: Job, parts: list[Partition]) -> float:
    await empty_table(job)
    started = time.perf_counter()
    for partition in parts:
        await job(partition)
    return time.perf_counter() - started


async def timed_backfill(job: Job, parts: list[Partition], parallel: int, store: Path) -> float:
    backfill = Backfill(
        f"bench_p{parallel}",
        parts,
        job,
        SqliteBackfillStore(store),
        parallel=parallel,
        reset="all",
        max_tries=1,
    )
    await empty_table(job)
    started = time.perf_counter()
    result = await backfill.run()
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(
            f"backfill at --parallel {parallel} did not succeed: "
            f"{[(s.key, s.error) for s in result.with_status('failed')]}"
        )
    return elapsed


async def single_machine(dsn: str, args: argparse.Namespace) -> None:
    parts = partitions(args.partitions)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max(args.parallel) + 2)
    try:
        job = Job(pool, sleep=args.sleep, rows=args.rows, record=False)
        print(
            f"{len(parts)} daily partitions, each pg_sleep({args.sleep}) then {args.rows} rows "
            "replaced by COPY in one transaction"
        )
        baseline = await timed_loop(job, parts)
        print(f"  plain for loop (baseline, no asyncetl): {baseline:7.2f} s")
        with tempfile.TemporaryDirectory() as scratch:
            times = {}
            for parallel in args.parallel:
                times[parallel] = await timed_backfill(
                    job, parts, parallel, Path(scratch) / "bench.db"
                )
                print(
                    f"  asyncetl backfill --parallel {parallel}:       {times[parallel]:7.2f} s"
                    f"   speed-up vs baseline {baseline / times[parallel]:5.2f}x"
                    f"   vs --parallel 1 {times[min(times)] / times[parallel]:5.2f}x"
                )
    finally:
        await pool.close()


async def worker(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.worker, min_size=1, max_size=args.worker_parallel + 1)
    try:
        job = Job(pool, sleep=args.sleep, rows=args.rows, record=True)
        result = await Backfill(
            "bench_shared",
            partitions(args.partitions),
            job,
            PostgresBackfillStore(args.worker),
            parallel=args.worker_parallel,
            lease=10,
        ).run()
        print(f"worker {os.getpid()}: ran {result.ran_here} partitions")
    finally:
        await pool.close()


async def two_workers(dsn: str, args: argparse.Namespace) -> None:
    print(
        f"two worker processes, --parallel {args.worker_parallel} each, sharing one backfill "
        "through the PostgreSQL store:"
    )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE bench_rows, bench_runs")
        command = [
            sys.executable,
            __file__,
            "--worker",
            dsn,
            "--partitions",
            str(args.partitions),
            "--sleep",
            str(args.sleep),
            "--rows",
            str(args.rows),
            "--worker-parallel",
            str(args.worker_parallel),
        ]
        started = time.perf_counter()
        results: list[subprocess.CompletedProcess[bytes]] = []
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(_run_worker, command, results)
        elapsed = time.perf_counter() - started
        for result in results:
            print("  " + result.stdout.decode().strip())
            if result.returncode != 0:
                raise SystemExit(f"a worker exited with {result.returncode}")
        await check_exactly_once(conn, args)
        print(f"  wall time {elapsed:.2f} s (including both processes' start-up)")
    finally:
        await conn.close()


async def _run_worker(
    command: list[str], results: list[subprocess.CompletedProcess[bytes]]
) -> None:
    results.append(await anyio.run_process(command, check=False))


async def check_exactly_once(conn: asyncpg.Connection, args: argparse.Namespace) -> None:
    runs = await conn.fetch("SELECT key, pid, started_at, finished_at FROM bench_runs")
    per_key: dict[str, list[asyncpg.Record]] = {}
    for run in runs:
        per_key.setdefault(run["key"], []).append(run)
    twice = {key: len(rs) for key, rs in per_key.items() if len(rs) != 1}
    overlaps = [key for key, rs in per_key.items() if _overlapping(rs)]
    rows = await conn.fetch("SELECT day, count(*) AS n FROM bench_rows GROUP BY day")
    wrong_days = [r["day"] for r in rows if r["n"] != args.rows]
    statuses = await conn.fetch(
        "SELECT status, count(*) AS n FROM asyncetl_backfill_partitions "
        "WHERE backfill = 'bench_shared' GROUP BY status"
    )
    by_worker = {pid: sum(1 for r in runs if r["pid"] == pid) for pid in {r["pid"] for r in runs}}
    ok = (
        len(per_key) == args.partitions
        and not twice
        and not overlaps
        and not wrong_days
        and len(rows) == args.partitions
        and {r["status"]: r["n"] for r in statuses} == {"succeeded": args.partitions}
    )
    print(
        f"  partitions run per worker: {sorted(by_worker.values())}; runs: {len(runs)}; "
        f"partitions run more than once: {len(twice)}; overlapping runs: {len(overlaps)}; "
        f"days with the wrong row count: {len(wrong_days)}"
    )
    print(f"  exactly once: {'yes' if ok else 'NO'}")
    if not ok:
        raise SystemExit(1)


def _overlapping(runs: list[asyncpg.Record]) -> bool:
    spans = sorted((r["started_at"], r["finished_at"] or r["started_at"]) for r in runs)
    return any(end > start for (_, end), (start, _) in itertools.pairwise(spans))


async def main(args: argparse.Namespace) -> None:
    if args.worker:
        await worker(args)
        return
    name = f"asyncetl_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{args.server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.server}/{name}"
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(DDL)
        finally:
            await conn.close()
        await single_machine(dsn, args)
        await two_workers(dsn, args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database",
    )
    parser.add_argument("--partitions", type=int, default=90, help="daily partitions (90)")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds of pg_sleep (0.2)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per partition (10000)")
    parser.add_argument(
        "--parallel",
        type=int,
        nargs="+",
        default=[1, 4, 8],
        help="--parallel values to time (1 4 8)",
    )
    parser.add_argument(
        "--worker-parallel", type=int, default=4, help="--parallel of each of the two workers (4)"
    )
    parser.add_argument("--worker", metavar="DSN", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, _parse())
