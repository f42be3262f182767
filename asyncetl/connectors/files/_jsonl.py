"""JSON Lines: a source that follows a file by byte offset, and an appending sink."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from functools import partial

import anyio
import anyio.to_thread
import orjson

from asyncetl.connectors.files._append import append, open_for_append
from asyncetl.connectors.files._check import writable
from asyncetl.connectors.files._source import FileSource
from asyncetl.connectors.files._tail import resume_offset
from asyncetl.core.batch import Batch, Chunk, JsonValue, Position, Reject
from asyncetl.core.interfaces import Problem, Sink
from asyncetl.core.jsonout import json_default

__all__ = ["JsonlSink", "JsonlSource"]

#: A record of a JSON Lines file: one JSON object.
JsonRecord = dict[str, JsonValue]

_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
#: A block of complete lines up to this long is decoded a chunk at a time on the
#: event loop (about 5 ms of work per MiB); a longer one, in the thread that read it.
_DECODE_ON_LOOP_BYTES = 1 << 20
#: A batch's lines are encoded on the event loop up to about this many bytes (a few
#: milliseconds of work), the rest in the thread that appends them.
_ENCODE_ON_LOOP_BYTES = 1 << 20
_ENCODE = orjson.OPT_APPEND_NEWLINE
_ENCODE_LENIENT = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_COMPACT = (",", ":")


class JsonlSource(FileSource[JsonRecord]):
    """Reads a JSON Lines file: one JSON object per line.

    The position is ``{"path": path, "offset": n}``: the file as given and the
    byte offset just after the last complete line consumed; a resume seeks
    there. A position written for another path is refused (a bare offset, as
    written before positions named their file, is taken as before). Blank
    lines are skipped (the position moves past them). A line that is not valid
    JSON, or not a JSON object, becomes a reject carrying the line's text
    (without its ``\\n`` or ``\\r\\n``), never a silent drop;
    :meth:`decode` parses such a text again for replay.

    A last line without its newline is never consumed: with ``follow`` the
    source waits for the rest of it; without, the source ends there and logs
    a warning naming the file and the line's byte offset.

    The file is read in blocks of ``block_size`` bytes in a worker thread, or
    on the event loop where a block of up to 1 MiB is in the page cache whole
    and the platform can read it without waiting (Linux); the lines of a block
    are decoded ``max_chunk`` at a time as the pipeline takes them, so a block's
    raw lines but only one chunk of its records are held (lines of more than
    1 MiB in all are decoded at once in the worker thread).

    :param path: the file; it must exist when reading starts.
    :param name: the source's name, part of its checkpoint key.
    :param follow: after the end of the file, poll for appended lines forever
        (stopped by cancellation or the pipeline's stop).
    :param poll_interval: seconds between polls at the end of the file.
    :param block_size: bytes read per step. The default, 256 KiB, peaked 6 MiB
        lower than 1 MiB blocks on a million short lines, for about 2% more CPU time.
    :raises ConfigError: for a non-positive ``poll_interval`` or ``block_size``.
    """

    #: Splitting a block into lines is all its parser does at once (it decodes them a
    #: chunk at a time, later), so a cached block is read and split on the event loop.
    _parse_on_loop = _DECODE_ON_LOOP_BYTES

    def __init__(
        self,
        path: str,
        *,
        name: str = "jsonl",
        follow: bool = False,
        poll_interval: float = 0.5,
        block_size: int = 1 << 18,
    ) -> None:
        super().__init__(
            "JsonlSource",
            path,
            name=name,
            follow=follow,
            poll_interval=poll_interval,
            block_size=block_size,
        )

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[JsonRecord]]:
        """Yield chunks of up to ``max_chunk`` lines, starting strictly after byte ``after``.

        :raises ConfigError: when ``after`` is not a position into this file.
        :raises PermanentError: when the file is missing or unreadable, or was
            truncated or changed under the committed position.
        """
        start = resume_offset(self.path, after, where=self._where)
        parse = _LineChunks(self.path, max(1, max_chunk))
        async with aclosing(self._read_from(start, parse, unit="line")) as chunks:
            async for chunk in chunks:
                yield chunk

    def decode(self, raw: JsonValue) -> JsonRecord:
        """Parse a dead-lettered line text again.

        :raises ValueError: when it is still not a JSON object.
        :raises TypeError: when ``raw`` is neither a line's text nor an object.
        """
        if isinstance(raw, dict):
            return raw
        if not isinstance(raw, str):
            raise TypeError(f"a JSONL dead letter holds the line's text, not {_kind(raw)}")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the line is not valid JSON: {exc}") from exc
        if isinstance(value, dict):
            return value
        raise ValueError(f"the line is {_kind(value)}, not a JSON object")


class _LineChunks:
    """One read's parser: the complete lines of each block, in whole chunks of ``max_chunk``.

    Until the end of the file, the lines past a block's last whole chunk are kept
    here, already split, to go first into the next block's chunks; they count as
    consumed, so the next read starts after them (see ``_tail``). Read and split
    once: read again, they were a tenth more to split and copy for every block.
    """

    __slots__ = ("_held", "_held_bytes", "_max_chunk", "_path")

    def __init__(self, path: str, max_chunk: int) -> None:
        self._path = path
        self._max_chunk = max_chunk
        self._held: list[bytes] = []
        self._held_bytes = 0

    def __call__(
        self, buffer: bytes, offset: int, at_end: bool
    ) -> tuple[Iterator[Chunk[JsonRecord]], int]:
        lines = buffer.split(b"\n")
        end = len(buffer) - len(lines.pop())  # after the last newline: "", or a part line
        if not end and not at_end:
            return iter(()), 0  # a line longer than the block: the held lines wait with it
        start = offset - self._held_bytes  # where the held lines begin
        lines[:0] = self._held
        whole = len(lines) - len(lines) % self._max_chunk
        held: list[bytes] = []
        if not at_end and whole and whole < len(lines):
            held = lines[whole:]
            del lines[whole:]
        self._held, self._held_bytes = held, sum(map(len, held)) + len(held)
        chunks = self._chunks(lines, start)
        # Lines that long would hold the event loop: decoded here, in the reading thread.
        return (chunks if end <= _DECODE_ON_LOOP_BYTES else iter(list(chunks))), end

    def _chunks(self, lines: list[bytes], offset: int) -> Iterator[Chunk[JsonRecord]]:
        """The chunks of ``lines``, each decoded only when the reader takes it.

        A block holds thousands of lines; decoding them all at once kept that many
        records alive (and the collector walking them) beside those in the queues.
        """
        max_chunk = self._max_chunk
        for first in range(0, len(lines), max_chunk):
            part = lines[first : first + max_chunk]
            records = _decode_fast(part)
            rejects: list[Reject] = []
            if records is None:
                records, rejects = self._decode_slow(part, offset)
            offset += sum(map(len, part)) + len(part)
            yield Chunk(records, offset, rejects)

    def _decode_slow(
        self, lines: list[bytes], offset: int
    ) -> tuple[list[JsonRecord], list[Reject]]:
        """Line by line, for a part with blank, broken or non-object lines."""
        records: list[JsonRecord] = []
        rejects: list[Reject] = []
        for line in lines:
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                if line.strip():
                    error = ValueError(
                        f"line at byte {offset} of {self._path} is not valid JSON: {exc}"
                    )
                    rejects.append(Reject(_text(line), error))
            else:
                if isinstance(value, dict):
                    records.append(value)
                else:
                    kind = _kind(value)
                    error = ValueError(
                        f"line at byte {offset} of {self._path} is {kind}, not a JSON object"
                    )
                    rejects.append(Reject(_text(line), error))
            offset += len(line) + 1
        return records, rejects


def _decode_fast(lines: list[bytes]) -> list[JsonRecord] | None:
    """Every line parsed in C, or ``None`` when any is blank, broken or not an object."""
    try:
        values = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return None
    if values and set(map(type, values)) != {dict}:
        return None
    return values


def _text(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace").removesuffix("\r")


def _kind(value: object) -> str:
    return _KINDS.get(type(value), f"a {type(value).__name__}")


class JsonlSink(Sink[object]):
    """Appends one JSON line per record to a file.

    Records are encoded with orjson; values JSON lacks become strings: bytes as
    base64, datetimes in ISO 8601, decimals, UUIDs and the rest as their ``str``
    (:mod:`asyncetl.core.jsonout`). Each batch is written with one append and, with
    ``fsync``, made durable before :meth:`write` returns. A replay after a
    crash appends its batch again (at-least-once). The only rejects are
    records that cannot be encoded at all (a circular structure, say).

    :param path: the file, created when missing; its directory must exist.
    :param name: the sink's name.
    :param fsync: fsync the file after each batch; without it a batch survives
        a crash of the process but not of the machine.
    """

    #: Its write is an append and an fsync in a worker thread: the stages that
    #: would make the next batches meanwhile only delay the thread's return and
    #: hold more records (1M short lines: a fifth less CPU time, 3.5 MiB less).
    writes_alone = True

    def __init__(self, path: str, *, name: str = "jsonl_sink", fsync: bool = True) -> None:
        self.path = str(path)
        self.name = name
        self.fsync = fsync
        self._fd: int | None = None

    async def check(self) -> list[Problem]:
        """Whether the file can be appended to, or created in its directory; creates nothing."""
        return await writable(self.path)

    async def open(self) -> None:
        """Open the file for appending.

        :raises PermanentError: when it cannot be opened for writing.
        """
        if self._fd is None:
            self._fd = await anyio.to_thread.run_sync(open_for_append, self.path)

    async def aclose(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            await anyio.to_thread.run_sync(os.close, fd)

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        """Append the batch's records and return once they are durable.

        :raises PermanentError: when the file cannot be written.
        """
        await self.open()
        assert self._fd is not None
        records = batch.records
        payload = bytearray()
        rejects: list[Reject] = []
        # Encoded here while the records are fresh from the transform, without handing
        # the GIL to and fro with a thread; past a mebibyte, the rest in the thread.
        done = _encode(records, 0, payload, rejects, _ENCODE_ON_LOOP_BYTES)
        if done == len(records) and not payload:
            return rejects
        write = partial(self._append, self._fd, records, done, payload, rejects)
        return await anyio.to_thread.run_sync(write)

    def _append(
        self,
        fd: int,
        records: Sequence[object],
        done: int,
        payload: bytearray,
        rejects: list[Reject],
    ) -> list[Reject]:
        _encode(records, done, payload, rejects, None)
        if payload:
            append(fd, self.path, payload, fsync=self.fsync)
        return rejects


def _encode(
    records: Sequence[object],
    start: int,
    payload: bytearray,
    rejects: list[Reject],
    limit: int | None,
) -> int:
    """Append the lines of ``records[start:]`` to ``payload`` until it passes ``limit`` bytes.

    :returns: the index of the first record not encoded (``len(records)`` when done).
    """
    # Each line is copied into one buffer and dropped at once: keeping a batch of
    # orjson's outputs alive for one join measured slower. default and option go
    # by position: orjson parses keywords on every call, which doubled its cost.
    dumps = orjson.dumps
    for index in range(start, len(records)):
        if limit is not None and len(payload) > limit:
            return index
        record = records[index]
        try:
            payload += dumps(record, json_default, _ENCODE)
        except orjson.JSONEncodeError:
            try:
                payload += _encode_lenient(record)
            except (TypeError, ValueError) as exc:
                rejects.append(Reject(record, ValueError(f"cannot encode as JSON: {exc}")))
    return len(records)


def _encode_lenient(record: object) -> bytes:
    """For what orjson refuses: non-string keys, integers beyond 64 bits."""
    try:
        return orjson.dumps(record, json_default, _ENCODE_LENIENT)
    except orjson.JSONEncodeError:
        return (
            json.dumps(
                record, default=json_default, ensure_ascii=False, separators=_COMPACT
            ).encode()
            + b"\n"
        )
