"""Reading a file's blocks: on the event loop when the page cache holds them, else in a thread.

Whichever way a block is read, the source yields the same chunks and positions.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from asyncetl.connectors.files import JsonlSource, _file
from asyncetl.connectors.files._file import OpenFile
from tests.connectors.files.helpers import (
    BLOCK,
    CHUNK,
    LINE,
    read_all,
    record_block_reads,
    write_ids,
)

pytestmark = pytest.mark.anyio

needs_nowait = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT"), reason="reads that never wait are Linux's (RWF_NOWAIT)"
)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """The offset of every block read, by where it was read: ``loop`` or ``thread``."""
    seen: dict[str, list[int]] = {"loop": [], "thread": []}
    record_block_reads(monkeypatch, lambda where, offset: seen[where].append(offset))
    return seen


async def chunks_of(path: Path) -> list[tuple[list[object], object]]:
    chunks = await read_all(JsonlSource(str(path), block_size=BLOCK), max_chunk=CHUNK)
    return [([r["id"] for r in chunk.records], chunk.position) for chunk in chunks]


async def read_once(
    tmp_path: Path, reads: dict[str, list[int]]
) -> tuple[Path, list[tuple[list[object], object]]]:
    """A file of 40 lines and its chunks, read once (so it is in the page cache); the
    reads are forgotten, so that a test sees only its own."""
    path = write_ids(tmp_path / "in.jsonl", 40)
    cached = await chunks_of(path)
    reads["loop"].clear()
    reads["thread"].clear()
    return path, cached


@needs_nowait
async def test_cached_blocks_are_read_on_the_event_loop_and_the_end_in_the_thread(
    tmp_path: Path, reads: dict[str, list[int]]
) -> None:
    path = write_ids(tmp_path / "in.jsonl", 40)  # just written: in the page cache
    chunks = await chunks_of(path)
    assert chunks == [
        (list(range(n, n + 4)), {"path": str(path), "offset": (n + 4) * LINE})
        for n in range(0, 40, 4)
    ]
    assert reads == {"loop": [n * BLOCK for n in range(10)], "thread": [10 * BLOCK]}


async def test_without_reads_that_never_wait_every_block_goes_through_the_thread(
    tmp_path: Path, reads: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cached = await read_once(tmp_path, reads)
    monkeypatch.setattr(_file, "_NOWAIT", None)
    assert await chunks_of(path) == cached
    assert reads == {"loop": [], "thread": [n * BLOCK for n in range(11)]}


@needs_nowait
async def test_a_block_that_would_wait_for_the_disk_is_read_in_the_thread(
    tmp_path: Path, reads: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cached = await read_once(tmp_path, reads)
    preadv = os.preadv

    def missing_block_3(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        if offset == 3 * BLOCK:
            raise BlockingIOError(errno.EAGAIN, "would wait")  # the page cache lacks it
        return preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(os, "preadv", missing_block_3)
    assert await chunks_of(path) == cached
    assert reads["thread"] == [3 * BLOCK, 10 * BLOCK]
    assert reads["loop"] == [n * BLOCK for n in range(10) if n != 3]


@needs_nowait
async def test_a_file_system_that_cannot_read_without_waiting_is_read_in_the_thread(
    tmp_path: Path, reads: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cached = await read_once(tmp_path, reads)
    tries: list[int] = []

    def unsupported(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        tries.append(offset)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "preadv", unsupported)
    assert await chunks_of(path) == cached
    assert tries == [0]  # asked once, then every block goes through the thread
    assert reads == {"loop": [], "thread": [n * BLOCK for n in range(11)]}


@needs_nowait
def test_the_thread_reopens_a_path_that_now_names_another_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"a" * 8)
    file = OpenFile(str(path))
    try:
        replacement = tmp_path / "new.jsonl"
        replacement.write_bytes(b"b" * 8)
        replacement.replace(path)
        # Reads that never wait keep to the file as opened; the thread sees the path.
        assert bytes(file.read_cached(0, 4) or b"") == b"aaaa"
        assert file.read(0, 4) == b"bbbb"
        assert bytes(file.read_cached(4, 4) or b"") == b"bbbb"
    finally:
        file.close()


def test_a_read_is_short_only_at_the_end_and_empty_past_it(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(bytes(range(100)))
    file = OpenFile(str(path))
    try:
        assert file.read(90, 64) == bytes(range(90, 100))
        assert file.read(100, 64) == b""
        assert file.read_cached(90, 64) is None  # past the end: for the thread to say
    finally:
        file.close()


async def test_each_byte_is_read_once_and_lines_past_a_block_s_last_chunk_go_first_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_ids(tmp_path / "in.jsonl", 23)
    offsets: list[int] = []
    read, read_cached = OpenFile.read, OpenFile.read_cached

    def in_thread(file: OpenFile, offset: int, size: int) -> bytes:
        offsets.append(offset)
        return read(file, offset, size)

    def on_loop(file: OpenFile, offset: int, size: int) -> bytearray | None:
        block = read_cached(file, offset, size)
        if block is not None:
            offsets.append(offset)
        return block

    monkeypatch.setattr(OpenFile, "read", in_thread)
    monkeypatch.setattr(OpenFile, "read_cached", on_loop)
    # Blocks of 5 lines, chunks of 4: each block's fifth line waits for the next block.
    chunks = await read_all(JsonlSource(str(path), block_size=5 * LINE), max_chunk=CHUNK)
    assert [([r["id"] for r in c.records], c.position) for c in chunks] == [
        (list(range(n, min(n + 4, 23))), {"path": str(path), "offset": min(n + 4, 23) * LINE})
        for n in range(0, 23, 4)
    ]
    assert offsets[1:] == [n * 5 * LINE for n in range(5)]  # after the start's checks
