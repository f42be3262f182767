"""The pipeline: source → transforms → sink as stages in one task group.

Stages are joined by memory object streams of ``queue_size`` batches, so at most
about ``queue_size × max_batch_size × (stages + 1)`` records are in flight
whatever the volume (see :attr:`Pipeline.max_records_in_flight`). The sink
returning from ``write`` is the acknowledgement; the checkpoint then commits the
low watermark, and only after that does the source get its upstream
acknowledgement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal

import anyio
import anyio.lowlevel

from asyncetl.core._meter import StageMeter
from asyncetl.core._settings import RunSettings
from asyncetl.core._stages import StageRunner
from asyncetl.core._stats import RunStats
from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError, blame
from asyncetl.core.interfaces import (
    CheckpointStore,
    DeadLetterStore,
    FailurePolicy,
    Resource,
    Sink,
    Source,
)
from asyncetl.core.memory import MemoryCheckpointStore
from asyncetl.core.observe import BatchTrace, Observation, StageView
from asyncetl.core.runtime import collector_eased
from asyncetl.core.transforms import Transform

__all__ = ["Pipeline", "RunStats"]


class Pipeline:
    """A source, transforms and a sink, with checkpoints and dead letters.

    :param name: identifies the pipeline in checkpoints, dead letters and logs.
    :param checkpoints: where committed positions live (default: in memory, the
        latest position only).
    :param dead_letters: where rejected records go; required for any
        ``dead_letter`` failure policy.
    :param max_batch_size: a batch closes at this many records…
    :param max_batch_age: …or this many seconds after its first record, whichever first.
    :param queue_size: batches each queue between stages holds. Two keep a slow
        stage fed (one batch waits while the next is made) without holding more
        records alive than that: with four, a JSON lines file fsynced per batch
        peaked 3 MiB higher for no gain in speed, and the collector walked the extra
        records on every pass.
    :param source_errors: policy for records the source cannot decode.
    :param sink_errors: policy for records the target refuses.
    :param grace_period: seconds a graceful stop may spend draining before it cancels.
    :param stop_when_idle: stop once the source had nothing new for this many
        seconds, everything read is committed, and the source confirmed its
        upstream's end as it stood then (:meth:`Source.upstream_end`).
    :param summary_interval: seconds between progress lines at info level; to
        silence them, log at ``warning`` (a zero interval would log without pause).
    :param log_progress: whether to log those lines at all (off where something
        else shows the progress, such as a live display).

    :ivar trace_batches: ``None``, or a callable the engine calls with each
        batch's :class:`BatchTrace` once it is committed (its making, each
        stage's work on it, its commit), for tracing; the engine records those
        timings only while it is set. Set it before :meth:`run`.
    """

    def __init__(
        self,
        name: str,
        source: Source[Any],
        sink: Sink[Any],
        transforms: Sequence[Transform] = (),
        *,
        checkpoints: CheckpointStore | None = None,
        dead_letters: DeadLetterStore | None = None,
        max_batch_size: int = 1000,
        max_batch_age: float = 1.0,
        queue_size: int = 2,
        source_errors: FailurePolicy = "fail",
        sink_errors: FailurePolicy = "fail",
        grace_period: float = 30.0,
        stop_when_idle: float | None = None,
        summary_interval: float = 10.0,
        log_progress: bool = True,
    ) -> None:
        self.name = name
        self.source = source
        self.sink = sink
        self.transforms = list(transforms)
        # The default keeps the latest positions only: a pipeline may run for weeks.
        self.checkpoints = checkpoints or MemoryCheckpointStore(keep_history=False)
        self.dead_letters = dead_letters
        self.max_batch_size = max_batch_size
        self.max_batch_age = max_batch_age
        self.queue_size = queue_size
        self.source_errors = source_errors
        self.sink_errors = sink_errors
        self.grace_period = grace_period
        self.stop_when_idle = stop_when_idle
        self.summary_interval = summary_interval
        self.log_progress = log_progress
        self.trace_batches: Callable[[BatchTrace], None] | None = None
        self._validate()
        self.stats = RunStats()
        self._runner: StageRunner | None = None
        self._watched: StageRunner | None = None  # the running or last run's

    @property
    def max_records_in_flight(self) -> int:
        """Upper bound on records held between stages: queues × capacity × batch size."""
        queues = len(self.transforms) + 2
        workers = sum(t.workers for t in self.transforms)
        return (queues * self.queue_size + workers + 2) * self.max_batch_size

    async def run(self) -> RunStats:
        """Run until the source is exhausted, :meth:`stop` is called, or a stage fails.

        Cancelling the task that awaits this is a graceful stop: reading stops,
        in-flight batches drain through the sink within ``grace_period``, their
        positions are committed, and the cancellation then propagates.

        :raises StageError: a stage failed; nothing past the last acknowledged batch was committed.
        :raises AsyncetlError: a resource could not be opened or a checkpoint read.
        """
        self.stats = RunStats()
        runner = self._runner = self._watched = self._make_runner(self.stats)
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(_stop_on_cancel, runner)
                # The engine runs shielded so that an outside cancellation becomes a
                # graceful stop (see _stop_on_cancel) instead of abandoning batches.
                with anyio.CancelScope(shield=True):
                    await _run_opened(self._resources(), runner)
                outer.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            failure = _single(group)
            if failure is group:
                raise
        finally:
            self.stats.record_finish()
            self._runner = None
        if failure is not None:
            # Raised outside the handler so the error keeps its own cause chain.
            raise failure
        # If the caller's scope was cancelled while the engine drained under its
        # shield, this is where that cancellation reaches the caller.
        await anyio.lowlevel.checkpoint()
        return self.stats

    @property
    def state(self) -> Literal["idle", "running", "stopping"]:
        """``running`` while :meth:`run` is reading, ``stopping`` while it drains."""
        if self._runner is None:
            return "idle"
        return "stopping" if self._runner.stopping else "running"

    @property
    def in_flight_batches(self) -> int:
        """Batches read but not yet acknowledged by the sink."""
        return self._runner.in_flight_batches if self._runner is not None else 0

    def observe(self) -> Observation:
        """The pipeline seen now: stages, queues, progress, lag and recent throughput.

        A question only, without I/O (the source's lag is what it last measured):
        cheap enough to ask every second. After a run it shows that run's figures.
        """
        runner, running, stats = self._watched, self._runner, self.stats
        stages = runner.stages() if runner is not None else self._unrun_stages()
        committed = stats.committed_at
        return Observation(
            pipeline=self.name,
            state=self.state,
            elapsed_s=round(stats.elapsed, 3),
            records_per_s=stages[0].per_s,
            stages=stages,
            queues=runner.queues() if runner is not None else [],
            progress=runner.progress() if runner is not None else [],
            lag=list(self.source.upstream_lag()),
            history=runner.history() if runner is not None else [],
            seconds_since_commit=(
                None if committed is None else round(time.monotonic() - committed, 3)
            ),
            connected=running is not None and running.connected,
            stalled_s=running.stalled_s if running is not None else 0.0,
            dead_letters=runner.latest_dead_letters if runner is not None else [],
        )

    def _unrun_stages(self) -> list[StageView]:
        meters = [
            StageMeter(self.source.name, "source"),
            *(StageMeter(t.name, "transform") for t in self.transforms),
            StageMeter(self.sink.name, "sink"),
        ]
        return [meter.view(0.0) for meter in meters]

    def stop(self, *, immediate: bool = False) -> None:
        """Stop reading and drain in-flight batches; ``immediate`` cancels at once.

        Safe to call from any task of the same event loop, and when not running.
        """
        if self._runner is not None:
            self._runner.request_stop(immediate=immediate)

    def _make_runner(self, stats: RunStats) -> StageRunner:
        settings = RunSettings(
            name=self.name,
            max_batch_size=self.max_batch_size,
            max_batch_age=self.max_batch_age,
            queue_size=self.queue_size,
            source_errors=self.source_errors,
            sink_errors=self.sink_errors,
            grace_period=self.grace_period,
            stop_when_idle=self.stop_when_idle,
            summary_interval=self.summary_interval,
            max_records_in_flight=self.max_records_in_flight,
            log_progress=self.log_progress,
        )
        return StageRunner(
            settings,
            source=self.source,
            transforms=self.transforms,
            sink=self.sink,
            checkpoints=self.checkpoints,
            dead_letters=self.dead_letters,
            stats=stats,
            trace=self.trace_batches,
        )

    def _resources(self) -> list[tuple[str, Resource]]:
        """What a run opens first and closes last, in opening order, with the part each is."""
        resources: list[tuple[str, Resource]] = [
            ("checkpoints", self.checkpoints),
            ("source", self.source),
            ("sink", self.sink),
            *((f"transforms[{i}]", t) for i, t in enumerate(self.transforms)),
        ]
        if self.dead_letters is not None:
            resources.append(("dead_letters", self.dead_letters))
        return resources

    def _validate(self) -> None:
        where = f"pipeline {self.name}"
        for key in ("max_batch_size", "queue_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"must be a positive integer, not {value!r}", where=where, key=key
                )
        seconds = ["max_batch_age", "grace_period", "summary_interval"]
        if self.stop_when_idle is not None:
            seconds.append("stop_when_idle")
        for key in seconds:
            value = getattr(self, key)
            # `not value > 0` also refuses NaN, which every comparison calls false.
            if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
                raise ConfigError(
                    f"must be a positive number of seconds, not {value!r}", where=where, key=key
                )
        policies = [self.source_errors, self.sink_errors, *(t.on_error for t in self.transforms)]
        if "dead_letter" in policies and self.dead_letters is None:
            raise ConfigError(
                "a stage uses the dead_letter policy but no dead-letter store is configured",
                where=where,
                key="dead_letters",
            )
        names = [self.source.name, *(t.name for t in self.transforms), self.sink.name]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names must be unique, got {names}", where=where)


async def _run_opened(resources: Sequence[tuple[str, Resource]], runner: StageRunner) -> None:
    async with AsyncExitStack() as stack:
        for part, resource in resources:
            try:
                await resource.open()
            except PermanentError as exc:
                blame(exc, part)  # so that the key of a setting at fault can be named
                raise
            stack.push_async_callback(_aclose, resource)
        # Started up: what exists now lives as long as the run (see collector_eased).
        with collector_eased():
            await runner.run()


async def _aclose(resource: Resource) -> None:
    with anyio.move_on_after(10, shield=True):
        await resource.aclose()


async def _stop_on_cancel(runner: StageRunner) -> None:
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        runner.request_stop(immediate=False)
        raise


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one meaningful error of a task group, or the group when there are several."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [exc for exc in leaves if isinstance(exc, AsyncetlError)]
    if len(ours) == 1 or (ours and len(ours) == len(leaves)):
        return ours[0]
    return leaves[0] if len(leaves) == 1 else group
