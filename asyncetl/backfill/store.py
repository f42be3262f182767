"""Where partition statuses live: the interface, and an in-memory store.

A store holds one row per (backfill, partition key): its status, attempts,
last error, start and finish times, and while it runs the worker holding it
and that worker's lease. Workers *claim* a pending partition (or a running one
whose lease expired: its worker died), *renew* their leases while working, and
*finish* with an outcome. Every write names the worker, so a worker that lost
its lease cannot overwrite the outcome of the one that took over.

Implementations: :class:`MemoryBackfillStore` (tests, embedding),
``asyncetl.connectors.sqlite.backfill_store`` (the default) and
``asyncetl.connectors.postgres.backfill_store`` (many workers on many machines).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, TypeAlias

from asyncetl.backfill.partitions import Partition
from asyncetl.core.interfaces import Resource

__all__ = [
    "STATUSES",
    "BackfillStore",
    "MemoryBackfillStore",
    "Outcome",
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


class MemoryBackfillStore(BackfillStore):
    """Partition states in a dict: one process only."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], PartitionState] = {}

    async def register(self, backfill: str, partitions: Sequence[Partition], reset: Reset) -> None:
        now = datetime.now(UTC)
        for p in partitions:
            row = self.rows.setdefault(
                (backfill, p.key), PartitionState(p.key, p.kind, p.ordinal, "pending")
            )
            if _resettable(row, reset, now):
                self.rows[backfill, p.key] = replace(
                    row, status="pending", error=None, worker=None, lease_until=None
                )

    async def claim(
        self, backfill: str, scope: Scope, *, worker: str, lease: float, newest_first: bool
    ) -> str | None:
        now = datetime.now(UTC)
        ready = [
            row
            for (name, _), row in self.rows.items()
            if name == backfill and _in(row, scope) and (row.status == "pending" or row.stale(now))
        ]
        if not ready:
            return None
        row = sorted(ready, key=lambda r: r.ordinal, reverse=newest_first)[0]
        self.rows[backfill, row.key] = replace(
            row,
            status="running",
            worker=worker,
            lease_until=_after(lease),
            started_at=now,
            finished_at=None,
            error=None,
        )
        return row.key

    async def renew(
        self, backfill: str, keys: Sequence[str], *, worker: str, lease: float
    ) -> set[str]:
        held = set()
        for key in keys:
            row = self.rows.get((backfill, key))
            if row is not None and row.status == "running" and row.worker == worker:
                self.rows[backfill, key] = replace(row, lease_until=_after(lease))
                held.add(key)
        return held

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
        row = self.rows.get((backfill, key))
        if row is None or row.status != "running" or row.worker != worker:
            return False
        self.rows[backfill, key] = replace(
            row,
            status=outcome,
            attempts=row.attempts + tries,
            error=error,
            worker=None,
            lease_until=None,
            finished_at=None if outcome == "pending" else datetime.now(UTC),
        )
        return True

    async def states(self, backfill: str, scope: Scope | None = None) -> list[PartitionState]:
        mine = [
            row
            for (name, _), row in self.rows.items()
            if name == backfill and (scope is None or _in(row, scope))
        ]
        return sorted(mine, key=lambda r: (r.kind, r.ordinal))


def _in(row: PartitionState, scope: Scope) -> bool:
    return row.kind == scope.kind and scope.first <= row.ordinal <= scope.last


def _after(seconds: float) -> datetime:
    return datetime.fromtimestamp(time.time() + seconds, UTC)


def _resettable(row: PartitionState, reset: Reset, now: datetime) -> bool:
    if reset == "none" or (row.status == "running" and not row.stale(now)):
        return False
    return reset == "all" or row.status == "failed"
