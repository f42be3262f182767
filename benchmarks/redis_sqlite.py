"""Redis stream → SQLite upsert: asyncetl vs a hand-written redis-py loop, both with hiredis.

The stream holds N entries ``{order_id, customer, sku, qty, price}``. Each run
reads all of it through a new consumer group and upserts one row per entry
(``order_id`` the key, plus the entry id) into a fresh SQLite file: WAL,
synchronous=FULL, one ``BEGIN IMMEDIATE … COMMIT`` per 1000 entries.

- loop: redis-py's synchronous client, ``XREADGROUP COUNT 1000`` → flatten →
  ``executemany`` upsert → ``XACK``, until a read returns nothing.
- asyncetl: ``RedisStreamSource`` → the same flattening as a ``Transform`` →
  ``SqliteSink(key=["order_id"])``, embedded, stopping once idle for 0.1 s (that
  wait is in its time). Both sides write the same transactions (one per read of
  1000 entries) and ``XACK`` each read once it is committed.

Each side runs in its own process (its time includes its imports), so peak
memory (max RSS) and CPU time (user + system, every thread's) are its own; the
pairs alternate. Each ratio is loop / asyncetl (above 1: asyncetl is faster or
uses less), the median over the pairs. Needs Redis at
``ASYNCETL_BENCH_REDIS`` (default ``redis://127.0.0.1:6379/0``) and hiredis.

    python benchmarks/redis_sqlite.py               # 500k entries, 3 pairs
    python benchmarks/redis_sqlite.py --n 100000 --pairs 1

For whole-process figures (CPU time, peak memory), fill a stream once and time
one side after the other, in turns (each run uses a new group):

    python benchmarks/redis_sqlite.py --fill bench:orders --n 500000
    /usr/bin/time -v python benchmarks/redis_sqlite.py --child loop --stream bench:orders
    /usr/bin/time -v python benchmarks/redis_sqlite.py --child asyncetl --stream bench:orders
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

URL = os.environ.get("ASYNCETL_BENCH_REDIS", "redis://127.0.0.1:6379/0")
BATCH = 1000
SIDES = ("loop", "asyncetl")
COLUMNS = ("order_id", "entry", "customer", "sku", "qty", "price")
DDL = (
    "CREATE TABLE orders (order_id TEXT NOT NULL PRIMARY KEY, entry TEXT, customer TEXT, "
    "sku TEXT, qty TEXT, price TEXT)"
)
UPSERT = (
    f"INSERT INTO orders ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (order_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
)


def fill(stream: str, n: int) -> None:
    import redis

    r = redis.Redis.from_url(URL)
    r.delete(stream)
    for first in range(0, n, 10_000):
        pipe = r.pipeline(transaction=False)
        for i in range(first, min(first + 10_000, n)):
            pipe.xadd(
                stream,
                {
                    "order_id": f"o{i}",
                    "customer": f"c{i % 977}",
                    "sku": f"sku-{i % 61}",
                    "qty": str(i % 9 + 1),
                    "price": f"{1 + (i % 100) / 7:.2f}",
                },
            )
        pipe.execute()


def make_db(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(DDL)


def run_loop(stream: str, group: str, db: Path) -> None:
    import redis

    r = redis.Redis.from_url(URL)
    r.xgroup_create(stream, group, id="0")
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        while True:
            reply = r.xreadgroup(group, "loop", {stream: ">"}, count=BATCH)
            if not reply:
                break
            entries = reply[0][1]
            rows = []
            for entry_id, fields in entries:
                record = {"entry": entry_id.decode()}
                record.update({k.decode(): v.decode() for k, v in fields.items()})
                rows.append(tuple(record[c] for c in COLUMNS))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(UPSERT, rows)
            conn.execute("COMMIT")
            r.xack(stream, group, *[entry_id for entry_id, _ in entries])


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """An entry as a row: its id beside its fields."""
    return {"entry": record["id"], **record["fields"]}


def run_asyncetl(stream: str, group: str, db: Path) -> None:
    import anyio

    from asyncetl import Pipeline, Transform
    from asyncetl.connectors.redis import RedisStreamSource
    from asyncetl.connectors.sqlite import SqliteSink

    pipeline = Pipeline(
        "orders",
        RedisStreamSource(URL, stream, group=group, consumer="asyncetl", count=BATCH),
        SqliteSink(str(db), "orders", key=["order_id"], columns=list(COLUMNS)),
        [Transform(flatten)],
        max_batch_size=BATCH,
        stop_when_idle=0.1,
        summary_interval=3600,
    )
    anyio.run(pipeline.run)


def child(side: str, stream: str) -> None:
    """One side once, on a new group of ``stream``; the time includes that side's imports."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "orders.db"
        make_db(db)
        started = time.perf_counter()
        try:
            (run_loop if side == "loop" else run_asyncetl)(stream, group, db)
            elapsed = time.perf_counter() - started
        finally:
            import redis

            redis.Redis.from_url(URL).xgroup_destroy(stream, group)
        with closing(sqlite3.connect(db)) as conn:
            count = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread's, imports included
    cpu = usage.ru_utime + usage.ru_stime
    print(
        json.dumps(
            {"count": count, "elapsed": elapsed, "cpu": cpu, "peak_mib": usage.ru_maxrss / 1024}
        )
    )


