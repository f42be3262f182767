"""CDC initial snapshot: ``examples/pg_cdc.toml`` against a psql COPY pipe, in interleaved pairs.

    python benchmarks/pg_cdc_snapshot.py [--scale 10] [--pairs 3] [--server postgresql://...]

Makes a source database with ``pgbench -i -s SCALE`` (``pgbench_accounts`` holds
SCALE × 100,000 rows), then runs, in turn, each pair into a new, empty target
database on the same server:

1. the peer: ``COPY (SELECT * FROM pgbench_accounts) TO STDOUT (FORMAT binary)``
   in one psql piped into ``COPY pgbench_accounts FROM STDIN (FORMAT binary)``
   in another, into a table with the same columns and primary key;
2. ``python -m asyncetl run examples/pg_cdc.toml`` with TABLES=pgbench_accounts
   (a slot and publication of its own each time), timed from its start until
   the target's checkpoint shows the snapshot committed whole; then it is
   stopped with SIGINT (the drain after that is not timed).

Each target is checked identical to the source (row count and an md5 of every
row's text in key order). Peak RSS is each process's own (the larger psql's).
CPU seconds are each side's processes' own (both psqls; asyncetl's process) and,
for asyncetl, its server backends' on the source and on the target (read from
``/proc``, so the server must run on this machine for those).
Needs a server with wal_level = logical; everything it creates is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import orjson

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pg_cdc.toml"
TARGET_DDL = (
    "CREATE TABLE pgbench_accounts (aid integer NOT NULL PRIMARY KEY, bid integer, "
    "abalance integer, filler character(84))"
)
DIGEST = (
    "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY aid)) "
    "FROM (SELECT aid, bid, abalance, filler FROM pgbench_accounts) t"
)


def dsn(base: str, database: str) -> str:
    return f"{base.rstrip('/')}/{database}"


async def sql(database: str, *statements: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        rows: list[asyncpg.Record] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


def digest(database: str) -> tuple[int, str]:
    (row,) = asyncio.run(sql(database, DIGEST))
    return row[0], row[1]


def peer(base: str, src: str, target: str) -> tuple[float, float, float]:
    """The psql pipe: seconds, the larger psql's peak RSS in MiB, both psqls' CPU seconds."""
    asyncio.run(sql(dsn(base, target), TARGET_DDL))
    out = "COPY (SELECT * FROM pgbench_accounts) TO STDOUT (FORMAT binary)"
    into = "COPY pgbench_accounts FROM STDIN (FORMAT binary)"
    start = time.perf_counter()
    reader = subprocess.Popen(["psql", "-qAt", dsn(base, src), "-c", out], stdout=subprocess.PIPE)
    writer = subprocess.Popen(
        ["psql", "-qAt", dsn(base, target), "-c", into],
        stdin=reader.stdout,
        stdout=subprocess.DEVNULL,
    )
    assert reader.stdout is not None
    reader.stdout.close()
    peaks, cpu = [], 0.0
    for process in (writer, reader):
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"psql {process.args[-1]!r} failed")
        peaks.append(usage.ru_maxrss / 1024)
        cpu += usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, max(peaks), cpu


#: Every client's backend on the two databases but this one's: asyncetl's alone run then.
BACKENDS = (
    "SELECT pid, datname FROM pg_stat_activity WHERE datname = ANY($1::text[]) "
    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
TICKS = os.sysconf("SC_CLK_TCK")


async def snapshot_committed(
    target: str, databases: list[str], backends: dict[int, tuple[str, float]]
) -> bool:
    """Whether the target's checkpoint shows the snapshot read and written whole; notes the
    CPU seconds of asyncetl's backends so far in ``backends`` (pid → database, seconds)."""
    conn = await asyncpg.connect(target)
    try:
        for pid, database in await conn.fetch(BACKENDS, databases):
            seconds = backend_cpu(pid)
            if seconds is not None:
                backends[pid] = (database, seconds)
        try:
            rows = await conn.fetch("SELECT position::text FROM asyncetl_checkpoints")
        except asyncpg.UndefinedTableError:
            return False
    finally:
        await conn.close()
    if not rows:
        return False
    position = orjson.loads(rows[0][0])
    return isinstance(position, dict) and "lsn" in position and not position.get("snapshot")


