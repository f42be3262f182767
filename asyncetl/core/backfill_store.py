"""Partitions and where their statuses live: the value type and the store interface.

A :class:`Partition` is one unit of a backfill, a half-open interval
``[start, end)`` of UTC datetimes or of integers. A :class:`BackfillStore` holds
one row per (backfill, partition key): its status, attempts, last error, start
and finish times, and while it runs the worker holding it and that worker's
lease. Workers *claim* a pending partition (or a running one whose lease
expired: its worker died), *renew* their leases while working, and *finish*
with an outcome. Every write names the worker, so a worker that lost its lease
cannot overwrite the outcome of the one that took over.

They live in core so that connectors can implement the store without depending
on :mod:`asyncetl.backfill`, which generates partitions and runs them.
Implementations: ``asyncetl.backfill.store.MemoryBackfillStore`` (tests,
embedding), ``asyncetl.connectors.sqlite.backfill_store`` (the default) and
``asyncetl.connectors.postgres.backfill_store`` (many workers on many machines).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeAlias

from asyncetl.core.interfaces import Resource

__all__ = [
    "RESETS",
    "STATUSES",
    "BackfillStore",
    "Outcome",
    "Partition",
    "PartitionState",
    "Reset",
    "Scope",
    "Status",
]

Status: TypeAlias = Literal["pending", "running", "succeeded", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "running", "succeeded", "failed")
#: How a partition leaves ``running``: done, given up on, or handed back (stopped).
Outcome: TypeAlias = Literal["succeeded", "failed", "pending"]
#: What a run resets to ``pending`` before it starts: nothing, failed partitions, or all.
Reset: TypeAlias = Literal["none", "failed", "all"]
#: The statuses each :data:`Reset` sets back to ``pending``; a ``running``
#: partition only once its lease expired (see :meth:`PartitionState.resettable`).
RESETS: Mapping[Reset, tuple[Status, ...]] = {
    "none": (),
    "failed": ("failed",),
    "all": ("failed", "succeeded", "running"),
}


@dataclass(frozen=True, slots=True)
class Partition:
    """One unit of a backfill: ``[start, end)`` of datetimes or integers.

    :param key: stable name, unique within a backfill: ``2024-01-31``,
        ``2024-01-31T05``, ``2024-01`` or ``1000..1999``.
    :param kind: ``hour``, ``day``, ``month`` or ``int:SIZE``; partitions of
        one backfill run share it.
    :param ordinal: sorts partitions in time (epoch seconds of the start, or the
        start integer); ``oldest``/``newest`` order follows it.
    """

    key: str
    kind: str
    ordinal: int
    start: datetime | int
    end: datetime | int

    @property
    def variables(self) -> dict[str, str]:
        """``PARTITION_KEY``, ``PARTITION_START`` and ``PARTITION_END`` (ISO 8601 or integers)."""
        return {
            "PARTITION_KEY": self.key,
            "PARTITION_START": _text(self.start),
            "PARTITION_END": _text(self.end),
        }

    def __str__(self) -> str:
        return self.key


def _text(value: datetime | int) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """The partitions of one run: one kind, ordinals ``first..last`` inclusive."""

    kind: str
    first: int
    last: int

    @classmethod
    def of(cls, partitions: Sequence[Partition]) -> Scope:
        """The scope covering ``partitions`` (non-empty, all of one kind)."""
        ordinals = [p.ordinal for p in partitions]
        return cls(partitions[0].kind, min(ordinals), max(ordinals))


@dataclass(frozen=True, slots=True)
class PartitionState:
    """A partition's row in the store.

    :param attempts: tries made so far, over every run.
    :param lease_until: while running, when the worker's lease ends.
    """

    key: str
    kind: str
    ordinal: int
    status: Status
    attempts: int = 0
    error: str | None = None
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_until: datetime | None = None

    def stale(self, now: datetime | None = None) -> bool:
        """Running, but its lease expired: the worker died or stalled."""
        now = now or datetime.now(UTC)
        return self.status == "running" and self.lease_until is not None and self.lease_until < now

    def resettable(self, reset: Reset, now: datetime | None = None) -> bool:
        """Whether registering with ``reset`` sets it back to ``pending`` (see :data:`RESETS`).

        A partition running under a live lease never is: its worker is at it.
        """
        if self.status not in RESETS[reset]:
            return False
        return self.status != "running" or self.stale(now)


class BackfillStore(Resource, abc.ABC):
    """Keeps partition statuses and hands partitions to workers under leases."""

    @abc.abstractmethod
    async def register(self, backfill: str, partitions: Sequence[Partition], reset: Reset) -> None:
        """Add missing partitions as pending, then reset failed or all ones to pending.

        A partition running under a live lease is never reset.
        """

    @abc.abstractmethod
    async def claim(
        self, backfill: str, scope: Scope, *, worker: str, lease: float, newest_first: bool
    ) -> str | None:
        """Mark the next pending (or stale running) partition running for ``worker``.

        :returns: its key, or ``None`` when nothing in ``scope`` can be claimed now.
        """

    @abc.abstractmethod
    async def renew(
        self, backfill: str, keys: Sequence[str], *, worker: str, lease: float
    ) -> set[str]:
        """Extend ``worker``'s leases on ``keys``; returns the keys it still holds."""

    @abc.abstractmethod
    async def finish(
        self,
        backfill: str,
        key: str,
        *,
        worker: str,
        outcome: Outcome,
        tries: int,
        error: str | None = None,
    ) -> bool:
        """Record how ``worker``'s run of ``key`` ended; ``False`` when it no longer held it."""

    @abc.abstractmethod
    async def states(self, backfill: str, scope: Scope | None = None) -> list[PartitionState]:
        """Every partition of ``backfill`` (in ``scope`` when given), oldest first."""
