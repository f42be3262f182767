"""The backfill runner: claim partitions, run them N at a time, record every outcome.

One :class:`Backfill` is one worker. It registers the run's partitions in the
store, then claims them one by one as an anyio :class:`~anyio.CapacityLimiter`
of ``parallel`` tokens frees up, so no more than ``parallel`` partitions ever run
at once here. Several workers (processes, machines) pointed at one store share
the backfill: each claims what is pending, renews its leases while working, and
takes over partitions whose worker died once their leases expire.

A partition's job is retried with exponential backoff and full jitter
(``backoff``), up to ``max_tries`` tries; a :class:`PermanentError` or
:class:`ConfigError` is not retried. One failing partition never stops the
others.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from asyncetl.backfill.partitions import Order, Partition
from asyncetl.backfill.progress import BackfillStats, NoProgress, ProgressReporter
from asyncetl.backfill.store import BackfillStore, Outcome, PartitionState, Reset, Scope
from asyncetl.core.errors import AsyncetlError, ConfigError
from asyncetl.core.logs import get_logger
from asyncetl.core.settings_check import positive_int
from asyncetl.core.tries import describe_error, run_tries

__all__ = ["Backfill", "BackfillResult", "PartitionJob", "default_worker_id"]

_log = get_logger("asyncetl.backfill")


class PartitionJob(Protocol):
    """The user's work for one partition; must be idempotent (replace or upsert)."""

    def __call__(self, partition: Partition, /) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """How a backfill ended, from the store's point of view.

    :param states: every partition of the run, oldest first.
    :param stopped: a stop was requested before every partition finished.
    :param ran_here: partitions this worker finished (succeeded or failed).
    """

    name: str
    states: list[PartitionState]
    stopped: bool
    ran_here: int
    elapsed: float

    def with_status(self, status: str) -> list[PartitionState]:
        """The partitions with ``status``."""
        return [state for state in self.states if state.status == status]

    @property
    def ok(self) -> bool:
        """Whether every partition succeeded."""
        return all(state.status == "succeeded" for state in self.states)


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in the store."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Backfill:
    """Runs ``job`` once per partition, resumably, ``parallel`` at a time.

    :param name: identifies the backfill in the store; partitions of runs with
        the same name and key are the same partition.
    :param partitions: the run's partitions, all of one kind (see
        :mod:`asyncetl.backfill.partitions`).
    :param job: awaited with each partition.
    :param store: where statuses live; opened and closed by :meth:`run`.
    :param parallel: partitions running at once in this worker.
    :param order: ``oldest`` or ``newest`` first.
    :param max_tries: tries per partition, the first included.
    :param retry_base_delay: first backoff ceiling in seconds; doubles per try.
    :param retry_max_delay: cap on one backoff wait.
    :param retry_max_time: seconds after a partition's first try past which no retry starts.
    :param timeout: seconds one try may take before it is cancelled (and retried).
    :param reset: ``none`` runs pending partitions only; ``failed`` also re-runs
        failed ones; ``all`` re-runs every partition, succeeded included.
    :param lease: seconds a claim lasts unless renewed; renewed every third of it.
    :param grace_period: after a stop, seconds running partitions may take to
        finish before they are cancelled and handed back as pending.
    :param worker: this worker's id in the store (default: host, pid, random).
    :param progress: told about progress (default: nothing).
    """

    def __init__(
        self,
        name: str,
        partitions: Sequence[Partition],
        job: PartitionJob,
        store: BackfillStore,
        *,
        parallel: int = 4,
        order: Order = "oldest",
        max_tries: int = 3,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 60.0,
        retry_max_time: float = 600.0,
        timeout: float | None = None,
        reset: Reset = "none",
        lease: float = 60.0,
        grace_period: float = 30.0,
        worker: str | None = None,
        progress: ProgressReporter | None = None,
    ) -> None:
        self.name = name
        self.partitions = {p.key: p for p in partitions}
        self.job = job
        self.store = store
        self.parallel = parallel
        self.order = order
        self.max_tries = max_tries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.retry_max_time = retry_max_time
        self.timeout = timeout
        self.reset = reset
        self.lease = lease
        self.grace_period = grace_period
        self.worker = worker or default_worker_id()
        self.progress: ProgressReporter = progress or NoProgress()
        _validate(self, partitions)
        self.scope = Scope.of(partitions)
        self.stats = BackfillStats(name)
        self._running: dict[str, anyio.CancelScope] = {}
        self._stopping = anyio.Event()
        self._finished_one = anyio.Event()
        self._waiting: anyio.CancelScope | None = None
        self._stopped = False

    # -- control -------------------------------------------------------------

    def stop(self, *, immediate: bool = False) -> None:
        """Claim nothing more; running partitions get ``grace_period`` to finish.

        A second call, or ``immediate``, cancels running partitions now; they
        are recorded as pending, so the next run takes them again.
        """
        if immediate or self._stopping.is_set():
            for scope in self._running.values():
                scope.cancel()
        self._stopped = True
        self._stopping.set()
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self) -> BackfillResult:
        """Run every claimable partition; return when none is pending or running any more.

        Waits for partitions that other workers hold, so that a dead worker's
        partitions are taken over when their leases expire. Cancelling the
        caller hands running partitions back as pending.

        :raises AsyncetlError: when the store cannot be opened or used.
        """
        started = time.monotonic()
        await self.store.open()
        try:
            await self.store.register(self.name, list(self.partitions.values()), self.reset)
            await self._refresh()
            try:
                await self._run_all()
            except BaseExceptionGroup as group:
                raise _single(group) from None
            states = await self.store.states(self.name, self.scope)
        finally:
            self.progress.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.store.aclose()
        return BackfillResult(
            self.name, states, self._stopped, self.stats.finished_here, time.monotonic() - started
        )

    async def _run_all(self) -> None:
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(self._renew_leases)
            helpers.start_soon(self._tick)
            helpers.start_soon(self._grace_timer)
            async with anyio.create_task_group() as work:
                await self._dispatch(work)
            helpers.cancel_scope.cancel()

    # -- claiming ------------------------------------------------------------

    async def _dispatch(self, work: TaskGroup) -> None:
        limiter = anyio.CapacityLimiter(self.parallel)
        while not self._stopping.is_set():
            token = object()
            if not await self._until_stopped(limiter.acquire_on_behalf_of(token)):
                break
            key = await self._claim()
            if key is not None:
                self._running[key] = anyio.CancelScope()  # before the task starts: see _next_look
                work.start_soon(self._run_partition, self.partitions[key], limiter, token)
                continue
            limiter.release_on_behalf_of(token)
            finished = self._finished_one
            wait = await self._next_look()
            if wait is None and not self._running:
                break
            # Ours may yet lose their leases to others: look again when one finishes.
            waiting = finished.wait() if wait is None else anyio.sleep(wait)
            if not await self._until_stopped(waiting):
                break

    async def _until_stopped(self, waiting: Awaitable[None]) -> bool:
        """Await ``waiting`` unless a stop comes first; ``False`` when it did."""
        with anyio.CancelScope() as scope:
            self._waiting = scope
            if self._stopping.is_set():
                scope.cancel()
            await waiting
        return not scope.cancel_called

    async def _claim(self) -> str | None:
        # Shielded: a claim committed in the store must be known here, or the
        # partition would look running until its lease expired.
        with anyio.CancelScope(shield=True):
            key = await self.store.claim(
                self.name,
                self.scope,
                worker=self.worker,
                lease=self.lease,
                newest_first=self.order == "newest",
            )
        if key is not None and self._stopping.is_set():
            await self._record(key, "pending", 0, None)
            return None
        return key

    async def _next_look(self) -> float | None:
        """Seconds until claiming may succeed again; ``None`` when only ours run, or none.

        Pending partitions left means another worker was claiming them just
        now: look again soon. Partitions that other workers run may come back
        when those workers die and their leases expire: keep polling.
        """
        states = await self.store.states(self.name, self.scope)
        self.stats.set_states(states)
        if any(state.status == "pending" for state in states):
            return 0.05
        others = [s for s in states if s.status == "running" and s.key not in self._running]
        return min(self.lease / 4, 0.5) if others else None

    # -- running -------------------------------------------------------------

    async def _run_partition(
        self, partition: Partition, limiter: anyio.CapacityLimiter, token: object
    ) -> None:
        scope = self._running[partition.key]
        self.stats.moved("pending", "running")
        started = time.monotonic()
        tries = [0]  # counts every try started, an interrupted one included
        error: str | None = None
        outcome: Outcome = "pending"
        try:
            with scope:
                error = await self._tries(partition, tries)
                outcome = "succeeded" if error is None else "failed"
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    await self._record(partition.key, outcome, tries[0], error)
            finally:
                del self._running[partition.key]  # only now: the store no longer says running
                limiter.release_on_behalf_of(token)
                self._finished_one.set()
                self._finished_one = anyio.Event()
        self.progress.finished(partition.key, outcome, time.monotonic() - started, error)

    async def _tries(self, partition: Partition, tries: list[int]) -> str | None:
        async def job() -> None:
            tries[0] += 1
            await self.job(partition)

        log = _log.bind(backfill=self.name, partition=partition.key)
        return await run_tries(job, self, noun="partition", log=log)

    async def _record(self, key: str, outcome: Outcome, tries: int, error: str | None) -> None:
        held = await self.store.finish(
            self.name, key, worker=self.worker, outcome=outcome, tries=tries, error=error
        )
        if not held:
            _log.warning(
                "lost the lease before finishing; another worker took the partition over",
                backfill=self.name,
                partition=key,
                outcome=outcome,
            )
            return
        self.stats.moved("running", outcome)
        if outcome != "pending":
            self.stats.finished_here += 1
        self.progress.update(self.stats)

    # -- helpers -------------------------------------------------------------

    async def _renew_leases(self) -> None:
        renewed = time.monotonic()
        while True:
            await anyio.sleep(self.lease / 3)
            keys = list(self._running)
            if not keys:
                renewed = time.monotonic()
                continue
            try:
                held = await self.store.renew(self.name, keys, worker=self.worker, lease=self.lease)
            except Exception as exc:
                _log.warning("cannot renew leases", backfill=self.name, error=_describe(exc))
                if time.monotonic() - renewed > self.lease * 0.8:
                    self._drop_lost(set(keys))  # our leases may be gone: another may take over
                continue
            renewed = time.monotonic()
            self._drop_lost(set(keys) - held)

    def _drop_lost(self, lost: set[str]) -> None:
        for key in lost:
            scope = self._running.get(key)
            if scope is not None:
                _log.warning(
                    "lease lost; cancelling the partition", backfill=self.name, partition=key
                )
                scope.cancel()

    async def _tick(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await anyio.sleep(0.5)
            if time.monotonic() - last_refresh >= 5.0:
                last_refresh = time.monotonic()
                try:
                    await self._refresh()
                except Exception as exc:  # progress only: the next look may work
                    _log.warning("cannot read progress", backfill=self.name, error=_describe(exc))
            self.progress.update(self.stats)

    async def _refresh(self) -> None:
        self.stats.set_states(await self.store.states(self.name, self.scope))
        self.progress.update(self.stats)

    async def _grace_timer(self) -> None:
        await self._stopping.wait()
        if self._running:
            _log.info(
                "stopping; waiting for running partitions",
                backfill=self.name,
                running=len(self._running),
                grace_period=self.grace_period,
            )
        await anyio.sleep(self.grace_period)
        if self._running:
            _log.warning("grace period over; cancelling running partitions", backfill=self.name)
        self.stop(immediate=True)


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first asyncetl error in ``group`` (a store failure), else the first error at all."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    ours = [exc for exc in leaves if isinstance(exc, AsyncetlError)]
    return (ours or leaves)[0]


def _describe(exc: BaseException) -> str:
    return describe_error(exc, "partition")


def _validate(backfill: Backfill, partitions: Sequence[Partition]) -> None:
    where = f"backfill {backfill.name}"
    if not partitions:
        raise ConfigError("there are no partitions to run", where=where)
    if len({p.kind for p in partitions}) != 1:
        raise ConfigError("partitions of one run must all be of one kind", where=where)
    if len(backfill.partitions) != len(partitions):
        raise ConfigError("partition keys must be unique", where=where)
    for key in ("parallel", "max_tries"):
        positive_int(getattr(backfill, key), where, key)
    for key in ("lease", "grace_period", "retry_base_delay", "retry_max_delay", "retry_max_time"):
        value = getattr(backfill, key)
        if not isinstance(value, int | float) or not value > 0:
            raise ConfigError(
                f"must be a positive number of seconds, not {value!r}", where=where, key=key
            )
    if backfill.order not in ("oldest", "newest"):
        raise ConfigError(
            f"must be oldest or newest, not {backfill.order!r}", where=where, key="order"
        )
    if backfill.reset not in ("none", "failed", "all"):
        raise ConfigError(
            f"must be none, failed or all, not {backfill.reset!r}", where=where, key="reset"
        )
