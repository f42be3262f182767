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
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncetl.core import _handoff
from asyncetl.core._batcher import Batcher, Inlet
from asyncetl.core._committer import Committer
from asyncetl.core._meter import Sampler, StageMeter, metering
from asyncetl.core._rejects import RejectHandler
from asyncetl.core._settings import RunSettings
from asyncetl.core._stats import RunStats
from asyncetl.core._tracing import BatchTracer, TraceBatches
from asyncetl.core._transforming import TransformStage
from asyncetl.core.batch import Batch, Chunk, Position, Reject
from asyncetl.core.errors import AsyncetlError, StageError, blame
from asyncetl.core.interfaces import CheckpointStore, DeadLetter, DeadLetterStore, Sink, Source
from asyncetl.core.logs import get_logger
from asyncetl.core.observe import PartProgress, QueueFill, StageView
from asyncetl.core.transforms import Transform

__all__ = ["StageRunner"]

AnyBatch = Batch[Any]


_NO_MARK: Final = object()
#: Seconds an idle run waits at most for its source to confirm its upstream's end
#: without the source confirming anything new (a commit) meanwhile.
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
        trace: TraceBatches | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._transforms = transforms
        self._sink = sink
        self._stats = stats
        self._log = get_logger("asyncetl").bind(pipeline=settings.name)
        self._meters = [
            StageMeter(source.name, "source"),
            *(StageMeter(t.name, "transform") for t in transforms),
            StageMeter(sink.name, "sink"),
        ]
        self._sampler = Sampler(self._meters)
        #: Held by the sink stage while a sink that writes alone writes.
        self._gate = _handoff.WriteGate() if sink.writes_alone else None
        self._tracer = BatchTracer(settings.name, trace) if trace is not None else None
        #: The stream into each stage after the source, once wired.
        self._queues: list[MemoryObjectSendStream[AnyBatch]] = []
        self._rejects = RejectHandler(
            settings.name, dead_letters, stats, self._log, {m.name: m for m in self._meters}
        )
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
            meter=self._meters[0],
            tracer=self._tracer,
            gate=self._gate,
        )
        #: The letters of batches whose writer settled (by sequence number): the
        #: ones it stores in its transaction, counted once that commits.
        self._settled: dict[int, Sequence[DeadLetter]] = {}
        self._read_scope = anyio.CancelScope()
        #: The sink stage's wait for its next batch while its sink holds some (see _flush_now).
        self._sink_wait: anyio.CancelScope | None = None
        self._engine_scope: anyio.CancelScope | None = None
        self._stopping = anyio.Event()
        self._hard_stop = False
        #: Whether the source (and every other resource) is open and the run has begun.
        self.connected = False
        #: the source's failure, raised once what it read before failing is committed
        self._read_error: StageError | None = None

    # -- control -----------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def in_flight_batches(self) -> int:
        """Batches read but not yet acknowledged by the sink."""
        return self._committer.pending

    # -- watching ------------------------------------------------------------

    def stages(self) -> list[StageView]:
        """Each stage's counters and recent rate, source first."""
        rates = self._sampler.stage_rates()
        pairs = zip(self._meters, rates, strict=True)
        return [meter.view(round(rate, 1)) for meter, rate in pairs]

    def queues(self) -> list[QueueFill]:
        """The queues between consecutive stages and how full each is now."""
        names = [meter.name for meter in self._meters]
        fills = []
        for index, stream in enumerate(self._queues):
            stats = stream.statistics()
            capacity = int(stats.max_buffer_size)
            fills.append(
                QueueFill(names[index], names[index + 1], stats.current_buffer_used, capacity)
            )
        return fills

    def progress(self) -> list[PartProgress]:
        """The source's progress per part, with recent rates and times left."""
        return self._sampler.progress(self._source.progress())

    def history(self) -> list[float]:
        """Records per second into the sink, one a second, oldest first."""
        return self._sampler.history(len(self._meters) - 1)

    @property
    def stalled_s(self) -> float:
        """Seconds batches have waited without a commit; ``0`` while none waits."""
        since = self._committer.waiting_since
        return 0.0 if since is None else round(time.monotonic() - since, 3)

    @property
    def latest_dead_letters(self) -> list[DeadLetter]:
        return list(self._rejects.latest)

    def request_stop(self, *, immediate: bool) -> None:
        """First call: stop reading and drain. A second call, or ``immediate``: cancel now."""
        if immediate or self._stopping.is_set():
            self._hard_stop = True
            if self._engine_scope is not None:
                self._engine_scope.cancel()
        self._stopping.set()
        self._read_scope.cancel()

    async def run(self) -> None:
        self.connected = True
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
        if self._read_error is not None:
            raise self._read_error
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
            self._queues.append(send)
            stages.start_soon(self._read, self._batcher.inlet(chunk_send, send, start), start)
            stages.start_soon(self._batcher.run, chunk_recv, send)
            for index, transform in enumerate(self._transforms, start=1):
                send, next_recv = anyio.create_memory_object_stream[AnyBatch](size)
                self._queues.append(send)
                meter = self._meters[index]
                stage = TransformStage(
                    transform, self._rejects, meter, self._tracer, gate=self._gate
                )
                stages.start_soon(stage.run, recv, send)
                recv = next_recv
            stages.start_soon(self._write_and_commit, recv)

    async def _supervise(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._grace_timer)
            tg.start_soon(self._sample)
            if self._settings.log_progress:
                tg.start_soon(self._summaries)
            if self._settings.stop_when_idle is not None:
                tg.start_soon(self._idle_watch, self._settings.stop_when_idle)

    async def _grace_timer(self) -> None:
        await self._stopping.wait()
        self._log.info("stopping", grace_period=self._settings.grace_period)
        await anyio.sleep(self._settings.grace_period)
        self._log.warning("grace period over; cancelling in-flight batches")
        self.request_stop(immediate=True)

    async def _sample(self) -> None:
        while True:
            await anyio.sleep(1.0)
            self._sampler.sample(self._source.progress())

    async def _summaries(self) -> None:
        stats = self._stats
        while True:
            await anyio.sleep(self._settings.summary_interval)
            self._log.info(
                "progress",
                position=stats.position,
                records_per_s=round(self.stages()[0].per_s),
                **stats.as_dict(),
            )
            for part in self.progress():
                self._log.info("progress", **progress_fields(part))

    async def _idle_watch(self, idle: float) -> None:
        """Stop once the source was quiet for ``idle`` seconds, nothing is in flight, and
        everything the upstream held when the quiet began is acknowledged."""
        stats = self._stats
        mark: object = _NO_MARK
        told = False  # whether this quiet spell's "cannot tell" was logged
        # The last sign of progress while the source confirms: (commits, when seen).
        progress = (-1, 0.0)
        while True:
            await anyio.sleep(min(0.05, idle / 4))
            now = time.monotonic()
            quiet = now - (stats.read_at or stats.started_at)
            if quiet < idle:
                mark, told = _NO_MARK, False  # records came: the end is asked afresh
                continue
            in_flight = self._batcher.holding or self._committer.pending
            if self._sink.flush_deadline() is not None and not in_flight:
                self._flush_now()  # a sink that gathers for a later commit: that is now
                continue
            if mark is _NO_MARK:
                if in_flight:
                    continue  # the last records are still on their way
                mark = await self._upstream_end(quietly=told)
                told = True
            # Heartbeats (a position moving without records) keep the mark: they are how
            # a source confirms an end past WAL or offsets that carried no records for it.
            if mark is not _NO_MARK and self._source.confirmed_through(mark):
                self._log.info("idle; stopping", idle_s=round(quiet, 3))
                self.request_stop(immediate=False)
                return
            if stats.batches_committed != progress[0]:
                progress = (stats.batches_committed, now)
            elif now - progress[1] >= _CONFIRM_WAIT:  # never wait for ever on its word
                self._log.warning(
                    "idle; stopping before the source confirmed its upstream's end",
                    idle_s=round(quiet, 3),
                )
                self.request_stop(immediate=False)
                return

    def _flush_now(self) -> None:
        """Have the sink stage flush what its sink holds now, not at its deadline."""
        if self._sink_wait is not None:
            self._sink_wait.cancel()

    async def _upstream_end(self, *, quietly: bool) -> object:
        try:
            return await self._source.upstream_end()
        except AsyncetlError as exc:  # asked again on the next turn, said once a spell
            if not quietly:
                self._log.info("cannot tell yet where the source's upstream ends", error=str(exc))
            return _NO_MARK

    # -- the reader and the sink stage -------------------------------------

    async def _read(self, inlet: Inlet, after: Position) -> None:
        source = self._source
        async with inlet:
            with self._read_scope, metering(self._meters[0]):
                try:
                    await source.produce(after, inlet, max_chunk=self._settings.max_batch_size)
                except Exception as exc:
                    self._meters[0].record_error(type(exc).__name__)
                    blame(exc, "source")
                    self._drain_after_read_failure(
                        StageError(source.name, inlet.last_position, exc, reading=True), exc
                    )

    def _drain_after_read_failure(self, error: StageError, cause: Exception) -> None:
        """Stop as gracefully as on a signal, then fail with ``error``.

        What the source read before it failed still reaches the sink and is
        committed (within the grace period), so a rerun resumes after it instead
        of writing it a second time into a sink that cannot tell.
        """
        error.__cause__ = cause
        self._read_error = error
        self._log.warning("source failed; committing what it read first", stage=error.stage)
        self.request_stop(immediate=False)

    async def _write_and_commit(self, recv: MemoryObjectReceiveStream[AnyBatch]) -> None:
        async with recv:
            with metering(self._meters[-1]):
                await self._write_all(recv)

    async def _write_all(self, recv: MemoryObjectReceiveStream[AnyBatch]) -> None:
        while True:
            try:
                batch = await self._next_for_sink(recv)
            except anyio.EndOfStream:
                await self._flush_sink()
                return
            if batch is None:  # the sink's deadline passed with nothing new
                await self._flush_sink()
                continue
            await self._write_gated(batch)
            self._committer.ack(batch)
            if self._sink.flush_deadline() is None:
                await self._committer.publish()
            if self._tracer is not None:
                self._tracer.committed(batch.seq)
            # Dropped now, not when the next batch arrives: its records are freed
            # as soon as nothing else holds them, while still warm in the CPU cache.
            del batch

    async def _next_for_sink(self, recv: MemoryObjectReceiveStream[AnyBatch]) -> AnyBatch | None:
        """The next batch, or ``None`` when the sink's flush deadline comes first."""
        deadline = self._sink.flush_deadline()
        if deadline is None:
            return await _handoff.receive(recv)
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as self._sink_wait:
            try:
                return await _handoff.receive(recv)
            finally:
                self._sink_wait = None
        return None

    async def _flush_sink(self) -> None:
        """Have a sink that holds batches make them durable, then commit them."""
        if self._sink.flush_deadline() is not None:
            try:
                await self._sink.flush()
            except StageError:
                raise
            except Exception as exc:
                self._meters[-1].record_error(type(exc).__name__)
                raise StageError(self._sink.name, self._committer.position, exc) from exc
        await self._committer.publish()

    async def _write_gated(self, batch: AnyBatch) -> None:
        gate = self._gate
        if gate is None:
            await self._write(batch)
            return
        await gate.close()
        try:
            await self._write(batch)
        finally:
            gate.open()

    async def _write(self, batch: AnyBatch) -> None:
        """Write ``batch`` and store its dead letters, all before its checkpoint can move."""
        sink = self._sink
        start_ns = time.time_ns() if self._tracer is not None else 0
        started = time.perf_counter()
        unchanged_before = sink.unchanged
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
            self._meters[-1].record_error(type(exc).__name__)
            blame(exc, "sink")
            raise StageError(sink.name, batch.position, exc) from exc
        finally:
            settled = self._settled.pop(batch.seq, None)
        seconds = time.perf_counter() - started
        if settled is None:
            # Not transactional, or a writer that never settles: after the write, as ever.
            settled = self._letters(batch, rejects)
            await self._rejects.store(settled, batch.position)
        self._rejects.forget(batch.seq)
        # Stored by now: by the engine, or by the writer in the transaction that committed.
        self._rejects.stored(settled)
        written = len(batch.records) - len(rejects)
        self._stats.record_written(written, unchanged=sink.unchanged - unchanged_before)
        self._meters[-1].record_batch(len(batch.records), written, seconds)
        if self._tracer is not None:
            self._tracer.stage(batch.seq, self._meters[-1], start_ns, len(batch.records), written)

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


def progress_fields(part: PartProgress) -> dict[str, object]:
    """One part's progress as log fields: done of total, percent, rate and time left."""
    fields: dict[str, object] = {"done": part.done, "total": part.total, "unit": part.unit}
    if part.part:
        fields = {"part": part.part, **fields}
    fraction = part.fraction
    fields["percent"] = None if fraction is None else round(100 * fraction, 1)
    fields["per_s"] = part.per_s
    fields["eta_s"] = part.eta_s
    return fields
