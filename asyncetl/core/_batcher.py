"""The batcher: a source's chunks become numbered batches, closed on size or age.

It is the one place where batches are made: it assigns their sequence
numbers and registers each with the committer before any later stage can see
it, so the watermark knows every batch it will be asked to acknowledge.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncetl.core import _handoff
from asyncetl.core._meter import StageMeter
from asyncetl.core._stats import RunStats
from asyncetl.core._tracing import BatchTracer
from asyncetl.core.batch import Batch, Chunk, Position, Reject
from asyncetl.core.columnar import RowBlock

__all__ = ["Batcher", "Inlet"]

AnyBatch = Batch[Any]
#: Record sequences a batch takes as they come: a list, or a block of rows
#: whose records are made only when read.
_WHOLE = (list, RowBlock)
#: Takes the records a source could not decode, with the position of their
#: chunk and the sequence number of the batch the chunk goes into.
RejectSource = Callable[[Sequence[Reject], Position, int], Awaitable[None]]


class Batcher:
    """Merges chunks into batches of ``max_size`` records, or fewer once ``max_age`` is up.

    A chunk is never split: a batch closes as soon as it holds ``max_size``
    records or more, or with a chunk that :attr:`~Chunk.ends_batch`. Run :meth:`run` as a
    task and give the source an :meth:`inlet`.

    :param register: told of each batch, in sequence order, before any stage sees it.
    :param reject: handles the records a source could not decode.
    :param gate: where the inlet holds the source's next chunk while a sink that
        writes alone writes, so that the source makes no more until it is done.
    """

    def __init__(
        self,
        *,
        max_size: int,
        max_age: float,
        register: Callable[[AnyBatch], None],
        reject: RejectSource,
        stats: RunStats,
        meter: StageMeter | None = None,
        tracer: BatchTracer | None = None,
        gate: _handoff.WriteGate | None = None,
    ) -> None:
        self._meter = meter or StageMeter("source", "source")
        self._gate = gate
        self._tracer = tracer
        self._max_size = max_size
        self._max_age = max_age
        self._register = register
        self._reject = reject
        self._stats = stats
        self._seq = 0  # of the next batch
        self._holding = 0
        self._idle = False  # waiting for a chunk, holding none

    @property
    def holding(self) -> int:
        """Records (or heartbeats) taken in but not yet in a batch."""
        return self._holding

    def inlet(
        self,
        chunks: MemoryObjectSendStream[Chunk[Any]],
        batches: MemoryObjectSendStream[AnyBatch],
        after: Position,
    ) -> Inlet:
        """The stream a source reading after ``after`` sends its chunks into.

        :param chunks: the send end of the stream :meth:`run` takes chunks from.
        :param batches: the stream :meth:`run` sends batches into.
        """
        return Inlet(self, chunks, batches, after, gate=self._gate)

    async def run(
        self,
        chunks: MemoryObjectReceiveStream[Chunk[Any]],
        batches: MemoryObjectSendStream[AnyBatch],
    ) -> None:
        """Batch the chunks of ``chunks`` into ``batches`` until the source is done; close both."""
        max_size = self._max_size
        filling = _Filling()
        async with chunks, batches:
            while True:
                try:
                    chunk = await self._next_chunk(chunks, filling.deadline)
                except anyio.EndOfStream:
                    break
                if chunk is not None:
                    self._stats.record_read(len(chunk.records) + len(chunk.rejects))
                    if chunk.rejects:
                        # The chunk joins the open batch, the one numbered next.
                        await self._reject(chunk.rejects, chunk.position, self._seq)
                    filling.add(chunk, self._max_age)
                    ends = chunk.ends_batch
                    chunk = None  # the batch alone holds the records from here on
                    self._holding = len(filling.records) + 1
                    if len(filling.records) < max_size and not ends:
                        continue
                # Full, its age is up, or the source asked: close the batch.
                await _handoff.send(batches, self._close(filling))
            if filling.is_open:
                await batches.send(self._close(filling))

    def pass_on_nowait(self, chunk: Chunk[Any], batches: MemoryObjectSendStream[AnyBatch]) -> bool:
        """Send ``chunk`` into ``batches`` as a batch of its own, if it is one and can go at once.

        Only while :meth:`run` waits holding nothing, so that nothing read before
        the chunk is behind it; a chunk with rejects goes through :meth:`run`.
        :returns: whether the chunk went on; if not, send it to :meth:`run`.
        """
        records = chunk.records
        if not (
            self._idle
            and not chunk.rejects
            and type(records) in _WHOLE
            and len(records) >= self._max_size
        ):
            return False
        batch = Batch(self._seq, records, chunk.position)
        try:
            batches.send_nowait(batch)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False  # the way through run() waits, or meets the failure properly
        # Registered after the send, as nothing else ran since: no stage can have
        # acknowledged it yet, and a batch that could not go is never registered.
        self._issued(batch)
        self._stats.record_read(len(records))
        return True

    def chunk_queued(self) -> None:
        """A chunk is now in the queue to :meth:`run`: no later chunk may pass it."""
        # Told once the chunk is queued, not before: run() may have gone idle
        # while the send waited.
        self._idle = False

    def _close(self, filling: _Filling) -> AnyBatch:
        batch = filling.close(self._seq)
        self._issued(batch)
        self._holding = 0
        return batch

    def _issued(self, batch: AnyBatch) -> None:
        """The one place a sequence number is used up and its batch registered."""
        self._register(batch)
        self._seq += 1
        records = len(batch.records)
        self._meter.record_batch(records, records, None)
        if self._tracer is not None:
            self._tracer.made(batch)

    async def _next_chunk(
        self, chunks: MemoryObjectReceiveStream[Chunk[Any]], deadline: float
    ) -> Chunk[Any] | None:
        """The next chunk, or ``None`` once ``deadline`` (the age of the open batch) is past.

        :raises anyio.EndOfStream: when the reader is done and every chunk taken.
        """
        if deadline != math.inf and anyio.current_time() >= deadline:
            return None
        try:
            return chunks.receive_nowait()
        except anyio.WouldBlock:
            pass
        if deadline == math.inf:
            # Holding nothing and waiting: the inlet may pass whole batches on itself.
            self._idle = True
            try:
                return await chunks.receive()
            finally:
                self._idle = False
        with anyio.CancelScope(deadline=deadline):
            return await chunks.receive()
        return None


class Inlet(ObjectSendStream[Chunk[Any]]):
    """The stream a source sends its chunks into.

    A chunk that is a whole batch by itself, arriving while the batcher holds
    nothing, goes on as a batch straight from the reader's task: a queue and a
    task switch fewer, and the source goes on only after yielding once, so that
    the batch is written, and its records freed, before the source makes more.
    Every other chunk goes through the batcher. While a sink that writes alone
    writes, a chunk waits at the ``gate`` first.

    :ivar last_position: the position of the last chunk sent (at first, where
        reading started): what a read failure comes after.
    """

    def __init__(
        self,
        batcher: Batcher,
        chunks: MemoryObjectSendStream[Chunk[Any]],
        batches: MemoryObjectSendStream[AnyBatch],
        after: Position,
        *,
        gate: _handoff.WriteGate | None = None,
    ) -> None:
        self._batcher = batcher
        self._gate = gate
        self._chunks = chunks
        self._batches = batches
        self.last_position = after

    async def send(self, item: Chunk[Any]) -> None:
        self.last_position = item.position
        if self._gate is not None:
            await self._gate.pass_through()
        if self._batcher.pass_on_nowait(item, self._batches):
            await anyio.lowlevel.checkpoint()
            return
        await self._chunks.send(item)
        self._batcher.chunk_queued()

    async def aclose(self) -> None:
        await self._chunks.aclose()


class _Filling:
    """The batch being filled: its records, its position, and when its age is up."""

    __slots__ = ("deadline", "position", "records")

    def __init__(self) -> None:
        self.records: list[Any] | RowBlock = []
        self.position: Position = None
        self.deadline = math.inf  # infinite while no batch is open

    @property
    def is_open(self) -> bool:
        return self.deadline != math.inf

    def add(self, chunk: Chunk[Any], max_age: float) -> None:
        if not self.is_open:
            self.deadline = anyio.current_time() + max_age
        if self.records:
            if not isinstance(self.records, list):
                self.records = list(self.records)
            self.records.extend(chunk.records)
        else:  # the common case of a chunk per batch: take it without a copy
            records = chunk.records
            self.records = records if type(records) in _WHOLE else list(records)  # type: ignore[assignment]
        self.position = chunk.position

    def close(self, seq: int) -> AnyBatch:
        batch = Batch(seq, self.records, self.position)
        self.records, self.deadline = [], math.inf
        return batch
