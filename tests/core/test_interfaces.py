"""Contracts of connectors: what a source must implement, what a sink may, how a resource opens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from anyio.abc import ObjectSendStream

from asyncetl import (
    Batch,
    Checkpoint,
    Chunk,
    JsonFileCheckpointStore,
    ListSink,
    MemoryCheckpointStore,
    Pipeline,
    Position,
    Reject,
    Resource,
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


def test_a_source_accepts_any_position_unless_it_checks_them() -> None:
    class Numbers(Source[int]):
        async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[int]]:
            yield Chunk([1], 1)

    positions: list[Position] = [None, 7, "x", [1, None], {"anything": {"at": "all"}}]
    for position in positions:
        Numbers().check_position(position)  # raises nothing


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


class _Tracked(Resource):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")

    async def aclose(self) -> None:
        self.calls.append("close")


async def test_async_with_a_resource_opens_it_and_closes_it() -> None:
    resource = _Tracked()
    async with resource as entered:
        assert entered is resource
        assert resource.calls == ["open"]
    assert resource.calls == ["open", "close"]


async def test_async_with_a_resource_closes_it_when_the_body_fails() -> None:
    resource = _Tracked()
    with pytest.raises(RuntimeError, match="body failed"):
        async with resource:
            raise RuntimeError("body failed")
    assert resource.calls == ["open", "close"]


async def test_async_with_a_real_store_opens_and_closes_it(tmp_path: Path) -> None:
    async with JsonFileCheckpointStore(tmp_path / "c.json") as store:
        await store.save(Checkpoint("p", "s", 7))
    async with JsonFileCheckpointStore(tmp_path / "c.json") as again:
        assert await again.load("p", "s") == 7


def test_a_resource_defining_close_instead_of_aclose_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError) as info:

        class Old(Resource):
            async def close(self) -> None:
                pass

    assert str(info.value) == "Old defines close(); a Resource releases what it holds in aclose()"
