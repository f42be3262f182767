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
   again into the full table (every row a conflict, and unchanged: compared in
   the server and not rewritten, as ``upsert`` does by default), once with
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
import statistics
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


def floor(base: str, src: str, dst: str, table: str = "bench_floor") -> tuple[float, float]:
    """The psql pipe into ``table`` of ``dst``: seconds, and the larger psql's peak RSS in MiB."""
    out = "COPY (SELECT id, name, score, at, meta FROM bench) TO STDOUT (FORMAT binary)"
    into = f"COPY {table} FROM STDIN (FORMAT binary)"
    start = time.perf_counter()
    reader = subprocess.Popen(["psql", "-qAt", dsn(base, src), "-c", out], stdout=subprocess.PIPE)
    writer = subprocess.Popen(
        ["psql", "-qAt", dsn(base, dst), "-c", into],
        stdin=reader.stdout,
        stdout=subprocess.DEVNULL,
    )
    assert reader.stdout is not None
    reader.stdout.close()
    peaks = []
    for process in (writer, reader):
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"psql {process.args[-1]!r} failed")
        peaks.append(usage.ru_maxrss / 1024)
    return time.perf_counter() - start, max(peaks)


def example(
    base: str, src: str, *, keep: bool = False, spec: Path = EXAMPLE
) -> tuple[float, float]:
    """``examples/pg_copy.toml`` copying ``bench`` into a new, empty database.

    :returns: seconds, and the asyncetl process's peak RSS in MiB.
    :param keep: leave the target database (``{src}_example``) for a check.
    """
    target = f"{src}_example"
    asyncio.run(create_database(base, target))
    env = {**os.environ, "SOURCE_DSN": dsn(base, src), "TARGET_DSN": dsn(base, target)}
    env["TABLES"] = "bench"
    command = [sys.executable, "-m", "asyncetl", "run", str(spec)]
    try:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        output = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the example failed:\n{output.decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024
    finally:
        if not keep:
            asyncio.run(teardown(base, target))


_DIGEST = (
    "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY id)) "
    "FROM (SELECT id, name, score, at, meta FROM {table}) t"
)


async def digest(database: str, table: str) -> tuple[int, str]:
    """The row count and an md5 of every row's text, in key order."""
    conn = await asyncpg.connect(database)
    try:
        row = await conn.fetchrow(_DIGEST.format(table=table))
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1]


def pairs(base: str, src: str, dst: str, rows: int, count: int, form: str) -> None:
    """``count`` interleaved pairs of the psql pipe and the example; each target checked."""
    source = asyncio.run(digest(dsn(base, src), "bench"))
    if source[0] != rows:
        raise RuntimeError(f"the source holds {source[0]} rows, not {rows}")
    results: list[tuple[float, float, float, float]] = []
    print(
        f"{'pair':>4} {'psql s':>7} {'rows/s':>9} {'MiB':>5}  {'asyncetl s':>10} {'rows/s':>9} "
        f"{'MiB':>5} {'ratio':>6}"
    )
    for n in range(count):
        asyncio.run(_recreate_floor(base, dst))
        peer, peer_mib = floor(base, src, dst)
        ours, our_mib = example(base, src, keep=True, spec=_reading(form))
        try:
            for database, table in ((dst, "bench_floor"), (f"{src}_example", "bench")):
                if asyncio.run(digest(dsn(base, database), table)) != source:
                    raise RuntimeError(f"{database}.{table} is not identical to the source")
        finally:
            asyncio.run(teardown(base, f"{src}_example"))
        results.append((peer, peer_mib, ours, our_mib))
        print(
            f"{n + 1:>4} {peer:>7.2f} {rows / peer:>9,.0f} {peer_mib:>5.0f}  {ours:>10.2f} "
            f"{rows / ours:>9,.0f} {our_mib:>5.0f} {peer / ours:>5.2f}×",
            flush=True,
        )
    peer_s = statistics.median(r[0] for r in results)
    ours_s = statistics.median(r[2] for r in results)
    ratio = statistics.median(r[0] / r[2] for r in results)
    print(
        f"\nmedian of {count} pairs, {rows:,} rows into an empty target (both targets checked "
        f"identical to the source):\n"
        f"  psql COPY TO | COPY FROM (binary): {peer_s:.2f} s, {rows / peer_s:,.0f} rows/s, "
        f"peak {statistics.median(r[1] for r in results):.0f} MiB (larger psql)\n"
        f"  examples/pg_copy.toml ({form}):    {ours_s:.2f} s, {rows / ours_s:,.0f} rows/s, "
        f"peak {statistics.median(r[3] for r in results):.0f} MiB\n"
        f"  asyncetl / psql (median of per-pair ratios): {ratio:.2f}×"
    )


def _reading(form: str) -> Path:
    """The example, or a copy of it whose source reads ``form``."""
    if form == "binary":
        return EXAMPLE
    spec = Path(f"/tmp/pg_copy_{form}_{secrets.token_hex(3)}.toml")
    shipped = '\nformat = "binary"\n'
    spec.write_text(EXAMPLE.read_text().replace(shipped, f'\nformat = "{form}"\n'))
    return spec


async def _recreate_floor(base: str, dst: str) -> None:
    conn = await asyncpg.connect(dsn(base, dst))
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_floor")
        await conn.execute(TABLE_DDL.replace("bench", "bench_floor", 1))
    finally:
        await conn.close()


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
            result[f"{form} {label} rows"] = stats.records_out + stats.unchanged
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
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="run N interleaved pairs of the psql pipe and the example, checking both targets",
    )
    parser.add_argument(
        "--format",
        choices=["binary", "copy", "records"],
        default="binary",
        help="with --pairs: the example's source format (binary, as shipped)",
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
        if args.pairs:
            pairs(args.dsn, src, dst, args.rows, args.pairs, args.format)
            return
        figures: dict[str, float | str] = {
            "floor: COPY TO | COPY FROM (psql)": floor(args.dsn, src, dst)[0]
        }
        figures["examples/pg_copy.toml, empty target"] = example(args.dsn, src)[0]
        print(f"measured: {figures}", file=sys.stderr, flush=True)
        if args.example_only:
            report_example(args.rows, figures)
            return
        ours = asyncetl_child(args.dsn, src, dst)
        for form in ("records", "copy"):
            for label, target in (("empty", "empty target"), ("full", "full target (unchanged)")):
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
