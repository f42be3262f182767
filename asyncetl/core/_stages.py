"""The engine behind :class:`~asyncetl.core.pipeline.Pipeline`: one run's stages and wiring."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncetl.core.batch import Batch, Chunk, Position, Reject
from asyncetl.core.deadletter import dead_letters
from asyncetl.core.errors import AsyncetlError, CheckpointError, StageError
from asyncetl.core.interfaces import Checkpoint, FailurePolicy
from asyncetl.core.logs import get_logger
from asyncetl.core.transforms import Transform
from asyncetl.core.watermark import Watermark

if TYPE_CHECKING:
    from asyncetl.core.pipeline import Pipeline, RunStats

AnyBatch = Batch[Any]
T = TypeVar("T")


class _Slot:
    """A batch's place in line while a parallel worker transforms it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: AnyBatch | None = None


class _Filling:
    """The batch being filled: its records, its position, and when its age is up."""

    __slots__ = ("deadline", "position", "records")

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.position: Position = None
        self.deadline = math.inf  # infinite while no batch is open

    @property
    def is_open(self) -> bool:
        return self.deadline != math.inf

    def add(self, chunk: Chunk[Any], max_age: float) -> None:
        if not self.is_open:
            self.deadline = anyio.current_time() + max_age
        if self.records:
            self.records.extend(chunk.records)
        else:  # the common case of a chunk per batch: take it without a copy
            records = chunk.records
            self.records = records if type(records) is list else list(records)
        self.position = chunk.position

    def close(self, seq: int) -> AnyBatch:
        batch = Batch(seq, self.records, self.position)
        self.records, self.deadline = [], math.inf
        return batch


class _Inlet(ObjectSendStream[Chunk[Any]]):
    """The stream a source sends its chunks into.

    A chunk that is a whole batch by itself, arriving while the batcher holds
    nothing, goes on as a batch straight from the reader's task: a queue and a
    task switch fewer, and the source goes on only after yielding once, so that
    the batch is written, and its records freed, before the source makes more.
    Every other chunk goes through the batcher.
    """

    def __init__(
        self,
        runner: StageRunner,
        chunks: MemoryObjectSendStream[Chunk[Any]],
        batches: MemoryObjectSendStream[AnyBatch],
    ) -> None:
        self._runner = runner
        self._chunks = chunks
        self._batches = batches

    async def send(self, item: Chunk[Any]) -> None:
        self._runner._read_position = item.position  # what a read failure comes after
        if self._runner._pass_on(item, self._batches):
            await anyio.lowlevel.checkpoint()
            return
        await self._chunks.send(item)
        self._runner._queued()

    async def aclose(self) -> None:
        await self._chunks.aclose()


