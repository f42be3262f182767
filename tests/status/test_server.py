"""The status endpoint of a running pipeline, read over real HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import aiohttp
import anyio
import orjson
import pytest
from anyio.abc import TaskGroup

from asyncetl import (
    Batch,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
    Pipeline,
    Reject,
    Transform,
)
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
        assert 'fetch("/status.json"' in page

        pipeline.stop()
        with anyio.fail_after(5):
            while pipeline.state != "idle":
                await anyio.sleep(0.01)
        status, _, body = await fetch(port, "/health")
        assert status == 503
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


class HeldSink(ListSink[int]):
    """Writes only while ``flowing`` is set: a sink that can stall on command."""

    def __init__(self) -> None:
        super().__init__(name="held")
        self.flowing = anyio.Event()

    async def write(self, batch: Batch[int]) -> Sequence[Reject]:
        await self.flowing.wait()
        return await super().write(batch)


def odd_only(record: int) -> int:
    if record % 2:
        return record
    raise ValueError(f"even record {record}")


async def serving(tg: TaskGroup, pipeline: Pipeline, ready_limit: float = 60.0) -> int:
    port: int = await tg.start(partial(serve_status, pipeline, port=0, ready_limit=ready_limit))
    return port


async def test_metrics_count_each_stage_exactly_while_the_pipeline_runs() -> None:
    pipeline = Pipeline(
        "orders",
        TrackedSource(40, chunk=10, follow=True),
        ListSink(name="out"),
        [Transform(odd_only, name="odd", on_error="dead_letter")],
        dead_letters=MemoryDeadLetterStore(),
        max_batch_size=10,
        max_batch_age=0.02,
    )
    async with anyio.create_task_group() as tg:
        port = await serving(tg, pipeline)
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            while pipeline.stats.position != 40:
                await anyio.sleep(0.01)
        _, _, metrics = await fetch(port, "/metrics")
        lines = set(metrics.splitlines())
        for stage, into, out in (("tracked", 40, 40), ("odd", 40, 20), ("out", 20, 20)):
            at = f'pipeline="orders",stage="{stage}"'
            assert f'asyncetl_records_total{{direction="in",{at}}} {into:.1f}' in lines
            assert f'asyncetl_records_total{{direction="out",{at}}} {out:.1f}' in lines
            assert f"asyncetl_batches_total{{{at}}} 4.0" in lines
        odd = 'pipeline="orders",stage="odd"'
        assert f"asyncetl_stage_dead_lettered_total{{{odd}}} 20.0" in lines
        assert f'asyncetl_errors_total{{{odd},type="ValueError"}} 20.0' in lines
        assert f'asyncetl_batch_duration_seconds_bucket{{le="+Inf",{odd}}} 4.0' in lines
        assert 'asyncetl_batch_duration_seconds_count{pipeline="orders",stage="out"} 4.0' in lines
        queue = 'after="tracked",before="odd",pipeline="orders"'
        assert f"asyncetl_queue_capacity_batches{{{queue}}} 2.0" in lines
        assert "asyncetl_progress_done_records" not in metrics  # TrackedSource knows no size
        tg.cancel_scope.cancel()


async def test_the_queue_fill_rises_and_ready_turns_503_when_the_sink_stalls() -> None:
    sink = HeldSink()
    pipeline = Pipeline(
        "stall",
        ListSource(range(100), chunk_size=10),
        sink,
        max_batch_size=10,
        queue_size=2,
    )
    async with anyio.create_task_group() as tg:
        port = await serving(tg, pipeline, ready_limit=0.3)
        assert await fetch(port, "/ready") == (
            503,
            "text/plain; charset=utf-8",
            "pipeline stall is not running\n",
        )
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            while pipeline.observe().stalled_s == 0:
                await anyio.sleep(0.01)
        status, _, body = await fetch(port, "/ready")
        assert (status, body) == (200, "ready\n")
        fill = 'asyncetl_queue_batches{after="list_source",before="held",pipeline="stall"}'
        with anyio.fail_after(5):
            while f"{fill} 2.0" not in (await fetch(port, "/metrics"))[2]:
                await anyio.sleep(0.02)
        await anyio.sleep(0.35)
        status, _, body = await fetch(port, "/ready")
        assert status == 503
        assert body.startswith("pipeline stall has had batches waiting ")
        assert body.endswith(" s without a commit (limit 0.3 s)\n")
        sink.flowing.set()
        with anyio.fail_after(5):
            while pipeline.state != "idle":
                await anyio.sleep(0.01)
        assert sink.records == list(range(100))
        tg.cancel_scope.cancel()


async def test_the_status_document_carries_stages_queues_progress_and_dead_letters() -> None:
    pipeline = Pipeline(
        "doc",
        ListSource(range(10), chunk_size=5, name="numbers"),
        ListSink(name="out"),
        [Transform(odd_only, name="odd", on_error="dead_letter")],
        dead_letters=MemoryDeadLetterStore(),
        max_batch_size=5,
    )
    await pipeline.run()
    async with anyio.create_task_group() as tg:
        port = await serving(tg, pipeline)
        status, kind, body = await fetch(port, "/status.json")
        tg.cancel_scope.cancel()
    document = orjson.loads(body)
    assert (status, kind) == (200, "application/json")
    assert [(s["name"], s["records_in"], s["records_out"]) for s in document["stages"]] == [
        ("numbers", 10, 10),
        ("odd", 10, 5),
        ("out", 5, 5),
    ]
    assert [(q["after"], q["before"], q["capacity"]) for q in document["queues"]] == [
        ("numbers", "odd", 2),
        ("odd", "out", 2),
    ]
    (part,) = document["progress"]
    assert (part["done"], part["total"], part["unit"], part["fraction"]) == (10, 10, "records", 1.0)
    assert [(d["stage"], d["error"], d["position"]) for d in document["dead_letters"][:2]] == [
        ("odd", "ValueError: even record 8", 10),
        ("odd", "ValueError: even record 6", 10),
    ]
    assert document["ready"] == "pipeline doc is not running"