def backend_cpu(pid: int) -> float | None:
    """User and system CPU seconds of process ``pid``, or ``None`` once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def example(
    base: str, src: str, target: str, tag: str, spec: Path
) -> tuple[float, float, float, float, float]:
    """The example until its snapshot is committed: seconds, its peak RSS in MiB, and the
    CPU seconds of its process, its source backends and its target backends."""
    env = {
        **os.environ,
        "SOURCE_DSN": dsn(base, src),
        "TARGET_DSN": dsn(base, target),
        "TABLES": "pgbench_accounts",
        "CDC_SLOT": f"bench_{tag}",
        "CDC_PUBLICATION": f"bench_{tag}",
    }
    command = [sys.executable, "-m", "asyncetl", "run", str(spec)]
    start = time.perf_counter()
    log = open(f"/tmp/pg_cdc_snapshot_{tag}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    backends: dict[int, tuple[str, float]] = {}
    try:
        while not asyncio.run(snapshot_committed(dsn(base, target), [src, target], backends)):
            if process.poll() is not None:
                raise RuntimeError(f"the example ended early: see {log.name}")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        process.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, 130):
            raise RuntimeError(f"the example failed after its snapshot: see {log.name}")
    finally:
        if process.returncode is None and process.poll() is None:
            process.kill()
        log.close()
    os.unlink(log.name)  # kept only when the run failed, for its message to point at
    on_source = sum(cpu for database, cpu in backends.values() if database == src)
    on_target = sum(cpu for database, cpu in backends.values() if database == target)
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, on_source, on_target


def drop_slot(base: str, src: str, tag: str) -> None:
    asyncio.run(
        sql(
            dsn(base, src),
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = 'bench_{tag}'",
            f"DROP PUBLICATION IF EXISTS bench_{tag}",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432",
        help="DSN of a server with wal_level = logical, without a database",
    )
    parser.add_argument(
        "--snapshot-format",
        choices=["binary", "events"],
        default="binary",
        help="the example's snapshot_format (binary, as shipped)",
    )
    parser.add_argument(
        "--snapshot-page-bytes",
        type=int,
        help="the source's snapshot_page_bytes (the example leaves the default)",
    )
    args = parser.parse_args()
    base, tag = args.server, secrets.token_hex(3)
    spec = EXAMPLE
    if args.snapshot_format != "binary" or args.snapshot_page_bytes is not None:
        spec = Path(f"/tmp/pg_cdc_{tag}.toml")
        shipped = 'snapshot_format = "binary"'
        setting = f'snapshot_format = "{args.snapshot_format}"'
        if args.snapshot_page_bytes is not None:
            setting += f"\nsnapshot_page_bytes = {args.snapshot_page_bytes}"
        spec.write_text(EXAMPLE.read_text().replace(shipped, setting))
    src = f"asyncetl_snap_src_{tag}"
    admin = dsn(base, "postgres")
    asyncio.run(sql(admin, f'CREATE DATABASE "{src}"'))
    try:
        subprocess.run(
            ["pgbench", "-q", "-i", "-s", str(args.scale), dsn(base, src)],
            check=True,
            capture_output=True,
        )
        source = digest(dsn(base, src))
        results = []
        print(
            f"{'pair':>4} {'psql s':>7} {'rows/s':>9} {'MiB':>5} {'cpu':>5}  {'asyncetl s':>10} "
            f"{'rows/s':>9} {'MiB':>5} {'cpu':>5} {'src be':>6} {'dst be':>6} {'ratio':>6}  load",
            flush=True,
        )
        for n in range(args.pairs):
            figures = []
            for side in ("peer", "asyncetl"):
                target = f"asyncetl_snap_{side}_{tag}_{n}"
                asyncio.run(sql(admin, f'CREATE DATABASE "{target}"'))
                try:
                    if side == "peer":
                        figures.append(peer(base, src, target))
                    else:
                        figures.append(example(base, src, target, f"{tag}_{n}", spec))
                    if digest(dsn(base, target)) != source:
                        raise RuntimeError(f"{side}'s target is not identical to the source")
                finally:
                    if side == "asyncetl":
                        drop_slot(base, src, f"{tag}_{n}")
                    asyncio.run(sql(admin, f'DROP DATABASE "{target}" WITH (FORCE)'))
            (theirs, their_mib, their_cpu), (ours, our_mib, our_cpu, src_cpu, dst_cpu) = figures
            results.append((theirs, their_mib, ours, our_mib, their_cpu, our_cpu, src_cpu, dst_cpu))
            rows = source[0]
            print(
                f"{n + 1:>4} {theirs:>7.2f} {rows / theirs:>9,.0f} {their_mib:>5.0f} "
                f"{their_cpu:>5.2f}  {ours:>10.2f} {rows / ours:>9,.0f} {our_mib:>5.0f} "
                f"{our_cpu:>5.2f} {src_cpu:>6.2f} {dst_cpu:>6.2f} {theirs / ours:>5.2f}×  "
                f"{os.getloadavg()[0]:.2f}",
                flush=True,
            )
        report(source[0], results)
    finally:
        asyncio.run(sql(admin, f'DROP DATABASE IF EXISTS "{src}" WITH (FORCE)'))


def report(rows: int, results: list[tuple[float, ...]]) -> None:
    theirs = statistics.median(r[0] for r in results)
    ours = statistics.median(r[2] for r in results)
    print(
        f"\nmedian of {len(results)} pairs, pgbench_accounts ({rows:,} rows) into an empty "
        "target (both checked identical to the source):\n"
        f"  psql COPY TO | COPY FROM (binary): {theirs:.2f} s, {rows / theirs:,.0f} rows/s, "
        f"peak {statistics.median(r[1] for r in results):.0f} MiB (larger psql)\n"
        f"  examples/pg_cdc.toml snapshot:      {ours:.2f} s, {rows / ours:,.0f} rows/s, "
        f"peak {statistics.median(r[3] for r in results):.0f} MiB\n"
        f"  CPU seconds: psql pair {statistics.median(r[4] for r in results):.2f}; asyncetl "
        f"{statistics.median(r[5] for r in results):.2f}, its backends on the source "
        f"{statistics.median(r[6] for r in results):.2f} and on the target "
        f"{statistics.median(r[7] for r in results):.2f}\n"
        f"  asyncetl / psql (median of per-pair ratios): "
        f"{statistics.median(r[0] / r[2] for r in results):.2f}×"
    )


if __name__ == "__main__":
    main()
