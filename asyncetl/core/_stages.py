"""The engine behind :class:`~asyncetl.core.pipeline.Pipeline`: one run's stages and wiring.

    source ─▶ inlet ─▶ batcher ─▶ transform ×N ─▶ sink ─▶ committer

The reader runs the source into the batcher's inlet; the batcher numbers the
batches and registers them with the committer; the transform stages pass them
on; the sink stage writes each and hands it to the committer, which moves the
watermark, saves the checkpoint and acknowledges upstream.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from asyncetl.core import _handoff
from asyncetl.core._batcher import Batcher, Inlet
from asyncetl.core._committer import Committer
from asyncetl.core._rejects import RejectHandler
from asyncetl.core._settings import RunSettings
from asyncetl.core._stats import RunStats
from asyncetl.core._transforming import TransformStage
from asyncetl.core.batch import Batch, Chunk, Position, Reject
from asyncetl.core.errors import AsyncetlError, StageError
from asyncetl.core.interfaces import CheckpointStore, DeadLetter, DeadLetterStore, Sink, Source
from asyncetl.core.logs import get_logger
from asyncetl.core.transforms import Transform

__all__ = ["StageRunner"]

AnyBatch = Batch[Any]


_NO_MARK: Final = object()
#: Seconds an idle run waits at most for its source to confirm its upstream's end.
_CONFIRM_WAIT: Final = 30.0


class StageRunner:
    """Wires and runs the stages of one pipeline run."""

    def __init__(
        self,
        settings: RunSettings,
        *,
        source: Source[Any],
        transforms: Sequence[Transform],
        sink: Sink[Any],
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterStore | None,
        stats: RunStats,
    ) -> None:
        self._settings = settings
        self._source = source
        self._transforms = transforms
        self._sink = sink
        self._stats = stats
        self._log = get_logger("asyncetl").bind(pipeline=settings.name)
        self._rejects = RejectHandler(settings.name, dead_letters, stats, self._log)
        self._committer = Committer(
            pipeline=settings.name,
            source=source,
            sink=sink,
            checkpoints=checkpoints,
            dead_letters=dead_letters,
            stats=stats,
            log=self._log,
        )
        self._batcher = Batcher(
            max_size=settings.max_batch_size,
            max_age=settings.max_batch_age,
            register=self._committer.register,
            reject=partial(self._rejects.handle, source.name, settings.source_errors),
            stats=stats,
        )
        #: The letters of batches whose writer settled (by sequence number): the
        #: ones it stores in its transaction, counted once that commits.
        self._settled: dict[int, Sequence[DeadLetter]] = {}
        self._read_scope = anyio.CancelScope()
        self._engine_scope: anyio.CancelScope | None = None
        self._stopping = anyio.Event()
        self._hard_stop = False

    # -- control -----------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def in_flight_batches(self) -> int:
        """Batches read but not yet acknowledged by the sink."""
        return self._committer.pending

    def request_stop(self, *, immediate: bool) -> None:
        """First call: stop reading and drain. A second call, or ``immediate``: cancel now."""
        if immediate or self._stopping.is_set():
            self._hard_stop = True
            if self._engine_scope is not None:
                self._engine_scope.cancel()
        self._stopping.set()
        self._read_scope.cancel()

    async def run(self) -> None:
        start = await self._committer.resume()
        self._log.info(
            "starting",
            source=self._source.name,
            sink=self._sink.name,
            resume_after=start,
            max_records_in_flight=self._settings.max_records_in_flight,
        )
        async with anyio.create_task_group() as tg:
            self._engine_scope = tg.cancel_scope
            if self._hard_stop:
                tg.cancel_scope.cancel()
            tg.start_soon(self._supervise)
            await self._run_stages(start)
            tg.cancel_scope.cancel()
        if self._hard_stop:
            self._stats.record_stopped_early()
            self._log.warning(
                "stopped before draining", unacknowledged_batches=self._committer.pending
            )
        self._log.info("finished", position=self._stats.position, **self._stats.as_dict())

    # -- wiring ------------------------------------------------------------

    async def _run_stages(self, start: Position) -> None:
        size = self._settings.queue_size
        async with anyio.create_task_group() as stages:
            chunk_send, chunk_recv = anyio.create_memory_object_stream[Chunk[Any]](size)
            send, recv = anyio.create_memory_object_stream[AnyBatch](size)
            stages.start_soon(self._read, self._batcher.inlet(chunk_send, send, start), start)
            stages.start_soon(self._batcher.run, chunk_recv, send)
            for transform in self._transforms:
                send, next_recv = anyio.create_memory_object_stream[AnyBatch](size)
                stages.start_soon(TransformStage(transform, self._rejects).run, recv, send)
                recv = next_recv
            stages.start_soon(self._write_and_commit, recv)

    async def _supervise(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._grace_timer)
            tg.start_soon(self._summaries)
            if self._settings.stop_when_idle is not None:
                tg.start_soon(self._idle_watch, self._settings.stop_when_idle)

    async def _grace_timer(self) -> None:
        await self._stopping.wait()
        self._log.info("stopping", grace_period=self._settings.grace_period)
        await anyio.sleep(self._settings.grace_period)
        self._log.warning("grace period over; cancelling in-flight batches")
        self.request_stop(immediate=True)

    async def _summaries(self) -> None:
        stats = self._stats
        while True:
            await anyio.sleep(self._settings.summary_interval)
            elapsed = max(stats.elapsed, 1e-9)
            self._log.info(
                "progress",
                position=stats.position,
                records_per_s=round(stats.records_in / elapsed),
                **stats.as_dict(),
            )

    async def _idle_watch(self, idle: float) -> None:
        """Stop once the source was quiet for ``idle`` seconds, nothing is in flight, and
        everything the upstream held when the quiet began is acknowledged."""
        stats = self._stats
        mark: object = _NO_MARK
        while True:
            await anyio.sleep(min(0.05, idle / 4))
            quiet = time.monotonic() - (stats.read_at or stats.started_at)
            if quiet < idle or self._batcher.holding or self._committer.pending:
                mark = _NO_MARK  # records came: the upstream's end is asked afresh
                continue
            if mark is _NO_MARK:
                mark = await self._upstream_end()
            if mark is not _NO_MARK and self._source.confirmed_through(mark):
                self._log.info("idle; stopping", idle_s=round(quiet, 3))
                self.request_stop(immediate=False)
                return
            if quiet >= idle + _CONFIRM_WAIT:  # never wait for ever on an upstream's word
                self._log.warning(
                    "idle; stopping before the source confirmed its upstream's end",
                    idle_s=round(quiet, 3),
                )
                self.request_stop(immediate=False)
                return

    async def _upstream_end(self) -> object:
        try:
            return await self._source.upstream_end()
        except AsyncetlError as exc:  # asked again on the next turn
            self._log.warning("cannot tell where the source's upstream ends", error=str(exc))
            return _NO_MARK

    # -- the reader and the sink stage -------------------------------------

    async def _read(self, inlet: Inlet, after: Position) -> None:
        source = self._source
        async with inlet:
            with self._read_scope:
                try:
                    await source.produce(after, inlet, max_chunk=self._settings.max_batch_size)
                except Exception as exc:
                    raise StageError(source.name, inlet.last_position, exc, reading=True) from exc

    async def _write_and_commit(self, recv: MemoryObjectReceiveStream[AnyBatch]) -> None:
        async with recv:
            while True:
                try:
                    batch = await _handoff.receive(recv)
                except anyio.EndOfStream:
                    return
                await self._write(batch)
                await self._committer.commit(batch)
                # Dropped now, not when the next batch arrives: its records are freed
                # as soon as nothing else holds them, while still warm in the CPU cache.
                del batch

    async def _write(self, batch: AnyBatch) -> None:
        """Write ``batch`` and store its dead letters, all before its checkpoint can move."""
        sink = self._sink
        try:
            if self._committer.transactional:
                rejects = await self._committer.write_with_checkpoint(
                    batch, partial(self._settle, batch)
                )
            else:
                rejects = await sink.write(batch) if batch.records else ()
        except StageError:
            raise
        except Exception as exc:
            raise StageError(sink.name, batch.position, exc) from exc
        finally:
            settled = self._settled.pop(batch.seq, None)
        if settled is None:
            # Not transactional, or a writer that never settles: after the write, as ever.
            settled = self._letters(batch, rejects)
            await self._rejects.store(settled, batch.position)
        self._rejects.forget(batch.seq)
        # Stored by now: by the engine, or by the writer in the transaction that committed.
        self._rejects.stored(settled)
        self._stats.record_written(len(batch.records) - len(rejects))

    async def _settle(self, batch: AnyBatch, rejects: Sequence[Reject]) -> Sequence[DeadLetter]:
        """Apply the sink's policy to ``rejects`` before the batch's transaction commits.

        A writer retrying its transaction settles again (with the records refused then).

        :returns: the batch's letters, when the writer stores them in its transaction.
        """
        letters = self._letters(batch, rejects)
        self._settled[batch.seq] = letters
        if self._committer.letters_in_transaction:
            return letters
        await self._rejects.store(letters, batch.position)
        return ()

    def _letters(self, batch: AnyBatch, rejects: Sequence[Reject]) -> list[DeadLetter]:
        return self._rejects.settle(
            batch.seq, self._sink.name, self._settings.sink_errors, rejects, batch.position
        )
