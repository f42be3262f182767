"""JSONL → transform → SQLite upsert: asyncetl Pipeline vs a plain synchronous loop.

Both sides: same input, same transform, same table (PRIMARY KEY id), WAL,
synchronous=FULL, one BEGIN IMMEDIATE … COMMIT with executemany per 1000 records.
The baseline has no checkpoints; asyncetl commits a checkpoint row in each batch's
transaction. Usage: python benchmarks/files_sqlite.py [records]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from contextlib import aclosing, closing
from pathlib import Path

import anyio
import orjson
import structlog

from asyncetl import Pipeline, Transform
from asyncetl.connectors.files import JsonlSource
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteSink

BATCH = 1000


def make_input(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            f.write(
                orjson.dumps(
                    {
                        "id": i,
                        "customer": f"c{i % 977}",
                        "sku": f"sku-{i % 61}",
                        "qty": i % 9 + 1,
                        "price": round(1 + (i % 100) / 7, 2),
                    }
                )
                + b"\n"
            )


def priced(order: dict[str, object]) -> dict[str, object]:
    return {**order, "total": order["qty"] * order["price"]}  # type: ignore[operator]


def baseline(src: Path, db: Path) -> float:
    start = time.perf_counter()
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE orders (id INTEGER NOT NULL, customer TEXT, sku TEXT, "
            "qty INTEGER, price REAL, total REAL, PRIMARY KEY (id))"
        )
        sql = (
            "INSERT INTO orders (id, customer, sku, qty, price, total) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (id) DO UPDATE SET customer = excluded.customer, sku = excluded.sku, "
            "qty = excluded.qty, price = excluded.price, total = excluded.total"
        )
        cols = ("id", "customer", "sku", "qty", "price", "total")

        def flush(rows: list[tuple[object, ...]]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

        rows: list[tuple[object, ...]] = []
        with src.open("rb") as f:
            for line in f:
                r = priced(orjson.loads(line))
                rows.append(tuple(r[c] for c in cols))
                if len(rows) == BATCH:
                    flush(rows)
                    rows = []
        if rows:
            flush(rows)
    return time.perf_counter() - start


async def ours(src: Path, db: Path) -> float:
    pipeline = Pipeline(
        "orders",
        JsonlSource(str(src)),
        SqliteSink(str(db), "orders", key=["id"], create=True),
        [Transform(priced)],
        checkpoints=SqliteCheckpointStore(str(db)),
        max_batch_size=BATCH,
        summary_interval=3600,
    )
    start = time.perf_counter()
    stats = await pipeline.run()
    elapsed = time.perf_counter() - start
    assert stats.records_out == N, stats
    return elapsed


async def source_only(src: Path) -> float:
    start = time.perf_counter()
    n = 0
    async with aclosing(JsonlSource(str(src)).read(None, max_chunk=BATCH)) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            n += len(chunk.records)
    assert n == N
    return time.perf_counter() - start


def source_baseline(src: Path) -> float:
    start = time.perf_counter()
    with src.open("rb") as f:
        n = sum(1 for line in f if orjson.loads(line) is not None)
    assert n == N
    return time.perf_counter() - start


if __name__ == "__main__":
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "orders.jsonl"
        make_input(src, N)
        sb = source_baseline(src)
        so = anyio.run(source_only, src)
        print(
            f"source only, {N} records: baseline {N / sb:,.0f} rec/s, JsonlSource {N / so:,.0f} "
            f"rec/s, asyncetl/baseline throughput {sb / so:.2f}"
        )
        b = baseline(src, Path(tmp) / "base.db")
        o = anyio.run(ours, src, Path(tmp) / "ours.db")
        with closing(sqlite3.connect(Path(tmp) / "ours.db")) as c:
            assert c.execute("SELECT count(*) FROM orders").fetchone()[0] == N
        print(
            f"JSONL → transform → SQLite upsert, {N} records: baseline {b:.2f} s "
            f"({N / b:,.0f} rec/s), asyncetl {o:.2f} s ({N / o:,.0f} rec/s), "
            f"asyncetl/baseline throughput {b / o:.2f}"
        )
