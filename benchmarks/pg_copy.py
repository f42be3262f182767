"""PostgreSQL → PostgreSQL copy: asyncetl against the COPY floor, pandas and dlt, in one run.

    python benchmarks/pg_copy.py [--rows 1000000] [--dsn postgresql://postgres@127.0.0.1:5432]

Makes a source database with a table ``bench (id bigint primary key, name text,
score double precision, at timestamptz, meta jsonb)`` of ``--rows`` rows and a
target database, then measures, each into its own target table:

1. the floor: ``COPY (SELECT …) TO STDOUT`` piped into ``COPY … FROM STDIN``
   (two psql processes, binary format) into an empty table;
2. ``examples/pg_copy.toml`` itself (``python -m asyncetl run``, as its comment
   says) into an empty target database, the way a user copies a table;
3. asyncetl ``TableSource`` → ``PostgresSink`` (upsert) into an empty table, and
   again into the full table (every row a conflict and an update), once with
   dict records (what a pipeline with transforms reads) and once with
   ``format="copy"`` (rows passed through as COPY text, for a plain copy); run
   in a child process whose peak RSS is reported;
4. pandas ``read_sql`` + ``to_sql`` after a ``DELETE`` through SQLAlchemy (the
   hand-written seed pattern), end to end;
5. dlt ``sql_table`` → postgres with ``write_disposition="merge"`` (skipped, with
   the reason printed, when dlt is not installed).

Bench-only packages: pandas, sqlalchemy, psycopg2-binary, dlt[postgres,sql_database].
The databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pg_copy.toml"
TABLE_DDL = (
    "CREATE TABLE bench (id bigint PRIMARY KEY, name text, score double precision, "
    "at timestamptz, meta jsonb)"
)
FILL = (
    "INSERT INTO bench SELECT g, 'name ' || g, g * 0.5, "
    "'2024-01-01'::timestamptz + g * interval '1 second', "
    "jsonb_build_object('k', g % 100, 'tag', 't' || (g % 7)) FROM generate_series(1, $1) g"
)


def dsn(base: str, database: str) -> str:
    return f"{base.rstrip('/')}/{database}"


async def setup(base: str, src: str, dst: str, rows: int) -> None:
    admin = await asyncpg.connect(dsn(base, "postgres"))
    try:
        for name in (src, dst):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn(base, src))
    try:
        await conn.execute(TABLE_DDL)
        await conn.execute(FILL, rows)
        await conn.execute("VACUUM ANALYZE bench")
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn(base, dst))
    try:
        for table in ("bench_floor", "bench_pandas"):
            await conn.execute(TABLE_DDL.replace("bench", table, 1))
    finally:
        await conn.close()


async def teardown(base: str, *names: str) -> None:
    admin = await asyncpg.connect(dsn(base, "postgres"))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floor(base: str, src: str, dst: str) -> float:
    out = "COPY (SELECT id, name, score, at, meta FROM bench) TO STDOUT (FORMAT binary)"
    into = "COPY bench_floor FROM STDIN (FORMAT binary)"

    def run() -> None:
        reader = subprocess.Popen(
            ["psql", "-qAt", dsn(base, src), "-c", out], stdout=subprocess.PIPE
        )
        subprocess.run(
            ["psql", "-qAt", dsn(base, dst), "-c", into],
            stdin=reader.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        assert reader.stdout is not None
        reader.stdout.close()
        if reader.wait() != 0:
            raise RuntimeError("psql COPY TO failed")

    return timed(run)


def example(base: str, src: str) -> float:
    """``examples/pg_copy.toml`` copying ``bench`` into a new, empty database."""
    target = f"{src}_example"
    asyncio.run(create_database(base, target))
    env = {**os.environ, "SOURCE_DSN": dsn(base, src), "TARGET_DSN": dsn(base, target)}
    env["TABLES"] = "bench"
    command = [sys.executable, "-m", "asyncetl", "run", str(EXAMPLE)]
    try:
        return timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))
    finally:
        asyncio.run(teardown(base, target))


async def create_database(base: str, name: str) -> None:
    admin = await asyncpg.connect(dsn(base, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def asyncetl_child(base: str, src: str, dst: str) -> dict[str, float]:
    """Run the asyncetl half in a child process, for a clean peak-RSS figure."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", "--dsn", base, "--src", src, "--dst", dst],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


async def asyncetl_runs(base: str, src: str, dst: str) -> dict[str, float]:
    from asyncetl import Pipeline
    from asyncetl.connectors.postgres import PostgresSink, TableSource

    def pipeline(form: str) -> Pipeline:
        source = TableSource(dsn(base, src), "bench", chunk_size=10_000, format=form)
        sink = PostgresSink(
            dsn(base, dst),
            f"bench_asyncetl_{form}",
            create=True,
            source_dsn=dsn(base, src),
            source_table="bench",
        )
        return Pipeline("bench", source, sink, max_batch_size=10_000, queue_size=2)

    result = {}
    for form in ("records", "copy"):
        for label in ("empty", "full"):
            start = time.perf_counter()
            stats = await pipeline(form).run()
            result[f"{form} {label}"] = time.perf_counter() - start
            result[f"{form} {label} rows"] = stats.records_out
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def pandas_pattern(base: str, src: str, dst: str) -> float:
    import pandas as pd
    import sqlalchemy
    from sqlalchemy.dialects.postgresql import JSONB

    def url(database: str) -> str:
        return dsn(base, database).replace("postgresql://", "postgresql+psycopg2://", 1)

    source, target = sqlalchemy.create_engine(url(src)), sqlalchemy.create_engine(url(dst))

    def run() -> None:
        frame = pd.read_sql("SELECT id, name, score, at, meta FROM bench", source)
        with target.begin() as conn:
            conn.execute(sqlalchemy.text("DELETE FROM bench_pandas"))
            frame.to_sql(
                "bench_pandas",
                conn,
                if_exists="append",
                index=False,
                chunksize=10_000,
                dtype={"meta": JSONB()},
            )

    try:
        return timed(run)
    finally:
        source.dispose()
        target.dispose()


