"""Reading file sources to the end, and following them from a task."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TypeVar, cast

import pytest
from anyio.abc import ObjectSendStream

from asyncetl import Chunk, Position, Reject, Source
from asyncetl.connectors.files._file import OpenFile

T = TypeVar("T")

#: Every line of :func:`write_ids` is 16 bytes, so a block of 64 bytes holds exactly one
#: chunk of 4.
LINE, BLOCK, CHUNK = 16, 64, 4


def write_ids(path: Path, count: int, tail: bytes = b"") -> Path:
    """Write ``count`` lines ``{"id": n}`` of :data:`LINE` bytes each, then ``tail``."""
    path.write_bytes(b"".join(b'{"id":%8d}\n' % i for i in range(count)) + tail)
    return path


def record_block_reads(monkeypatch: pytest.MonkeyPatch, record: Callable[[str, int], None]) -> None:
    """Call ``record(where, offset)`` for every block of :data:`BLOCK` bytes a file source
    reads, in order: ``where`` is ``"loop"`` (read from the page cache on the event loop)
    or ``"thread"``."""
    read, read_cached = OpenFile.read, OpenFile.read_cached

    def in_thread(file: OpenFile, offset: int, size: int) -> bytes:
        if size == BLOCK:
            record("thread", offset)
        return read(file, offset, size)

    def on_loop(file: OpenFile, offset: int, size: int) -> bytearray | None:
        block = read_cached(file, offset, size)
        if block is not None:
            record("loop", offset)
        return block

    monkeypatch.setattr(OpenFile, "read", in_thread)
    monkeypatch.setattr(OpenFile, "read_cached", on_loop)


async def read_all(
    source: Source[T], after: Position = None, *, max_chunk: int = 1000
) -> list[Chunk[T]]:
    """Every chunk a non-following source yields after ``after``."""
    chunks: list[Chunk[T]] = []
    async with aclosing(_read(source, after, max_chunk)) as reading:
        async for chunk in reading:
            chunks.append(chunk)
    return chunks


async def follow_into(
    source: Source[T], send: ObjectSendStream[Chunk[T]], after: Position = None
) -> None:
    """Iterate ``source`` in this task, passing each chunk on, until cancelled."""
    async with send, aclosing(_read(source, after, 1000)) as reading:
        async for chunk in reading:
            await send.send(chunk)


def _read(source: Source[T], after: Position, max_chunk: int) -> AsyncGenerator[Chunk[T], None]:
    return cast("AsyncGenerator[Chunk[T], None]", source.read(after, max_chunk=max_chunk))


def records(chunks: list[Chunk[T]]) -> list[T]:
    return [record for chunk in chunks for record in chunk.records]


def rejects(chunks: list[Chunk[T]]) -> list[tuple[object, str, str]]:
    """Each reject as (raw, error type name, error message)."""
    found: list[Reject] = [reject for chunk in chunks for reject in chunk.rejects]
    return [(r.record, type(r.error).__name__, str(r.error)) for r in found]


def append_bytes(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def at(path: Path | str, offset: int) -> Position:
    """The position a file source reading ``path`` commits after byte ``offset``."""
    return {"path": str(path), "offset": offset}
