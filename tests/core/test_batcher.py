"""The Batcher alone: chunks in through its inlet, numbered batches out, each registered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncetl import Batch, Chunk, Position, Reject, RunStats
from asyncetl.core._batcher import Batcher

pytestmark = pytest.mark.anyio

FOREVER = 3600.0


class Harness:
    """A batcher with its streams, what it registered, rejected and sent on."""

    def __init__(self, *, max_size: int, max_age: float = FOREVER) -> None:
        self.registered: list[Batch[Any]] = []
        self.rejected: list[tuple[list[Reject], Position, int]] = []
        self.stats = RunStats()
        self.batcher = Batcher(
            max_size=max_size,
            max_age=max_age,
            register=self.registered.append,
            reject=self._reject,
            stats=self.stats,
        )
        self.chunk_send, self.chunk_recv = anyio.create_memory_object_stream[Chunk[Any]](4)
        self.batch_send, self.batch_recv = anyio.create_memory_object_stream[Batch[Any]](4)
        self.inlet = self.batcher.inlet(self.chunk_send, self.batch_send, None)

    async def _reject(self, rejects: Sequence[Reject], position: Position, seq: int) -> None:
        self.rejected.append((list(rejects), position, seq))

    async def run(self, chunks: Sequence[Chunk[Any]]) -> list[Batch[Any]]:
        """Send ``chunks`` through the inlet and return every batch that came out."""
        out: list[Batch[Any]] = []

        async def collect() -> None:
            async with self.batch_recv:
                async for batch in self.batch_recv:
                    out.append(batch)

        async with anyio.create_task_group() as tg:
            tg.start_soon(self.batcher.run, self.chunk_recv, self.batch_send)
            tg.start_soon(collect)
            async with self.inlet:
                for chunk in chunks:
                    await self.inlet.send(chunk)
        return out


def greedy_batches(sizes: list[int], max_size: int) -> list[tuple[list[int], int]]:
    """The batches size-closing must make: whole chunks until ``max_size`` is reached."""
    batches: list[tuple[list[int], int]] = []
    records: list[int] = []
    n, open_ = 0, False
    for size in sizes:
        records += range(n, n + size)
        n += size
        open_ = True
        if len(records) >= max_size:
            batches.append((records, n))
            records, open_ = [], False
    if open_:
        batches.append((records, n))
    return batches


def chunks_of(sizes: list[int]) -> list[Chunk[int]]:
    chunks, n = [], 0
    for size in sizes:
        chunks.append(Chunk(list(range(n, n + size)), n + size))
        n += size
    return chunks


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=12), max_size=30),
    max_size=st.integers(min_value=1, max_value=15),
)
def test_batches_close_on_size_numbered_in_order_and_each_registered_first(
    sizes: list[int], max_size: int
) -> None:
    harness = Harness(max_size=max_size)
    out = anyio.run(harness.run, chunks_of(sizes))
    assert [(list(b.records), b.position) for b in out] == greedy_batches(sizes, max_size)
    assert [b.seq for b in out] == list(range(len(out)))
    assert harness.registered == out
    assert harness.stats.records_in == sum(sizes)
    assert harness.batcher.holding == 0


async def test_an_open_batch_closes_when_its_age_is_up() -> None:
    harness = Harness(max_size=100, max_age=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(harness.batcher.run, harness.chunk_recv, harness.batch_send)
        async with harness.inlet, harness.batch_recv:
            await harness.inlet.send(Chunk([1, 2], 2))
            await anyio.wait_all_tasks_blocked()
            assert harness.batcher.holding == 3  # two records and the open batch
            with anyio.fail_after(1):
                first = await harness.batch_recv.receive()
            assert (first.seq, list(first.records), first.position) == (0, [1, 2], 2)
            assert harness.batcher.holding == 0
            await harness.inlet.send(Chunk([3], 3))
            with anyio.fail_after(1):
                second = await harness.batch_recv.receive()
            assert (second.seq, list(second.records), second.position) == (1, [3], 3)
    assert harness.registered == [first, second]


async def test_a_heartbeat_moves_the_position_in_a_batch_of_no_records() -> None:
    harness = Harness(max_size=10)
    out = await harness.run([Chunk([1], 1), Chunk([], 5)])
    assert [(b.seq, list(b.records), b.position) for b in out] == [(0, [1], 5)]
    assert harness.stats.records_in == 1


async def test_source_rejects_go_to_the_reject_handler_with_their_chunk_position_and_batch() -> (
    None
):
    harness = Harness(max_size=2)
    bad = Reject(b"\xff", ValueError("not utf-8"))
    out = await harness.run([Chunk([1], 1), Chunk([2], 3, rejects=[bad]), Chunk([4], 4)])
    assert harness.rejected == [([bad], 3, 0)]
    assert [(list(b.records), b.position) for b in out] == [([1, 2], 3), ([4], 4)]
    assert harness.stats.records_in == 4  # three records and the reject


async def test_a_whole_chunk_goes_on_from_the_inlet_while_the_batcher_waits() -> None:
    harness = Harness(max_size=2)
    whole = Chunk([1, 2], 2)
    assert not harness.batcher.pass_on_nowait(whole, harness.batch_send)  # not waiting yet
    async with anyio.create_task_group() as tg:
        tg.start_soon(harness.batcher.run, harness.chunk_recv, harness.batch_send)
        async with harness.batch_recv:
            async with harness.inlet:
                await anyio.wait_all_tasks_blocked()
                assert not harness.batcher.pass_on_nowait(Chunk([0], 0), harness.batch_send)
                assert harness.batcher.pass_on_nowait(whole, harness.batch_send)
                passed = harness.batch_recv.receive_nowait()
                assert passed.records is whole.records  # handed on without a copy
                assert harness.registered == [passed]
                await harness.inlet.send(Chunk([3], 3))
            with anyio.fail_after(1):
                rest = [batch async for batch in harness.batch_recv]
    assert [(b.seq, list(b.records), b.position) for b in [passed, *rest]] == [
        (0, [1, 2], 2),
        (1, [3], 3),
    ]
    assert harness.registered == [passed, *rest]
    assert harness.stats.records_in == 3
