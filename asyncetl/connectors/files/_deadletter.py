"""Dead letters as JSON lines in one file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import orjson

from asyncetl.connectors.files._append import append, open_for_append, read_all, write_atomically
from asyncetl.connectors.files._check import writable
from asyncetl.core.interfaces import DeadLetter, DeadLetterStore, Problem
from asyncetl.core.logs import get_logger

__all__ = ["JsonlDeadLetterStore"]

_log = get_logger("asyncetl.files")
_FIELDS = ("id", "pipeline", "stage", "error", "error_type", "record", "position", "time")


class JsonlDeadLetterStore(DeadLetterStore):
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

    async def list(self, pipeline: str, *, limit: int | None = None) -> list[DeadLetter]:
        """The letters of ``pipeline``, oldest first.

        :raises PermanentError: when the file exists but cannot be read.
        """
        data = await anyio.to_thread.run_sync(read_all, self.path)
        letters: list[DeadLetter] = []
        for _, letter in self._letters(data):
            if limit is not None and len(letters) >= limit:
                break
            if letter is not None and letter.pipeline == pipeline:
                letters.append(letter)
        return letters

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        """Delete the letters of ``pipeline`` with these ids; unknown ids are ignored.

        :raises PermanentError: when the file cannot be read or rewritten.
        """
        doomed = set(ids)
        if not doomed:
            return
        async with self._lock:
            await anyio.to_thread.run_sync(self._rewrite, pipeline, doomed)

    def _stored_keys(self) -> set[str]:
        keys: set[str] = set()
        for _, letter in self._letters(read_all(self.path)):
            if letter is not None and letter.key is not None:
                keys.add(letter.key)
        return keys

    def _append(self, payload: bytes) -> None:
        fd = open_for_append(self.path)
        try:
            append(fd, self.path, payload, fsync=True)
        finally:
            os.close(fd)

    def _rewrite(self, pipeline: str, doomed: set[str]) -> None:
        data = read_all(self.path)
        kept = [
            line
            for line, letter in self._letters(data)
            if letter is None or letter.pipeline != pipeline or letter.id not in doomed
        ]
        if sum(map(len, kept)) != len(data):
            write_atomically(self.path, b"".join(kept))
            self._keys = None  # removed keys may be stored again

    def _letters(self, data: bytes) -> Iterator[tuple[bytes, DeadLetter | None]]:
        """Every line with its ending, and the letter it holds (``None`` for blank or broken)."""
        for number, line in enumerate(data.splitlines(keepends=True), start=1):
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
