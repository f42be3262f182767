"""CDC into Iceberg: asyncetl's IcebergSink beside hand-written pyiceberg loops, in one run.

The same stream of change events on every side: ``--keys`` rows inserted, then
updates (one in twenty a delete) of keys spread over the table, ``--changes``
in all, in batches of ``--batch``. Each side leaves the same rows; each prints
changes/s, its commits and the data files it wrote, per 1M changes.

- baseline "per batch": the loop most write first, one commit (delete the
  batch's keys, append their last rows) per batch;
- baseline "every 10 s": the same loop gathering each key's last change in a
  dict and committing at most every ``--interval`` seconds (the floor);
- asyncetl: a Pipeline into ``IcebergSink(commit_interval=interval)`` with the
  position in each commit's snapshot summary (``IcebergCheckpointStore``).

Usage: python benchmarks/iceberg.py [--changes 1000000] [--keys 100000] [--skip-per-batch]
(the per-batch loop takes minutes at 1M changes: each of its commits rewrites the table)
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import pyarrow as pa
import structlog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import In
from pyiceberg.table import Table

from asyncetl import Chunk, Pipeline, Position, Source, tune_gc
from asyncetl.connectors.iceberg import IcebergCheckpointStore, IcebergSink
from asyncetl.core.changes import ChangeEvent

COLUMNS = {
    "id": "integer",
    "balance": "numeric(12,2)",
    "note": "text",
    "at": "timestamp with time zone",
}
SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("balance", pa.decimal128(12, 2)),
        pa.field("note", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
    ]
)
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def changes(count: int, keys: int) -> Iterator[ChangeEvent]:
    for i in range(count):
        key = i if i < keys else (i * 7919) % keys
        op = "c" if i < keys else ("d" if i % 20 == 0 else "u")
        after = None
        if op != "d":
            after = {
                "id": key,
                "balance": Decimal(i % 100_000) / 100,
                "note": f"change {i}",
                "at": EPOCH + dt.timedelta(seconds=i),
            }
        yield ChangeEvent(
            op,  # type: ignore[arg-type]
            "public",
            "accounts",
            key={"id": key},
            after=after,
            lsn=i + 1,
            columns=COLUMNS,
            key_columns=("id",),
        )


class ChangeSource(Source[ChangeEvent]):
    """The change stream, made as it is read (a list of 1M events would be the benchmark)."""

    name = "changes"

    def __init__(self, count: int, keys: int) -> None:
        self.count, self.keys = count, keys

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[ChangeEvent]]:
        batch: list[ChangeEvent] = []
        for event in changes(self.count, self.keys):
            batch.append(event)
            if len(batch) == max_chunk:
                yield Chunk(batch, event.lsn)
                batch = []
        if batch:
            yield Chunk(batch, batch[-1].lsn)


# -- the hand-written loops ---------------------------------------------------------


def baseline(
    warehouse: Path, args: argparse.Namespace, interval: float | None
) -> tuple[float, int]:
    """Apply the stream with pyiceberg directly; return seconds and commits."""
    warehouse.mkdir()
    catalog = SqlCatalog(
        "bench", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )
    catalog.create_namespace("public")
    table = catalog.create_table("public.accounts", schema=SCHEMA)
    start = time.perf_counter()
    held: dict[int, dict[str, object] | None] = {}
    last_commit, commits, n = time.monotonic(), 0, 0
    for event in changes(args.changes, args.keys):
        held.pop(event.key["id"], None)  # type: ignore[index]
        held[event.key["id"]] = event.after  # type: ignore[index]
        n += 1
        if n % args.batch:
            continue
        if interval is None or time.monotonic() - last_commit >= interval:
            commit(table, held)
            held, last_commit, commits = {}, time.monotonic(), commits + 1
    if held:
        commit(table, held)
        commits += 1
    return time.perf_counter() - start, commits


def commit(table: Table, held: dict[int, dict[str, object] | None]) -> None:
    tx = table.transaction()
    tx.delete(In("id", list(held)))  # type: ignore[call-arg, arg-type]
    rows = [row for row in held.values() if row is not None]
    if rows:
        tx.append(pa.Table.from_pylist(rows, schema=SCHEMA))
    tx.commit_transaction()


# -- asyncetl -----------------------------------------------------------------------


async def ours(warehouse: Path, args: argparse.Namespace) -> tuple[float, int]:
    pipeline = Pipeline(
        "bench",
        ChangeSource(args.changes, args.keys),
        IcebergSink(str(warehouse), commit_interval=args.interval, target_file_size=512 << 20),
        checkpoints=IcebergCheckpointStore(str(warehouse)),
        max_batch_size=args.batch,
        summary_interval=3600,
    )
    start = time.perf_counter()
    stats = await pipeline.run()
    elapsed = time.perf_counter() - start
    assert stats.records_out == args.changes, stats
    return elapsed, len(read(warehouse, "asyncetl").snapshots())


# -- reporting ----------------------------------------------------------------------


def read(warehouse: Path, name: str) -> Table:
    catalog = SqlCatalog(
        name, uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )
    return catalog.load_table("public.accounts")


def files_written(warehouse: Path) -> int:
    return sum(1 for _ in (warehouse / "public" / "accounts" / "data").rglob("*.parquet"))


def live_files(table: Table) -> int:
    snapshot = table.current_snapshot()
    return int(snapshot.summary["total-data-files"]) if snapshot and snapshot.summary else 0


def report(
    label: str, warehouse: Path, catalog: str, seconds: float, commits: int, n: int
) -> list[object]:
    table = read(warehouse, catalog)
    rows = table.scan().to_arrow().sort_by("id")
    per_m = 1_000_000 / n
    print(
        f"{label:<28} {seconds:7.2f} s {n / seconds:>10,.0f} changes/s  commits {commits:>5}  "
        f"data files written {files_written(warehouse) * per_m:>8,.0f} per 1M changes, "
        f"live {live_files(table)}"
    )
    return rows.to_pylist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--skip-per-batch", action="store_true", help="the slowest side")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    warnings.filterwarnings("ignore", "Delete operation did not match any records")
    tune_gc()  # as `python -m asyncetl run` does; it serves every side of this one process
    print(
        f"{args.changes:,} changes over {args.keys:,} keys, batches of {args.batch}, "
        f"commit every {args.interval} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        sides: list[tuple[str, float | None]] = [("baseline every interval", args.interval)]
        if not args.skip_per_batch:
            sides.insert(0, ("baseline per batch", None))
        for label, interval in sides:
            home = Path(tmp) / label.replace(" ", "_")
            seconds, commits = baseline(home, args, interval)
            results[label] = (seconds, report(label, home, "bench", seconds, commits, args.changes))
        home = Path(tmp) / "asyncetl"
        seconds, commits = anyio.run(ours, home, args)
        mine = report("asyncetl IcebergSink", home, "asyncetl", seconds, commits, args.changes)
        for label, (theirs, rows) in results.items():
            assert rows == mine, f"{label} and asyncetl left different rows"
            print(f"asyncetl/{label} throughput: {theirs / seconds:.2f}")


if __name__ == "__main__":
    main()
