"""In-memory sources, sinks and stores: for tests, examples and embedding."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

import anyio

from asyncetl.core.batch import Batch, Chunk, Position
from asyncetl.core.errors import ConfigError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    Reject,
    Sink,
    Source,
)
from asyncetl.core.observe import Progress

__all__ = ["ListSink", "ListSource", "MemoryCheckpointStore", "MemoryDeadLetterStore", "NullSink"]

T = TypeVar("T")


class ListSource(Source[T]):
    """Reads a list; the position is the number of records read so far.

    :param delay: seconds to sleep before each chunk, to simulate a slow source.
    """

    def __init__(
        self,
        records: Iterable[T],
        *,
        name: str = "list_source",
        chunk_size: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.records = list(records)
        self.name = name
        self.chunk_size = chunk_size
        if not 0 <= delay < math.inf:  # NaN fails the comparison too
            raise ConfigError(
                f"must be a finite number of seconds, not negative, not {delay!r}",
                where=f"ListSource {name}",
                key="delay",
            )
        self.delay = delay
        self.acknowledged: list[Position] = []
        self._read = 0

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[T]]:
        start = self._read = int(after) if isinstance(after, int) else 0
        size = self.chunk_size or max_chunk
        for offset in range(start, len(self.records), size):
            if self.delay:
                await anyio.sleep(self.delay)
            piece = self.records[offset : offset + size]
            self._read = offset + len(piece)
            yield Chunk(piece, offset + len(piece))

    def progress(self) -> Sequence[Progress]:
        """Records read of the list's records (a resumed read starts where it resumed)."""
        return [Progress(self._read, len(self.records), "records")]

    async def acknowledge(self, position: Position) -> None:
        self.acknowledged.append(position)


class ListSink(Sink[T]):
    """Keeps every written batch in memory."""

    def __init__(self, *, name: str = "list_sink") -> None:
        self.name = name
        self.batches: list[Batch[T]] = []

    @property
    def records(self) -> list[T]:
        return [record for batch in self.batches for record in batch.records]

    async def write(self, batch: Batch[T]) -> Sequence[Reject]:
        self.batches.append(batch)
        return ()


class NullSink(Sink[object]):
    """Acknowledges every batch and keeps nothing but counts."""

    def __init__(self, *, name: str = "null_sink") -> None:
        self.name = name
        self.records = 0
        self.batches = 0

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        self.records += len(batch.records)
        self.batches += 1
        return ()


class MemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict; every save is kept in :attr:`history`.

    :param keep_history: keep every save; off for a store that lives as long as a
        pipeline that never ends, whose history would grow without bound.
    """

    def __init__(self, *, keep_history: bool = True) -> None:
        self.positions: dict[tuple[str, str], Position] = {}
        self.history: list[Checkpoint] = []
        self.keep_history = keep_history

    async def load(self, pipeline: str, source: str) -> Position:
        return self.positions.get((pipeline, source))

    async def save(self, checkpoint: Checkpoint) -> None:
        self.positions[checkpoint.pipeline, checkpoint.source] = checkpoint.position
        if self.keep_history:
            self.history.append(checkpoint)


class MemoryDeadLetterStore(DeadLetterStore):
    """Dead letters in a list; a letter whose key the list holds already is skipped."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self._ids = itertools.count(1)

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        held = {letter.key for letter in self.letters if letter.key is not None}
        for letter in letters:
            if letter.key is not None:
                if letter.key in held:
                    continue
                held.add(letter.key)
            self.letters.append(_with_id(letter, str(next(self._ids))))

    async def list(self, pipeline: str, *, limit: int | None = None) -> list[DeadLetter]:
        mine = [letter for letter in self.letters if letter.pipeline == pipeline]
        return mine if limit is None else mine[:limit]

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        doomed = set(ids)
        self.letters = [
            letter
            for letter in self.letters
            if not (letter.pipeline == pipeline and letter.id in doomed)
        ]


def _with_id(letter: DeadLetter, letter_id: str) -> DeadLetter:
    return replace(letter, id=letter_id)
