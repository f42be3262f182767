"""A transform stage: batches in, transformed batches out, one or many at once."""

from __future__ import annotations

import time
from typing import Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncetl.core import _handoff
from asyncetl.core._meter import StageMeter, metering
from asyncetl.core._rejects import RejectHandler
from asyncetl.core._tracing import BatchTracer
from asyncetl.core.batch import Batch
from asyncetl.core.errors import StageError
from asyncetl.core.transforms import Transform

__all__ = ["TransformStage"]

AnyBatch = Batch[Any]


class TransformStage:
    """Runs ``transform`` over every batch, with its ``workers`` and ``ordered`` settings.

    A batch keeps its sequence number and position; a batch that filters to
    nothing still goes on, so that it is acknowledged.

    :param gate: where a batch waits, before its transform starts, while a sink
        that writes alone writes.
    """

    def __init__(
        self,
        transform: Transform,
        rejects: RejectHandler,
        meter: StageMeter | None = None,
        tracer: BatchTracer | None = None,
        *,
        gate: _handoff.WriteGate | None = None,
    ) -> None:
        self._transform = transform
        self._gate = gate
        self._rejects = rejects
        self._meter = meter or StageMeter(transform.name, "transform")
        self._tracer = tracer

    async def run(
        self, recv: MemoryObjectReceiveStream[AnyBatch], send: MemoryObjectSendStream[AnyBatch]
    ) -> None:
        """Transform what ``recv`` gives into ``send`` until ``recv`` ends; close both."""
        async with recv, send:
            with metering(self._meter):
                await self._run(recv, send)

    async def _run(
        self, recv: MemoryObjectReceiveStream[AnyBatch], send: MemoryObjectSendStream[AnyBatch]
    ) -> None:
        if self._transform.workers == 1:
            await self._one_at_a_time(recv, send)
        elif self._transform.ordered:
            await self._in_order(recv, send)
        else:
            await self._as_done(recv, send)

    async def _one_at_a_time(
        self, recv: MemoryObjectReceiveStream[AnyBatch], send: MemoryObjectSendStream[AnyBatch]
    ) -> None:
        # Without a round through the event loop where a batch or room is ready: the
        # batch goes on to the next stage while its records are still in the CPU cache,
        # before the source decodes the next one.
        while True:
            try:
                batch = await _handoff.receive(recv)
            except anyio.EndOfStream:
                return
            result = await self._apply(batch)
            # Dropped before the send, which waits while the next stage is busy:
            # records the transform replaced are freed now, not with the next batch.
            del batch
            await _handoff.send(send, result)

    async def _in_order(
        self, recv: MemoryObjectReceiveStream[AnyBatch], send: MemoryObjectSendStream[AnyBatch]
    ) -> None:
        workers = anyio.Semaphore(self._transform.workers)
        slot_send, slot_recv = anyio.create_memory_object_stream[_Slot](self._transform.workers)

        async def work(batch: AnyBatch, slot: _Slot) -> None:
            try:
                slot.result = await self._apply(batch)
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

    async def _as_done(
        self, recv: MemoryObjectReceiveStream[AnyBatch], send: MemoryObjectSendStream[AnyBatch]
    ) -> None:
        workers = anyio.Semaphore(self._transform.workers)

        async def work(batch: AnyBatch) -> None:
            try:
                result = await self._apply(batch)
            finally:
                workers.release()
            await send.send(result)

        async with anyio.create_task_group() as tg:
            async for batch in recv:
                await workers.acquire()
                tg.start_soon(work, batch)

    async def _apply(self, batch: AnyBatch) -> AnyBatch:
        if self._gate is not None:
            await self._gate.pass_through()
        if not batch.records:
            self._meter.record_batch(0, 0, None)
            return batch
        transform = self._transform
        tracer = self._tracer
        start_ns = time.time_ns() if tracer is not None else 0
        started = time.perf_counter()
        try:
            result = await transform.apply(batch.records)
        except Exception as exc:
            self._meter.record_error(type(exc).__name__)
            raise StageError(transform.name, batch.position, exc) from exc
        seconds = time.perf_counter() - started
        self._meter.record_batch(len(batch.records), len(result.records), seconds)
        if tracer is not None:
            tracer.stage(batch.seq, self._meter, start_ns, len(batch.records), len(result.records))
        if result.rejects:
            await self._rejects.handle(
                transform.name, transform.on_error, result.rejects, batch.position, batch.seq
            )
        return batch.replace(result.records)


class _Slot:
    """A batch's place in line while a parallel worker transforms it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: AnyBatch | None = None
