"""HTTP API → PostgreSQL upsert into a full table: asyncetl against dlt's ``rest_api`` merge.

A local aiohttp server (its own process, the one of ``http_source.py``) serves
``--pages`` pages of ``--records`` JSON records ``{id, name, price, active}``,
``?page=N``, an empty page after the last. Both sides read every page and
upsert each record by ``id`` into a PostgreSQL table that already holds every
key. By default the table holds the very records served (a rerun of a load, or
a replay): dlt's merge deletes and inserts each row, asyncetl's upsert leaves
unchanged rows unwritten (its default). With ``--changed`` every stored row
differs from its record in ``price`` before each timed run (set untimed), so
both sides write every row:

- dlt: ``rest_api_source`` with a ``page_number`` paginator, resource
  ``primary_key="id"``, ``write_disposition="merge"``, into the ``postgres``
  destination; its table is filled by an untimed first run of the same
  pipeline before each timed one.
- asyncetl: ``HttpSource(pagination="page")`` → ``PostgresSink(mode="upsert",
  key=["id"])``, embedded, with the defaults (one request at a time, as dlt).

Each side runs in its own process (its time includes its imports), so peak
memory (max RSS) is its own; the pairs alternate. Needs PostgreSQL at
``--dsn`` (trust auth) and the ``bench`` extra (dlt).

    python benchmarks/http_postgres.py                    # 200 pages x 1,000 records, 3 pairs
    python benchmarks/http_postgres.py --pages 50 --pairs 1
    python benchmarks/http_postgres.py --changed           # every row written by both sides
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
import tempfile
import time

import asyncpg

SIDES = ("dlt", "asyncetl")
TABLE = "items"
DDL = (
    f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text, price double precision, "
    "active boolean)"
)
#: The rows the server serves, so that the table is full before the asyncetl run.
FILL = (
    f"INSERT INTO {TABLE} SELECT g, 'item ' || g, g * 0.25, g % 3 = 0 "
    "FROM generate_series(0, $1 - 1) g"
)
DLT_DATASET = "dlt_http"
#: ``--changed``: every stored row differs from its record (untimed, before each run).
CHANGE = (f"UPDATE {TABLE} SET price = price + 1", f"VACUUM {TABLE}")


def dsn(base: str, database: str) -> str:
    return f"{base.rstrip('/')}/{database}"


async def admin(base: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn(base, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def make_table(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(DDL)
        await conn.execute(FILL, rows)
    finally:
        await conn.close()


async def count(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()
    return int(value)


def run_dlt(api: str, url: str, pages: int, records: int) -> None:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    source = rest_api_source(
        {
            "client": {
                "base_url": api,
                "paginator": {
                    "type": "page_number",
                    "page_param": "page",
                    "base_page": 1,
                    "total_path": None,  # it stops at the first empty page
                },
            },
            "resources": [
                {
                    "name": TABLE,
                    "endpoint": {
                        "path": "items",
                        "params": {"limit": records},
                        "data_selector": "$",
                    },
                    "primary_key": "id",
                    "write_disposition": "merge",
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="http_bench",
        # dlt insists on a password; a trust-auth server ignores it.
        destination=dlt.destinations.postgres(credentials=_with_password(url)),
        dataset_name=DLT_DATASET,
        pipelines_dir=os.environ["BENCH_DLT_DIR"],
    )
    pipeline.run(source)


def run_asyncetl(api: str, url: str, pages: int, records: int) -> None:
    import anyio

    from asyncetl import Pipeline
    from asyncetl.connectors.http import HttpSource
    from asyncetl.connectors.postgres import PostgresSink

    pipeline = Pipeline(
        "http_bench",
        HttpSource(f"{api}/items", pagination="page", page_size=records),
        PostgresSink(url, TABLE, mode="upsert", key=["id"]),
        max_batch_size=records,
        summary_interval=3600,
    )
    anyio.run(pipeline.run)


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user_host = rest.split("@", 1)
    if len(user_host) == 2 and ":" not in user_host[0]:
        return f"{scheme}://{user_host[0]}:unused@{user_host[1]}"
    return url


def child(side: str, api: str, url: str, pages: int, records: int) -> None:
    """One side once; the time includes importing that side's packages."""
    started = time.perf_counter()
    (run_dlt if side == "dlt" else run_asyncetl)(api, url, pages, records)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"elapsed": elapsed, "peak_mib": peak_kib / 1024}))


def measure(side: str, api: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--api", api, "--url", url]
    command += ["--pages", str(args.pages), "--records", str(args.records)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def compare(api: str, url: str, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    n = args.pages * args.records
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for _ in range(args.pairs):
        for side in SIDES:
            result = run_side(side, api, url, args)
            table = f"{DLT_DATASET}.{TABLE}" if side == "dlt" else TABLE
            found = asyncio.run(count(url, table))
            if found != n:
                raise SystemExit(f"{side} left {found} rows, not {n}")
            runs[side].append(result)
    return runs


def run_side(side: str, api: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    """One timed run of ``side``, after its untimed set-up."""
    if side == "dlt":
        # A new pipelines directory each time, removed after: dlt keeps its state there.
        with tempfile.TemporaryDirectory(prefix="dlt_http_") as pipelines:
            os.environ["BENCH_DLT_DIR"] = pipelines
            for schema in (DLT_DATASET, f"{DLT_DATASET}_staging"):
                asyncio.run(admin_db(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            measure(side, api, url, args)  # the untimed load that fills its table
            return measure(side, api, url, args)
    if args.changed:
        for sql in CHANGE:
            asyncio.run(admin_db(url, sql))
    return measure(side, api, url, args)


async def admin_db(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def report(n: int, runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    rate = {s: statistics.median(n / r["elapsed"] for r in runs[s]) for s in SIDES}
    peak = {s: statistics.median(r["peak_mib"] for r in runs[s]) for s in SIDES}
    ratio = statistics.median(
        d["elapsed"] / a["elapsed"] for d, a in zip(runs["dlt"], runs["asyncetl"], strict=True)
    )
    rows = "every row changed" if args.changed else "every row unchanged"
    print(
        f"cores {os.cpu_count()}; medians of {args.pairs} interleaved pairs; "
        f"upsert into a full table, {rows}"
    )
    print(
        f"{'records':>10} {'dlt rec/s':>10} {'asyncetl rec/s':>15} {'ratio':>6} "
        f"{'dlt MiB':>8} {'asyncetl MiB':>13}"
    )
    print(
        f"{n:>10,} {rate['dlt']:>10,.0f} {rate['asyncetl']:>15,.0f} {ratio:>6.2f} "
        f"{peak['dlt']:>8.1f} {peak['asyncetl']:>13.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--records", type=int, default=1000, help="records per page")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved runs of each side")
    parser.add_argument(
        "--changed", action="store_true", help="every stored row differs from its record"
    )
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.api, args.url, args.pages, args.records)
        return
    database = f"http_bench_{secrets.token_hex(4)}"
    url = dsn(args.dsn, database)
    serve = os.path.join(os.path.dirname(__file__), "http_source.py")
    server = subprocess.Popen(
        [
            *(sys.executable, serve, "--serve", "--pages", str(args.pages)),
            *("--records", str(args.records), "--latency", str(args.latency)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    asyncio.run(admin(args.dsn, f'CREATE DATABASE "{database}"'))
    try:
        assert server.stdout is not None
        api = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        asyncio.run(make_table(url, args.pages * args.records))
        runs = compare(api, url, args)
    finally:
        server.terminate()
        server.wait()
        asyncio.run(admin(args.dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    report(args.pages * args.records, runs, args)


if __name__ == "__main__":
    main()