def dlt_merge(base: str, src: str, dst: str) -> float | str:
    try:
        import dlt
        from dlt.sources.sql_database import sql_table
    except ImportError as exc:
        return f"dlt not available: {exc}"
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

    def run() -> None:
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{secrets.token_hex(3)}",
            # dlt insists on a password; a trust-auth server ignores it.
            destination=dlt.destinations.postgres(credentials=_with_password(dsn(base, dst))),
            dataset_name="dlt_bench",
            pipelines_dir=f"/tmp/dlt_bench_{secrets.token_hex(3)}",
        )
        source = dsn(base, src).replace("postgresql://", "postgresql+psycopg2://", 1)
        table = sql_table(credentials=source, table="bench", backend="sqlalchemy")
        table.apply_hints(primary_key="id", write_disposition="merge")
        pipeline.run(table)

    try:
        return timed(run)
    except Exception as exc:  # report, do not hide, a failed baseline
        return f"dlt failed: {type(exc).__name__}: {str(exc)[:200]}"


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user_host = rest.split("@", 1)
    if len(user_host) == 2 and ":" not in user_host[0]:
        return f"{scheme}://{user_host[0]}:unused@{user_host[1]}"
    return url


def report(rows: int, figures: dict[str, float | str], rss: float) -> None:
    records = figures["asyncetl records, empty target"]
    copy = figures["asyncetl copy, empty target"]
    assert isinstance(records, float)
    assert isinstance(copy, float)
    print(f"\n{rows:,} rows (id bigint, text, double, timestamptz, small jsonb)\n")
    head = f"{'method':<46} {'seconds':>8} {'rows/s':>10} {'records (empty) ×':>18}"
    print(f"{head} {'copy (empty) ×':>15}")
    for name, value in figures.items():
        if isinstance(value, str):
            print(f"{name:<46} {value}")
            continue
        line = f"{name:<46} {value:>8.2f} {rows / value:>10,.0f} {value / records:>17.2f}×"
        print(f"{line} {value / copy:>14.2f}×")
    print(f"\nasyncetl process peak RSS: {rss:.0f} MB")
    print(
        "(each ratio is how many times faster asyncetl into an empty table is, with dict "
        "records or with format = copy; on the floor's line it is asyncetl's share of COPY speed)"
    )


def report_example(rows: int, figures: dict[str, float | str]) -> None:
    print(f"\n{rows:,} rows (id bigint, text, double, timestamptz, small jsonb)\n")
    floor_seconds = figures["floor: COPY TO | COPY FROM (psql)"]
    assert isinstance(floor_seconds, float)
    for name, value in figures.items():
        assert isinstance(value, float)
        share = floor_seconds / value
        print(f"{name:<46} {value:>8.2f} s {rows / value:>10,.0f} rows/s {share:>6.2f}× floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432",
        help="server DSN without a database",
    )
    parser.add_argument("--skip", action="append", default=[], choices=["pandas", "dlt"])
    parser.add_argument(
        "--example-only", action="store_true", help="measure only the floor and the example"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(asyncetl_runs(args.dsn, args.src, args.dst))))
        return
    tag = secrets.token_hex(3)
    src, dst = f"asyncetl_bench_src_{tag}", f"asyncetl_bench_dst_{tag}"
    asyncio.run(setup(args.dsn, src, dst, args.rows))
    try:
        figures: dict[str, float | str] = {
            "floor: COPY TO | COPY FROM (psql)": floor(args.dsn, src, dst)
        }
        figures["examples/pg_copy.toml, empty target"] = example(args.dsn, src)
        print(f"measured: {figures}", file=sys.stderr, flush=True)
        if args.example_only:
            report_example(args.rows, figures)
            return
        ours = asyncetl_child(args.dsn, src, dst)
        for form in ("records", "copy"):
            for label, target in (("empty", "empty target"), ("full", "full target (updates)")):
                if ours[f"{form} {label} rows"] != args.rows:
                    raise RuntimeError(f"asyncetl {form} {label} loaded the wrong number of rows")
                figures[f"asyncetl {form}, {target}"] = ours[f"{form} {label}"]
        print(f"measured: {figures}", file=sys.stderr, flush=True)
        if "pandas" not in args.skip:
            figures["pandas read_sql + DELETE + to_sql"] = pandas_pattern(args.dsn, src, dst)
            print(f"measured: {figures}", file=sys.stderr, flush=True)
        if "dlt" not in args.skip:
            figures["dlt sql_table merge"] = dlt_merge(args.dsn, src, dst)
        report(args.rows, figures, ours["peak_rss_mb"])
    finally:
        asyncio.run(teardown(args.dsn, src, dst))


if __name__ == "__main__":
    main()
