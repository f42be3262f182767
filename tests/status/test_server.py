"""The status endpoint of a running pipeline, read over real HTTP."""

from __future__ import annotations

import aiohttp
import anyio
import orjson
import pytest

from asyncetl import ListSink, MemoryCheckpointStore, Pipeline
from asyncetl.status import serve_status
from tests.core.helpers import TrackedSource

pytestmark = pytest.mark.anyio


async def fetch(port: int, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_health_and_page_follow_the_running_pipeline() -> None:
    source = TrackedSource(50, chunk=10, follow=True)
    sink: ListSink[int] = ListSink()
    pipeline = Pipeline(
        "orders",
        source,
        sink,
        checkpoints=MemoryCheckpointStore(),
        max_batch_size=10,
        max_batch_age=0.02,
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_status(pipeline, port=0, task_status=task_status)
        )
        status, _, body = await fetch(port, "/health")
        assert (status, body.startswith('{"pipeline":"orders","state":"idle"')) == (503, True)
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            while pipeline.stats.position != 50:
                await anyio.sleep(0.01)

        status, kind, metrics = await fetch(port, "/metrics")
        assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
        lines = set(metrics.splitlines())
        assert 'asyncetl_records_in_total{pipeline="orders"} 50.0' in lines
        assert 'asyncetl_records_out_total{pipeline="orders"} 50.0' in lines
        assert 'asyncetl_batches_committed_total{pipeline="orders"} 5.0' in lines
        assert 'asyncetl_in_flight_batches{pipeline="orders"} 0.0' in lines
        assert 'asyncetl_running{pipeline="orders"} 1.0' in lines

        status, kind, body = await fetch(port, "/health")
        assert (status, kind) == (200, "application/json")
        assert '"state":"running"' in body
        assert '"position":50' in body

        status, kind, page = await fetch(port, "/")
        assert (status, kind) == (200, "text/html; charset=utf-8")
        assert '<h1>pipeline orders <span class="state">running</span></h1>' in page
        assert '<tr><td>records_out</td><td class="n">50</td></tr>' in page

        pipeline.stop()
        with anyio.fail_after(5):
            while pipeline.state != "idle":
                await anyio.sleep(0.01)
        status, _, body = await fetch(port, "/health")
        assert status == 503
        tg.cancel_scope.cancel()


async def test_pipeline_names_are_escaped_in_the_page() -> None:
    pipeline = Pipeline("<script>", TrackedSource(1), ListSink())
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_status(pipeline, port=0, task_status=task_status)
        )
        _, _, page = await fetch(port, "/")
        assert "<script>" not in page
        assert "pipeline &lt;script&gt;" in page
        tg.cancel_scope.cancel()


async def test_health_and_metrics_name_each_counter_alike() -> None:
    pipeline = Pipeline(
        "orders", TrackedSource(30, chunk=10), ListSink(), max_batch_size=10, max_batch_age=0.02
    )
    await pipeline.run()
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_status(pipeline, port=0, task_status=task_status)
        )
        _, _, body = await fetch(port, "/health")
        _, _, metrics = await fetch(port, "/metrics")
        tg.cancel_scope.cancel()
    health = orjson.loads(body)
    counters = {
        "records_in": 30,
        "records_out": 30,
        "unchanged": 0,
        "dead_lettered": 0,
        "batches_committed": 3,
    }
    assert {name: health[name] for name in counters} == counters
    lines = set(metrics.splitlines())
    for name, value in counters.items():
        assert f'asyncetl_{name}_total{{pipeline="orders"}} {float(value)}' in lines
    assert not {"loaded", "batches"} & health.keys()
