"""HttpSource throughput against a hand-written aiohttp loop, side by side.

A local aiohttp server (its own process) serves PAGES pages of RECORDS JSON
records each, waiting LATENCY seconds before each answer, with the total in
``X-Total-Count``. In one run, the client side measures:

- a plain aiohttp loop with 16 requests in flight (the floor: GET, read,
  ``orjson.loads``, count);
- asyncetl (HttpSource, page pagination -> pipeline -> NullSink) with
  ``max_concurrency`` 1 and 16, one page per batch (``max_batch_size`` = a page);
- and, to show the engine's per-batch share, asyncetl at 16 with 16 pages per batch.

With 16 requests in flight both clients are bound by the client's CPU, so the
ratio of the two is about the inverse ratio of their CPU time per page, which
is printed too.

Targets: asyncetl at 16 >= 0.8x the hand-written loop at 16, and >= 8x asyncetl at 1.
The clients at 16 run ``--repeat`` times, interleaved so that both meet the same
spells of a busy machine; asyncetl at 1, which takes ten times as long and is far
from its target, runs ``--repeat-slow`` times. Each client's best run counts, and
the median of its runs is printed beside it.

    python benchmarks/http_source.py                        # 1,000 pages x 1,000 records, 5 ms
    python benchmarks/http_source.py --pages 200 --records 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import anyio
import orjson
import structlog
from aiohttp import web

from asyncetl import NullSink, Pipeline
from asyncetl.connectors.http import HttpSource

CONCURRENCY = 16


# -- the server (a child process) -------------------------------------------------------


def serve(pages: int, records: int, latency: float) -> None:
    """Pre-render every page, print the port, and serve until killed."""
    bodies = [
        orjson.dumps(
            [
                {"id": i, "name": f"item {i}", "price": i * 0.25, "active": i % 3 == 0}
                for i in range(page * records, (page + 1) * records)
            ]
        )
        for page in range(pages)
    ]
    total = str(pages * records)

    async def handle(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        await asyncio.sleep(latency)
        body = bodies[page - 1] if 1 <= page <= pages else b"[]"
        return web.Response(
            body=body, content_type="application/json", headers={"X-Total-Count": total}
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/items", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the clients ------------------------------------------------------------------------


async def hand_loop(url: str, pages: int, records: int) -> int:
    """The floor: CONCURRENCY workers GET pages, decode them and count records."""
    connector = aiohttp.TCPConnector(limit_per_host=CONCURRENCY)
    numbers = iter(range(1, pages + 1))
    counted = 0

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal counted
            for page in numbers:
                async with session.get(url, params={"page": page, "limit": records}) as resp:
                    resp.raise_for_status()
                    counted += len(orjson.loads(await resp.read()))

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
    return counted


def asyncetl_run(
    concurrency: int, pages_per_batch: int = 1
) -> Callable[[str, int, int], Coroutine[Any, Any, int]]:
    async def run(url: str, pages: int, records: int) -> int:
        source = HttpSource(
            url,
            pagination="page",
            page_size=records,
            max_concurrency=concurrency,
            limit_per_host=CONCURRENCY,
        )
        sink = NullSink()
        batch = records * pages_per_batch
        await Pipeline("bench", source, sink, max_batch_size=batch, summary_interval=3600).run()
        return sink.records

    return run


def measure(
    name: str,
    client: Callable[[str, int, int], Coroutine[Any, Any, int]],
    url: str,
    pages: int,
    records: int,
) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    count = anyio.run(client, url, pages, records)
    elapsed = time.perf_counter() - started
    assert count == pages * records, (name, count)
    return {
        "name": name,
        "seconds": elapsed,
        "pages_s": pages / elapsed,
        "records_s": count / elapsed,
        "cpu_ms": (time.process_time() - cpu) / pages * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per request")
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of each client at 16, interleaved; the best one counts",
    )
    parser.add_argument(
        "--repeat-slow", type=int, default=2, help="runs of asyncetl at 1, likewise"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.pages, args.records, args.latency)
        return
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    load_before = os.getloadavg()[0]
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--pages",
            str(args.pages),
            "--records",
            str(args.records),
            "--latency",
            str(args.latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/items"
        clients = {
            f"hand-written aiohttp loop, {CONCURRENCY} in flight": hand_loop,
            "asyncetl HttpSource, max_concurrency 1": asyncetl_run(1),
            f"asyncetl HttpSource, max_concurrency {CONCURRENCY}": asyncetl_run(CONCURRENCY),
            f"  same, {CONCURRENCY} pages per batch": asyncetl_run(CONCURRENCY, CONCURRENCY),
        }
        slow = "asyncetl HttpSource, max_concurrency 1"
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        for round_ in range(max(args.repeat, args.repeat_slow)):
            for name, client in clients.items():
                if round_ < (args.repeat_slow if name == slow else args.repeat):
                    runs[name].append(measure(name, client, url, args.pages, args.records))
        results = [max(found, key=lambda r: r["pages_s"]) for found in runs.values()]
        medians = [statistics.median(r["pages_s"] for r in found) for found in runs.values()]
    finally:
        server.terminate()
        server.wait()
    print(
        f"{args.pages:,} pages x {args.records:,} records, {args.latency * 1000:g} ms latency, "
        f"best of {args.repeat} ({args.repeat_slow} at 1); 1-minute load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs"
    )
    print(
        f"{'client':<44} {'seconds':>8} {'pages/s':>9} {'records/s':>12} {'CPU ms/page':>12}"
        f" {'median pages/s':>15}"
    )
    for r, median in zip(results, medians, strict=True):
        print(
            f"{r['name']:<44} {r['seconds']:>8.2f} {r['pages_s']:>9,.0f} "
            f"{r['records_s']:>12,.0f} {r['cpu_ms']:>12.2f} {median:>15,.0f}"
        )
    hand, one, many, _ = results
    print(
        f"asyncetl 16 / hand-written 16: {many['pages_s'] / hand['pages_s']:.2f}x best, "
        f"{medians[2] / medians[0]:.2f}x median (target >= 0.8x)"
    )
    print(f"asyncetl 16 / asyncetl 1:      {many['pages_s'] / one['pages_s']:.2f}x (target >= 8x)")
    print(json.dumps({r["name"]: round(r["pages_s"], 1) for r in results}))


if __name__ == "__main__":
    main()
