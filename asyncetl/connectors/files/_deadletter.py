"""Dead letters as JSON lines in one file."""

from __future__ import annotations

import builtins
import os
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import orjson

from asyncetl.connectors.files._append import append, open_for_append, read_all, write_atomically
from asyncetl.connectors.files._check import writable
from asyncetl.core.errors import PermanentError
from asyncetl.core.interfaces import DeadLetter, LetterFilter, Problem
from asyncetl.core.logs import get_logger
from asyncetl.core.store_sql import FilteredLetterStore

__all__ = ["JsonlDeadLetterStore"]

_log = get_logger("asyncetl.files")
_FIELDS = ("id", "pipeline", "stage", "error", "error_type", "record", "position", "time")


class JsonlDeadLetterStore(FilteredLetterStore):
    """Dead letters appended to a JSON Lines file, one letter per line.

    Each line holds the letter's fields, its ``id`` (a random UUID in hex), its
    ``time`` in ISO 8601 UTC and its ``key`` (lines written by older versions
    have none). :meth:`put` skips a letter whose key is in the file already
    (the keys are indexed on first use), then appends and fsyncs;
    :meth:`remove` rewrites the file atomically without the removed letters,
    keeping every other line byte for byte. A line that cannot be read back (a
    torn write, a manual edit) is skipped by :meth:`list` with a warning naming
    its line number, and kept by :meth:`remove`.

    One process at a time should write the file; within it, calls are serialised.

    :param path: the file, created by the first :meth:`put`; its directory must exist.
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._lock = anyio.Lock()
        #: The keys in the file, read on the first put: ``None`` until then.
        self._keys: set[str] | None = None

    async def check(self) -> list[Problem]:
        """Whether the file can be appended to, or created in its directory; creates nothing."""
        return await writable(self.path)

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters`` with fresh ids, durably, skipping those whose key is stored.

        :raises PermanentError: when the file cannot be read or written.
        """
        if not letters:
            return
        async with self._lock:
            if self._keys is None:
                self._keys = await anyio.to_thread.run_sync(self._stored_keys)
            fresh = _unstored(letters, self._keys)
            payload = b"".join(_encode(letter, uuid.uuid4().hex) for letter in fresh)
            if payload:
                try:
                    await anyio.to_thread.run_sync(self._append, payload)
                except BaseException:
                    self._keys = None  # what reached the file is unknown: read it again
                    raise

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        """Delete the letters of ``pipeline`` with these ids; unknown ids are ignored.

        :raises PermanentError: when the file cannot be read or rewritten.
        """
        if ids:
            await self.purge(pipeline, ids=ids)

    def _stored_keys(self) -> set[str]:
        keys: set[str] = set()
        for _, letter in self._letters(read_all(self.path)):
            if letter is not None and letter.key is not None:
                keys.add(letter.key)
        return keys

    async def _find(
        self, pipeline: str, wanted: LetterFilter, limit: int | None
    ) -> builtins.list[DeadLetter]:
        """Reads the file a line at a time and stops at ``limit``, so only the
        letters returned are held in memory.

        :raises PermanentError: when the file exists but cannot be read.
        """
        return await anyio.to_thread.run_sync(self._scan, _mine(pipeline, wanted), limit)

    async def _count(self, pipeline: str, wanted: LetterFilter) -> int:
        return await anyio.to_thread.run_sync(self._tally, _mine(pipeline, wanted))

    async def _purge(self, pipeline: str, wanted: LetterFilter) -> int:
        """Rewrites the file atomically a line at a time, keeping every other line
        (unreadable ones too) byte for byte; leaves it alone when nothing matches.

        :raises PermanentError: when the file cannot be read or rewritten.
        """
        async with self._lock:
            return await anyio.to_thread.run_sync(self._rewrite, _mine(pipeline, wanted))

    def _scan(
        self, wanted: Callable[[DeadLetter | None], bool], limit: int | None
    ) -> builtins.list[DeadLetter]:
        found: builtins.list[DeadLetter] = []
        with closing(self._stream()) as lines:  # closes the file when the limit stops early
            for _, letter in lines:
                if limit is not None and len(found) >= limit:
                    break
                if letter is not None and wanted(letter):
                    found.append(letter)
        return found

    def _tally(self, wanted: Callable[[DeadLetter | None], bool]) -> int:
        return sum(1 for _, letter in self._stream() if wanted(letter))

    def _rewrite(self, doomed: Callable[[DeadLetter | None], bool]) -> int:
        number = self._tally(doomed)
        if number:
            kept = (line for line, letter in self._stream() if not doomed(letter))
            write_atomically(self.path, kept)
            self._keys = None  # removed keys may be stored again
        return number

    def _stream(self) -> Generator[tuple[bytes, DeadLetter | None]]:
        """Like :meth:`_letters`, reading the file a line at a time (nothing when it is missing).

        :raises PermanentError: when the file exists but cannot be read.
        """
        try:
            with open(self.path, "rb") as lines:
                yield from self._decoded(lines)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PermanentError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def _append(self, payload: bytes) -> None:
        fd = open_for_append(self.path)
        try:
            append(fd, self.path, payload, fsync=True)
        finally:
            os.close(fd)

    def _letters(self, data: bytes) -> Iterator[tuple[bytes, DeadLetter | None]]:
        """Every line with its ending, and the letter it holds (``None`` for blank or broken)."""
        return self._decoded(data.splitlines(keepends=True))

    def _decoded(self, lines: Iterable[bytes]) -> Iterator[tuple[bytes, DeadLetter | None]]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                yield line, None
                continue
            try:
                yield line, _decode(line)
            except (ValueError, TypeError, KeyError) as exc:
                _log.warning(
                    "unreadable dead letter skipped", path=self.path, line=number, error=str(exc)
                )
                yield line, None


