"""Reading complete lines (or rows) of a file from a byte offset, in large blocks.

Both file sources share this loop. The file is opened once (see
:class:`~asyncetl.connectors.files._file.OpenFile`); each step reads one block
after what it already holds and hands the bytes to the source's parser in a
worker thread, or, for a source whose parser is cheap enough, on the event loop
when the page cache holds the block whole. The parser turns the complete units
into chunks and says how many bytes it consumed. A parser may return its chunks
lazily (an iterator): they are then made on the event loop, one at a time as the
reader takes them. Whatever it did not consume (an incomplete last line, or
complete lines it holds back to fill a whole chunk with the next block) is kept
and read again by the next step; a parser may instead keep such complete lines
itself, already split, and count them consumed (the JSON Lines parser does).
Until the read reaches the end of the file, a parser hands on whole chunks
only: a block's short last chunk would otherwise reach the engine as a part
batch, to wait there for the next block's lines (one more hop for every block,
and records kept alive longer). At the end of the file the loop either
stops, warning about an incomplete last unit, or (``follow``) polls for more.

Positions are byte offsets just after the last unit of a chunk, so a resume
seeks there and reads strictly after it. The sources commit them as
``{"path": …, "offset": n}``: a source pointed at another path refuses a
position written for the old one rather than resume at some offset of an
unrelated file (which could skip records). A bare offset, as written before
positions named their file, is taken as before. The file itself is not
fingerprinted (no inode or size is recorded, so a restored backup or a copied
directory still resumes); a file shorter than the offset, or without a line
start there, is refused as truncated or replaced when reading starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson

from asyncetl.connectors.files._file import OpenFile
from asyncetl.core.batch import Chunk, JsonValue, Position
from asyncetl.core.errors import RESET_HINT, ConfigError, PermanentError
from asyncetl.core.logs import get_logger
from asyncetl.core.observe import Progress

__all__ = [
    "OFFSET",
    "PATH",
    "Parse",
    "Step",
    "check_options",
    "file_position",
    "named",
    "resume_offset",
    "tail",
]

T = TypeVar("T")

#: ``parse(buffer, offset_of_buffer, at_end)`` → the chunks of its complete units and the
#: bytes consumed; before the end of the file (``at_end`` false) it may leave complete
#: units that do not fill a whole chunk for the next step.
Parse = Callable[[bytes, int, bool], tuple[Iterable[Chunk[T]], int]]

_log = get_logger("asyncetl.files")

#: the position keys: the file a position was written for, and the byte offset into it
PATH, OFFSET = "path", "offset"


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    """What one read step produced."""

    chunks: Iterable[Chunk[T]]
    offset: int  # just after the last consumed unit
    pending: bytes  # read but not consumed: the start of an incomplete unit
    at_end: bool  # the read reached the end of the file


#: The largest ``block_size``: one read step holds a block in memory, and a larger
#: request than the platform can address fails only once reading.
MAX_BLOCK_SIZE = 1 << 30


def check_options(where: str, *, poll_interval: float, block_size: int) -> None:
    """Validate the options every file source shares.

    :raises ConfigError: for a poll interval that is not a positive finite number
        (NaN included), or a block size outside 1..:data:`MAX_BLOCK_SIZE`.
    """
    if (
        not isinstance(poll_interval, int | float)
        or not poll_interval > 0
        or math.isinf(poll_interval)
    ):
        raise ConfigError(
            f"must be a positive number of seconds, not {poll_interval!r}",
            where=where,
            key="poll_interval",
        )
    if (
        not isinstance(block_size, int)
        or isinstance(block_size, bool)
        or not 1 <= block_size <= MAX_BLOCK_SIZE
    ):
        raise ConfigError(
            f"must be a number of bytes from 1 to {MAX_BLOCK_SIZE}, not {block_size!r}",
            where=where,
            key="block_size",
        )


def file_position(path: str, offset: int) -> Position:
    """The position after byte ``offset`` of ``path``: ``{"path": path, "offset": offset}``."""
    return {PATH: path, OFFSET: offset}


class FileProgress:
    """Bytes of a file read so far of its size when reading started (none when followed)."""

    __slots__ = ("done", "total")

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None

    async def start(self, path: str, offset: int, *, follow: bool) -> None:
        self.done = offset
        if follow:  # a followed file has no end to measure against
            return
        try:
            size = await anyio.to_thread.run_sync(os.path.getsize, path)
        except OSError:
            return  # reading it says what is wrong, in its own words
        self.total = max(size, offset)

    def report(self, chunk: Chunk[T]) -> None:
        """Reading went past ``chunk``, whose position is still a byte offset."""
        assert isinstance(chunk.position, int)
        self.done = chunk.position

    def progress(self) -> list[Progress]:
        return [Progress(self.done, self.total, "bytes")]


def named(chunk: Chunk[T], path: str) -> Chunk[T]:
    """``chunk`` with its byte offset turned into a position naming ``path``."""
    assert isinstance(chunk.position, int)
    return Chunk(chunk.records, file_position(path, chunk.position), chunk.rejects)


def resume_offset(path: str, after: Position, *, where: str) -> int:
    """The byte offset of ``path`` to resume from, after the committed position ``after``.

    ``after`` is ``None``, a position written for this very path, or a bare
    byte offset (as positions were written before they named their file).
    Nothing is read: whether the file still fits the offset is checked when
    reading starts.

    :raises ConfigError: when ``after`` is no file position, or names another file.
    """
    if after is None:
        return 0
    offset: JsonValue = after
    if isinstance(after, dict) and set(after) == {PATH, OFFSET}:
        written_for, offset = after[PATH], after[OFFSET]
        if written_for != path:
            raise ConfigError(
                f"cannot resume from the committed position {_json(after)}: it was written "
                f"for file {_json(written_for)}, not for path {_json(path)}; point path back "
                f"there, or to read {_json(path)} from the start, {RESET_HINT}",
                where=where,
                key="position",
            )
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(
            f"cannot resume from the committed position {_json(after)}, which is not a byte "
            f'offset into {_json(path)} ({{"path": ..., "offset": n}}); {RESET_HINT}',
            where=where,
            key="position",
        )
    return offset


def _json(value: JsonValue) -> str:
    return orjson.dumps(value).decode()


async def tail(
    path: str,
    start: int,
    parse: Parse[T],
    *,
    follow: bool,
    poll_interval: float,
    block_size: int,
    unit: str = "line",
    parse_on_loop: int = 0,
) -> AsyncGenerator[Chunk[T], None]:
    """Yield the chunks of every complete unit after byte ``start``.

    :param start: must be 0 or just after a newline; checked before reading.
    :param unit: names what is incomplete in the end-of-file warning (``line``, ``row``).
    :param parse_on_loop: the most bytes ``parse`` may be given on the event loop: a
        block the page cache holds whole is then read and parsed there, without a
        round trip through the worker thread (0: every step runs in the thread).
    :raises PermanentError: when the file is missing, unreadable, shorter than
        ``start`` or changed so that ``start`` is no longer at a line start.
    """
    file = await anyio.to_thread.run_sync(_open_at, path, start)
    try:
        offset, pending = start, b""
        while True:
            on_loop = len(pending) + block_size <= parse_on_loop
            step = await _next_step(file, offset, pending, block_size, parse, on_loop=on_loop)
            for chunk in step.chunks:
                yield chunk
            offset, pending = step.offset, step.pending
            if not step.at_end:
                continue
            if not follow:
                if pending:
                    _log.warning(
                        f"incomplete last {unit}; stopping before it",
                        path=path,
                        offset=offset,
                        pending_bytes=len(pending),
                    )
                return
            await anyio.sleep(poll_interval)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(file.close)


async def _next_step(
    file: OpenFile, offset: int, pending: bytes, block_size: int, parse: Parse[T], *, on_loop: bool
) -> Step[T]:
    """The step after ``offset``: on the event loop if allowed and cached, else in the thread."""
    if on_loop:
        await anyio.lowlevel.checkpoint()  # as the round through the thread would
        step = _cached_step(file, offset, pending, block_size, parse)
        if step is not None:
            return step
    return await anyio.to_thread.run_sync(_step, file, offset, pending, block_size, parse)


def _step(file: OpenFile, offset: int, pending: bytes, block_size: int, parse: Parse[T]) -> Step[T]:
    data = file.read(offset + len(pending), block_size)
    return _parsed(offset, pending + data if pending else data, len(data) < block_size, parse)


def _cached_step(
    file: OpenFile, offset: int, pending: bytes, block_size: int, parse: Parse[T]
) -> Step[T] | None:
    """The step, read and parsed on the event loop, if the page cache holds its block whole."""
    block = file.read_cached(offset + len(pending), block_size)
    if block is None:
        return None
    # Both copy the reused buffer into bytes: the lines split from it must not change.
    return _parsed(offset, pending + block if pending else bytes(block), False, parse)


def _parsed(offset: int, buffer: bytes, at_end: bool, parse: Parse[T]) -> Step[T]:
    # At the end even with nothing new: a parser may hold units it took from the block
    # before (a JSONL source's lines short of a whole chunk), and gives them out now.
    chunks, consumed = parse(buffer, offset, at_end) if buffer or at_end else ((), 0)
    return Step(chunks, offset + consumed, buffer[consumed:], at_end)


def _open_at(path: str, start: int) -> OpenFile:
    """The file, opened once ``start`` is known to be a line start in it (a worker thread)."""
    file = OpenFile(path)
    try:
        _check_start(file, start)
    except BaseException:
        file.close()
        raise
    return file


def _check_start(file: OpenFile, start: int) -> None:
    file.read(start, 0)  # the file is not shorter than ``start``
    if start and file.read(start - 1, 1) != b"\n":
        raise PermanentError(
            f"the committed position {start} of {file.path} is not at the start of a line; "
            "the file was changed, so restore it or delete the checkpoint to start over"
        )
