"""Engine overhead: a pipeline against a plain Python loop doing the same work.

Both generate the same records in the same chunks, apply the same identity
function to each record and count what comes out. The pipeline adds batching,
two bounded queues, a transform stage, a null sink and a checkpoint per batch.
Each measurement runs in its own process so peak memory (max RSS) is its own.

    python benchmarks/overhead.py            # N = 1M and 10M
    python benchmarks/overhead.py --n 200000 # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import anyio

from asyncetl import Chunk, NullSink, Pipeline, Position, Source, Transform

CHUNK = 1000


def make_records(start: int, stop: int) -> list[dict[str, int]]:
    return [{"id": i, "value": i & 0xFFFF} for i in range(start, stop)]


def identity(record: dict[str, int]) -> dict[str, int]:
    return record


class GeneratedSource(Source[dict[str, int]]):
    """Generates n records lazily, so the input itself takes no memory."""

    name = "generated"

    def __init__(self, n: int) -> None:
        self.n = n

    async def read(
        self, after: Position, *, max_chunk: int
    ) -> AsyncIterator[Chunk[dict[str, int]]]:
        start = after if isinstance(after, int) else 0
        for offset in range(start, self.n, CHUNK):
            stop = min(offset + CHUNK, self.n)
            yield Chunk(make_records(offset, stop), stop)


def plain_loop(n: int) -> int:
    written = 0
    for offset in range(0, n, CHUNK):
        for record in make_records(offset, min(offset + CHUNK, n)):
            if identity(record) is not None:
                written += 1
    return written


async def pipeline_run(n: int) -> int:
    sink = NullSink()
    pipeline = Pipeline(
        "overhead",
        GeneratedSource(n),
        sink,
        [Transform(identity)],
        max_batch_size=CHUNK,
        queue_size=4,
        summary_interval=3600,
    )
    await pipeline.run()
    return sink.records


def child(kind: str, n: int) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    started = time.perf_counter()
    count = plain_loop(n) if kind == "loop" else anyio.run(pipeline_run, n)
    elapsed = time.perf_counter() - started
    assert count == n, (kind, count, n)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rate": n / elapsed, "peak_mib": peak_kib / 1024, "elapsed": elapsed}))


def measure(kind: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="record counts (repeatable)")
    parser.add_argument("--child", choices=["loop", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.n or [1_000_000, 10_000_000]
    if args.child:
        child(args.child, sizes[0])
        return
    print(
        f"{'records':>12} {'plain loop rec/s':>18} {'pipeline rec/s':>16} {'ratio':>7} "
        f"{'loop peak MiB':>14} {'pipeline peak MiB':>18}"
    )
    peaks: dict[int, float] = {}
    for n in sizes:
        loop, pipe = measure("loop", n), measure("pipeline", n)
        peaks[n] = pipe["peak_mib"]
        print(
            f"{n:>12,} {loop['rate']:>18,.0f} {pipe['rate']:>16,.0f} "
            f"{pipe['rate'] / loop['rate']:>7.2f} {loop['peak_mib']:>14.1f} "
            f"{pipe['peak_mib']:>18.1f}"
        )
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        print(
            f"pipeline peak memory at {large:,} vs {small:,}: "
            f"{peaks[large] / peaks[small]:.3f}x (target <= 1.10x); ratio target >= 0.5x"
        )


if __name__ == "__main__":
    main()