class StageRunner:
    """Wires and runs the stages of one pipeline run."""

    def __init__(self, pipeline: Pipeline, stats: RunStats) -> None:
        self.p = pipeline
        self.stats = stats
        self.log = get_logger("asyncetl").bind(pipeline=pipeline.name)
        self.watermark = Watermark()
        self._transactional = pipeline.sink.commits_to(pipeline.checkpoints)
        self._read_scope = anyio.CancelScope()
        self._engine_scope: anyio.CancelScope | None = None
        self._stopping = anyio.Event()
        self._hard_stop = False
        self._buffered = 0  # records (or heartbeats) read but not yet in a batch
        self._last_data = time.monotonic()
        self._read_position: Position = None
        self._seq = 0  # of the next batch
        self._batcher_idle = False  # waiting for a chunk, holding none

    # -- control -----------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def request_stop(self, *, immediate: bool) -> None:
        """First call: stop reading and drain. A second call, or ``immediate``: cancel now."""
        if immediate or self._stopping.is_set():
            self._hard_stop = True
            if self._engine_scope is not None:
                self._engine_scope.cancel()
        self._stopping.set()
        self._read_scope.cancel()

    async def run(self) -> None:
        p = self.p
        try:
            start = await p.checkpoints.load(p.name, p.source.name)
        except AsyncetlError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"cannot load the checkpoint of pipeline {p.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        self.watermark = Watermark(start)
        self.stats.position = start
        self._read_position = start
        self.log.info(
            "starting",
            source=p.source.name,
            sink=p.sink.name,
            resume_after=start,
            max_records_in_flight=p.max_records_in_flight,
        )
        async with anyio.create_task_group() as tg:
            self._engine_scope = tg.cancel_scope
            if self._hard_stop:
                tg.cancel_scope.cancel()
            tg.start_soon(self._supervise)
            await self._run_stages()
            tg.cancel_scope.cancel()
        if self._hard_stop:
            self.stats.stopped_early = True
            self.log.warning(
                "stopped before draining", unacknowledged_batches=self.watermark.pending
            )
        self.log.info("finished", position=self.stats.position, **self.stats.as_dict())

    # -- wiring ------------------------------------------------------------

    async def _run_stages(self) -> None:
        size = self.p.queue_size
        async with anyio.create_task_group() as stages:
            chunk_send, chunk_recv = anyio.create_memory_object_stream[Chunk[Any]](size)
            send, recv = anyio.create_memory_object_stream[AnyBatch](size)
            stages.start_soon(self._read, _Inlet(self, chunk_send, send))
            stages.start_soon(self._batch, chunk_recv, send)
            for transform in self.p.transforms:
                send, next_recv = anyio.create_memory_object_stream[AnyBatch](size)
                stages.start_soon(self._transform, transform, recv, send)
                recv = next_recv
            stages.start_soon(self._sink, recv)

    async def _supervise(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._grace_timer)
            tg.start_soon(self._summaries)
            if self.p.stop_when_idle is not None:
                tg.start_soon(self._idle_watch, self.p.stop_when_idle)

    async def _grace_timer(self) -> None:
        await self._stopping.wait()
        self.log.info("stopping", grace_period=self.p.grace_period)
        await anyio.sleep(self.p.grace_period)
        self.log.warning("grace period over; cancelling in-flight batches")
        self.request_stop(immediate=True)

    async def _summaries(self) -> None:
        while True:
            await anyio.sleep(self.p.summary_interval)
            elapsed = max(self.stats.elapsed, 1e-9)
            self.log.info(
                "progress",
                position=self.stats.position,
                records_per_s=round(self.stats.records_in / elapsed),
                **self.stats.as_dict(),
            )

    async def _idle_watch(self, idle: float) -> None:
        while True:
            await anyio.sleep(min(0.05, idle / 4))
            quiet = time.monotonic() - self._last_data
            if quiet >= idle and self._buffered == 0 and self.watermark.pending == 0:
                self.log.info("idle; stopping", idle_s=round(quiet, 3))
                self.request_stop(immediate=False)
                return

    # -- stages ------------------------------------------------------------

    async def _read(self, send: ObjectSendStream[Chunk[Any]]) -> None:
        source = self.p.source
        async with send:
            with self._read_scope:
                try:
                    await source.produce(
                        self.watermark.position, send, max_chunk=self.p.max_batch_size
                    )
                except Exception as exc:
                    raise StageError(source.name, self._read_position, exc, reading=True) from exc

    async def _batch(
        self,
        recv: MemoryObjectReceiveStream[Chunk[Any]],
        send: MemoryObjectSendStream[AnyBatch],
    ) -> None:
        max_size, max_age = self.p.max_batch_size, self.p.max_batch_age
        filling = _Filling()
        async with recv, send:
            while True:
                try:
                    chunk = await self._next_chunk(recv, filling.deadline)
                except anyio.EndOfStream:
                    break
                if chunk is not None:
                    self._note(chunk)
                    if chunk.rejects:
                        await self._reject(
                            self.p.source.name, self.p.source_errors, chunk.rejects, chunk.position
                        )
                    filling.add(chunk, max_age)
                    chunk = None  # the batch alone holds the records from here on
                    self._buffered = len(filling.records) + 1
                    if len(filling.records) < max_size:
                        continue
                # Full, or its age is up: close the batch.
                await _send(send, self._close(filling))
            if filling.is_open:
                await send.send(self._close(filling))

    async def _next_chunk(
        self, recv: MemoryObjectReceiveStream[Chunk[Any]], deadline: float
    ) -> Chunk[Any] | None:
        """The next chunk, or ``None`` once ``deadline`` (the age of the open batch) is past.

        :raises anyio.EndOfStream: when the reader is done and every chunk taken.
        """
        if deadline != math.inf and anyio.current_time() >= deadline:
            return None
        try:
            return recv.receive_nowait()
        except anyio.WouldBlock:
            pass
        if deadline == math.inf:
            # Holding nothing and waiting: the reader may pass whole batches on itself.
            self._batcher_idle = True
            try:
                return await recv.receive()
            finally:
                self._batcher_idle = False
        with anyio.CancelScope(deadline=deadline):
            return await recv.receive()
        return None

    def _note(self, chunk: Chunk[Any]) -> None:
        if chunk.records or chunk.rejects:
            self._last_data = time.monotonic()
            self.stats.records_in += len(chunk.records) + len(chunk.rejects)

    def _close(self, filling: _Filling) -> AnyBatch:
        batch = filling.close(self._seq)
        self._seq += 1
        self.watermark.register(batch.seq, batch.position)
        self._buffered = 0
        return batch

    def _queued(self) -> None:
        # Called once a chunk is in the batcher's queue, not before: the batcher may
        # have gone idle while the send waited. No later chunk may pass this one.
        self._batcher_idle = False

    def _pass_on(self, chunk: Chunk[Any], send: MemoryObjectSendStream[AnyBatch]) -> bool:
        """Send ``chunk`` on as a batch of its own, if it is one and can be sent at once.

        Only while the batcher waits holding nothing, so that nothing read before
        the chunk is behind it; a chunk with rejects goes through the batcher.
        """
        records = chunk.records
        if not (
            self._batcher_idle
            and not chunk.rejects
            and type(records) is list
            and len(records) >= self.p.max_batch_size
        ):
            return False
        batch = Batch(self._seq, records, chunk.position)
        try:
            send.send_nowait(batch)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False  # the batcher's way waits, or meets the failure properly
        # Nothing else ran since the send, so no stage can have acknowledged it yet.
        self.watermark.register(batch.seq, batch.position)
        self._seq += 1
        self._note(chunk)
        return True

    async def _transform(
        self,
        transform: Transform,
        recv: ObjectReceiveStream[AnyBatch],
        send: ObjectSendStream[AnyBatch],
    ) -> None:
        async with recv, send:
            if transform.workers == 1:
                async for batch in recv:
                    await send.send(await self._apply(transform, batch))
            elif transform.ordered:
                await self._transform_in_order(transform, recv, send)
            else:
                await self._transform_as_done(transform, recv, send)

    async def _transform_in_order(
        self,
        transform: Transform,
        recv: ObjectReceiveStream[AnyBatch],
        send: ObjectSendStream[AnyBatch],
    ) -> None:
        workers = anyio.Semaphore(transform.workers)
        slot_send, slot_recv = anyio.create_memory_object_stream[_Slot](transform.workers)

        async def work(batch: AnyBatch, slot: _Slot) -> None:
            try:
                slot.result = await self._apply(transform, batch)
            finally:
                workers.release()
            slot.done.set()

        async def emit() -> None:
            async with slot_recv:
                async for slot in slot_recv:
                    await slot.done.wait()
                    await send.send(cast(AnyBatch, slot.result))

        async with anyio.create_task_group() as tg:
            tg.start_soon(emit)
            async with slot_send:
                async for batch in recv:
                    await workers.acquire()
                    slot = _Slot()
                    tg.start_soon(work, batch, slot)
                    await slot_send.send(slot)

    async def _transform_as_done(
        self,
        transform: Transform,
        recv: ObjectReceiveStream[AnyBatch],
        send: ObjectSendStream[AnyBatch],
    ) -> None:
        workers = anyio.Semaphore(transform.workers)

        async def work(batch: AnyBatch) -> None:
            try:
                result = await self._apply(transform, batch)
            finally:
                workers.release()
            await send.send(result)

        async with anyio.create_task_group() as tg:
            async for batch in recv:
                await workers.acquire()
                tg.start_soon(work, batch)

    async def _apply(self, transform: Transform, batch: AnyBatch) -> AnyBatch:
        if not batch.records:
            return batch
        try:
            result = await transform.apply(batch.records)
        except Exception as exc:
            raise StageError(transform.name, batch.position, exc) from exc
        if result.rejects:
            await self._reject(transform.name, transform.on_error, result.rejects, batch.position)
        return batch.replace(result.records)

    async def _sink(self, recv: MemoryObjectReceiveStream[AnyBatch]) -> None:
        async with recv:
            while True:
                try:
                    batch = await _receive(recv)
                except anyio.EndOfStream:
                    return
                await self._write(batch)
                await self._commit(batch)
                # Dropped now, not when the next batch arrives: its records are freed
                # as soon as nothing else holds them, while still warm in the CPU cache.
                del batch

    async def _write(self, batch: AnyBatch) -> None:
        sink = self.p.sink
        if not batch.records and not self._transactional:
            return
        try:
            if self._transactional:
                position = self.watermark.peek_ack(batch.seq)
                checkpoint = Checkpoint(self.p.name, self.p.source.name, position)
                rejects = await sink.write_with_checkpoint(batch, checkpoint)
            else:
                rejects = await sink.write(batch)
        except Exception as exc:
            raise StageError(sink.name, batch.position, exc) from exc
        if rejects:
            await self._reject(sink.name, self.p.sink_errors, rejects, batch.position)
        self.stats.records_out += len(batch.records) - len(rejects)

    async def _commit(self, batch: AnyBatch) -> None:
        if not self.watermark.ack(batch.seq):
            return
        p, position = self.p, self.watermark.position
        if not self._transactional:
            try:
                await p.checkpoints.save(Checkpoint(p.name, p.source.name, position))
            except AsyncetlError:
                raise
            except Exception as exc:
                raise CheckpointError(
                    f"cannot save the checkpoint of pipeline {p.name!r} at {position!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        self.stats.batches_committed += 1
        self.stats.position = position
        self.stats.committed_at = time.monotonic()
        self.log.debug("committed", batch=batch.seq, records=len(batch.records), position=position)
        try:
            await p.source.acknowledge(position)
        except Exception as exc:
            raise StageError(p.source.name, position, exc) from exc

    async def _reject(
        self, stage: str, policy: FailurePolicy, rejects: Sequence[Reject], position: Position
    ) -> None:
        if policy == "fail" or self.p.dead_letters is None:
            raise StageError(stage, position, rejects[0].error) from rejects[0].error
        letters = dead_letters(self.p.name, stage, rejects, position)
        await self.p.dead_letters.put(letters)
        self.stats.dead_lettered += len(letters)
        self.log.warning(
            "dead-lettered",
            stage=stage,
            records=len(letters),
            first_error=f"{letters[0].error_type}: {letters[0].error}",
        )


# Stage hand-offs take what is ready without a round through the event loop: the
# bounded queues still make every stage wait when it is ahead, and a stage that
# waits is a checkpoint. Each avoided round is one task switch per batch.


async def _receive(recv: MemoryObjectReceiveStream[T]) -> T:
    try:
        return recv.receive_nowait()
    except anyio.WouldBlock:
        return await recv.receive()


async def _send(send: MemoryObjectSendStream[T], item: T) -> None:
    try:
        send.send_nowait(item)
    except anyio.WouldBlock:
        await send.send(item)
