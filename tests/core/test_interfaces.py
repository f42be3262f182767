"""The contracts connectors implement: what a source must implement, what a sink may."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from anyio.abc import ObjectSendStream

from asyncetl.core import (
    Batch,
    Chunk,
    ListSink,
    MemoryCheckpointStore,
    Pipeline,
    Position,
    Reject,
    Sink,
    Source,
)

pytestmark = pytest.mark.anyio


def test_a_source_implementing_neither_read_nor_produce_cannot_be_made() -> None:
    class Empty(Source[int]):
        name = "empty"

    with pytest.raises(TypeError) as info:
        Empty()
    assert str(info.value) == (
        "cannot instantiate source Empty: it implements neither read() nor produce(); "
        "a Source implements one of them"
    )


def test_a_source_inherits_read_or_produce_from_its_base() -> None:
    class Numbers(Source[int]):
        def __init__(self, count: int) -> None:
            self.count = count

        async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
            yield Chunk(list(range(self.count)), self.count)

    class Named(Numbers):
        name = "named"

    assert Named(3).count == 3


async def test_a_source_implementing_only_produce_runs() -> None:
    class Produced(Source[int]):
        async def produce(
            self, after: Position, send: ObjectSendStream[Chunk[int]], *, max_chunk: int
        ) -> None:
            await send.send(Chunk([1, 2], 2))

    sink: ListSink[int] = ListSink()
    await Pipeline("p", Produced(), sink).run()
    assert sink.records == [1, 2]


class _PlainSink(Sink[int]):
    async def write(self, batch: Batch[int]) -> Sequence[Reject]:
        return ()


def test_a_sink_commits_to_no_store_and_gives_no_transactional_writer_by_default() -> None:
    store = MemoryCheckpointStore()
    assert not _PlainSink().commits_to(store)
    assert _PlainSink().transactional_writer(store) is None
