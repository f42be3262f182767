from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ObjectSendStream
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Checkpoint,
    Chunk,
    ConfigError,
    ListSink,
    ListSource,
    MemoryCheckpointStore,
    MemoryDeadLetterStore,
    Pipeline,
    Position,
    Reject,
    Source,
    StageError,
    Transform,
)
from tests.core.helpers import SlowSink, TrackedSource

pytestmark = pytest.mark.anyio


def double(record: int) -> int:
    return record * 2


async def test_records_flow_through_transforms_in_order_and_commit_each_batch() -> None:
    store = MemoryCheckpointStore()
    sink: ListSink[int] = ListSink()
    pipeline = Pipeline(
        "p",
        ListSource(range(25), chunk_size=5),
        sink,
        [Transform(double)],
        checkpoints=store,
        max_batch_size=10,
    )
    stats = await pipeline.run()
    assert sink.records == [2 * i for i in range(25)]
    assert [b.position for b in sink.batches] == [10, 20, 25]
    assert [c.position for c in store.history] == [10, 20, 25]
    assert store.positions == {("p", "list_source"): 25}
    assert (stats.records_in, stats.records_out, stats.batches_committed) == (25, 25, 3)


async def test_the_default_checkpoint_store_keeps_the_latest_position_only() -> None:
    sink: ListSink[int] = ListSink()
    pipeline = Pipeline("p", ListSource(range(25), chunk_size=5), sink, max_batch_size=5)
    await pipeline.run()
    store = pipeline.checkpoints
    assert isinstance(store, MemoryCheckpointStore)
    assert store.positions == {("p", "list_source"): 25}
    assert store.history == []  # one entry per batch would grow for as long as it runs
    rerun = await pipeline.run()  # and a second run still resumes after it
    assert (rerun.records_in, len(sink.records)) == (0, 25)


async def test_resume_reads_exactly_the_remainder() -> None:
    store = MemoryCheckpointStore()
    await store.save(Checkpoint("p", "list_source", 17))
    sink: ListSink[int] = ListSink()
    await Pipeline("p", ListSource(range(30), chunk_size=4), sink, checkpoints=store).run()
    assert sink.records == list(range(17, 30))


async def test_flat_map_batch_and_async_transforms() -> None:
    async def add_one(record: int) -> int:
        await anyio.lowlevel.checkpoint()
        return record + 1

    def twice(record: int) -> list[int]:
        return [record, record]

    def evens(records: list[int]) -> list[int]:
        return [r for r in records if r % 2 == 0]

    sink: ListSink[int] = ListSink()
    transforms = [
        Transform(add_one),
        Transform(twice, kind="flat_map"),
        Transform(evens, kind="batch"),
    ]
    await Pipeline("p", ListSource(range(6)), sink, transforms).run()
    assert sink.records == [2, 2, 4, 4, 6, 6]


async def test_batch_filtered_to_nothing_is_still_acknowledged() -> None:
    store = MemoryCheckpointStore()
    source = ListSource(range(30), chunk_size=10)
    sink: ListSink[int] = ListSink()
    keep_big = Transform(lambda r: r if r >= 20 else None, name="keep_big")
    await Pipeline("p", source, sink, [keep_big], checkpoints=store, max_batch_size=10).run()
    assert sink.records == list(range(20, 30))
    assert [c.position for c in store.history] == [10, 20, 30]
    assert source.acknowledged == [10, 20, 30]


async def test_parallel_workers_keep_source_order() -> None:
    async def jitter(records: list[int]) -> list[int]:
        # Later batches finish first.
        await anyio.sleep(0.02 if records[0] % 20 == 0 else 0.001)
        return records

    sink: ListSink[int] = ListSink()
    stage = Transform(jitter, kind="batch", workers=4)
    await Pipeline(
        "p", ListSource(range(200), chunk_size=10), sink, [stage], max_batch_size=10
    ).run()
    assert sink.records == list(range(200))
    assert [b.seq for b in sink.batches] == list(range(20))


