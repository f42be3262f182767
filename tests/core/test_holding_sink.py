"""Sinks that gather several batches into one commit: acknowledged only once durable."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from asyncetl import Batch, MemoryCheckpointStore, Pipeline, Reject, Sink
from tests.core.helpers import TrackedSource

pytestmark = pytest.mark.anyio


class GatheringSink(Sink[int]):
    """Holds batches until ``every`` are held or ``wait`` seconds passed; logs each step."""

    def __init__(self, events: list[str], *, every: int, wait: float = 60.0) -> None:
        self.events = events
        self.every = every
        self.wait = wait
        self.held: list[int] = []
        self.durable: list[int] = []
        self._deadline: float | None = None

    async def write(self, batch: Batch[int]) -> Sequence[Reject]:
        self.held.extend(batch.records)
        self._deadline = self._deadline or anyio.current_time() + self.wait
        self.events.append(f"hold {batch.position}")
        if len(self.held) >= self.every:
            await self.flush()
        return ()

    def flush_deadline(self) -> float | None:
        return self._deadline

    async def flush(self) -> None:
        self.durable.extend(self.held)
        self.events.append(f"flush {len(self.held)}")
        self.held.clear()
        self._deadline = None


async def test_batches_are_acknowledged_upstream_only_after_the_sink_made_them_durable() -> None:
    events: list[str] = []
    source = TrackedSource(50, chunk=10, events=events)
    store = MemoryCheckpointStore()
    sink = GatheringSink(events, every=20)
    await Pipeline("p", source, sink, checkpoints=store, max_batch_size=10, queue_size=1).run()
    assert sink.durable == list(range(50))
    assert [e for e in events if not e.startswith("read")] == [
        "hold 10",
        "hold 20",
        "flush 20",
        "ack 20",
        "hold 30",
        "hold 40",
        "flush 20",
        "ack 40",
        "hold 50",
        "flush 10",  # the input ended: what is held is made durable before the last ack
        "ack 50",
    ]
    assert [c.position for c in store.history] == [20, 40, 50]


async def test_held_batches_are_flushed_at_the_sinks_deadline_when_no_more_arrive() -> None:
    events: list[str] = []
    source = TrackedSource(10, chunk=10, events=events, follow=True)
    sink = GatheringSink(events, every=1000, wait=0.05)
    pipeline = Pipeline("p", source, sink, max_batch_size=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            while source.acknowledged != [10]:
                await anyio.sleep(0.01)
        assert sink.durable == list(range(10))
        assert [e for e in events if not e.startswith("read")] == ["hold 10", "flush 10", "ack 10"]
        tg.cancel_scope.cancel()