def _unstored(letters: Sequence[DeadLetter], keys: set[str]) -> list[DeadLetter]:
    """The ``letters`` whose key is not in ``keys``, which gets theirs."""
    fresh = []
    for letter in letters:
        if letter.key is None:
            fresh.append(letter)
        elif letter.key not in keys:
            keys.add(letter.key)
            fresh.append(letter)
    return fresh


def _encode(letter: DeadLetter, letter_id: str) -> bytes:
    time = letter.time if letter.time.tzinfo else letter.time.replace(tzinfo=UTC)
    document = {
        "id": letter_id,
        "pipeline": letter.pipeline,
        "stage": letter.stage,
        "error": letter.error,
        "error_type": letter.error_type,
        "record": letter.record,
        "position": letter.position,
        "time": time.astimezone(UTC).isoformat(),
    }
    if letter.key is not None:
        document["key"] = letter.key
    return orjson.dumps(document, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _decode(line: bytes) -> DeadLetter:
    document = orjson.loads(line)
    if not isinstance(document, dict) or not all(key in document for key in _FIELDS):
        raise ValueError("not a dead letter")
    time = datetime.fromisoformat(document["time"])
    return DeadLetter(
        pipeline=str(document["pipeline"]),
        stage=str(document["stage"]),
        error=str(document["error"]),
        error_type=str(document["error_type"]),
        record=document["record"],
        position=document["position"],
        time=time if time.tzinfo else time.replace(tzinfo=UTC),
        id=str(document["id"]),
        key=None if document.get("key") is None else str(document["key"]),
    )


def _mine(pipeline: str, wanted: LetterFilter) -> Callable[[DeadLetter | None], bool]:
    """Whether a line's letter (``None``: blank or broken line) is of ``pipeline`` and wanted."""

    def check(letter: DeadLetter | None) -> bool:
        return letter is not None and letter.pipeline == pipeline and wanted.matches(letter)

    return check
