"""JsonlSource inside a pipeline's reading task: produce, reads block by block, stops and failures.

The file is read one block at a time, each block only when the chunks of the
one before are sent; a stop or a failure never loses or repeats a line."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl import (
    Batch,
    Chunk,
    ListSink,
    MemoryCheckpointStore,
    PermanentError,
    Pipeline,
    Position,
    Reject,
)
from asyncetl.connectors.files import JsonlSource
from asyncetl.connectors.files._jsonl import JsonRecord
from tests.connectors.files.helpers import (
    BLOCK,
    CHUNK,
    LINE,
    at,
    read_all,
    record_block_reads,
    rejects,
    write_ids,
)

pytestmark = pytest.mark.anyio


def ids(chunks: Sequence[Chunk[JsonRecord]]) -> list[object]:
    return [record["id"] for chunk in chunks for record in chunk.records]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The offset of every block read from the file, in order, on the event loop or not."""
    offsets: list[int] = []
    record_block_reads(monkeypatch, lambda _where, offset: offsets.append(offset))
    return offsets


async def settled(reads: list[int], count: int) -> None:
    """Wait for ``count`` block reads, then a while for any more."""
    with anyio.fail_after(5):
        while len(reads) < count:
            await anyio.sleep(0.01)
    await anyio.sleep(0.1)


async def produce_all(source: JsonlSource, after: Position = None) -> list[Chunk[JsonRecord]]:
    send, receive = anyio.create_memory_object_stream[Chunk[JsonRecord]](100)
    async with send:
        await source.produce(after, send, max_chunk=CHUNK)
    async with receive:
        return [chunk async for chunk in receive]


async def test_produce_sends_exactly_what_read_yields(tmp_path: Path) -> None:
    tail = b'not json\n{"id":' + b"x" * 40  # a reject, then an incomplete last line
    path = write_ids(tmp_path / "in.jsonl", 37, tail)
    source = JsonlSource(str(path), block_size=BLOCK)
    read = await read_all(source, max_chunk=CHUNK)
    with capture_logs() as logs:
        produced = await produce_all(source)
    assert [(c.records, c.position, rejects([c])) for c in produced] == [
        (c.records, c.position, rejects([c])) for c in read
    ]
    assert ids(produced) == list(range(37))
    assert [c.position for c in produced][-2:] == [at(path, 36 * LINE), at(path, 37 * LINE + 9)]
    assert rejects(produced) == [
        (
            "not json",
            "ValueError",
            f"line at byte {37 * LINE} of {path} is not valid JSON: "
            "invalid literal, expected 'null': line 1 column 1 (char 0)",
        )
    ]
    assert [(e["event"], e["offset"]) for e in logs if e["log_level"] == "warning"] == [
        ("incomplete last line; stopping before it", 37 * LINE + 9)
    ]


async def test_a_resume_sends_exactly_the_remaining_lines(tmp_path: Path) -> None:
    path = write_ids(tmp_path / "in.jsonl", 30)
    produced = await produce_all(JsonlSource(str(path), block_size=BLOCK), at(path, 13 * LINE))
    assert ids(produced) == list(range(13, 30))
    assert produced[-1].position == at(path, 30 * LINE)


async def test_reads_the_next_block_only_once_the_last_is_sent(
    tmp_path: Path, reads: list[int]
) -> None:
    path = write_ids(tmp_path / "in.jsonl", 40)
    send, receive = anyio.create_memory_object_stream[Chunk[JsonRecord]](0)
    source = JsonlSource(str(path), block_size=BLOCK)
    async with send, receive, anyio.create_task_group() as tg:
        tg.start_soon(partial(source.produce, None, send, max_chunk=CHUNK))
        first = await receive.receive()
        await settled(reads, 2)
        # Block 0 was taken; block 1 waits to be sent; nothing is read past it.
        assert (ids([first]), reads) == ([0, 1, 2, 3], [0, BLOCK])
        assert (await receive.receive()).position == at(path, 2 * BLOCK)
        await settled(reads, 3)
        assert reads == [0, BLOCK, 2 * BLOCK]
        tg.cancel_scope.cancel()


