"""Pipeline.observe: per-stage counters, queue fill, progress, recent rates and retries."""

from __future__ import annotations

import anyio
import pytest

from asyncetl import (
    ListSink,
    ListSource,
    MemoryDeadLetterStore,
    Pipeline,
    Progress,
    RetryPolicy,
    Transform,
    TransientError,
    retry_call,
)
from asyncetl.core._meter import Sampler, StageMeter
from tests.core.helpers import SlowSink

pytestmark = pytest.mark.anyio


def odd_only(record: int) -> int:
    if record % 2:
        return record
    raise ValueError(f"even record {record}")


async def test_each_stage_counts_its_records_batches_latencies_and_dead_letters() -> None:
    sink: ListSink[int] = ListSink(name="out")
    pipeline = Pipeline(
        "counting",
        ListSource(range(20), chunk_size=5, name="numbers"),
        sink,
        [Transform(odd_only, name="odd", on_error="dead_letter")],
        dead_letters=MemoryDeadLetterStore(),
        max_batch_size=5,
    )
    await pipeline.run()
    source, odd, out = pipeline.observe().stages
    assert (source.name, source.kind, source.records_in, source.records_out, source.batches) == (
        "numbers",
        "source",
        20,
        20,
        4,
    )
    assert (odd.kind, odd.records_in, odd.records_out, odd.batches, odd.dead_lettered) == (
        "transform",
        20,
        10,
        4,
        10,
    )
    assert odd.errors == {"ValueError": 10}
    assert (sum(odd.latency_counts), sum(out.latency_counts)) == (4, 4)
    assert (out.kind, out.records_in, out.records_out, out.batches) == ("sink", 10, 10, 4)
    assert sink.records == list(range(1, 20, 2))
    assert pipeline.observe().progress[0].done == 20
    assert pipeline.observe().progress[0].total == 20


async def test_the_queue_before_a_slow_sink_fills_to_its_capacity() -> None:
    pipeline = Pipeline(
        "backpressure",
        ListSource(range(200), chunk_size=10),
        SlowSink(delay=0.2),
        max_batch_size=10,
        queue_size=3,
    )
    assert pipeline.observe().queues == []
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            while not pipeline.observe().queues or pipeline.observe().queues[0].batches < 3:
                await anyio.sleep(0.01)
        fill = pipeline.observe().queues[0]
        assert (fill.after, fill.before, fill.batches, fill.capacity) == (
            "list_source",
            "slow_sink",
            3,
            3,
        )
        pipeline.stop(immediate=True)


async def test_retries_are_counted_on_the_stage_that_retried_by_their_cause() -> None:
    failures = iter([ConnectionResetError("reset"), ConnectionResetError("reset")])

    async def flaky() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise TransientError("the call failed") from failure

    async def call_twice_failing(records: list[int]) -> list[int]:
        await retry_call(flaky, policy=RetryPolicy(max_tries=5, base_delay=0.001), what="flaky")
        return records

    pipeline = Pipeline(
        "retrying",
        ListSource(range(3)),
        ListSink(),
        [Transform(call_twice_failing, kind="batch", name="enrich")],
    )
    await pipeline.run()
    assert pipeline.observe().stages[1].retries == {"ConnectionResetError": 2}
    assert pipeline.observe().stages[2].retries == {}


def test_rates_cover_the_last_ten_seconds_not_the_whole_run() -> None:
    clock = [1000.0]
    sink = StageMeter("sink", "sink")
    sampler = Sampler([sink], clock=lambda: clock[0])
    for _ in range(30):  # 30 s at 100 records/s…
        clock[0] += 1
        sink.record_batch(100, 100, 0.01)
        sampler.sample([Progress(sink.records_out, 10_000, "rows", "public.t")])
    for _ in range(10):  # …then 10 s at 10 records/s
        clock[0] += 1
        sink.record_batch(10, 10, 0.01)
        sampler.sample([Progress(sink.records_out, 10_000, "rows", "public.t")])
    assert sampler.stage_rates() == [10.0]
    (part,) = sampler.progress([Progress(3100, 10_000, "rows", "public.t")])
    assert (part.part, part.unit, part.done, part.total, part.per_s, part.eta_s) == (
        "public.t",
        "rows",
        3100,
        10_000,
        10.0,
        690.0,
    )
    assert sampler.history(0)[-11:] == [100.0] + [10.0] * 10


def test_an_estimate_that_fell_short_is_raised_to_what_was_done() -> None:
    sampler = Sampler([])
    (part,) = sampler.progress([Progress(120, 100, "rows")])
    assert (part.total, part.fraction, part.per_s, part.eta_s) == (120, 1.0, 0.0, 0.0)


def test_batch_latencies_fall_in_their_buckets() -> None:
    meter = StageMeter("t", "transform")
    for seconds in (0.0005, 0.001, 0.003, 20.0):
        meter.record_batch(1, 1, seconds)
    view = meter.view(0.0)
    assert view.latency_counts == (2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
    assert view.latency_sum == pytest.approx(20.0045)
