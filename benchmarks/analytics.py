"""PostgreSQL → DuckDB and → Parquet: asyncetl against a hand-written floor and dlt, in one run.

    python benchmarks/analytics.py [--rows 1000000] [--dsn postgresql://postgres@127.0.0.1:5432]

Makes a source database with a table ``bench (id bigint primary key, name text,
score double precision, at timestamptz, qty integer)`` of ``--rows`` rows, then
measures, each in a child process whose peak RSS is reported:

1. the floor: a hand-written loop — asyncpg keyset pages of 10,000 rows →
   ``pyarrow`` columns → ``INSERT … SELECT`` from the Arrow table in DuckDB
   (one transaction per page), and the same pages written as Parquet files;
2. asyncetl ``TableSource`` → ``DuckDBSink`` (``append``, checkpoints in the
   same file: exactly-once), → ``DuckDBSink`` (``upsert`` by id), and →
   ``ParquetSink`` with its manifest as checkpoint;
3. dlt ``sql_table`` → the ``duckdb`` and ``filesystem`` (Parquet)
   destinations, with its ``pyarrow`` backend and with its default
   ``sqlalchemy`` one, when dlt is installed (else the reason is printed).

The ratios are the floor's and dlt's time over asyncetl's: above 1× asyncetl
is faster. The source database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

TABLE_DDL = (
    "CREATE TABLE bench (id bigint PRIMARY KEY, name text, score double precision, "
    "at timestamptz, qty integer)"
)
FILL = (
    "INSERT INTO bench SELECT g, 'name ' || g, g * 0.5, "
    "'2024-01-01'::timestamptz + g * interval '1 second', g % 100 "
    "FROM generate_series(1, $1) g"
)
PAGE = 10_000
PAGE_SQL = "SELECT id, name, score, at, qty FROM bench WHERE id > $1 ORDER BY id LIMIT $2"


def dsn(base: str, database: str) -> str:
    return f"{base.rstrip('/')}/{database}"


async def setup(base: str, src: str, rows: int) -> None:
    admin = await asyncpg.connect(dsn(base, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{src}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn(base, src))
    try:
        await conn.execute(TABLE_DDL)
        await conn.execute(FILL, rows)
        await conn.execute("VACUUM ANALYZE bench")
    finally:
        await conn.close()


async def teardown(base: str, src: str) -> None:
    admin = await asyncpg.connect(dsn(base, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{src}" WITH (FORCE)')
    finally:
        await admin.close()


# -- the floor: asyncpg → Arrow → duckdb / pyarrow.parquet, by hand -------------------


async def floor(source: str, target: Path, kind: str) -> int:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    conn = await asyncpg.connect(source)
    db = duckdb.connect(str(target / "floor.duckdb")) if kind == "duckdb" else None
    last, loaded, number = 0, 0, 0
    try:
        while True:
            rows = await conn.fetch(PAGE_SQL, last, PAGE)
            if not rows:
                return loaded
            names = ("id", "name", "score", "at", "qty")
            table = pa.table({n: [row[i] for row in rows] for i, n in enumerate(names)})
            if db is not None:
                db.register("page", table)
                db.execute("BEGIN")
                if not loaded:
                    db.execute("CREATE TABLE bench AS SELECT * FROM page LIMIT 0")
                db.execute("INSERT INTO bench SELECT * FROM page")
                db.execute("COMMIT")
                db.unregister("page")
            else:
                pq.write_table(table, target / f"part-{number:05d}.parquet", compression="zstd")
            last, loaded, number = rows[-1][0], loaded + len(rows), number + 1
    finally:
        await conn.close()
        if db is not None:
            db.close()


# -- asyncetl ---------------------------------------------------------------------------


async def asyncetl_run(source: str, target: Path, kind: str) -> int:
    from asyncetl import CheckpointStore, Pipeline, Sink
    from asyncetl.connectors.duckdb import DuckDBCheckpointStore, DuckDBSink
    from asyncetl.connectors.parquet import ParquetCheckpointStore, ParquetSink
    from asyncetl.connectors.postgres import TableSource

    sink: Sink[object]
    store: CheckpointStore
    database = str(target / "asyncetl.duckdb")
    if kind == "duckdb":
        sink, store = DuckDBSink(database, "bench", create=True), DuckDBCheckpointStore(database)
    elif kind == "duckdb_upsert":
        sink = DuckDBSink(database, "bench", mode="upsert", key=["id"], create=True)
        store = DuckDBCheckpointStore(database)
    else:
        out = str(target / "parquet")
        sink, store = ParquetSink(out), ParquetCheckpointStore(out)  # type: ignore[assignment]
    table = TableSource(source, "bench", chunk_size=PAGE)
    pipeline = Pipeline("bench", table, sink, checkpoints=store, max_batch_size=PAGE, queue_size=2)
    stats = await pipeline.run()
    return stats.records_out


# -- dlt --------------------------------------------------------------------------------


def dlt_run(source: str, target: Path, kind: str) -> int:
    import dlt
    from dlt.sources.sql_database import sql_table

    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    backend = "sqlalchemy" if kind.endswith("_sqlalchemy") else "pyarrow"
    kind = kind.removesuffix("_sqlalchemy")
    if kind == "duckdb":
        destination = dlt.destinations.duckdb(str(target / "dlt.duckdb"))
        options: dict[str, str] = {}
    else:
        destination = dlt.destinations.filesystem(str(target / "dlt_files"))
        options = {"loader_file_format": "parquet"}
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{secrets.token_hex(3)}",
        destination=destination,
        dataset_name="dlt_bench",
        pipelines_dir=str(target / "dlt_pipelines"),
    )
    url = source.replace("postgresql://", "postgresql+psycopg2://", 1)
    pipeline.run(sql_table(credentials=url, table="bench", backend=backend), **options)
    return -1  # dlt reports loads, not rows; the row count is checked by the floor


# -- children and report ----------------------------------------------------------------


def child(method: str, kind: str, source: str) -> None:
    target = Path(tempfile.mkdtemp(prefix="asyncetl_bench_"))
    try:
        start = time.perf_counter()
        if method == "floor":
            rows = asyncio.run(floor(source, target, kind))
        elif method == "asyncetl":
            rows = asyncio.run(asyncetl_run(source, target, kind))
        else:
            rows = dlt_run(source, target, kind)
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "rows": rows, "rss_mb": rss}))
    finally:
        shutil.rmtree(target, ignore_errors=True)


def measure(method: str, kind: str, source: str) -> dict[str, float] | str:
    done = subprocess.run(
        [sys.executable, __file__, "--child", method, kind, "--source", source],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        return f"{method} failed: {lines[-1][:160]}"
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def dlt_missing() -> str | None:
    try:
        import dlt  # noqa: F401
        from dlt.sources.sql_database import sql_table  # noqa: F401
    except ImportError as exc:
        return f"dlt not available ({exc}); pip install -e '.[bench]' 'dlt[duckdb,parquet]'"
    return None


RUNS = [
    ("duckdb", "floor", "duckdb", "floor: asyncpg → Arrow → duckdb"),
    ("duckdb", "asyncetl", "duckdb", "asyncetl → DuckDBSink append"),
    ("duckdb", "asyncetl", "duckdb_upsert", "asyncetl → DuckDBSink upsert"),
    ("duckdb", "dlt", "duckdb", "dlt sql_table (pyarrow) → duckdb"),
    ("duckdb", "dlt", "duckdb_sqlalchemy", "dlt sql_table (sqlalchemy) → duckdb"),
    ("parquet", "floor", "parquet", "floor: asyncpg → Arrow → parquet"),
    ("parquet", "asyncetl", "parquet", "asyncetl → ParquetSink"),
    ("parquet", "dlt", "parquet", "dlt sql_table (pyarrow) → parquet files"),
    ("parquet", "dlt", "parquet_sqlalchemy", "dlt sql_table (sqlalchemy) → parquet files"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--skip", action="append", default=[], help="skip the runs whose label holds this text"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.source)
        return
    src = f"asyncetl_bench_analytics_{secrets.token_hex(3)}"
    asyncio.run(setup(args.dsn, src, args.rows))
    source = dsn(args.dsn, src)
    missing = dlt_missing()
    figures: dict[str, dict[str, float] | str] = {}
    try:
        for _, method, kind, label in RUNS:
            if method == "dlt" and missing:
                figures[label] = missing
                continue
            if any(text in label for text in args.skip):
                figures[label] = "skipped (--skip)"
                continue
            figures[label] = measure(method, kind, source)
            print(f"measured {label}: {figures[label]}", file=sys.stderr, flush=True)
    finally:
        asyncio.run(teardown(args.dsn, src))
    report(args.rows, figures)


def report(rows: int, figures: dict[str, dict[str, float] | str]) -> None:
    print(f"\n{rows:,} rows (bigint, text, double, timestamptz, integer) from PostgreSQL\n")
    print(f"{'method':<42} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9} {'vs asyncetl':>12}")
    for group in ("duckdb", "parquet"):
        ours_label = next(label for g, m, k, label in RUNS if g == group and m == "asyncetl")
        ours = figures[ours_label]
        for g, _, _, label in RUNS:
            if g != group:
                continue
            value = figures[label]
            if isinstance(value, str):
                print(f"{label:<42} {value}")
                continue
            if value["rows"] not in (rows, -1):
                print(f"{label:<42} loaded {value['rows']:.0f} rows, not {rows}")
                continue
            ratio = value["seconds"] / ours["seconds"] if isinstance(ours, dict) else float("nan")
            line = f"{label:<42} {value['seconds']:>8.2f} {rows / value['seconds']:>10,.0f}"
            print(f"{line} {value['rss_mb']:>6.0f} MB {ratio:>11.2f}×")
        print()
    print(
        "(vs asyncetl: the method's time over asyncetl's first line in its group; above 1× "
        "asyncetl is faster, and asyncetl's share of the floor's speed is 1 / the floor's figure)"
    )


if __name__ == "__main__":
    main()
