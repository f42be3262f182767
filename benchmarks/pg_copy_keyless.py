"""Copying a table without a key (pgbench_history's shape) with TablesSource → TablesSink.

    python benchmarks/pg_copy_keyless.py --setup [--rows 200000] [--numeric]  # prints the DSN
    python benchmarks/pg_copy_keyless.py --source DSN                # one timed copy
    python benchmarks/pg_copy_keyless.py --source DSN --rerun        # one timed rerun
    python benchmarks/pg_copy_keyless.py --drop DSN

A keyless table is read grouped, each page sorting what is left of the table;
this measures one whole copy into a new, empty target database (created and
dropped around the copy, not timed) and prints its seconds and rows a second.
With ``--rerun`` the target is filled by a first copy (not timed) and the timed
copy is the second, which finds every row there already and writes nothing.
``--numeric`` makes ``delta`` a ``numeric`` without a scale, whose values can hash
alike yet differ (1.0 and 1.00), so that a rerun compares the rows it skips.
For a ratio, time it in turns against another checkout's copy of this script
(``/usr/bin/time -v``, several runs of each, medians compared).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import asyncpg

from asyncetl import Pipeline
from asyncetl.connectors.postgres import TablesSink, TablesSource

TABLE = (
    "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, "
    "mtime timestamp, filler char(22))"
)
FILL = (
    "INSERT INTO pgbench_history SELECT g % 10, g % 3, (g * 7919) % 100000, g % 5000 - 2500, "
    "'2024-01-01'::timestamp + g * interval '1 ms', NULL FROM generate_series(1, $1) g"
)


async def admin(base: str, sql: str) -> None:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def setup(base: str, rows: int, *, numeric: bool) -> str:
    name = f"bench_keyless_{secrets.token_hex(4)}"
    await admin(base, f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(f"{base}/{name}")
    try:
        await conn.execute(TABLE.replace("delta int", "delta numeric") if numeric else TABLE)
        await conn.execute(FILL, rows)
        await conn.execute("ANALYZE pgbench_history")
    finally:
        await conn.close()
    return f"{base}/{name}"


async def copy(source: str, *, rerun: bool) -> None:
    base, _, name = source.rpartition("/")
    target = f"{name}_target_{secrets.token_hex(3)}"
    await admin(base, f'CREATE DATABASE "{target}"')

    def pipeline() -> Pipeline:
        reader = TablesSource(source, "pgbench_history")
        sink = TablesSink(f"{base}/{target}", tables="pgbench_history", source_dsn=source)
        return Pipeline("keyless", reader, sink)

    try:
        if rerun:
            await pipeline().run()
        started = time.perf_counter()
        stats = await pipeline().run()
        seconds = time.perf_counter() - started
        rows = stats.records_out + stats.unchanged
        print(
            f"{rows} rows ({stats.records_out} written) in {seconds:.2f} s: {rows / seconds:,.0f}/s"
        )
    finally:
        await admin(base, f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--setup", action="store_true")
    parser.add_argument("--source")
    parser.add_argument("--drop")
    parser.add_argument("--rerun", action="store_true", help="time a second copy")
    parser.add_argument("--numeric", action="store_true", help="delta as numeric (setup)")
    args = parser.parse_args()
    if args.setup:
        print(asyncio.run(setup(args.base, args.rows, numeric=args.numeric)))
    elif args.drop:
        name = args.drop.rpartition("/")[2]
        asyncio.run(admin(args.base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        asyncio.run(copy(args.source, rerun=args.rerun))


if __name__ == "__main__":
    main()
