"""Cancel a running pipeline at awkward moments: nothing lost, duplicated or left open."""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest

from asyncetl import MemoryCheckpointStore, Pipeline, Transform
from tests.core.helpers import SlowSink, TrackedSource

pytestmark = pytest.mark.anyio


async def slow_identity(records: list[int]) -> list[int]:
    await anyio.sleep(random.uniform(0, 0.004))
    return records


@pytest.mark.parametrize("seed", range(12))
async def test_cancel_at_a_random_moment_then_resume(seed: int) -> None:
    await cancel_and_resume(seed, chunk=7, transforms=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("transforms", [True, False], ids=["transform", "no_transform"])
async def test_whole_batch_chunks_cancelled_at_a_random_moment_then_resume(
    seed: int, transforms: bool
) -> None:
    # Chunks of a whole batch (and a short last one) pass the batcher while it holds
    # nothing: a stop must still lose, repeat and leave open nothing.
    await cancel_and_resume(seed, chunk=20, transforms=transforms)


async def cancel_and_resume(seed: int, *, chunk: int, transforms: bool) -> None:
    rng = random.Random(seed)
    store = MemoryCheckpointStore()
    sink = SlowSink(delay=0.002)
    tasks_before = len(asyncio.all_tasks())
    for attempt in range(30):
        start = int(store.positions.get(("p", "tracked")) or 0)  # type: ignore[arg-type]
        written_before = len(sink.batches)
        source = TrackedSource(610, chunk=chunk, delay=0.0005)
        pipeline = Pipeline(
            "p",
            source,
            sink,
            [Transform(slow_identity, kind="batch", workers=3)] if transforms else [],
            checkpoints=store,
            max_batch_size=20,
            queue_size=2,
            grace_period=rng.choice([0.001, 5]),
        )
        with anyio.move_on_after(rng.uniform(0, 0.08)):
            await pipeline.run()
        assert (source.opened, source.closed, sink.opened - attempt, sink.closed - attempt) == (
            1,
            1,
            1,
            1,
        )
        assert source.generator_closed
        # This attempt wrote a contiguous run starting exactly at the committed position...
        this_attempt = [r for b in sink.batches[written_before:] for r in b.records]
        assert this_attempt == list(range(start, start + len(this_attempt)))
        # ...and committed no further than it wrote.
        committed = int(store.positions.get(("p", "tracked")) or 0)  # type: ignore[arg-type]
        assert start <= committed <= start + len(this_attempt)
        if committed == 610:
            break
    assert store.positions[("p", "tracked")] == 610
    assert sorted(set(sink.records)) == list(range(610))
    assert len(asyncio.all_tasks()) == tasks_before
