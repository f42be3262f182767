"""Instrumented in-memory stages for engine tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import anyio

from asyncetl import Batch, Chunk, ListSink, Position, Reject, Source

T = TypeVar("T")


class TrackedSource(Source[int]):
    """Yields 0..n-1 in chunks; records open/close and every event in one log."""

    def __init__(
        self,
        n: int,
        *,
        chunk: int = 10,
        delay: float = 0.0,
        follow: bool = False,
        events: list[str] | None = None,
    ) -> None:
        self.n = n
        self.chunk = chunk
        self.delay = delay
        self.follow = follow
        self.name = "tracked"
        self.events = events if events is not None else []
        self.opened = self.closed = 0
        self.generator_closed = False
        self.acknowledged: list[Position] = []

    async def open(self) -> None:
        self.opened += 1

    async def aclose(self) -> None:
        self.closed += 1

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
        start = after if isinstance(after, int) else 0
        try:
            for offset in range(start, self.n, self.chunk):
                if self.delay:
                    await anyio.sleep(self.delay)
                records = list(range(offset, min(offset + self.chunk, self.n)))
                self.events.append(f"read {records[-1] + 1}")
                yield Chunk(records, records[-1] + 1)
            if self.follow:
                await anyio.sleep_forever()
        finally:
            self.generator_closed = True

    async def acknowledge(self, position: Position) -> None:
        self.events.append(f"ack {position}")
        self.acknowledged.append(position)


class SlowSink(ListSink[int]):
    """A list sink that sleeps per batch and logs writes; optionally fails on a record."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        fail_on: int | None = None,
        events: list[str] | None = None,
        reject: set[int] | None = None,
    ) -> None:
        super().__init__(name="slow_sink")
        self.delay = delay
        self.fail_on = fail_on
        self.reject = reject or set()
        self.events = events if events is not None else []
        self.opened = self.closed = 0

    async def open(self) -> None:
        self.opened += 1

    async def aclose(self) -> None:
        self.closed += 1

    async def write(self, batch: Batch[int]) -> Sequence[Reject]:
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in batch.records:
            raise RuntimeError(f"cannot write record {self.fail_on}")
        kept = [r for r in batch.records if r not in self.reject]
        self.batches.append(batch.replace(kept))
        self.events.append(f"write {batch.position}")
        return [Reject(r, ValueError(f"refused {r}")) for r in batch.records if r in self.reject]


class FailingSink(ListSink[T]):
    """Keeps batches until the ``fail_at``-th write (0-based), which raises."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.writes = 0

    async def write(self, batch: Batch[T]) -> Sequence[Reject]:
        self.writes += 1
        if self.writes > self.fail_at:
            raise RuntimeError("the target is down")
        return await super().write(batch)