async def test_cancelling_ends_the_reading_at_once_and_propagates(
    tmp_path: Path, reads: list[int]
) -> None:
    path = write_ids(tmp_path / "in.jsonl", 400)
    send, receive = anyio.create_memory_object_stream[Chunk[JsonRecord]](0)
    source = JsonlSource(str(path), block_size=BLOCK)
    after_produce: list[str] = []

    async def produce() -> None:
        await source.produce(None, send, max_chunk=CHUNK)
        after_produce.append("returned")

    with anyio.fail_after(5):
        async with send, receive, anyio.create_task_group() as tg:
            tg.start_soon(produce)
            assert (await receive.receive()).position == at(path, BLOCK)
            tg.cancel_scope.cancel()
    read_when_cancelled = list(reads)
    await anyio.sleep(0.1)
    assert after_produce == []
    assert reads == read_when_cancelled
    assert len(reads) <= 2


async def test_a_failed_read_is_raised_after_the_lines_read_before_it(
    tmp_path: Path, reads: list[int]
) -> None:
    path = write_ids(tmp_path / "in.jsonl", 40)
    send, receive = anyio.create_memory_object_stream[Chunk[JsonRecord]](0)
    source = JsonlSource(str(path), block_size=BLOCK)
    received: list[Chunk[JsonRecord]] = []
    failures: list[PermanentError] = []

    async def produce() -> None:
        async with send:
            try:
                await source.produce(None, send, max_chunk=CHUNK)
            except PermanentError as exc:  # by itself, not in a group
                failures.append(exc)

    async with receive, anyio.create_task_group() as tg:
        tg.start_soon(produce)
        received.append(await receive.receive())
        await settled(reads, 2)
        assert reads == [0, BLOCK]
        with path.open("r+b") as file:
            file.truncate(100)  # the next read is at byte 128
        received.extend([chunk async for chunk in receive])
    assert ids(received) == list(range(8))  # blocks 0 and 1, read before the truncation
    assert [str(failure) for failure in failures] == [
        f"{path} is 100 bytes long, shorter than the position 128 already read; it was "
        "truncated or replaced, so restore it or delete the checkpoint to start over"
    ]


class StoppingSink(ListSink[JsonRecord]):
    """Stops its pipeline once it has written ``after`` batches."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.pipeline: Pipeline | None = None

    async def write(self, batch: Batch[JsonRecord]) -> Sequence[Reject]:
        rejects = await super().write(batch)
        if len(self.batches) == self.after and self.pipeline is not None:
            self.pipeline.stop()
        return rejects


async def test_a_stop_mid_file_commits_the_exact_position_and_a_rerun_loads_the_rest(
    tmp_path: Path,
) -> None:
    path = write_ids(tmp_path / "in.jsonl", 2000)
    store = MemoryCheckpointStore()
    sink = StoppingSink(after=3)
    pipeline = Pipeline(
        "stop",
        JsonlSource(str(path), block_size=BLOCK),
        sink,
        checkpoints=store,
        max_batch_size=CHUNK,
    )
    sink.pipeline = pipeline
    with capture_logs():
        first = await pipeline.run()
    written = len(sink.records)
    assert 12 <= written < 2000
    assert [r["id"] for r in sink.records] == list(range(written))
    assert first.position == store.positions["stop", "jsonl"] == at(path, written * LINE)

    rest: ListSink[JsonRecord] = ListSink()
    rerun = Pipeline("stop", JsonlSource(str(path), block_size=BLOCK), rest, checkpoints=store)
    with capture_logs():
        second = await rerun.run()
    assert [r["id"] for r in rest.records] == list(range(written, 2000))
    assert second.position == at(path, 2000 * LINE)
