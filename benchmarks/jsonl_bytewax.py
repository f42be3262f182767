"""JSON lines → parse → add a field → JSON lines file (or a null sink): asyncetl vs bytewax.

Both sides read the same file line by line, parse each line with orjson, add
one field with the same function, and either append the records as JSON lines
to a file (fsync after each batch of 1000, as both sinks do by default) or
drop them in a sink that only counts. bytewax runs one worker
(``bytewax.testing.run_main``); asyncetl runs embedded, as an application
would run it: without ``tune_gc()``. Each side runs in its own process, so
peak memory (max RSS) is its own; the pairs alternate. Needs the ``bench``
extra (bytewax).

    python benchmarks/jsonl_bytewax.py                  # 1M records, 3 pairs, both sinks
    python benchmarks/jsonl_bytewax.py --n 200000 --pairs 1 --sink null

For whole-process figures (CPU time, peak memory), write the input once and
time the sides in turns, several runs of each:

    python benchmarks/jsonl_bytewax.py --make-input /tmp/in.jsonl --n 1000000
    /usr/bin/time -v python benchmarks/jsonl_bytewax.py --child bytewax \
        --input /tmp/in.jsonl --sink file
    /usr/bin/time -v python benchmarks/jsonl_bytewax.py --child asyncetl \
        --input /tmp/in.jsonl --sink file
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

BATCH = 1000
SIDES = ("bytewax", "asyncetl")


def make_input(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for first in range(0, n, 10_000):
            f.write(
                b"".join(
                    orjson.dumps(
                        {
                            "id": i,
                            "customer": f"c{i % 977}",
                            "sku": f"sku-{i % 61}",
                            "qty": i % 9 + 1,
                            "price": round(1 + (i % 100) / 7, 2),
                            "note": "ok" if i % 3 else None,
                        }
                    )
                    + b"\n"
                    for i in range(first, min(first + 10_000, n))
                )
            )


def priced(order: dict[str, Any]) -> dict[str, Any]:
    """The one transform both sides run: a new record with one more field."""
    return {**order, "total": order["qty"] * order["price"]}


#: What the null sinks counted.
_counted = [0]


def run_bytewax(src: Path, out: Path | None) -> None:
    import bytewax.operators as op
    from bytewax.connectors.files import FileSink, FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    class _Count(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            _counted[0] += len(items)

    class NullSink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
            return _Count()

    flow = Dataflow("jsonl")
    lines = op.input("read", flow, FileSource(src, batch_size=BATCH))
    records = op.map("add_total", op.map("parse", lines, orjson.loads), priced)
    if out is None:
        op.output("write", records, NullSink())
    else:
        # FileSink takes text lines, keyed (its one partition ignores the key).
        text = op.map("dump", records, lambda r: ("", orjson.dumps(r).decode()))
        op.output("write", text, FileSink(out))
    run_main(flow)


def run_asyncetl(src: Path, out: Path | None) -> None:
    import anyio

    from asyncetl import NullSink, Pipeline, Transform
    from asyncetl.connectors.files import JsonlSink, JsonlSource

    sink = NullSink() if out is None else JsonlSink(str(out))
    pipeline = Pipeline(
        "jsonl",
        JsonlSource(str(src)),
        sink,
        [Transform(priced)],
        max_batch_size=BATCH,
        summary_interval=3600,
    )
    anyio.run(pipeline.run)
    if isinstance(sink, NullSink):
        _counted[0] = sink.records


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def child(side: str, src: Path, sink: str) -> None:
    """One side once; the time includes importing that side's packages."""
    with tempfile.TemporaryDirectory() as tmp:
        out = None if sink == "null" else Path(tmp) / "out.jsonl"
        started = time.perf_counter()
        run = run_bytewax if side == "bytewax" else run_asyncetl
        run(src, out)
        elapsed = time.perf_counter() - started
        count = _lines(out) if out is not None else _counted[0]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"count": count, "elapsed": elapsed, "peak_mib": peak_kib / 1024}))


def measure(side: str, src: Path, sink: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--input", str(src), "--sink", sink]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def compare(src: Path, n: int, sink: str, pairs: int) -> None:
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for _ in range(pairs):
        for side in SIDES:
            result = measure(side, src, sink)
            if result["count"] != n:
                raise SystemExit(f"{side} wrote {result['count']} records, not {n}")
            runs[side].append(result)
    rate = {s: statistics.median(n / r["elapsed"] for r in runs[s]) for s in SIDES}
    peak = {s: statistics.median(r["peak_mib"] for r in runs[s]) for s in SIDES}
    ratios = [n / a["elapsed"] / (n / b["elapsed"]) for a, b in zip(*runs.values(), strict=True)]
    ratios = [1 / r for r in ratios]  # asyncetl over bytewax, pair by pair
    print(
        f"{sink:>5} {n:>10,} {rate['bytewax']:>14,.0f} {rate['asyncetl']:>15,.0f} "
        f"{statistics.median(ratios):>7.2f} {peak['bytewax']:>12.1f} {peak['asyncetl']:>13.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="records")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved runs of each side")
    parser.add_argument("--sink", choices=["file", "null", "both"], default="both")
    parser.add_argument("--make-input", type=Path, help="only write the input file")
    parser.add_argument("--child", choices=SIDES, help="run one side once")
    parser.add_argument("--input", type=Path, help="the input file of --child")
    args = parser.parse_args()
    if args.make_input:
        make_input(args.make_input, args.n)
        return
    if args.child:
        child(args.child, args.input, args.sink)
        return
    sinks = ["file", "null"] if args.sink == "both" else [args.sink]
    print(f"cores {os.cpu_count()}; medians of {args.pairs} interleaved pairs")
    if sys.flags.dont_write_bytecode:
        # Each child then compiles a source checkout of asyncetl afresh (about a tenth
        # of its time), while bytewax, installed, loads its compiled modules.
        print("note: PYTHONDONTWRITEBYTECODE is set; unset it to time asyncetl as installed")
    print(
        f"{'sink':>5} {'records':>10} {'bytewax rec/s':>14} {'asyncetl rec/s':>15} "
        f"{'ratio':>7} {'bytewax MiB':>12} {'asyncetl MiB':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        make_input(src, args.n)
        for sink in sinks:
            compare(src, args.n, sink, args.pairs)


if __name__ == "__main__":
    main()