def measure(side: str, stream: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--stream", stream]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500_000, help="stream entries")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved runs of each side")
    parser.add_argument("--fill", metavar="STREAM", help="only fill STREAM with --n entries")
    parser.add_argument("--child", choices=SIDES, help="run one side once")
    parser.add_argument("--stream", help="the stream of --child")
    args = parser.parse_args()
    if args.fill:
        fill(args.fill, args.n)
        return
    if args.child:
        child(args.child, args.stream)
        return
    import redis

    stream = f"bench:orders:{uuid.uuid4().hex[:8]}"
    fill(stream, args.n)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    try:
        for _ in range(args.pairs):
            for side in SIDES:
                result = measure(side, stream)
                if result["count"] != args.n:
                    raise SystemExit(f"{side} upserted {result['count']} rows, not {args.n}")
                runs[side].append(result)
    finally:
        redis.Redis.from_url(URL).delete(stream)
    n = args.n
    rate = {s: statistics.median(n / r["elapsed"] for r in runs[s]) for s in SIDES}
    peak = {s: statistics.median(r["peak_mib"] for r in runs[s]) for s in SIDES}
    pairs = list(zip(runs["loop"], runs["asyncetl"], strict=True))
    ratio = statistics.median(b["elapsed"] / a["elapsed"] for b, a in pairs)
    cpu = {s: statistics.median(r["cpu"] for r in runs[s]) for s in SIDES}
    cpu_ratio = statistics.median(b["cpu"] / a["cpu"] for b, a in pairs)
    hiredis = "with" if redis.utils.HIREDIS_AVAILABLE else "WITHOUT"
    print(f"cores {os.cpu_count()}; redis-py {hiredis} hiredis; medians of {args.pairs} pairs")
    print(
        f"{'entries':>10} {'loop rec/s':>11} {'asyncetl rec/s':>15} {'ratio':>6} "
        f"{'loop CPU s':>11} {'asyncetl CPU s':>15} {'ratio':>6} "
        f"{'loop MiB':>9} {'asyncetl MiB':>13}"
    )
    print(
        f"{n:>10,} {rate['loop']:>11,.0f} {rate['asyncetl']:>15,.0f} {ratio:>6.2f} "
        f"{cpu['loop']:>11.2f} {cpu['asyncetl']:>15.2f} {cpu_ratio:>6.2f} "
        f"{peak['loop']:>9.1f} {peak['asyncetl']:>13.1f}"
    )


if __name__ == "__main__":
    main()