async def test_unordered_workers_commit_only_the_low_watermark() -> None:
    async def slow_first(records: list[int]) -> list[int]:
        await anyio.sleep(0.1 if records[0] == 0 else 0)
        return records

    store = MemoryCheckpointStore()
    sink: ListSink[int] = ListSink()
    stage = Transform(slow_first, kind="batch", workers=3, ordered=False)
    await Pipeline(
        "p",
        ListSource(range(30), chunk_size=10),
        sink,
        [stage],
        checkpoints=store,
        max_batch_size=10,
    ).run()
    assert [b.seq for b in sink.batches][-1] == 0  # the first batch arrived last
    # Nothing was committed until batch 0 was acknowledged, then everything at once.
    assert [c.position for c in store.history] == [30]
    assert sorted(sink.records) == list(range(30))


async def test_fail_policy_stops_with_stage_and_position_and_commits_nothing_past_the_ack() -> None:
    def explode(record: int) -> int:
        if record == 25:
            raise ValueError("record 25 is bad")
        return record

    store = MemoryCheckpointStore()
    sink: ListSink[int] = ListSink()
    pipeline = Pipeline(
        "p",
        ListSource(range(50), chunk_size=10),
        sink,
        [Transform(explode, name="explode")],
        checkpoints=store,
        max_batch_size=10,
    )
    with pytest.raises(StageError) as info:
        await pipeline.run()
    assert str(info.value) == (
        "stage 'explode' failed on the batch ending at position 30: ValueError: record 25 is bad"
    )
    assert isinstance(info.value.__cause__, ValueError)
    assert store.positions[("p", "list_source")] in (10, 20)
    assert all(r < 20 for r in sink.records)
    committed = store.positions[("p", "list_source")]
    assert sink.records == list(range(committed))  # type: ignore[arg-type]


async def test_dead_letter_policy_sets_records_aside_and_goes_on() -> None:
    def explode(record: int) -> int:
        if record % 10 == 3:
            raise ValueError(f"record {record} is bad")
        return record

    letters = MemoryDeadLetterStore()
    sink: ListSink[int] = ListSink()
    pipeline = Pipeline(
        "p",
        ListSource(range(30), chunk_size=10),
        sink,
        [Transform(explode, name="explode", on_error="dead_letter")],
        dead_letters=letters,
        max_batch_size=10,
    )
    stats = await pipeline.run()
    assert sink.records == [r for r in range(30) if r % 10 != 3]
    assert [(d.stage, d.record, d.error, d.error_type, d.position) for d in letters.letters] == [
        ("explode", 3, "record 3 is bad", "ValueError", 10),
        ("explode", 13, "record 13 is bad", "ValueError", 20),
        ("explode", 23, "record 23 is bad", "ValueError", 30),
    ]
    assert all(d.pipeline == "p" and d.time.tzinfo is not None for d in letters.letters)
    assert (stats.records_out, stats.dead_lettered) == (27, 3)


async def test_sink_rejects_follow_the_sink_policy() -> None:
    letters = MemoryDeadLetterStore()
    sink = SlowSink(reject={4, 7})
    stats = await Pipeline(
        "p", ListSource(range(10)), sink, dead_letters=letters, sink_errors="dead_letter"
    ).run()
    assert sink.records == [0, 1, 2, 3, 5, 6, 8, 9]
    assert [(d.stage, d.record, d.error) for d in letters.letters] == [
        ("slow_sink", 4, "refused 4"),
        ("slow_sink", 7, "refused 7"),
    ]
    assert stats.records_out == 8


async def test_sink_failure_is_a_stage_error_and_is_not_committed() -> None:
    store = MemoryCheckpointStore()
    sink = SlowSink(fail_on=15)
    with pytest.raises(
        StageError,
        match=r"^stage 'slow_sink' failed on the batch ending at "
        r"position 20: RuntimeError: cannot write record 15$",
    ):
        await Pipeline(
            "p", ListSource(range(40), chunk_size=10), sink, checkpoints=store, max_batch_size=10
        ).run()
    assert store.positions == {("p", "list_source"): 10}


async def test_upstream_ack_runs_after_the_write_and_the_commit() -> None:
    events: list[str] = []
    source = TrackedSource(20, chunk=10, events=events)
    sink = SlowSink(events=events)
    await Pipeline("p", source, sink, max_batch_size=10).run()
    writes_and_acks = [e for e in events if not e.startswith("read")]
    assert writes_and_acks == ["write 10", "ack 10", "write 20", "ack 20"]


