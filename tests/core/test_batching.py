"""Batches close on size or age, and carry the position of their last chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncetl import Chunk, ListSink, MemoryCheckpointStore, Pipeline, Position, Source

pytestmark = pytest.mark.anyio


class ChunkedSource(Source[int]):
    def __init__(self, sizes: list[int], pauses: list[float] | None = None) -> None:
        self.sizes = sizes
        self.pauses = pauses or [0.0] * len(sizes)

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
        n = 0
        for size, pause in zip(self.sizes, self.pauses, strict=True):
            if pause:
                await anyio.sleep(pause)
            yield Chunk(list(range(n, n + size)), n + size)
            n += size


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=25), max_size=30),
    max_size=st.integers(min_value=1, max_value=40),
)
def test_size_batching_keeps_every_record_in_order(
    anyio_backend: str, sizes: list[int], max_size: int
) -> None:
    sink: ListSink[int] = ListSink()
    store = MemoryCheckpointStore()
    pipeline = Pipeline(
        "p",
        ChunkedSource(sizes),
        sink,
        checkpoints=store,
        max_batch_size=max_size,
        max_batch_age=60,
    )
    anyio.run(pipeline.run, backend=anyio_backend)
    total = sum(sizes)
    assert sink.records == list(range(total))
    # Batches close only when full (a chunk is never split), except the last one.
    for batch in sink.batches[:-1]:
        assert len(batch.records) >= max_size or not batch.records
    # Each batch's position is the cumulative count at a chunk boundary.
    boundaries = {sum(sizes[: i + 1]) for i in range(len(sizes))}
    assert all(b.position in boundaries for b in sink.batches)
    assert [b.position for b in sink.batches] == sorted(b.position for b in sink.batches)  # type: ignore[type-var]
    # Empty batches are not written, but their positions are still committed.
    assert store.positions.get(("p", "source")) == (total if sizes else None)


async def test_age_closes_a_batch_while_the_source_is_slow() -> None:
    sink: ListSink[int] = ListSink()
    # 2 records, a long pause, then 2 more: the first two must not wait for the pause.
    source = ChunkedSource([2, 2], pauses=[0.0, 0.4])
    pipeline = Pipeline("p", source, sink, max_batch_size=100, max_batch_age=0.05)
    started = anyio.current_time()
    arrivals: list[float] = []

    async def watch() -> None:
        while len(arrivals) < 2:
            if len(sink.batches) > len(arrivals):
                arrivals.append(anyio.current_time() - started)
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await pipeline.run()
    assert [b.records for b in sink.batches] == [[0, 1], [2, 3]]
    assert arrivals[0] < 0.3  # closed by age, not by the next chunk


class PausingSource(Source[int]):
    """Yields its chunks, then waits until ``release`` is set before it ends."""

    def __init__(self, chunks: list[Chunk[int]]) -> None:
        self.chunks = chunks
        self.release = anyio.Event()

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
        for chunk in self.chunks:
            yield chunk
        await self.release.wait()


async def test_a_chunk_that_ends_its_batch_is_committed_without_waiting_for_more() -> None:
    sink: ListSink[int] = ListSink()
    store = MemoryCheckpointStore()
    # The source then goes quiet: only ends_batch closes the batch before its age (60 s).
    source = PausingSource([Chunk([0, 1], 2), Chunk([2], 3, ends_batch=True), Chunk([4], 5)])
    pipeline = Pipeline("p", source, sink, checkpoints=store, max_batch_size=100, max_batch_age=60)

    async def committed(position: int) -> None:
        while store.positions.get(("p", "source")) != position:
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            await committed(3)
        # The chunk after it opens a batch of its own, which waits as ever.
        await anyio.sleep(0.2)
        assert [b.records for b in sink.batches] == [[0, 1, 2]]
        assert store.positions[("p", "source")] == 3
        source.release.set()
    assert [b.records for b in sink.batches] == [[0, 1, 2], [4]]
    assert store.positions[("p", "source")] == 5