async def test_resources_are_opened_and_closed_on_failure() -> None:
    source = TrackedSource(100, chunk=10)
    sink = SlowSink(fail_on=42)
    with pytest.raises(StageError):
        await Pipeline("p", source, sink, max_batch_size=10).run()
    assert (source.opened, source.closed, sink.opened, sink.closed) == (1, 1, 1, 1)
    assert source.generator_closed


async def test_idle_source_flushes_partial_batch_on_age() -> None:
    source = TrackedSource(3, chunk=3, follow=True)
    sink = SlowSink()
    pipeline = Pipeline("p", source, sink, max_batch_size=1000, max_batch_age=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            while not sink.batches:
                await anyio.sleep(0.01)
        pipeline.stop()
    assert sink.records == [0, 1, 2]
    assert source.acknowledged == [3]


async def test_stop_when_idle_exits_once_everything_is_committed() -> None:
    store = MemoryCheckpointStore()
    source = TrackedSource(35, chunk=5, follow=True)
    sink = SlowSink()
    pipeline = Pipeline(
        "p",
        source,
        sink,
        checkpoints=store,
        max_batch_size=10,
        max_batch_age=0.05,
        stop_when_idle=0.2,
    )
    with anyio.fail_after(5):
        stats = await pipeline.run()
    assert sink.records == list(range(35))
    assert store.positions == {("p", "tracked"): 35}
    assert not stats.stopped_early
    assert source.generator_closed


async def test_graceful_stop_drains_in_flight_batches() -> None:
    store = MemoryCheckpointStore()
    source = TrackedSource(10_000, chunk=10, delay=0.001)
    sink = SlowSink(delay=0.01)
    pipeline = Pipeline("p", source, sink, checkpoints=store, max_batch_size=10, queue_size=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await anyio.sleep(0.2)
        pipeline.stop()
    read = max(int(e.split()[1]) for e in source.events if e.startswith("read"))
    # Everything read was written and committed: nothing dropped, nothing skipped.
    assert sink.records == list(range(store.positions[("p", "tracked")]))  # type: ignore[arg-type]
    assert store.positions[("p", "tracked")] in (read, read - 10)
    assert 0 < len(sink.records) < 10_000
    assert not pipeline.stats.stopped_early


async def test_cancelling_the_embedding_task_is_a_graceful_stop() -> None:
    store = MemoryCheckpointStore()
    source = TrackedSource(10_000, chunk=10, delay=0.001)
    sink = SlowSink(delay=0.005)
    pipeline = Pipeline("p", source, sink, checkpoints=store, max_batch_size=10, queue_size=2)
    with anyio.move_on_after(0.2) as scope:
        await pipeline.run()
    assert scope.cancelled_caught
    committed = store.positions[("p", "tracked")]
    assert sink.records == list(range(committed))  # type: ignore[arg-type]
    assert source.generator_closed and source.closed == 1 and sink.closed == 1


async def test_grace_period_bounds_the_drain_and_keeps_at_least_once() -> None:
    store = MemoryCheckpointStore()
    source = TrackedSource(1000, chunk=10)
    sink = SlowSink(delay=0.5)
    pipeline = Pipeline(
        "p", source, sink, checkpoints=store, max_batch_size=10, grace_period=0.3, queue_size=4
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await anyio.sleep(0.1)
        with anyio.fail_after(3):
            pipeline.stop()
            while pipeline.stats.finished_at is None:
                await anyio.sleep(0.01)
    assert pipeline.stats.stopped_early
    assert store.positions.get(("p", "tracked"), 0) == len(sink.records)


async def test_second_stop_cancels_at_once() -> None:
    source = TrackedSource(1000, chunk=10)
    sink = SlowSink(delay=1.0)
    pipeline = Pipeline("p", source, sink, max_batch_size=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await anyio.sleep(0.05)
        with anyio.fail_after(0.5):
            pipeline.stop()
            pipeline.stop()
            while pipeline.stats.finished_at is None:
                await anyio.sleep(0.01)
    assert pipeline.stats.stopped_early
    assert sink.records == []


async def test_pipeline_is_reusable_and_logs_committed_batches() -> None:
    store = MemoryCheckpointStore()
    source = ListSource(range(5))
    sink: ListSink[int] = ListSink()
    pipeline = Pipeline("p", source, sink, checkpoints=store)
    with capture_logs() as logs:
        await pipeline.run()
        second = await pipeline.run()
    assert sink.records == [0, 1, 2, 3, 4]
    assert second.records_in == 0
    committed = [e for e in logs if e["event"] == "committed"]
    assert committed == [
        {
            "event": "committed",
            "log_level": "debug",
            "pipeline": "p",
            "batch": 0,
            "records": 5,
            "position": 5,
        }
    ]


def test_dead_letter_policy_requires_a_store() -> None:
    with pytest.raises(
        ConfigError,
        match="^pipeline p: dead_letters: a stage uses the "
        "dead_letter policy but no dead-letter store is configured$",
    ):
        Pipeline("p", ListSource([1]), ListSink(), [Transform(double, on_error="dead_letter")])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_batch_size", 0, "must be a positive integer, not 0"),
        ("queue_size", 2.5, "must be a positive integer, not 2.5"),
        ("max_batch_age", -1, "must be a positive number of seconds, not -1"),
    ],
)
def test_bad_pipeline_settings(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Pipeline("p", ListSource([1]), ListSink(), **{key: value})  # type: ignore[arg-type]
    assert str(info.value) == f"pipeline p: {key}: {message}"


class ConcurrentSource(Source[int]):
    """Fetches "pages" in a task group of its own and sends them in order."""

    name = "concurrent"

    async def produce(
        self, after: Position, send: ObjectSendStream[Chunk[int]], *, max_chunk: int
    ) -> None:
        start = after if isinstance(after, int) else 0
        pages: dict[int, list[int]] = {}
        arrived = anyio.Condition()

        async def fetch(page: int) -> None:
            await anyio.sleep(0.001 * (page % 3))
            async with arrived:
                pages[page] = list(range(page * 10, page * 10 + 10))
                arrived.notify_all()

        async with anyio.create_task_group() as tg:
            for page in range(start // 10, 10):
                tg.start_soon(fetch, page)
            for page in range(start // 10, 10):
                async with arrived:
                    while page not in pages:
                        await arrived.wait()
                await send.send(Chunk(pages.pop(page), page * 10 + 10))


async def test_a_source_may_produce_with_a_task_group_of_its_own() -> None:
    store = MemoryCheckpointStore()
    await store.save(Checkpoint("p", "concurrent", 30))
    sink: ListSink[int] = ListSink()
    await Pipeline("p", ConcurrentSource(), sink, checkpoints=store, max_batch_size=10).run()
    assert sink.records == list(range(30, 100))
    assert store.positions == {("p", "concurrent"): 100}


async def test_a_source_failing_mid_read_names_the_position_it_read_after() -> None:
    class Breaks(Source[int]):
        name = "breaks"

        async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
            yield Chunk([1, 2], 2)
            yield Chunk([3], 3)
            raise OSError("connection reset")

    sink: ListSink[int] = ListSink()
    store = MemoryCheckpointStore()
    with pytest.raises(StageError) as info:
        await Pipeline("p", Breaks(), sink, checkpoints=store, max_batch_size=2).run()
    assert str(info.value) == (
        "stage 'breaks' failed reading after position 3: OSError: connection reset"
    )
    assert (info.value.stage, info.value.position) == ("breaks", 3)
    # What was read before the failure is written and committed, the partial
    # batch included, so a rerun resumes after it rather than writing it again.
    assert sink.records == [1, 2, 3]
    assert store.positions == {("p", "breaks"): 3}


async def test_a_sink_stuck_after_the_source_failed_is_cancelled_after_the_grace_period() -> None:
    class BreaksAfterOne(Source[int]):
        name = "breaks"

        async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
            yield Chunk([1], 1)
            raise OSError("connection reset")

    class Stuck(ListSink[int]):
        async def write(self, batch: Batch[int]) -> Sequence[Reject]:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    store = MemoryCheckpointStore()
    pipeline = Pipeline("p", BreaksAfterOne(), Stuck(), checkpoints=store, grace_period=0.2)
    with anyio.fail_after(5), pytest.raises(StageError) as info:
        await pipeline.run()
    assert str(info.value) == (
        "stage 'breaks' failed reading after position 1: OSError: connection reset"
    )
    assert store.positions == {}
